//! A tiny model and byte-level tokenizer served on 127.0.0.1, and a minimal HTTP/1.1 client
//! (std only) for the API tests.

#![allow(dead_code)]

#[path = "../../../train/tests/common/tiny.rs"]
mod tiny;

use ferrolm_nn::model::Model;
use ferrolm_nn::{ModelConfig, Precision};
use ferrolm_serve::{Background, ServeOptions};
use ferrolm_tokenizer::Tokenizer;
use ferrolm_train::generate::{generate_text, GenerateConfig};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// 256 byte tokens and <|endoftext|> (id 256), no merges.
pub fn tokenizer() -> Tokenizer {
    let vocab: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
    Tokenizer::new(vocab, &Vec::new(), &["<|endoftext|>".to_string()]).unwrap()
}

/// The tiny model (`tiny_config`) over [`tokenizer`]'s 257 tokens with a context of 48.
pub fn model(precision: Precision) -> Model {
    let mut m = Model::new(tiny::tiny_config(257, 48), 11).unwrap();
    m.precision = precision;
    m
}

pub fn start(opts: ServeOptions) -> Background {
    start_with(model(Precision::F32), opts)
}

pub fn start_with(model: Model, opts: ServeOptions) -> Background {
    let opts = ServeOptions {
        port: 0,
        model_id: "tiny".into(),
        ..opts
    };
    Background::start(model, tokenizer(), &opts).unwrap()
}

/// A server whose model never ends a text by itself: 256 byte tokens and no <|endoftext|>, so a
/// stream lasts its max_tokens (for tests that hold a slot while they do something else; with
/// <|endoftext|> the tiny model ends seed 1's text after 78 tokens, a race under load).
pub fn start_endless(opts: ServeOptions) -> Background {
    let config = ModelConfig {
        vocab_size: 256,
        ..model(Precision::F32).config
    };
    let m = Model::new(config, 11).unwrap();
    let vocab: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
    let tok = Tokenizer::new(vocab, &Vec::new(), &[]).unwrap();
    let opts = ServeOptions {
        port: 0,
        model_id: "tiny".into(),
        ..opts
    };
    Background::start(m, tok, &opts).unwrap()
}

/// What `ferrolm generate` prints (without the prompt) for these settings.
pub fn generated(
    model: &Model,
    prompt: &str,
    max_tokens: usize,
    temperature: f32,
    top_p: f32,
    seed: u64,
) -> String {
    let cfg = GenerateConfig {
        max_tokens,
        temperature,
        top_p,
        seed,
    };
    generate_text(model, &tokenizer(), prompt, &cfg, &mut |_| Ok(()))
        .unwrap()
        .text
}

pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The `data:` payloads of a server-sent-events body, checking the framing (each event one
    /// `data: ` line followed by a blank line).
    pub fn sse(&self) -> Vec<String> {
        assert!(
            self.body.ends_with("\n\n"),
            "SSE body must end with a blank line: {:?}",
            self.body
        );
        self.body
            .trim_end_matches('\n')
            .split("\n\n")
            .map(|ev| {
                let data = ev
                    .strip_prefix("data: ")
                    .unwrap_or_else(|| panic!("event without data: {ev:?}"));
                assert!(!data.contains('\n'), "one data line per event: {ev:?}");
                data.to_string()
            })
            .collect()
    }
}

/// Sends one request (Connection: close) and reads the whole reply.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> Reply {
    let mut s = open(addr, method, path, body.unwrap_or(""), headers);
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    parse(&raw)
}

pub fn get(addr: SocketAddr, path: &str) -> Reply {
    request(addr, "GET", path, None, &[])
}

/// GETs `path`, which must answer 200 (a panic naming the path and the body otherwise).
pub fn get_ok(addr: SocketAddr, path: &str) -> Reply {
    let r = get(addr, path);
    assert_eq!(r.status, 200, "GET {path}: {}", r.body);
    r
}

pub fn post(addr: SocketAddr, path: &str, body: &str) -> Reply {
    request(addr, "POST", path, Some(body), &[])
}

/// POSTs `body` to `path` and returns the connection with the reply unread (for streams).
pub fn post_stream(addr: SocketAddr, path: &str, body: &str) -> TcpStream {
    open(addr, "POST", path, body, &[])
}

/// Connects and writes a request (Connection: close); the caller reads the reply.
fn open(addr: SocketAddr, method: &str, path: &str, body: &str, headers: &[(&str, &str)]) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    s
}

fn parse(raw: &[u8]) -> Reply {
    let text = String::from_utf8_lossy(raw);
    let (head, rest) = text.split_once("\r\n\r\n").expect("HTTP head");
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked { dechunk(rest) } else { rest.to_string() };
    Reply {
        status,
        headers,
        body,
    }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, rest) = s.split_once("\r\n").expect("chunk size");
        let n = usize::from_str_radix(size.trim(), 16).expect("hex chunk size");
        if n == 0 {
            return out;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
}
