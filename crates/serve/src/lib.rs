//! An OpenAI-compatible completion server for a ferrolm model, with continuous batching
//! (issue 20).
//!
//! - `engine`: the scheduler thread that owns the model and advances every active sequence by one
//!   token per step (sequences join and leave between steps), and the bounded handle to it;
//! - `sequence`: one sequence's KV cache, sampling and stop strings, stepping as `generate` does;
//! - `api`: request/response shapes and the 4xx checks; `routes`: the axum routes;
//! - `dash`: the runs dashboard page and its JSON (`--runs DIR`), with or without a model.
//!
//! Threads: the HTTP server runs on a tokio runtime of its own threads; the model runs on the
//! thread that calls `serve` (the CLI's rayon worker), so the kernels keep the whole pool.

pub mod api;
pub mod dash;
pub mod engine;
pub mod routes;
pub mod sequence;

use anyhow::{bail, Context, Result};
use ferrolm_nn::model::Model;
use ferrolm_tokenizer::Tokenizer;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

/// How to serve.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    pub host: String,
    pub port: u16,
    /// Sequences decoded together at most.
    pub max_batch: usize,
    /// Sequences waiting for a slot at most (beyond: 503).
    pub max_queue: usize,
    /// Required as `Authorization: Bearer KEY` when set.
    pub api_key: Option<String>,
    /// The model's name in the API.
    pub model_id: String,
    /// Serve the runs dashboard over the run directories under this one.
    pub runs_dir: Option<PathBuf>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            host: "127.0.0.1".into(),
            port: 8080,
            max_batch: 16,
            max_queue: 64,
            api_key: None,
            model_id: "ferrolm".into(),
            runs_dir: None,
        }
    }
}

/// Binds the address (an error names it).
fn bind(opts: &ServeOptions) -> Result<std::net::TcpListener> {
    if let Some(d) = &opts.runs_dir {
        if !d.is_dir() {
            bail!("--runs {}: not a directory", d.display());
        }
    }
    let addr = format!("{}:{}", opts.host, opts.port);
    let listener = std::net::TcpListener::bind(&addr)
        .with_context(|| format!("cannot listen on {addr} (port in use? pick another with --port)"))?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// The dashboard routes for `opts`, naming the model when one is loaded.
fn dash_router(opts: &ServeOptions, model: bool) -> axum::Router {
    dash::router(Arc::new(dash::DashState {
        runs_dir: opts.runs_dir.clone(),
        model_id: model.then(|| opts.model_id.clone()),
        api_key: opts.api_key.clone(),
    }))
}

/// Without a model: every other route answers 503 with a JSON error saying so.
fn runs_only_router(opts: &ServeOptions) -> axum::Router {
    dash_router(opts, false).fallback(|| async {
        api::ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "no model is loaded: this server only shows runs; start ferrolm serve with --checkpoint RUN_OR_CKPT",
        )
    })
}

/// Binds the address (an error names it), building the shared state and the scheduler.
fn prepare(
    model: &Model,
    tokenizer: Tokenizer,
    opts: &ServeOptions,
) -> Result<(std::net::TcpListener, Arc<routes::AppState>, engine::Scheduler)> {
    if tokenizer.vocab_size() > model.config.vocab_size {
        bail!(
            "the tokenizer has {} tokens but the model only {}: they do not belong together",
            tokenizer.vocab_size(),
            model.config.vocab_size
        );
    }
    if opts.max_batch == 0 {
        bail!("--max-batch must be at least 1");
    }
    let listener = bind(opts)?;
    let (handle, scheduler) = engine::engine(opts.max_batch, opts.max_queue);
    let state = Arc::new(routes::AppState {
        engine: handle,
        tokenizer: Arc::new(tokenizer),
        model_id: opts.model_id.clone(),
        context_length: model.config.context_length,
        api_key: opts.api_key.clone(),
        created: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        counter: AtomicU64::new(0),
    });
    Ok((listener, state, scheduler))
}

/// Runs the HTTP server on its own thread until `shutdown` completes, then waits for in-flight
/// requests to finish (graceful drain).
fn spawn_http(
    listener: std::net::TcpListener,
    app: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<std::thread::JoinHandle<Result<()>>> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    Ok(std::thread::Builder::new()
        .name("ferrolm-http".into())
        .spawn(move || {
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener)?;
                axum::serve(listener, app)
                    .with_graceful_shutdown(shutdown)
                    .await?;
                Ok(())
            })
        })?)
}

/// Serves until Ctrl-C: the HTTP server on its own threads, the model on this one. Calls
/// `on_ready` with the bound address once listening. After Ctrl-C, stops accepting, finishes the
/// requests in flight and returns.
pub fn serve(
    model: &Model,
    tokenizer: Tokenizer,
    opts: &ServeOptions,
    on_ready: impl FnOnce(SocketAddr),
) -> Result<()> {
    let (listener, state, scheduler) = prepare(model, tokenizer.clone(), opts)?;
    on_ready(listener.local_addr()?);
    let app = routes::router(state).merge(dash_router(opts, true));
    let http = spawn_http(listener, app, async {
        let _ = tokio::signal::ctrl_c().await;
        eprintln!("ferrolm serve: Ctrl-C, finishing the requests in flight");
    })?;
    // Returns once the HTTP side has dropped its handle (after the drain) and the last sequence ended.
    scheduler.run(model, &tokenizer);
    http.join()
        .map_err(|_| anyhow::anyhow!("the HTTP thread panicked"))?
}

/// Serves only the runs dashboard of `opts.runs_dir` (no model) until Ctrl-C.
pub fn serve_runs(opts: &ServeOptions, on_ready: impl FnOnce(SocketAddr)) -> Result<()> {
    let listener = bind(opts)?;
    on_ready(listener.local_addr()?);
    let http = spawn_http(listener, runs_only_router(opts), async {
        let _ = tokio::signal::ctrl_c().await;
    })?;
    http.join()
        .map_err(|_| anyhow::anyhow!("the HTTP thread panicked"))?
}

/// A server running on background threads (for tests and tools): `addr` to connect to; `stop`
/// drains and joins it.
pub struct Background {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    http: Option<std::thread::JoinHandle<Result<()>>>,
    model: Option<std::thread::JoinHandle<()>>,
}

impl Background {
    /// Starts serving `model` (port 0 in `opts`: any free port).
    pub fn start(model: Model, tokenizer: Tokenizer, opts: &ServeOptions) -> Result<Background> {
        let (listener, state, scheduler) = prepare(&model, tokenizer.clone(), opts)?;
        let addr = listener.local_addr()?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let app = routes::router(state).merge(dash_router(opts, true));
        let http = spawn_http(listener, app, async {
            let _ = rx.await;
        })?;
        let model = std::thread::spawn(move || scheduler.run(&model, &tokenizer));
        Ok(Background {
            addr,
            stop: Some(tx),
            http: Some(http),
            model: Some(model),
        })
    }

    /// Starts serving only the runs dashboard of `opts.runs_dir`, without a model.
    pub fn start_runs(opts: &ServeOptions) -> Result<Background> {
        let listener = bind(opts)?;
        let addr = listener.local_addr()?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let http = spawn_http(listener, runs_only_router(opts), async {
            let _ = rx.await;
        })?;
        Ok(Background {
            addr,
            stop: Some(tx),
            http: Some(http),
            model: None,
        })
    }

    /// Stops accepting, finishes the requests in flight, joins the threads.
    pub fn stop(mut self) -> Result<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<()> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.http.take() {
            h.join()
                .map_err(|_| anyhow::anyhow!("the HTTP thread panicked"))??;
        }
        if let Some(m) = self.model.take() {
            m.join()
                .map_err(|_| anyhow::anyhow!("the model thread panicked"))?;
        }
        Ok(())
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}
