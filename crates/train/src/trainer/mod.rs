//! The training loop: batch → forward/backward (accumulated over micro-batches) → clip → schedule →
//! AdamW, with evaluation, metrics, checkpoints, exact resume, and clean stops (Ctrl-C, non-finite
//! loss).
//!
//! The parts: [`setup`] opens and checks the data and resumes or initializes; [`step`] is one
//! optimizer step (shared with `ferrolm bench train`), with the [`step::GradReducer`] hook for
//! multi-process training; [`Trainer`] (in `core`) holds a run and its `step`/`after_step`/`finish`.
//! [`train`] is the thin layer on top: progress bar, Ctrl-C, messages.

mod core;
pub mod setup;
pub mod step;

pub use self::core::{step_settings, AfterStep, Trainer};
pub use setup::Resume;
pub use step::{GradReducer, LocalReducer, StepOutcome, StepSettings, StepStats, StepSum, Stepper};

use anyhow::{bail, Result};
use ferrolm_nn::ops::MatmulBackend;
use ferrolm_nn::Precision;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Once};

use crate::budget::{Budget, UNFIXED};
use crate::config::TrainConfig;
use crate::metrics::RunProgress;
use crate::progress::{ProgressLines, StepProgress};
use std::time::Instant;

/// How to run (things that are not part of the run's config).
#[derive(Clone, Debug, Default)]
pub struct TrainOptions {
    pub resume: Resume,
    /// With `logging.progress` on: a progress bar if stderr is a terminal, else plain progress
    /// lines every `logging.progress_seconds`.
    pub progress: bool,
    /// Print a line per evaluation and checkpoint to stderr.
    pub verbose: bool,
    /// Install the Ctrl-C handler: the first SIGINT saves a checkpoint and returns with
    /// `interrupted`, the second exits the process at once.
    pub handle_sigint: bool,
    /// Setting this flag stops the run like a Ctrl-C (checked before each step).
    pub stop: Option<Arc<AtomicBool>>,
    /// Stop like a Ctrl-C after this many steps (for splitting a run into segments and for tests).
    pub stop_after: Option<u64>,
    /// On resume, allow a new `run.max_steps` that would change the learning-rate schedule by
    /// keeping the saved schedule: steps past its cosine run at `schedule.min_lr` (`--extend`).
    pub extend: bool,
    /// A fresh start may replace a run directory's different config.toml (one whose run saved no
    /// checkpoint; `--overwrite-config`).
    pub overwrite_config: bool,
}

/// What a run did.
#[derive(Clone, Debug)]
pub struct TrainSummary {
    pub run_dir: PathBuf,
    /// Steps, tokens, time and losses at the end.
    pub progress: RunProgress,
    /// The last checkpoint written.
    pub checkpoint: Option<PathBuf>,
    pub metrics_path: PathBuf,
    pub plot_path: Option<PathBuf>,
    /// True when the run was stopped (Ctrl-C, `stop`, `stop_after`) before max_steps.
    pub interrupted: bool,
    /// What the start had to say (see [`Trainer::notes`]).
    pub notes: Vec<String>,
}

static SIGINTS: AtomicUsize = AtomicUsize::new(0);
static INSTALL: Once = Once::new();

fn install_sigint_handler() {
    INSTALL.call_once(|| {
        let r = ctrlc::set_handler(|| {
            if SIGINTS.fetch_add(1, Ordering::SeqCst) >= 1 {
                eprintln!("\nsecond interrupt: exiting now (the last completed checkpoint is intact)");
                std::process::exit(130);
            }
            eprintln!("\ninterrupt: saving a checkpoint after this step (Ctrl-C again to exit now)");
        });
        if let Err(e) = r {
            eprintln!("warning: cannot install the Ctrl-C handler: {e}");
        }
    });
}

/// The checkpoint directory of a run directory.
pub fn checkpoints_dir(run_dir: &Path) -> PathBuf {
    run_dir.join("checkpoints")
}

/// Trains as `config` says (see the module docs). Resuming checks that the checkpoint's config
/// agrees with `config` on everything that fixes the computation (model, optimizer, schedule,
/// batch, sampling, seeds) and continues bit for bit; other settings (max_steps, intervals,
/// paths) may change.
///
/// Runs on a worker of the current rayon pool (called from outside one, it waits for it there):
/// the kernels' parallel sections then start as joins on that worker instead of injections from a
/// sleeping caller, which costs two thread wake-ups per section.
pub fn train(config: &TrainConfig, opts: &TrainOptions) -> Result<TrainSummary> {
    rayon::scope(|_| train_on_worker(config, opts))
}

/// Prints through the progress bar when there is one, else to stderr when verbose.
struct Say {
    pb: Option<ProgressBar>,
    verbose: bool,
}

impl Say {
    fn say(&self, msg: String) {
        match &self.pb {
            Some(pb) => pb.println(msg),
            None if self.verbose => eprintln!("{msg}"),
            None => {}
        }
    }
}

fn progress_bar(len: u64, pos: u64) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template(
            "{bar:30.cyan/blue} {pos}/{len} {msg} [{elapsed_precise}<{eta_precise}]",
        )
        .expect("valid template")
        .progress_chars("##-"),
    );
    pb.set_position(pos);
    pb
}

/// The loop around the [`Trainer`]'s parts: stops, messages and the progress bar.
fn train_on_worker(config: &TrainConfig, opts: &TrainOptions) -> Result<TrainSummary> {
    let config = crate::budget::prepare(config, &opts.resume)?;
    let mut t = open_trainer(&config, opts)?;
    // With several processes only rank 0 talks and marks the run directory.
    let root = t.rank == 0;
    let _running = if root {
        Some(crate::runs::RunningMarker::create(&t.cfg.run.dir)?)
    } else {
        None
    };
    let progress = root && opts.progress && t.cfg.logging.progress;
    let show_bar = progress && std::io::stderr().is_terminal();
    let fixed = |t: &Trainer| Some(t.cfg.run.max_steps).filter(|&m| m != UNFIXED);
    let out = Say {
        pb: show_bar.then(|| progress_bar(fixed(&t).unwrap_or(0), t.step)),
        verbose: opts.verbose && root,
    };
    // Plain lines where there is no terminal (nohup, Slurm, CI logs).
    let mut lines = (progress && !show_bar)
        .then(|| ProgressLines::new(t.cfg.logging.progress_seconds, t.step, t.tokens_seen));
    if opts.handle_sigint {
        install_sigint_handler();
    }
    SIGINTS.store(0, Ordering::SeqCst);
    let precision = t.cfg.run.precision;
    if precision != Precision::F32 {
        out.say(format!("precision {precision}: {}", precision.backend()));
    }
    for note in &t.notes {
        out.say(note.clone());
    }
    if let Some(from) = &t.resumed_from {
        out.say(format!("resumed at step {} from {}", t.step, from.display()));
    }
    if let Some(dir) = t.save_step0()? {
        out.say(format!("step {}: checkpoint {}", t.step, dir.display()));
    }
    let started = Instant::now();
    let mut eval_seconds = 0.0;
    if let Some(r) = t.eval_at_start()? {
        eval_seconds = started.elapsed().as_secs_f64();
        out.say(format!(
            "step 0: val loss {:.4} (ppl {:.2})",
            r.loss, r.perplexity
        ));
    }
    let mut budget = Budget::new(&t.cfg, t.step, eval_seconds);
    let mut interrupted = false;
    while !t.is_done() {
        let stop_requested = SIGINTS.load(Ordering::SeqCst) > 0
            || opts.stop.as_ref().is_some_and(|s| s.load(Ordering::SeqCst))
            || opts.stop_after.is_some_and(|s| t.step >= s);
        // With several processes they stop together (else the others would wait forever).
        if t.stepper.reducer().any_stop(stop_requested)? {
            interrupted = true;
            break;
        }
        let step_started = Instant::now();
        let stats = match t.step()? {
            StepOutcome::Done(stats) => stats,
            StepOutcome::NonFinite { what } => {
                // The parameters are still those after step t.step: keep them.
                let (kept, _) = t.save_if_unsaved()?;
                if let Some(pb) = &out.pb {
                    pb.abandon();
                }
                bail!(
                    "non-finite {what} at step {}; stopped. The last good state (after step {}) is in \
                     checkpoint {}. Try a lower optimizer.lr, a longer warmup, or gradient clipping.",
                    t.step + 1,
                    t.step,
                    kept.display()
                );
            }
        };
        if let Some(b) = &mut budget {
            if fix_budget(&mut t, b, step_started.elapsed().as_secs_f64(), &out)? {
                budget = None;
            }
        }
        let after = t.after_step(&stats)?;
        report_step(&out, t.step, &stats, &after);
        if let Some(l) = &mut lines {
            progress_line(l, &t, &stats, &after);
        }
    }
    if interrupted {
        let (dir, new) = t.save_if_unsaved()?;
        if new {
            out.say(format!("step {}: checkpoint {}", t.step, dir.display()));
        }
    }
    if let Some(pb) = &out.pb {
        pb.finish_and_clear();
    }
    if let Some(line) = t.stepper.reducer().report() {
        out.say(line);
    }
    t.finish(interrupted)
}

/// The trainer for this process: under an MPI launcher (with the `mpi` feature) one of several
/// data-parallel ranks, else the only process.
fn open_trainer(config: &TrainConfig, opts: &TrainOptions) -> Result<Trainer> {
    #[cfg(feature = "mpi")]
    if crate::dist::mpi::is_initialized() {
        let reducer = crate::dist::mpi::MpiReducer::new()?;
        let rank = reducer.rank();
        return Trainer::open_with(config, opts, Box::new(reducer), rank);
    }
    Trainer::open(config, opts)
}

/// Messages and the progress bar after a step.
fn report_step(out: &Say, step: u64, stats: &StepStats, after: &AfterStep) {
    let StepStats { loss, grad_norm, lr } = *stats;
    if let Some(r) = &after.eval {
        out.say(format!(
            "step {step}: train loss {loss:.4}, val loss {:.4} (ppl {:.2})",
            r.loss as f32, r.perplexity
        ));
    }
    if let (Some(pb), Some(rec)) = (&out.pb, &after.logged) {
        let tps = rec.tokens_per_s.unwrap_or(0.0);
        pb.set_message(format!(
            "loss {loss:.4} lr {lr:.2e} gnorm {grad_norm:.3} {tps:.0} tok/s"
        ));
    }
    if let Some(pb) = &out.pb {
        pb.set_position(step);
    }
    if let Some(dir) = &after.checkpoint {
        out.say(format!("step {step}: checkpoint {}", dir.display()));
    }
}

/// Times a step of a time-budgeted run; when the budget says so, fixes the run's step count and
/// says so. Returns whether it was fixed.
fn fix_budget(t: &mut Trainer, b: &mut Budget, step_seconds: f64, out: &Say) -> Result<bool> {
    let Some(n) = b.after_step(t.step, step_seconds, t.wall(), t.cfg.eval.every) else {
        return Ok(false);
    };
    t.fix_max_steps(n)?;
    if let Some(pb) = &out.pb {
        pb.set_length(t.cfg.run.max_steps);
    }
    out.say(format!(
        "run.max_minutes {}: {:.3} s/step measured over the first {} steps, so {} steps in all \
         (fixed, and recorded in config.toml for --resume)",
        t.cfg.run.max_minutes,
        b.measured_step_seconds(),
        t.step,
        t.cfg.run.max_steps
    ));
    Ok(true)
}

/// A plain progress line on stderr when one is due (no terminal).
fn progress_line(lines: &mut ProgressLines, t: &Trainer, stats: &StepStats, after: &AfterStep) {
    let p = StepProgress {
        step: t.step,
        max_steps: Some(t.cfg.run.max_steps).filter(|&m| m != UNFIXED),
        loss: stats.loss,
        lr: stats.lr,
        tokens: t.tokens_seen,
        logged: after.logged.is_some(),
    };
    if let Some(line) = lines.after_step(&p) {
        eprintln!("{line}");
    }
}
