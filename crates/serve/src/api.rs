//! The OpenAI-compatible request and response shapes, and the checks that turn a bad request into
//! a 4xx error naming the field.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

/// The largest `max_tokens` accepted.
pub const MAX_TOKENS_LIMIT: i64 = 1 << 16;
/// The largest `n` accepted.
pub const MAX_N: i64 = 16;

/// An error answered as `{"error": {"message", "type", "param", "code"}}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// The request field at fault, if any.
    pub param: Option<&'static str>,
    /// Seconds to wait (503).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn bad(param: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            param: Some(param),
            retry_after: None,
        }
    }

    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            param: None,
            retry_after: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let kind = match self.status.as_u16() {
            401 => "authentication_error",
            404 => "not_found_error",
            503 if self.retry_after.is_some() => "server_overloaded",
            s if s >= 500 => "server_error",
            _ => "invalid_request_error",
        };
        let body = json!({"error": {
            "message": self.message, "type": kind, "param": self.param, "code": Value::Null
        }});
        let mut resp = (self.status, Json(body)).into_response();
        if let Some(s) = self.retry_after {
            resp.headers_mut().insert("retry-after", s.into());
        }
        resp
    }
}

/// `prompt`: one string or a list of strings.
#[derive(Deserialize, Debug, Clone)]
#[serde(untagged)]
pub enum Prompt {
    One(String),
    Many(Vec<String>),
}

/// `stop`: one string or a list of up to 4.
#[derive(Deserialize, Debug, Clone)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

/// `stream_options`.
#[derive(Deserialize, Debug, Clone, Default)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

/// The body of POST /v1/completions (fields a base model does not use are accepted and ignored).
#[derive(Debug, Clone, Default)]
pub struct CompletionRequest {
    pub model: Option<String>,
    pub prompt: Option<Prompt>,
    pub max_tokens: Option<i64>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub seed: Option<i64>,
    pub stop: Option<Stop>,
    pub n: Option<i64>,
    pub stream: bool,
    pub stream_options: Option<StreamOptions>,
    pub echo: Option<bool>,
}

/// A completion request after its checks.
#[derive(Debug, Clone)]
pub struct Checked {
    pub prompts: Vec<String>,
    pub max_tokens: usize,
    pub temperature: f32,
    pub top_p: f32,
    pub seed: u64,
    pub stop: Vec<String>,
    pub n: usize,
    pub stream: bool,
    pub include_usage: bool,
    pub echo: bool,
}

/// Reads field `name` of a JSON object as a T (absent or null: None), or a 400 naming it.
fn field<T: serde::de::DeserializeOwned>(
    obj: &serde_json::Map<String, Value>,
    name: &'static str,
    expected: &str,
) -> Result<Option<T>, ApiError> {
    match obj.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => serde_json::from_value(v.clone())
            .map(Some)
            .map_err(|_| ApiError::bad(name, format!("{name} must be {expected}, got {v}"))),
    }
}

impl CompletionRequest {
    /// Parses a request body: malformed JSON or a field of the wrong type is a 400 naming it.
    pub fn parse(body: &[u8]) -> Result<CompletionRequest, ApiError> {
        let v: Value = serde_json::from_slice(body)
            .map_err(|e| ApiError::bad("body", format!("the request body is not valid JSON: {e}")))?;
        let Value::Object(o) = v else {
            return Err(ApiError::bad("body", "the request body must be a JSON object"));
        };
        Ok(CompletionRequest {
            model: field(&o, "model", "a string")?,
            prompt: field(&o, "prompt", "a string or a list of strings")?,
            max_tokens: field(&o, "max_tokens", "an integer")?,
            temperature: field(&o, "temperature", "a number")?,
            top_p: field(&o, "top_p", "a number")?,
            seed: field(&o, "seed", "an integer")?,
            stop: field(&o, "stop", "a string or a list of strings")?,
            n: field(&o, "n", "an integer")?,
            stream: field(&o, "stream", "a boolean")?.unwrap_or(false),
            stream_options: field(&o, "stream_options", "an object")?,
            echo: field(&o, "echo", "a boolean")?,
        })
    }

    /// Checks every field (the model name against `model_id`); `default_seed` when none given.
    pub fn check(self, model_id: &str, default_seed: u64) -> Result<Checked, ApiError> {
        if let Some(m) = &self.model {
            if m != model_id {
                return Err(ApiError {
                    status: StatusCode::NOT_FOUND,
                    message: format!(
                        "model '{m}' does not exist; this server has '{model_id}' (GET /v1/models)"
                    ),
                    param: Some("model"),
                    retry_after: None,
                });
            }
        }
        let prompts = match self.prompt {
            None => vec![String::new()],
            Some(Prompt::One(s)) => vec![s],
            Some(Prompt::Many(v)) if v.is_empty() => {
                return Err(ApiError::bad("prompt", "prompt is an empty list"))
            }
            Some(Prompt::Many(v)) => v,
        };
        let max_tokens = self.max_tokens.unwrap_or(16);
        if !(1..=MAX_TOKENS_LIMIT).contains(&max_tokens) {
            return Err(ApiError::bad(
                "max_tokens",
                format!("max_tokens must be between 1 and {MAX_TOKENS_LIMIT}, got {max_tokens}"),
            ));
        }
        let temperature = self.temperature.unwrap_or(1.0);
        if !(0.0..=100.0).contains(&temperature) {
            return Err(ApiError::bad(
                "temperature",
                format!("temperature must be in [0, 100] (0: greedy), got {temperature}"),
            ));
        }
        let top_p = self.top_p.unwrap_or(1.0);
        if !(top_p > 0.0 && top_p <= 1.0) {
            return Err(ApiError::bad(
                "top_p",
                format!("top_p must be in (0, 1], got {top_p}"),
            ));
        }
        let seed = match self.seed {
            Some(s) if s < 0 => return Err(ApiError::bad("seed", format!("seed must be ≥ 0, got {s}"))),
            Some(s) => s as u64,
            None => default_seed,
        };
        let stop = match self.stop {
            None => Vec::new(),
            Some(Stop::One(s)) => vec![s],
            Some(Stop::Many(v)) => v,
        };
        if stop.len() > 4 || stop.iter().any(|s| s.is_empty()) {
            return Err(ApiError::bad("stop", "stop must be up to 4 non-empty strings"));
        }
        let n = self.n.unwrap_or(1);
        if !(1..=MAX_N).contains(&n) {
            return Err(ApiError::bad(
                "n",
                format!("n must be between 1 and {MAX_N}, got {n}"),
            ));
        }
        Ok(Checked {
            prompts,
            max_tokens: max_tokens as usize,
            temperature: temperature as f32,
            top_p: top_p as f32,
            seed,
            stop,
            n: n as usize,
            stream: self.stream,
            include_usage: self.stream_options.is_some_and(|o| o.include_usage),
            echo: self.echo.unwrap_or(false),
        })
    }
}

/// The body of POST /tokenize.
#[derive(Deserialize, Debug)]
pub struct TokenizeRequest {
    pub prompt: String,
}

/// The body of POST /detokenize.
#[derive(Deserialize, Debug)]
pub struct DetokenizeRequest {
    pub tokens: Vec<i64>,
}
