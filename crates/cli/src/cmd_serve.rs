//! `ferrolm serve`: an OpenAI-compatible completion server for a checkpoint, and a web page to
//! watch training runs (`--runs DIR`).

use anyhow::Result;
use ferrolm_nn::Precision;
use ferrolm_serve::{serve, ServeOptions};
use ferrolm_train::checkpoint;
use ferrolm_train::generate::checkpoint_tokenizer;
use std::path::PathBuf;

/// Serve a checkpoint over HTTP with the OpenAI completions API (POST /v1/completions, streaming
/// with server-sent events; GET /v1/models, GET /health, POST /tokenize, POST /detokenize).
/// Concurrent requests share the decode steps (continuous batching); a seed gives the text
/// `ferrolm generate` gives. With --runs DIR, the page at / shows every run under DIR (state, live
/// loss curves, samples) and, when a model is loaded, a playground. Ctrl-C finishes the requests in
/// flight and exits.
#[derive(clap::Args)]
#[command(after_help = "Example:\n  ferrolm serve --checkpoint runs/a --port 8080\n  \
curl -s localhost:8080/v1/completions -H 'Content-Type: application/json' \\\n    \
-d '{\"prompt\": \"Once upon a time\", \"max_tokens\": 64, \"temperature\": 0.8, \"seed\": 1}'\n  \
ferrolm serve --runs runs   # then open http://127.0.0.1:8080/ to watch the runs")]
pub struct Args {
    /// A checkpoint directory, or a run directory (its latest checkpoint). Without it (only
    /// --runs), the completion routes answer 503 "no model is loaded".
    #[arg(long, required_unless_present = "runs")]
    checkpoint: Option<PathBuf>,
    /// Show the runs under this directory on the web page at / (live loss curves, samples).
    #[arg(long)]
    runs: Option<PathBuf>,
    /// Address to listen on (127.0.0.1: this machine only; 0.0.0.0: every interface).
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on (0: any free port, printed at start).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Weight precision for decoding: f32, or bf16 (half the bytes read per token).
    #[arg(long, default_value = "f32")]
    precision: Precision,
    /// Sequences decoded together at most (each request's n choices count separately).
    #[arg(long, default_value_t = 16)]
    max_batch: usize,
    /// Sequences waiting for a slot at most; beyond, requests get 503 with Retry-After.
    #[arg(long, default_value_t = 64)]
    max_queue: usize,
    /// Require `Authorization: Bearer KEY` on every request to the API: /v1/*, /health,
    /// /tokenize, /detokenize and the runs data under /api/* (401 without it). The page at /
    /// (a shell without data) loads without it and asks for the key once; the browser keeps it in
    /// its local storage for this address and sends it as the bearer header.
    #[arg(long)]
    api_key: Option<String>,
    /// Tokenizer directory (default: the checkpoint's tokenizer/ copy).
    #[arg(long)]
    tokenizer: Option<PathBuf>,
}

pub fn run(args: Args) -> Result<()> {
    let Some(ckpt) = args.checkpoint.clone() else {
        let opts = ServeOptions {
            host: args.host,
            port: args.port,
            api_key: args.api_key,
            runs_dir: args.runs,
            ..ServeOptions::default()
        };
        return ferrolm_serve::serve_runs(&opts, |addr| {
            eprintln!("ferrolm serve: runs dashboard on http://{addr}/ (no model loaded) ; Ctrl-C to stop");
        });
    };
    let dir = checkpoint::resolve(&ckpt)?;
    let ck = checkpoint::load_model(&dir)?;
    let tok = match &args.tokenizer {
        Some(t) => {
            ferrolm_tokenizer::Tokenizer::from_dir(t).map_err(|e| anyhow::anyhow!("{}: {e}", t.display()))?
        }
        None => checkpoint_tokenizer(&dir)?,
    };
    let mut model = ck.model;
    model.precision = args.precision;
    // The model's API name: the last part of the path given (a run's name, or a checkpoint's).
    let model_id = ckpt
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "ferrolm".into());
    let opts = ServeOptions {
        host: args.host,
        port: args.port,
        max_batch: args.max_batch,
        max_queue: args.max_queue,
        api_key: args.api_key,
        model_id,
        runs_dir: args.runs,
    };
    serve(&model, tok, &opts, |addr| {
        eprintln!(
            "ferrolm serve: model '{}' (checkpoint {}, step {}) on http://{addr}/v1 , page http://{addr}/ ; Ctrl-C to stop",
            opts.model_id,
            dir.display(),
            ck.state.step
        );
    })
}
