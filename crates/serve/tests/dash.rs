//! The runs dashboard: `/api/runs`, metrics polling with `after`, samples, refused run names, the
//! page, its script and the vendored uPlot, the 503 completion routes when no model is loaded, and
//! `--api-key` on `/api/*` (the page shell stays open).

mod common;

use common::{get, get_ok, model, request, start_with};
use ferrolm_nn::Precision;
use ferrolm_serve::{Background, ServeOptions};
use serde_json::Value;
use std::io::Write;
use std::net::SocketAddr;

fn line(step: u64, train: f32, val: Option<f32>) -> String {
    let val = val.map_or("null".to_string(), |v| v.to_string());
    format!(
        "{{\"step\":{step},\"tokens\":{},\"wall_s\":{},\"train_loss\":{train},\"val_loss\":{val},\"lr\":0.001,\"grad_norm\":1.0,\"tokens_per_s\":100.0}}\n",
        step * 64,
        step as f64 * 0.5
    )
}

/// Two runs: `a` (2 records) and `b` (3 records, a samples.txt).
fn two_runs() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for (name, n) in [("a", 2u64), ("b", 3)] {
        let dir = d.path().join(name);
        std::fs::create_dir(&dir).unwrap();
        let text: String = (1..=n)
            .map(|s| line(s, 5.0 - s as f32 * 0.1, (s == n).then_some(4.5)))
            .collect();
        std::fs::write(dir.join("metrics.jsonl"), text).unwrap();
    }
    std::fs::write(
        d.path().join("b/samples.txt"),
        "Once upon a time there was a test.\n",
    )
    .unwrap();
    std::fs::create_dir(d.path().join("not-a-run")).unwrap();
    d
}

/// [`two_runs`] served by a dashboard without a model (keep the folder while the server runs).
fn two_runs_served() -> (tempfile::TempDir, Background) {
    let d = two_runs();
    let srv = Background::start_runs(&ServeOptions {
        port: 0,
        runs_dir: Some(d.path().to_path_buf()),
        ..ServeOptions::default()
    })
    .unwrap();
    (d, srv)
}

fn metrics(addr: SocketAddr, run: &str, after: usize) -> Value {
    get_ok(addr, &format!("/api/runs/{run}/metrics?after={after}")).json()
}

#[test]
fn lists_both_runs_with_their_state_and_losses() {
    let (_d, srv) = two_runs_served();
    let r = get_ok(srv.addr, "/api/runs");
    let runs = r.json()["runs"].as_array().unwrap().clone();
    let names: Vec<&str> = runs.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(runs[0]["step"], 2);
    assert_eq!(runs[1]["step"], 3);
    assert_eq!(runs[1]["state"], "interrupted");
    assert_eq!(runs[1]["final_val_loss"], 4.5);
    assert_eq!(runs[0]["has_samples"], false);
    assert_eq!(runs[1]["has_samples"], true);
    let info = get(srv.addr, "/api/info").json();
    assert_eq!(info["model"], Value::Null);
    srv.stop().unwrap();
}

#[test]
fn metrics_after_n_returns_only_the_new_points_as_the_file_grows() {
    let (d, srv) = two_runs_served();
    let m = metrics(srv.addr, "a", 0);
    assert_eq!(m["next"], 2);
    let steps: Vec<u64> = m["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["step"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, [1, 2]);
    assert_eq!(metrics(srv.addr, "a", 2)["records"].as_array().unwrap().len(), 0);

    // The trainer appends a point, and starts writing the next one.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(d.path().join("a/metrics.jsonl"))
        .unwrap();
    f.write_all(line(3, 4.2, Some(4.4)).as_bytes()).unwrap();
    f.write_all(b"{\"step\":4,\"tok").unwrap();
    f.flush().unwrap();
    let m = metrics(srv.addr, "a", 2);
    assert_eq!(m["next"], 3, "the half-written line must wait: {m}");
    let recs = m["records"].as_array().unwrap();
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0]["step"], 3);
    assert_eq!(recs[0]["val_loss"].as_f64().unwrap() as f32, 4.4);
    // The other run is untouched.
    assert_eq!(metrics(srv.addr, "b", 0)["next"], 3);
    srv.stop().unwrap();
}

#[test]
fn samples_and_bad_run_names() {
    let (_d, srv) = two_runs_served();
    let s = get_ok(srv.addr, "/api/runs/b/samples");
    assert!(
        s.body.contains("Once upon a time there was a test."),
        "{}",
        s.body
    );
    assert_eq!(get(srv.addr, "/api/runs/a/samples").status, 404);
    for (path, status) in [
        ("/api/runs/..%2Fb/metrics", 400),
        ("/api/runs/..%2F..%2Fetc/samples", 400),
        ("/api/runs/..%2F..%2F..%2Fetc%2Fpasswd/samples", 400),
        ("/api/runs/%2Fetc/metrics", 400),
        ("/api/runs/..\\b/metrics", 400),
        ("/api/runs/nope/metrics", 404),
        ("/api/runs/not-a-run/metrics", 404),
    ] {
        let r = get(srv.addr, path);
        assert_eq!(r.status, status, "{path}: {}", r.body);
        assert!(r.json()["error"]["message"].is_string(), "{path}: {}", r.body);
    }
    srv.stop().unwrap();
}

#[test]
fn page_and_script_are_served_and_completions_say_no_model() {
    let (_d, srv) = two_runs_served();
    let page = get_ok(srv.addr, "/");
    assert!(page.header("content-type").unwrap().starts_with("text/html"));
    assert!(page.body.contains("<script src=\"/app.js\">"));
    assert!(page.body.contains("<script src=\"/assets/uPlot.iife.min.js\">"));
    assert!(page.body.contains("href=\"/assets/uPlot.min.css\""));
    let js = get_ok(srv.addr, "/app.js");
    assert!(js.body.contains("/api/runs"));
    assert!(js.body.contains("new uPlot("));
    // The vendored chart library: served from the binary, with its type and a cache header.
    for (path, kind, has) in [
        (
            "/assets/uPlot.iife.min.js",
            "text/javascript",
            "var uPlot=function()",
        ),
        ("/assets/uPlot.min.css", "text/css", ".uplot"),
        ("/assets/uPlot.LICENSE.txt", "text/plain", "MIT"),
    ] {
        let r = get_ok(srv.addr, path);
        assert!(r.header("content-type").unwrap().starts_with(kind), "{path}");
        assert_eq!(r.header("cache-control"), Some("public, max-age=86400"), "{path}");
        assert!(r.body.contains(has), "{path}");
    }
    assert_eq!(page.header("cache-control"), Some("no-cache"));
    for (method, path) in [("POST", "/v1/completions"), ("GET", "/v1/models")] {
        let r = request(srv.addr, method, path, Some(r#"{"prompt": "a"}"#), &[]);
        assert_eq!(r.status, 503, "{path}: {}", r.body);
        let msg = r.json()["error"]["message"].as_str().unwrap().to_string();
        assert!(msg.contains("no model is loaded"), "{msg}");
        assert_eq!(r.json()["error"]["type"], "server_error", "{}", r.body);
    }
    srv.stop().unwrap();
}

#[test]
fn with_a_model_the_runs_and_the_completions_are_both_served() {
    let d = two_runs();
    let srv = start_with(
        model(Precision::F32),
        ServeOptions {
            runs_dir: Some(d.path().to_path_buf()),
            api_key: Some("k".into()),
            ..ServeOptions::default()
        },
    );
    let key = [("Authorization", "Bearer k")];
    assert_eq!(
        request(srv.addr, "GET", "/api/info", None, &key).json()["model"],
        "tiny"
    );
    let r = request(srv.addr, "GET", "/api/runs", None, &key);
    assert_eq!(r.json()["runs"].as_array().unwrap().len(), 2);
    // Both the completion API and the runs API keep the key.
    assert_eq!(get(srv.addr, "/v1/models").status, 401);
    assert_eq!(get(srv.addr, "/api/runs").status, 401);
    let r = request(srv.addr, "GET", "/v1/models", None, &key);
    assert_eq!(r.status, 200, "{}", r.body);
    srv.stop().unwrap();
}

#[test]
fn a_runs_dir_that_does_not_exist_is_refused_at_start() {
    let err = Background::start_runs(&ServeOptions {
        port: 0,
        runs_dir: Some("/nonexistent/ferrolm-runs".into()),
        ..ServeOptions::default()
    })
    .err()
    .unwrap();
    assert!(err.to_string().contains("/nonexistent/ferrolm-runs"), "{err}");
}

#[test]
fn with_an_api_key_the_runs_api_needs_it_and_the_page_shell_does_not() {
    let d = two_runs();
    let srv = Background::start_runs(&ServeOptions {
        port: 0,
        runs_dir: Some(d.path().to_path_buf()),
        api_key: Some("s3cret".into()),
        ..ServeOptions::default()
    })
    .unwrap();
    // The shell loads without the key and holds no run data; it asks for the key.
    let page = get_ok(srv.addr, "/");
    assert!(page.body.contains("id=\"key-form\""));
    assert!(!page.body.contains("Once upon a time there was a test."));
    for path in ["/app.js", "/assets/uPlot.iife.min.js", "/assets/uPlot.min.css"] {
        get_ok(srv.addr, path);
    }
    let api = [
        "/api/info",
        "/api/runs",
        "/api/runs/a/metrics?after=0",
        "/api/runs/b/samples",
        "/api/runs/nope/metrics",
        "/api/runs/..%2Fb/metrics",
    ];
    for (headers, what) in [
        (&[][..], "no key"),
        (&[("Authorization", "Bearer wrong")][..], "a wrong key"),
        (&[("Authorization", "Bearer s3cret0")][..], "a longer key"),
        (&[("Authorization", "s3cret")][..], "no Bearer"),
    ] {
        for path in api {
            let r = request(srv.addr, "GET", path, None, headers);
            assert_eq!(r.status, 401, "{path} with {what}: {}", r.body);
            let msg = r.json()["error"]["message"].as_str().unwrap().to_string();
            assert!(msg.contains("Authorization: Bearer"), "{msg}");
            assert!(!r.body.contains("train_loss"), "{path} leaked data: {}", r.body);
        }
    }
    let key = [("Authorization", "Bearer s3cret")];
    for (path, status) in [
        ("/api/info", 200),
        ("/api/runs", 200),
        ("/api/runs/a/metrics?after=0", 200),
        ("/api/runs/b/samples", 200),
        ("/api/runs/nope/metrics", 404),
        ("/api/runs/..%2Fb/metrics", 400),
    ] {
        let r = request(srv.addr, "GET", path, None, &key);
        assert_eq!(r.status, status, "{path}: {}", r.body);
    }
    let runs = request(srv.addr, "GET", "/api/runs", None, &key).json();
    assert_eq!(runs["runs"].as_array().unwrap().len(), 2);
    srv.stop().unwrap();
}
