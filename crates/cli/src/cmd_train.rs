//! `ferrolm train`: train a model from a TOML config plus command-line overrides.

use anyhow::{Context, Result};
use ferrolm_nn::Precision;
use ferrolm_serve::{Background, ServeOptions};
use ferrolm_train::checkpoint;
use ferrolm_train::data::Sampling;
use ferrolm_train::trainer::setup::saved_config;
use ferrolm_train::{train, Resume, TrainConfig, TrainOptions, TrainSummary};
use std::path::{Path, PathBuf};

/// Train a model. Settings come from the defaults (see --print-config), then --config FILE, then
/// --set section.key=value overrides, then the plain flags. The run directory receives
/// config.toml, metrics.jsonl, loss.svg and checkpoints/step-*/ (model.safetensors,
/// optimizer.safetensors, state.json, tokenizer/, checksums.json). Ctrl-C saves a checkpoint and
/// exits with status 130; a second Ctrl-C exits at once. `--resume` continues a stopped run exactly
/// where it left off. Exit status: 0 finished, 130 stopped by Ctrl-C (checkpoint saved), 1 error
/// (including a NaN/infinite loss: the last good checkpoint is kept).
#[derive(clap::Args)]
#[command(
    allow_negative_numbers = true,
    after_help = "Examples:\n  ferrolm train --print-config > run.toml\n  ferrolm train --config run.toml \
--set optimizer.lr=3e-4\n  ferrolm train --train data/train.npy --valid data/valid.npy --tokenizer tok/ --preset tiny \
--steps 2000 --run-dir runs/a\n  ferrolm train --config run.toml --minutes 8          # about 8 minutes, the schedule laid over them\n  \
ferrolm train --run-dir runs/a --resume            # continue after Ctrl-C or a crash\n  \
ferrolm train --init-from runs/imported --train my.npy --valid my-valid.npy --steps 200 --run-dir runs/ft  # fine-tune\n  \
ferrolm train --config run.toml --run-dir runs/b --serve-dashboard   # watch at http://127.0.0.1:8080/"
)]
pub struct Args {
    /// TOML config file (keys it leaves out take the defaults).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Print the effective config as TOML and exit (the defaults when nothing else is given).
    #[arg(long)]
    print_config: bool,
    /// Override a setting: --set optimizer.lr=3e-4 (repeatable; model.preset=tiny|small too).
    #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
    sets: Vec<String>,
    /// Resume from the newest intact checkpoint of the run directory (a damaged newer one is named
    /// and moved aside), or from the given checkpoint or run directory; before the first
    /// checkpoint, start the run directory from its saved config.toml. Settings that fix the run
    /// (model, optimizer, learning-rate schedule, batch, seeds) must agree with the saved ones;
    /// other changes are listed. Without --config the saved config is the base.
    #[arg(long, value_name = "CHECKPOINT", num_args = 0..=1, default_missing_value = "latest")]
    resume: Option<String>,
    /// With --resume and a new --steps: keep the saved learning-rate schedule, so the steps past
    /// its end run at schedule.min_lr (without it, a --steps that would stretch the cosine, which
    /// spans the run when schedule.cosine_steps is 0, is refused).
    #[arg(long, requires = "resume")]
    extend: bool,
    /// Replace the config.toml of a run directory whose earlier start saved no checkpoint (a fresh
    /// start there is refused when the configs differ).
    #[arg(long)]
    overwrite_config: bool,
    /// Fine-tune: start a new run from the weights of this checkpoint (or run directory), e.g.
    /// one made by `ferrolm import`, with a fresh optimizer, schedule and data order. The model
    /// settings come from the checkpoint, and data.tokenizer defaults to its tokenizer copy (the
    /// data must be encoded with that tokenizer).
    #[arg(long, value_name = "CHECKPOINT", conflicts_with = "resume")]
    init_from: Option<PathBuf>,
    /// Run directory (run.dir).
    #[arg(long)]
    run_dir: Option<PathBuf>,
    /// Training tokens, .npy (data.train).
    #[arg(long)]
    train: Option<PathBuf>,
    /// Validation tokens, .npy (data.valid; without it the run has no validation).
    #[arg(long)]
    valid: Option<PathBuf>,
    /// Tokenizer directory, copied into each checkpoint (data.tokenizer); model.vocab_size defaults
    /// to its vocabulary size.
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Model preset: tiny or small (model.*).
    #[arg(long)]
    preset: Option<String>,
    /// Optimizer steps (run.max_steps).
    #[arg(long, conflicts_with_all = ["minutes", "tokens"])]
    steps: Option<u64>,
    /// Train for about M minutes, fractions allowed (0.5 is 30 s) (run.max_minutes): the step
    /// count is estimated from the first steps' speed, then fixed for the cosine schedule and
    /// recorded, so --resume continues the same schedule.
    #[arg(long, value_name = "M", conflicts_with = "tokens")]
    minutes: Option<f64>,
    /// Train on N tokens (run.max_tokens): steps = N / tokens per step, rounded up.
    #[arg(long, value_name = "N")]
    tokens: Option<u64>,
    /// Sequences per micro-batch (data.batch_size).
    #[arg(long)]
    batch_size: Option<usize>,
    /// Micro-batches per step (data.grad_accum); under mpirun/srun per rank, so a step takes
    /// ranks × grad_accum micro-batches (rank r, micro-step s: micro-batch s·ranks + r).
    #[arg(long)]
    grad_accum: Option<usize>,
    /// Peak learning rate (optimizer.lr).
    #[arg(long)]
    lr: Option<f64>,
    /// Batch order: random or sequential (data.sampling).
    #[arg(long, value_parser = parse_sampling)]
    sampling: Option<Sampling>,
    /// Evaluate every N steps (eval.every; default: about 20 times per run).
    #[arg(long)]
    eval_every: Option<u64>,
    /// Checkpoint every M steps (checkpoint.every).
    #[arg(long)]
    checkpoint_every: Option<u64>,
    /// Matmul precision: f32, or bf16 = bf16 operands with f32 sums and f32 master weights
    /// (run.precision; AMX tiles where the CPU has them).
    #[arg(long)]
    precision: Option<Precision>,
    /// Seed of the initialization (run.seed).
    #[arg(long)]
    seed: Option<u64>,
    /// Also save the initialization as checkpoint step 0 (checkpoint.save_step0).
    #[arg(long)]
    save_step0: bool,
    /// No progress bar (logging.progress = false).
    #[arg(long)]
    no_progress: bool,
    /// While training, serve the runs page (live loss curves, as `ferrolm serve --runs`) on
    /// http://127.0.0.1:PORT/ (8080 without a value; 0: any free port). It shows the runs
    /// directory the run is in (the run directory's parent), so earlier runs can be overlaid, with
    /// this run selected; the URL is printed at start. The page stops when training ends; keep
    /// watching with `ferrolm serve --runs DIR`. A port in use is refused before training starts.
    /// Under mpirun/srun only rank 0 serves.
    #[arg(long, value_name = "PORT", num_args = 0..=1, default_missing_value = "8080")]
    serve_dashboard: Option<u16>,
    /// Address the --serve-dashboard page listens on (0.0.0.0: every interface; the page shows
    /// the run files to anyone who can reach it).
    #[arg(
        long,
        value_name = "HOST",
        default_value = "127.0.0.1",
        requires = "serve_dashboard"
    )]
    dashboard_host: String,
}

/// The exit status of a run stopped by Ctrl-C after saving its checkpoint (128 + SIGINT).
const EXIT_INTERRUPTED: i32 = 130;

fn parse_sampling(s: &str) -> std::result::Result<Sampling, String> {
    match s {
        "random" => Ok(Sampling::Random),
        "sequential" => Ok(Sampling::Sequential),
        _ => Err(format!("{s:?}: expected random or sequential")),
    }
}

impl Args {
    fn apply_flags(&self, c: &mut TrainConfig) -> Result<()> {
        // The preset first, so `--preset tiny --set model.vocab_size=8192` keeps the vocab size.
        if let Some(p) = &self.preset {
            c.set(&format!("model.preset={p}"))?;
        }
        c.apply_overrides(&self.sets)?;
        set(&mut c.run.dir, &self.run_dir);
        set(&mut c.data.train, &self.train);
        set(&mut c.data.valid, &self.valid);
        set(&mut c.data.tokenizer, &self.tokenizer);
        if let Some(v) = self.steps {
            c.run.max_steps = v;
            (c.run.max_minutes, c.run.max_tokens) = (0.0, 0);
        }
        if let Some(v) = self.minutes {
            anyhow::ensure!(
                v > 0.0 && v.is_finite(),
                "--minutes {v} is out of range: it must be > 0"
            );
            (c.run.max_minutes, c.run.max_tokens) = (v, 0);
        }
        if let Some(v) = self.tokens {
            anyhow::ensure!(v > 0, "--tokens 0 is out of range: it must be at least 1");
            (c.run.max_minutes, c.run.max_tokens) = (0.0, v);
        }
        set(&mut c.data.batch_size, &self.batch_size);
        set(&mut c.data.grad_accum, &self.grad_accum);
        set(&mut c.optimizer.lr, &self.lr);
        set(&mut c.data.sampling, &self.sampling);
        set(&mut c.eval.every, &self.eval_every);
        set(&mut c.checkpoint.every, &self.checkpoint_every);
        set(&mut c.run.precision, &self.precision);
        set(&mut c.run.seed, &self.seed);
        c.checkpoint.save_step0 |= self.save_step0;
        c.logging.progress &= !self.no_progress;
        Ok(())
    }
}

/// `*field = opt` when the option was given (a flag overrides the config and `--set`).
fn set<T: Clone>(field: &mut T, opt: &Option<T>) {
    if let Some(v) = opt {
        *field = v.clone();
    }
}

/// Takes the model config (and, unless set, the tokenizer) of the checkpoint to fine-tune.
fn init_from_checkpoint(args: &Args, path: &std::path::Path, cfg: &mut TrainConfig) -> Result<()> {
    if args.preset.is_some() || args.sets.iter().any(|s| s.trim_start().starts_with("model.")) {
        anyhow::bail!(
            "--init-from takes the model settings from the checkpoint; drop --preset and --set model.*"
        );
    }
    let dir = checkpoint::resolve(path)?;
    cfg.model = checkpoint::read_state(&dir)?.model;
    let tok = dir.join(checkpoint::TOKENIZER_DIR);
    if cfg.data.tokenizer.as_os_str().is_empty() && tok.is_dir() {
        cfg.data.tokenizer = tok;
    }
    Ok(())
}

/// The directory the dashboard shows for a run: the one the run directory is in ("." for a
/// relative run directory without a parent).
fn runs_root(run_dir: &Path) -> PathBuf {
    match run_dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Serves the runs page over the run's parent directory on background threads (created if
/// missing, as training would create it) and prints its URL, with the run selected.
fn start_dashboard(host: &str, port: u16, run_dir: &Path) -> Result<Background> {
    let root = runs_root(run_dir);
    std::fs::create_dir_all(&root)
        .with_context(|| format!("--serve-dashboard: cannot create {}", root.display()))?;
    let opts = ServeOptions {
        host: host.to_string(),
        port,
        runs_dir: Some(root.clone()),
        ..ServeOptions::default()
    };
    let bg = Background::start_runs(&opts).map_err(|e| {
        let cause = e.root_cause();
        let in_use = cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::AddrInUse);
        let fix = if in_use {
            format!(
                "another program (a ferrolm serve, another training) uses the port: give another \
                 one, e.g. --serve-dashboard {} (0: any free port)",
                port.wrapping_add(1).max(1024)
            )
        } else {
            "check --dashboard-host (127.0.0.1: this machine only; 0.0.0.0: every interface) and \
             the port (below 1024 needs privileges; 0: any free port)"
                .to_string()
        };
        anyhow::anyhow!("--serve-dashboard: cannot listen on {host}:{port}: {cause}; {fix}")
    })?;
    let name = run_dir
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    eprintln!(
        "dashboard: http://{}/?run={} (runs under {}; stops when training ends)",
        bg.addr,
        url_encode(&name),
        root.display()
    );
    Ok(bg)
}

/// Percent-encodes everything but unreserved URL characters.
fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub fn run(args: Args) -> Result<()> {
    let mut cfg = match &args.config {
        Some(p) => TrainConfig::load(p)?,
        None => TrainConfig::default(),
    };
    args.apply_flags(&mut cfg)?;

    let resume = match (args.resume.as_deref(), &args.init_from) {
        (None, Some(p)) => Resume::InitFrom(p.clone()),
        (None, None) => Resume::No,
        (Some("latest"), _) => Resume::Latest,
        (Some(p), _) => Resume::From(PathBuf::from(p)),
    };
    // Resuming without a config file: the saved config (the checkpoint's, else the run
    // directory's) is the base, so `ferrolm train --run-dir R --resume` needs nothing else.
    if args.config.is_none() && matches!(resume, Resume::Latest | Resume::From(_)) {
        if let Some(saved) = saved_config(&resume, &cfg.run.dir)? {
            cfg = saved;
            // The checkpoint's grad_accum is that of one process; with several ranks each takes
            // its share, so the global batch stays the same unless --grad-accum says otherwise.
            let ranks = ferrolm_train::dist::rank_and_size().1;
            if ranks > 1 && cfg.data.grad_accum.is_multiple_of(ranks) {
                cfg.data.grad_accum /= ranks;
            }
            args.apply_flags(&mut cfg)?;
        }
    }
    if let Some(p) = &args.init_from {
        init_from_checkpoint(&args, p, &mut cfg)?;
    }
    cfg.validate()?;
    if args.print_config {
        print!("{}", cfg.to_toml());
        return Ok(());
    }

    // The trainer resolves the same way (silently); the notes are said once, here.
    for note in cfg.resolve()? {
        eprintln!("{note}");
    }
    let c = &cfg;
    let length = if c.run.max_minutes > 0.0 {
        format!("for about {} minutes in steps", c.run.max_minutes)
    } else {
        format!("for {} steps", c.run.max_steps)
    };
    let (rank, ranks) = ferrolm_train::dist::rank_and_size();
    let opts = TrainOptions {
        resume,
        progress: rank == 0,
        verbose: rank == 0,
        handle_sigint: true,
        extend: args.extend,
        overwrite_config: args.overwrite_config,
        ..TrainOptions::default()
    };
    if rank > 0 {
        // Rank 0 alone reports (and serves the dashboard).
        train(&cfg, &opts).context("training failed")?;
        return Ok(());
    }
    // Bound before training, so a port in use costs no training; stopped (dropped) when it ends.
    let dashboard = match args.serve_dashboard {
        Some(port) => Some(start_dashboard(&args.dashboard_host, port, &c.run.dir)?),
        None => None,
    };
    if ranks > 1 {
        eprintln!(
            "data-parallel training on {ranks} ranks, {} micro-batches of {} sequences each per rank per step",
            c.data.grad_accum, c.data.batch_size
        );
    }
    eprintln!(
        "training {} parameters ({} layers, d_model {}, vocab {}) {length} of {} tokens; run directory {}",
        c.model.num_params(),
        c.model.n_layers,
        c.model.d_model,
        c.model.vocab_size,
        c.data.batch_size * c.data.grad_accum * ranks * c.seq_len(),
        c.run.dir.display()
    );
    let s = train(&cfg, &opts).context("training failed");
    if let Some(d) = dashboard {
        let _ = d.stop();
        eprintln!(
            "dashboard stopped with the training; keep watching with: ferrolm serve --runs {}",
            runs_root(&c.run.dir).display()
        );
    }
    report(&s?);
    Ok(())
}

/// Prints the end of a run (losses, where its files are) and exits 130 when it was stopped.
fn report(s: &TrainSummary) {
    let fmt = |v: Option<f32>| v.map_or("-".to_string(), |v| format!("{v:.4}"));
    eprintln!(
        "{} at step {} ({} tokens, {:.1} s): train loss {}, val loss {} (best {})",
        if s.interrupted { "stopped" } else { "done" },
        s.progress.step,
        s.progress.tokens,
        s.progress.wall_seconds,
        fmt(s.progress.train_loss),
        fmt(s.progress.val_loss),
        fmt(s.progress.best_val_loss)
    );
    if let Some(ck) = &s.checkpoint {
        eprintln!("checkpoint: {}", ck.display());
    }
    eprintln!("metrics:    {}", s.metrics_path.display());
    if let Some(p) = &s.plot_path {
        eprintln!("plot:       {}", p.display());
    }
    if s.interrupted {
        eprintln!(
            "resume with: ferrolm train --run-dir {} --resume",
            s.run_dir.display()
        );
        // Saved, but not finished: a script must not take this for a completed run.
        std::process::exit(EXIT_INTERRUPTED);
    }
}
