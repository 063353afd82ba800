//! `ferrolm train --serve-dashboard`: the runs page is served while the run trains (its runs list
//! and metrics fetched over HTTP mid-run), stops with the training, and a port in use is refused
//! before any training.

mod common;

use common::{corpus, ferrolm, text, tiny_train_args};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

/// `GET path` over HTTP/1.1 with `Connection: close`: (status, body). Bodies here have a
/// Content-Length (JSON, the page), so no chunked decoding is needed.
fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connects to the dashboard");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("an HTTP reply");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_string())
}

/// Spawns `ferrolm args…` with stderr read line by line on a thread (stdout discarded).
fn spawn(args: &[String]) -> (Child, Receiver<String>) {
    let mut child = ferrolm()
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("runs ferrolm");
    let err = child.stderr.take().unwrap();
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for l in BufReader::new(err).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

/// The address of the `dashboard: http://ADDR/?run=NAME` line (the lines before it kept in `seen`).
fn dashboard_addr(rx: &Receiver<String>, seen: &mut Vec<String>) -> (SocketAddr, String) {
    loop {
        let l = rx
            .recv_timeout(Duration::from_secs(120))
            .unwrap_or_else(|_| panic!("no dashboard URL printed; stderr so far:\n{}", seen.join("\n")));
        seen.push(l.clone());
        if let Some(url) = l.strip_prefix("dashboard: http://") {
            let (addr, rest) = url.split_once('/').unwrap();
            let query = rest.split_whitespace().next().unwrap().to_string();
            return (addr.parse().unwrap(), query);
        }
    }
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

#[test]
fn the_page_serves_a_run_while_it_trains_and_stops_with_it() {
    let d = tempfile::tempdir().unwrap();
    corpus(d.path());
    let run = d.path().join("runs").join("live");
    // Long enough never to finish on its own: the test stops it with Ctrl-C once it has seen it.
    let mut args = tiny_train_args(d.path(), &run, 1_000_000);
    args.extend(["--serve-dashboard".into(), "0".into()]);
    let (mut child, rx) = spawn(&args);
    let mut seen = Vec::new();
    let (addr, query) = dashboard_addr(&rx, &mut seen);
    assert_eq!(query, "?run=live", "the URL selects the run");

    let (status, page) = get(addr, &format!("/{query}"));
    assert_eq!(status, 200);
    assert!(page.contains("<html"), "{page}");

    // The run appears as running, with metrics lines, while it trains.
    let start = Instant::now();
    let info = loop {
        let (status, body) = get(addr, "/api/runs");
        assert_eq!(status, 200, "{body}");
        let runs = json(&body)["runs"].as_array().unwrap().clone();
        if let Some(r) = runs.iter().find(|r| r["name"] == "live") {
            if r["step"].as_u64().unwrap_or(0) >= 3 {
                break r.clone();
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the run never showed 3 steps: {body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(info["state"], "running", "{info}");
    assert_eq!(info["config"]["max_steps"], 1_000_000, "{info}");
    let (status, body) = get(addr, "/api/runs/live/metrics?after=0");
    assert_eq!(status, 200, "{body}");
    let m = json(&body);
    let records = m["records"].as_array().unwrap();
    assert!(records.len() >= 3, "{body}");
    assert!(
        records
            .iter()
            .any(|r| r["train_loss"].as_f64().is_some_and(f64::is_finite)),
        "no train loss: {body}"
    );
    // Later calls return only the new lines.
    let next = m["next"].as_u64().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let later = json(&get(addr, &format!("/api/runs/live/metrics?after={next}")).1);
    assert!(
        later["next"].as_u64().unwrap() > next,
        "no new lines in 300 ms: {later}"
    );

    // Ctrl-C: the run saves and exits 130, and the page goes with it.
    let pid = child.id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    let status = child.wait().unwrap();
    seen.extend(rx.iter());
    let stderr = seen.join("\n");
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("dashboard stopped"), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "ferrolm serve --runs {}",
            run.parent().unwrap().display()
        )),
        "{stderr}"
    );
    assert!(
        TcpStream::connect(addr).is_err(),
        "the page is still served after the run"
    );
}

#[test]
fn a_port_in_use_is_refused_before_training() {
    let d = tempfile::tempdir().unwrap();
    corpus(d.path());
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let run = d.path().join("runs").join("r");
    let mut args = tiny_train_args(d.path(), &run, 5);
    args.extend(["--serve-dashboard".into(), port.to_string()]);
    let out = ferrolm().args(&args).output().unwrap();
    let msg = text(&out);
    assert!(!out.status.success(), "{msg}");
    assert!(
        msg.contains(&format!("127.0.0.1:{port}")),
        "names the address: {msg}"
    );
    assert!(msg.contains("--serve-dashboard"), "names the fix: {msg}");
    assert!(!msg.contains("panicked"), "{msg}");
    assert!(
        !run.join("metrics.jsonl").exists(),
        "trained although the port was taken"
    );
    drop(busy);

    // A short run with a free port: the URL printed at start, the page stopped at the end, exit 0.
    let mut args = tiny_train_args(d.path(), &run, 5);
    args.extend(["--serve-dashboard".into(), "0".into()]);
    let out = ferrolm().args(&args).output().unwrap();
    let msg = text(&out);
    assert!(out.status.success(), "{msg}");
    assert!(msg.contains("dashboard: http://127.0.0.1:"), "{msg}");
    assert!(msg.contains("dashboard stopped"), "{msg}");
    assert!(run.join("metrics.jsonl").is_file());
}

#[test]
fn dashboard_host_needs_the_flag() {
    let out = ferrolm()
        .args(["train", "--dashboard-host", "0.0.0.0", "--print-config"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(text(&out).contains("--serve-dashboard"), "{}", text(&out));
}
