//! The HTTP routes: /v1/completions (JSON or server-sent events), /v1/models, /health,
//! /tokenize, /detokenize, and the bearer-key check (also used by the runs API).

use crate::api::{ApiError, Checked, CompletionRequest, DetokenizeRequest, TokenizeRequest};
use crate::engine::{EngineHandle, Event, Job};
use crate::sequence::Choice;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use ferrolm_tokenizer::Tokenizer;
use ferrolm_train::generate::{GenerateConfig, END_OF_TEXT};
use futures_util::stream::{self, Stream, StreamExt};
use serde_json::{json, Value};
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_stream::wrappers::UnboundedReceiverStream;

/// What every handler shares.
pub struct AppState {
    pub engine: EngineHandle,
    pub tokenizer: Arc<Tokenizer>,
    /// The name GET /v1/models lists and requests may give as `model`.
    pub model_id: String,
    pub context_length: usize,
    pub api_key: Option<String>,
    pub created: u64,
    pub counter: AtomicU64,
}

/// The router over `state`.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/completions", post(completions))
        .route("/v1/models", get(models))
        .route("/health", get(health))
        .route("/tokenize", post(tokenize))
        .route("/detokenize", post(detokenize))
        .layer(middleware::from_fn_with_state(
            Arc::new(state.api_key.clone()),
            require_bearer,
        ))
        .with_state(state)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Whether `req` carries `Authorization: Bearer KEY` (always, when `key` is `None`). The key is
/// compared in time independent of where it differs.
pub fn authorized(key: Option<&str>, req: &Request) -> bool {
    let Some(key) = key else { return true };
    let given = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    given.len() == key.len()
        && given
            .bytes()
            .zip(key.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// The 401 JSON error of a request without the key.
pub fn unauthorized() -> Response {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "missing or wrong API key: send Authorization: Bearer KEY",
    )
    .into_response()
}

/// 401 unless the request carries `Authorization: Bearer KEY` (when the server has a key): the
/// middleware of the API routes and of the runs API, with the key as its state.
pub async fn require_bearer(State(key): State<Arc<Option<String>>>, req: Request, next: Next) -> Response {
    if !authorized(key.as_deref(), &req) {
        return unauthorized();
    }
    next.run(req).await
}

async fn health(State(st): State<Arc<AppState>>) -> Json<Value> {
    Json(json!({"status": "ok", "in_flight": st.engine.outstanding(), "peak_batch": st.engine.peak_batch()}))
}

async fn models(State(st): State<Arc<AppState>>) -> Json<Value> {
    Json(json!({"object": "list", "data": [{
        "id": st.model_id, "object": "model", "created": st.created, "owned_by": "ferrolm",
        "context_length": st.context_length,
    }]}))
}

async fn tokenize(State(st): State<Arc<AppState>>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let req: TokenizeRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad("prompt", format!("expected {{\"prompt\": string}}: {e}")))?;
    let tokens = st.tokenizer.encode(&req.prompt);
    Ok(Json(json!({"tokens": tokens, "count": tokens.len()})))
}

async fn detokenize(State(st): State<Arc<AppState>>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let req: DetokenizeRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad("tokens", format!("expected {{\"tokens\": [integers]}}: {e}")))?;
    let vocab = st.tokenizer.vocab_size() as i64;
    if let Some((i, t)) = req.tokens.iter().enumerate().find(|(_, &t)| t < 0 || t >= vocab) {
        return Err(ApiError::bad(
            "tokens",
            format!("token {t} at index {i} is outside the vocabulary (size {vocab})"),
        ));
    }
    let ids: Vec<u32> = req.tokens.iter().map(|&t| t as u32).collect();
    let bytes = st
        .tokenizer
        .decode_bytes(&ids)
        .map_err(|e| ApiError::bad("tokens", e.to_string()))?;
    Ok(Json(json!({"prompt": String::from_utf8_lossy(&bytes)})))
}

/// The choices of a request queued on the engine: (choice index, its events).
struct Queued {
    receivers: Vec<UnboundedReceiver<Event>>,
    prompt_tokens: usize,
    id: String,
}

async fn completions(State(st): State<Arc<AppState>>, body: Bytes) -> Result<Response, ApiError> {
    let default_seed = now()
        ^ st.counter
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9E37_79B9);
    let req = CompletionRequest::parse(&body)?.check(&st.model_id, default_seed)?;
    let q = queue(&st, &req)?;
    if req.stream {
        Ok(stream_response(st, req, q).into_response())
    } else {
        Ok(Json(collect(&st, &req, q).await?).into_response())
    }
}

/// Encodes the prompts, checks their length and queues n choices for each (choice i of a prompt
/// with seed + i).
fn queue(st: &AppState, req: &Checked) -> Result<Queued, ApiError> {
    let eot = st.tokenizer.token_to_id(END_OF_TEXT);
    let mut jobs = Vec::new();
    let mut receivers = Vec::new();
    let mut prompt_tokens = 0;
    for (pi, prompt) in req.prompts.iter().enumerate() {
        let ids = st.tokenizer.encode(prompt);
        if ids.len() >= st.context_length {
            return Err(ApiError::bad(
                "prompt",
                format!(
                    "prompt {pi} has {} tokens; the context holds {} (at most {} prompt tokens)",
                    ids.len(),
                    st.context_length,
                    st.context_length - 1
                ),
            ));
        }
        if ids.is_empty() && eot.is_none() {
            return Err(ApiError::bad(
                "prompt",
                "an empty prompt needs a tokenizer with <|endoftext|>",
            ));
        }
        prompt_tokens += ids.len();
        for i in 0..req.n {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            let cfg = GenerateConfig {
                max_tokens: req.max_tokens,
                temperature: req.temperature,
                top_p: req.top_p,
                seed: req.seed.wrapping_add(i as u64),
            };
            let choice = Choice {
                prompt: ids.clone(),
                cfg,
                stop: req.stop.clone(),
                eot,
            };
            jobs.push(Job { choice, events: tx });
            receivers.push(rx);
        }
    }
    st.engine.submit(jobs).map_err(|_| ApiError {
        status: StatusCode::SERVICE_UNAVAILABLE,
        message: "the server is at capacity (every batch slot and queue place taken); retry shortly".into(),
        param: None,
        retry_after: Some(1),
    })?;
    let id = format!("cmpl-{:x}{:x}", now(), st.counter.fetch_add(1, Ordering::Relaxed));
    Ok(Queued {
        receivers,
        prompt_tokens,
        id,
    })
}

fn usage(prompt_tokens: usize, completion_tokens: usize) -> Value {
    json!({"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
           "total_tokens": prompt_tokens + completion_tokens})
}

/// Waits for every choice and answers one JSON body.
async fn collect(st: &AppState, req: &Checked, q: Queued) -> Result<Value, ApiError> {
    let mut choices = Vec::new();
    let mut completion_tokens = 0;
    for (index, mut rx) in q.receivers.into_iter().enumerate() {
        let mut text = if req.echo {
            req.prompts[index / req.n].clone()
        } else {
            String::new()
        };
        let mut finish = Value::Null;
        while let Some(ev) = rx.recv().await {
            match ev {
                Event::Text(t) => text.push_str(&t),
                Event::Done {
                    finish_reason,
                    completion_tokens: c,
                } => {
                    finish = finish_reason.into();
                    completion_tokens += c;
                }
                Event::Error(e) => return Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e)),
            }
        }
        choices.push(json!({"text": text, "index": index, "logprobs": null, "finish_reason": finish}));
    }
    Ok(json!({
        "id": q.id, "object": "text_completion", "created": now(), "model": st.model_id,
        "choices": choices, "usage": usage(q.prompt_tokens, completion_tokens),
    }))
}

/// Streams the choices as server-sent events: one `data: {chunk}` per piece of text of any
/// choice, a chunk with each choice's finish_reason, the usage chunk when asked, then
/// `data: [DONE]`. Dropping the stream (the client left) drops the receivers, which frees the
/// sequences' slots at the scheduler's next step.
fn stream_response(
    st: Arc<AppState>,
    req: Checked,
    q: Queued,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let chunk = {
        let (id, model, created) = (q.id.clone(), st.model_id.clone(), now());
        move |index: usize, text: String, finish: Value| {
            json!({"id": id, "object": "text_completion", "created": created, "model": model,
                   "choices": [{"text": text, "index": index, "logprobs": null, "finish_reason": finish}]})
        }
    };
    let echoes: Vec<Value> = if req.echo {
        (0..q.receivers.len())
            .map(|i| chunk(i, req.prompts[i / req.n].clone(), Value::Null))
            .collect()
    } else {
        Vec::new()
    };
    let merged = stream::select_all(
        q.receivers
            .into_iter()
            .enumerate()
            .map(|(i, rx)| UnboundedReceiverStream::new(rx).map(move |ev| (i, ev))),
    );
    let (prompt_tokens, include_usage, id, model) =
        (q.prompt_tokens, req.include_usage, q.id, st.model_id.clone());
    let body = merged.scan(0usize, move |total, (i, ev)| {
        let v = match ev {
            Event::Text(t) => chunk(i, t, Value::Null),
            Event::Done {
                finish_reason,
                completion_tokens,
            } => {
                *total += completion_tokens;
                chunk(i, String::new(), finish_reason.into())
            }
            Event::Error(e) => json!({"error": {"message": e, "type": "server_error"}}),
        };
        let out = (v, *total);
        std::future::ready(Some(out))
    });
    let events = stream::iter(echoes.into_iter().map(|v| (v, 0usize)))
        .chain(body)
        .map(|(v, total)| (Some(v), total))
        .chain(stream::once(std::future::ready((None, usize::MAX))));
    let mut last_total = 0usize;
    let events = events.flat_map(move |(v, total)| {
        let mut out: Vec<SseEvent> = Vec::new();
        match v {
            Some(v) => {
                last_total = total;
                out.push(SseEvent::default().data(v.to_string()));
            }
            None => {
                if include_usage {
                    let u = json!({"id": id, "object": "text_completion", "created": now(), "model": model,
                                   "choices": [], "usage": usage(prompt_tokens, last_total)});
                    out.push(SseEvent::default().data(u.to_string()));
                }
                out.push(SseEvent::default().data("[DONE]"));
            }
        }
        stream::iter(out.into_iter().map(Ok))
    });
    Sse::new(events)
}
