//! The runs dashboard: a page at `/` (HTML + JS embedded in the binary, charts drawn by the
//! vendored uPlot under `/assets/`) and the JSON it polls, `GET /api/runs`,
//! `GET /api/runs/{name}/metrics?after=N`, `GET /api/runs/{name}/samples`, `GET /api/info`.
//! A run's name is its path relative to the runs directory. With an API key, `/api/*` needs
//! `Authorization: Bearer KEY`; the page itself (no data) does not, and asks for the key.

use crate::api::ApiError;
use crate::routes;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{header, StatusCode};
use axum::middleware;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use ferrolm_train::config::TrainConfig;
use ferrolm_train::runs;
use serde::Deserialize;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;

const INDEX_HTML: &str = include_str!("../assets/index.html");
const APP_JS: &str = include_str!("../assets/app.js");
/// uPlot (MIT), see assets/vendor/README.md for its version and how to update it.
const UPLOT_JS: &str = include_str!("../assets/vendor/uPlot.iife.min.js");
const UPLOT_CSS: &str = include_str!("../assets/vendor/uPlot.min.css");
const UPLOT_LICENSE: &str = include_str!("../assets/vendor/uPlot.LICENSE");
/// The page and its script change with the binary: revalidate. The vendored library is fixed
/// for a version: a day.
const NO_CACHE: &str = "no-cache";
const CACHE_DAY: &str = "public, max-age=86400";

/// The page's files: (path, content type, cache control, contents).
const ASSETS: [(&str, &str, &str, &str); 5] = [
    ("/", "text/html; charset=utf-8", NO_CACHE, INDEX_HTML),
    ("/app.js", "text/javascript; charset=utf-8", NO_CACHE, APP_JS),
    (
        "/assets/uPlot.iife.min.js",
        "text/javascript; charset=utf-8",
        CACHE_DAY,
        UPLOT_JS,
    ),
    (
        "/assets/uPlot.min.css",
        "text/css; charset=utf-8",
        CACHE_DAY,
        UPLOT_CSS,
    ),
    (
        "/assets/uPlot.LICENSE.txt",
        "text/plain; charset=utf-8",
        CACHE_DAY,
        UPLOT_LICENSE,
    ),
];

/// What the dashboard routes share.
pub struct DashState {
    /// Where the runs are (`None`: no runs directory, the page shows only the playground).
    pub runs_dir: Option<PathBuf>,
    /// The served model's name, when one is loaded.
    pub model_id: Option<String>,
    /// Required as `Authorization: Bearer KEY` on `/api/*` when set.
    pub api_key: Option<String>,
}

/// The page (open: a shell without data) and the runs API over `state` (behind the key, if any).
pub fn router(state: Arc<DashState>) -> Router {
    let key = Arc::new(state.api_key.clone());
    let api = Router::new()
        .route("/api/info", get(info))
        .route("/api/runs", get(list))
        .route("/api/runs/{name}/metrics", get(metrics))
        .route("/api/runs/{name}/samples", get(samples))
        .route_layer(middleware::from_fn_with_state(key, routes::require_bearer))
        .with_state(state);
    let mut page = Router::new();
    for (path, kind, cache, body) in ASSETS {
        page = page.route(path, get(move || asset(kind, cache, body)));
    }
    page.merge(api)
}

async fn asset(kind: &'static str, cache: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, kind), (header::CACHE_CONTROL, cache)],
        body,
    )
}

async fn info(State(st): State<Arc<DashState>>) -> Json<Value> {
    Json(json!({"model": st.model_id, "runs_dir": st.runs_dir.as_ref().map(|d| d.display().to_string())}))
}

fn runs_dir(st: &DashState) -> Result<&Path, ApiError> {
    st.runs_dir.as_deref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "no runs directory: start ferrolm serve with --runs DIR",
        )
    })
}

/// A run's name: its path under `root` ("/"-separated), or the root's own name if it is a run.
fn run_name(root: &Path, run: &Path) -> String {
    match run.strip_prefix(root) {
        Ok(rel) if !rel.as_os_str().is_empty() => rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/"),
        _ => root
            .file_name()
            .map_or_else(|| ".".into(), |n| n.to_string_lossy().into_owned()),
    }
}

/// The run directory called `name`: refused (400) when the name could leave the runs directory,
/// 404 unless it is one of the listed runs.
fn find_run(st: &DashState, name: &str) -> Result<PathBuf, ApiError> {
    let root = runs_dir(st)?;
    if name.is_empty()
        || name.contains('\\')
        || name.contains('\0')
        || name.starts_with('/')
        || name.split('/').any(|c| c == ".." || c == "." || c.is_empty())
    {
        return Err(ApiError::bad("name", format!("bad run name {name:?}")));
    }
    let found =
        runs::find_runs(root).map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    found
        .into_iter()
        .find(|r| run_name(root, r) == name)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                format!("no run {name:?} under {}", root.display()),
            )
        })
}

/// The model part of a run's config, for the summary.
fn config_summary(dir: &Path) -> Value {
    match TrainConfig::load(&dir.join("config.toml")) {
        Ok(c) => json!({"model": c.model, "max_steps": c.run.max_steps}),
        Err(_) => Value::Null,
    }
}

async fn list(State(st): State<Arc<DashState>>) -> Result<Json<Value>, ApiError> {
    let root = runs_dir(&st)?.to_path_buf();
    let out = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<Value>> {
        let mut out = Vec::new();
        for dir in runs::find_runs(&root)? {
            let Ok(r) = runs::inspect(&dir) else { continue };
            let p = &r.progress;
            out.push(json!({
                "name": run_name(&root, &dir),
                "state": r.state.to_string(),
                "step": p.step,
                "max_steps": r.max_steps,
                "tokens": p.tokens,
                "wall_seconds": p.wall_seconds,
                "final_train_loss": p.train_loss,
                "final_val_loss": p.val_loss,
                "best_val_loss": p.best_val_loss,
                "precision": r.precision,
                "params": r.params,
                "has_samples": dir.join("samples.txt").is_file(),
                "config": config_summary(&dir),
            }));
        }
        Ok(out)
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(Json(json!({"runs": out})))
}

#[derive(Deserialize)]
struct After {
    #[serde(default)]
    after: usize,
}

/// The complete lines of `metrics.jsonl` after the first `after`: `{"records": [...], "next": N}`
/// (N: complete lines so far, the next call's `after`). A line still being written (no newline
/// yet) waits for the next call; a line that is not JSON is skipped.
async fn metrics(
    State(st): State<Arc<DashState>>,
    UrlPath(name): UrlPath<String>,
    Query(q): Query<After>,
) -> Result<Json<Value>, ApiError> {
    let dir = find_run(&st, &name)?;
    let text = match std::fs::read_to_string(dir.join("metrics.jsonl")) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    };
    let complete = text.rfind('\n').map_or("", |i| &text[..=i]);
    let lines: Vec<&str> = complete.lines().collect();
    let records: Vec<Value> = lines
        .iter()
        .skip(q.after)
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    Ok(Json(json!({"records": records, "next": lines.len()})))
}

async fn samples(
    State(st): State<Arc<DashState>>,
    UrlPath(name): UrlPath<String>,
) -> Result<impl IntoResponse, ApiError> {
    let dir = find_run(&st, &name)?;
    let text = std::fs::read_to_string(dir.join("samples.txt"))
        .map_err(|_| ApiError::new(StatusCode::NOT_FOUND, format!("run {name:?} has no samples.txt")))?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text))
}
