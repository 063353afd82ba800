//! `ferrolm train`: train a model from a TOML config plus command-line overrides.

use anyhow::{Context, Result};
use ferrolm_nn::Precision;
use ferrolm_train::data::Sampling;
use ferrolm_train::trainer::setup::saved_config;
use ferrolm_train::{train, Resume, TrainConfig, TrainOptions};
use std::path::PathBuf;

/// Train a model. Settings come from the defaults (see --print-config), then --config FILE, then
/// --set section.key=value overrides, then the plain flags. The run directory receives
/// config.toml, metrics.jsonl, loss.svg and checkpoints/step-*/ (model.safetensors,
/// optimizer.safetensors, state.json, tokenizer/, checksums.json). Ctrl-C saves a checkpoint and
/// exits with status 130; a second Ctrl-C exits at once. `--resume` continues a stopped run exactly
/// where it left off. Exit status: 0 finished, 130 stopped by Ctrl-C (checkpoint saved), 1 error
/// (including a NaN/infinite loss: the last good checkpoint is kept).
#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  ferrolm train --print-config > run.toml\n  ferrolm train --config run.toml \
--set optimizer.lr=3e-4\n  ferrolm train --train data/train.npy --valid data/valid.npy --tokenizer tok/ --preset tiny \
--steps 2000 --run-dir runs/a\n  ferrolm train --run-dir runs/a --resume            # continue after Ctrl-C or a crash"
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
    /// Run directory (run.dir).
    #[arg(long)]
    run_dir: Option<PathBuf>,
    /// Training tokens, .npy (data.train).
    #[arg(long)]
    train: Option<PathBuf>,
    /// Validation tokens, .npy (data.valid).
    #[arg(long)]
    valid: Option<PathBuf>,
    /// Tokenizer directory, copied into each checkpoint (data.tokenizer).
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Model preset: tiny or small (model.*).
    #[arg(long)]
    preset: Option<String>,
    /// Optimizer steps (run.max_steps).
    #[arg(long)]
    steps: Option<u64>,
    /// Sequences per micro-batch (data.batch_size).
    #[arg(long)]
    batch_size: Option<usize>,
    /// Micro-batches per step (data.grad_accum).
    #[arg(long)]
    grad_accum: Option<usize>,
    /// Peak learning rate (optimizer.lr).
    #[arg(long)]
    lr: Option<f64>,
    /// Batch order: random or sequential (data.sampling).
    #[arg(long, value_parser = parse_sampling)]
    sampling: Option<Sampling>,
    /// Evaluate every N steps (eval.every).
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
        if let Some(v) = &self.run_dir {
            c.run.dir = v.clone();
        }
        if let Some(v) = &self.train {
            c.data.train = v.clone();
        }
        if let Some(v) = &self.valid {
            c.data.valid = v.clone();
        }
        if let Some(v) = &self.tokenizer {
            c.data.tokenizer = v.clone();
        }
        if let Some(v) = self.steps {
            c.run.max_steps = v;
        }
        if let Some(v) = self.batch_size {
            c.data.batch_size = v;
        }
        if let Some(v) = self.grad_accum {
            c.data.grad_accum = v;
        }
        if let Some(v) = self.lr {
            c.optimizer.lr = v;
        }
        if let Some(v) = self.sampling {
            c.data.sampling = v;
        }
        if let Some(v) = self.eval_every {
            c.eval.every = v;
        }
        if let Some(v) = self.checkpoint_every {
            c.checkpoint.every = v;
        }
        if let Some(v) = self.precision {
            c.run.precision = v;
        }
        if let Some(v) = self.seed {
            c.run.seed = v;
        }
        if self.save_step0 {
            c.checkpoint.save_step0 = true;
        }
        if self.no_progress {
            c.logging.progress = false;
        }
        Ok(())
    }
}

pub fn run(args: Args) -> Result<()> {
    let mut cfg = match &args.config {
        Some(p) => TrainConfig::load(p)?,
        None => TrainConfig::default(),
    };
    args.apply_flags(&mut cfg)?;

    let resume = match args.resume.as_deref() {
        None => Resume::No,
        Some("latest") => Resume::Latest,
        Some(p) => Resume::From(PathBuf::from(p)),
    };
    // Resuming without a config file: the saved config (the checkpoint's, else the run
    // directory's) is the base, so `ferrolm train --run-dir R --resume` needs nothing else.
    if args.config.is_none() && resume != Resume::No {
        if let Some(saved) = saved_config(&resume, &cfg.run.dir)? {
            cfg = saved;
            args.apply_flags(&mut cfg)?;
        }
    }
    cfg.validate()?;
    if args.print_config {
        print!("{}", cfg.to_toml());
        return Ok(());
    }

    let c = &cfg;
    eprintln!(
        "training {} parameters ({} layers, d_model {}, vocab {}) for {} steps of {} tokens; run directory {}",
        c.model.num_params(),
        c.model.n_layers,
        c.model.d_model,
        c.model.vocab_size,
        c.run.max_steps,
        c.data.batch_size * c.data.grad_accum * c.seq_len(),
        c.run.dir.display()
    );
    let opts = TrainOptions {
        resume,
        progress: true,
        verbose: true,
        handle_sigint: true,
        extend: args.extend,
        overwrite_config: args.overwrite_config,
        ..TrainOptions::default()
    };
    let s = train(&cfg, &opts).context("training failed")?;
    let fmt = |v: Option<f32>| v.map_or("-".to_string(), |v| format!("{v:.4}"));
    eprintln!(
        "{} at step {} ({} tokens, {:.1} s): train loss {}, val loss {} (best {})",
        if s.interrupted { "stopped" } else { "done" },
        s.step,
        s.tokens_seen,
        s.wall_seconds,
        fmt(s.train_loss),
        fmt(s.val_loss),
        fmt(s.best_val_loss)
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
    Ok(())
}
