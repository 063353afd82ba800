//! The HTTP API end to end on 127.0.0.1: JSON shapes, SSE framing, stop strings, n, usage, the
//! seed equality with `generate` (alone and batched), bad input, the API key, a full queue, and a
//! client leaving mid-stream.

mod common;

use common::*;
use ferrolm_nn::Precision;
use ferrolm_serve::ServeOptions;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read};
use std::time::{Duration, Instant};

fn completion(addr: std::net::SocketAddr, body: Value) -> Value {
    let r = post(addr, "/v1/completions", &body.to_string());
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
}

#[test]
fn health_models_tokenize_detokenize() {
    let srv = start(ServeOptions::default());
    let h = get(srv.addr, "/health");
    assert_eq!((h.status, h.json()["status"].clone()), (200, json!("ok")));
    let m = get(srv.addr, "/v1/models").json();
    assert_eq!(m["object"], "list");
    assert_eq!(m["data"][0]["id"], "tiny");
    assert_eq!(m["data"][0]["object"], "model");
    let t = post(srv.addr, "/tokenize", r#"{"prompt": "héllo"}"#).json();
    assert_eq!(t["count"], 6);
    let d = post(
        srv.addr,
        "/detokenize",
        &json!({"tokens": t["tokens"]}).to_string(),
    )
    .json();
    assert_eq!(d["prompt"], "héllo");
    let bad = post(srv.addr, "/detokenize", r#"{"tokens": [1, 99999]}"#);
    assert_eq!(bad.status, 400);
    assert_eq!(bad.json()["error"]["param"], "tokens");
}

#[test]
fn served_text_equals_generate_for_the_seed_greedy_and_sampled_in_both_precisions() {
    for precision in [Precision::F32, Precision::Bf16] {
        let srv = start_with(model(precision), ServeOptions::default());
        let m = model(precision);
        for (temperature, top_p, seed) in [(0.0, 1.0, 1), (0.9, 0.9, 5), (1.3, 1.0, 42)] {
            let r = completion(
                srv.addr,
                json!({"model": "tiny", "prompt": "Once upon", "max_tokens": 30,
                       "temperature": temperature, "top_p": top_p, "seed": seed}),
            );
            let want = generated(&m, "Once upon", 30, temperature, top_p, seed);
            assert_eq!(
                r["choices"][0]["text"],
                want.as_str(),
                "{precision:?} t={temperature} seed={seed}"
            );
            assert_eq!(r["object"], "text_completion");
            assert_eq!(r["model"], "tiny");
            assert!(r["id"].as_str().unwrap().starts_with("cmpl-"));
            let u = &r["usage"];
            assert_eq!(u["prompt_tokens"], 9);
            let c = u["completion_tokens"].as_u64().unwrap();
            assert_eq!(u["total_tokens"].as_u64().unwrap(), 9 + c);
            let reason = r["choices"][0]["finish_reason"].as_str().unwrap();
            assert!(
                (c == 30 && reason == "length") || (c < 30 && reason == "stop"),
                "{c} {reason}"
            );
        }
    }
}

#[test]
fn concurrent_requests_are_batched_and_each_equals_its_single_run() {
    eight_concurrent_each_equal_alone(Precision::F32, 1.0);
}

/// The same in bf16 with top-p: eight streams decoded in the batched step (its one-job form:
/// the test model is pre-norm), each the text `generate` gives for its seed.
#[test]
fn eight_concurrent_bf16_top_p_streams_each_equal_their_single_run() {
    eight_concurrent_each_equal_alone(Precision::Bf16, 0.9);
}

fn eight_concurrent_each_equal_alone(precision: Precision, top_p: f32) {
    let srv = start_with(model(precision), ServeOptions::default());
    let m = model(precision);
    let addr = srv.addr;
    // Different prompt lengths and max_tokens: sequences join and leave mid-way; long enough
    // to slide past the 48-token context.
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(8));
    let handles: Vec<_> = (0..8u64)
        .map(|i| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let prompt = "ab".repeat(i as usize + 1);
                let max = 200 + 37 * i as usize;
                barrier.wait();
                let t = if i % 2 == 0 { 0.0 } else { 0.8 };
                let r = completion(
                    addr,
                    json!({"prompt": prompt, "max_tokens": max, "temperature": t, "seed": i,
                           "top_p": top_p}),
                );
                (
                    prompt,
                    max,
                    t,
                    i,
                    r["choices"][0]["text"].as_str().unwrap().to_string(),
                )
            })
        })
        .collect();
    for h in handles {
        let (prompt, max, t, seed, text) = h.join().unwrap();
        assert_eq!(
            text,
            generated(&m, &prompt, max, t, top_p, seed),
            "{precision:?} seed {seed}"
        );
    }
    let h = get(addr, "/health").json();
    assert!(
        h["peak_batch"].as_u64().unwrap() >= 2,
        "the requests never shared a step: {h}"
    );
}

#[test]
fn streaming_frames_events_and_ends_with_done() {
    let srv = start(ServeOptions::default());
    let body = json!({"prompt": "Hi", "max_tokens": 12, "temperature": 0.7, "seed": 3, "stream": true,
                      "stream_options": {"include_usage": true}});
    let r = post(srv.addr, "/v1/completions", &body.to_string());
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/event-stream"));
    let events = r.sse();
    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["text"].as_str())
        .collect();
    let finish: Vec<&Value> = chunks
        .iter()
        .map(|c| &c["choices"][0]["finish_reason"])
        .filter(|f| !f.is_null())
        .collect();
    assert_eq!(finish.len(), 1);
    assert!(chunks.iter().all(|c| c["object"] == "text_completion"));
    let plain = completion(
        srv.addr,
        json!({"prompt": "Hi", "max_tokens": 12, "temperature": 0.7, "seed": 3}),
    );
    assert_eq!(text, plain["choices"][0]["text"].as_str().unwrap());
    assert_eq!(usage["usage"], plain["usage"]);
    assert_eq!(text, generated(&model(Precision::F32), "Hi", 12, 0.7, 1.0, 3));
}

#[test]
fn n_and_prompt_lists_give_one_choice_each_with_seed_plus_index() {
    let srv = start(ServeOptions::default());
    let m = model(Precision::F32);
    let r = completion(
        srv.addr,
        json!({"prompt": ["one", "two"], "n": 3, "max_tokens": 10, "temperature": 1.0, "seed": 7}),
    );
    let choices = r["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 6);
    for (i, c) in choices.iter().enumerate() {
        assert_eq!(c["index"], i);
        let prompt = ["one", "two"][i / 3];
        let want = generated(&m, prompt, 10, 1.0, 1.0, 7 + (i % 3) as u64);
        assert_eq!(c["text"], want.as_str(), "choice {i}");
    }
    assert_eq!(r["usage"]["prompt_tokens"], 6);
}

#[test]
fn stop_strings_end_the_text_before_them() {
    let srv = start(ServeOptions::default());
    let m = model(Precision::F32);
    let full = generated(&m, "xyz", 40, 0.0, 1.0, 1);
    let chars: Vec<char> = full.chars().collect();
    assert!(chars.len() > 10, "{full:?}");
    // A stop string taken from the middle of the text: the reply ends before its first match.
    let stop: String = chars[6..8].iter().collect();
    let cut = full.find(&stop).unwrap();
    for stream in [false, true] {
        let body = json!({"prompt": "xyz", "max_tokens": 40, "temperature": 0.0, "stop": [stop, "never-there"], "stream": stream});
        let r = post(srv.addr, "/v1/completions", &body.to_string());
        let (text, reason) = if stream {
            let ev = r.sse();
            let chunks: Vec<Value> = ev[..ev.len() - 1]
                .iter()
                .map(|e| serde_json::from_str(e).unwrap())
                .collect();
            let text: String = chunks
                .iter()
                .filter_map(|c| c["choices"][0]["text"].as_str())
                .collect();
            (
                text,
                chunks.last().unwrap()["choices"][0]["finish_reason"].clone(),
            )
        } else {
            let j = r.json();
            (
                j["choices"][0]["text"].as_str().unwrap().to_string(),
                j["choices"][0]["finish_reason"].clone(),
            )
        };
        assert_eq!(text, full[..cut], "stream {stream}");
        assert_eq!(reason, "stop");
    }
}

#[test]
fn bad_input_is_a_4xx_json_error_naming_the_field() {
    let srv = start(ServeOptions::default());
    let long = "z".repeat(48);
    let cases: Vec<(String, u16, &str)> = vec![
        ("{not json".into(), 400, "body"),
        ("[1, 2]".into(), 400, "body"),
        (json!({"model": "gpt-4", "prompt": "a"}).to_string(), 404, "model"),
        (
            json!({"prompt": "a", "max_tokens": -1}).to_string(),
            400,
            "max_tokens",
        ),
        (
            json!({"prompt": "a", "max_tokens": 0}).to_string(),
            400,
            "max_tokens",
        ),
        (
            json!({"prompt": "a", "max_tokens": 1_000_000_000}).to_string(),
            400,
            "max_tokens",
        ),
        (
            json!({"prompt": "a", "max_tokens": "ten"}).to_string(),
            400,
            "max_tokens",
        ),
        (
            json!({"prompt": "a", "temperature": -0.5}).to_string(),
            400,
            "temperature",
        ),
        (json!({"prompt": "a", "top_p": 0}).to_string(), 400, "top_p"),
        (json!({"prompt": "a", "top_p": 1.5}).to_string(), 400, "top_p"),
        (json!({"prompt": long}).to_string(), 400, "prompt"),
        (json!({"prompt": 5}).to_string(), 400, "prompt"),
        (json!({"prompt": []}).to_string(), 400, "prompt"),
        (json!({"prompt": "a", "n": 0}).to_string(), 400, "n"),
        (json!({"prompt": "a", "seed": -3}).to_string(), 400, "seed"),
        (json!({"prompt": "a", "stop": ["", "x"]}).to_string(), 400, "stop"),
    ];
    for (body, status, param) in cases {
        let r = post(srv.addr, "/v1/completions", &body);
        assert_eq!(r.status, status, "{body}: {}", r.body);
        let e = &r.json()["error"];
        assert_eq!(e["param"], param, "{body}");
        assert!(
            e["message"].as_str().unwrap().contains(param) || param == "body",
            "{body}: {e}"
        );
    }
    // The server is still fine.
    assert_eq!(
        post(srv.addr, "/v1/completions", r#"{"prompt": "a", "max_tokens": 2}"#).status,
        200
    );
}

#[test]
fn api_key_is_required_when_set() {
    let srv = start(ServeOptions {
        api_key: Some("sekrit".into()),
        ..ServeOptions::default()
    });
    let body = Some(r#"{"prompt": "a", "max_tokens": 2}"#);
    for headers in [
        vec![],
        vec![("Authorization", "Bearer nope")],
        vec![("Authorization", "sekrit")],
    ] {
        let r = request(srv.addr, "POST", "/v1/completions", body, &headers);
        assert_eq!(r.status, 401, "{headers:?}");
        assert_eq!(r.json()["error"]["type"], "authentication_error");
    }
    assert_eq!(get(srv.addr, "/v1/models").status, 401);
    let key = [("Authorization", "Bearer sekrit")];
    let ok = request(srv.addr, "POST", "/v1/completions", body, &key);
    assert_eq!(ok.status, 200);
}

/// Opens a long stream and returns its reader after the first event arrived.
fn open_stream(addr: std::net::SocketAddr) -> BufReader<std::net::TcpStream> {
    stream_after_first_event(
        addr,
        json!({"prompt": "a", "max_tokens": 60000, "temperature": 1.0, "seed": 1, "stream": true}),
    )
}

/// Starts the streamed completion `body` and returns its reader after the first event arrived.
fn stream_after_first_event(addr: std::net::SocketAddr, body: Value) -> BufReader<std::net::TcpStream> {
    let mut r = BufReader::new(post_stream(addr, "/v1/completions", &body.to_string()));
    let mut line = String::new();
    while !line.starts_with("data: ") {
        line.clear();
        r.read_line(&mut line).unwrap();
    }
    r
}

fn in_flight(addr: std::net::SocketAddr) -> u64 {
    get(addr, "/health").json()["in_flight"].as_u64().unwrap()
}

#[test]
fn a_full_queue_answers_503_and_a_client_leaving_frees_its_slot() {
    let srv = start_endless(ServeOptions {
        max_batch: 1,
        max_queue: 0,
        ..ServeOptions::default()
    });
    let stream = open_stream(srv.addr);
    assert_eq!(in_flight(srv.addr), 1);
    let r = post(srv.addr, "/v1/completions", r#"{"prompt": "b", "max_tokens": 2}"#);
    assert_eq!(r.status, 503);
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(r.json()["error"]["type"], "server_overloaded");
    // The client leaves mid-stream: its slot is free within moments (not after 60000 tokens).
    drop(stream);
    let t = Instant::now();
    while in_flight(srv.addr) != 0 {
        assert!(t.elapsed() < Duration::from_secs(10), "the slot was not freed");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        post(srv.addr, "/v1/completions", r#"{"prompt": "b", "max_tokens": 2}"#).status,
        200
    );
}

#[test]
fn stopping_drains_the_requests_in_flight() {
    let srv = start(ServeOptions::default());
    let body = json!({"prompt": "a", "max_tokens": 1500, "stream": true, "seed": 2});
    let mut r = stream_after_first_event(srv.addr, body);
    // Stop while the stream runs: it still gets every token and [DONE].
    let stopper = std::thread::spawn(move || srv.stop());
    let mut rest = String::new();
    r.read_to_string(&mut rest).unwrap();
    stopper.join().unwrap().unwrap();
    let last = rest.lines().rfind(|l| l.starts_with("data: ")).unwrap();
    assert_eq!(last, "data: [DONE]");
    let finish = rest
        .lines()
        .filter(|l| l.contains("\"finish_reason\":\""))
        .count();
    assert_eq!(finish, 1, "one finish_reason");
}
