//! The training loop: batch → forward/backward (accumulated over micro-batches) → clip → schedule →
//! AdamW, with evaluation, metrics, checkpoints, exact resume, and clean stops (Ctrl-C, non-finite
//! loss).

use crate::checkpoint::{self, CheckpointState, ScheduleState, TokenizerIdentity};
use crate::config::{is_fixed_on_resume, TrainConfig};
use crate::data::{BatchSampler, TokenFile};
use crate::eval::Evaluator;
use crate::metrics::{MetricsRecord, MetricsWriter};
use anyhow::{bail, Context, Result};
use ferrolm_nn::clip::{clip_scale, grad_norm};
use ferrolm_nn::model::{Activations, Model};
use ferrolm_nn::optim::AdamW;
use ferrolm_nn::schedule::lr_cosine;
use ferrolm_nn::{Precision, Rng};
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Once};
use std::time::Instant;

/// Where a run starts from.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Resume {
    /// A fresh run (an existing run directory's checkpoints are kept, its metrics restarted).
    #[default]
    No,
    /// The latest checkpoint in the run directory, or a fresh run if there is none.
    Latest,
    /// A given checkpoint (or run directory: its latest).
    From(PathBuf),
}

/// How to run (things that are not part of the run's config).
#[derive(Clone, Debug, Default)]
pub struct TrainOptions {
    pub resume: Resume,
    /// Show a progress bar if stderr is a terminal and `logging.progress` is on.
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
}

/// What a run did.
#[derive(Clone, Debug)]
pub struct TrainSummary {
    pub run_dir: PathBuf,
    /// Steps taken in total (including those before a resume).
    pub step: u64,
    pub tokens_seen: u64,
    /// Mean training loss of the last step.
    pub train_loss: Option<f32>,
    /// Validation loss of the last evaluation.
    pub val_loss: Option<f32>,
    pub best_val_loss: Option<f32>,
    /// Training wall-clock seconds in total.
    pub wall_seconds: f64,
    /// The last checkpoint written.
    pub checkpoint: Option<PathBuf>,
    pub metrics_path: PathBuf,
    pub plot_path: Option<PathBuf>,
    /// True when the run was stopped (Ctrl-C, `stop`, `stop_after`) before max_steps.
    pub interrupted: bool,
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

struct Run<'a> {
    cfg: &'a TrainConfig,
    model: Model,
    optim: AdamW,
    sampler: BatchSampler,
    step: u64,
    tokens_seen: u64,
    wall_before: f64,
    started: Instant,
    tokenizer: Option<TokenizerIdentity>,
    ckpt_dir: PathBuf,
    last_saved: Option<(u64, PathBuf)>,
    pb: Option<ProgressBar>,
    verbose: bool,
}

impl Run<'_> {
    fn wall(&self) -> f64 {
        self.wall_before + self.started.elapsed().as_secs_f64()
    }

    fn say(&self, msg: String) {
        match &self.pb {
            Some(pb) => pb.println(msg),
            None if self.verbose => eprintln!("{msg}"),
            None => {}
        }
    }

    /// Saves the current state (with `sampler` as the data state) as the checkpoint of self.step.
    fn save(
        &mut self,
        sampler: &BatchSampler,
        val_loss: Option<f32>,
        train_loss: Option<f32>,
    ) -> Result<PathBuf> {
        let cfg = self.cfg;
        let state = CheckpointState {
            format_version: checkpoint::FORMAT_VERSION,
            step: self.step,
            tokens_seen: self.tokens_seen,
            wall_seconds: self.wall(),
            model: cfg.model.clone(),
            optimizer: self.optim.config.clone(),
            optimizer_t: self.optim.t,
            no_decay: self.optim.no_decay.iter().map(|r| (r.start, r.end)).collect(),
            schedule: ScheduleState {
                max_lr: cfg.optimizer.lr,
                min_lr: cfg.schedule.min_lr,
                warmup_steps: cfg.schedule.warmup_steps,
                cosine_steps: cfg.cosine_steps(),
            },
            sampler: sampler.clone(),
            tokenizer: self.tokenizer.clone(),
            val_loss,
            train_loss,
            config: cfg.clone(),
        };
        let tok = (!cfg.data.tokenizer.as_os_str().is_empty()).then_some(cfg.data.tokenizer.as_path());
        let dir = checkpoint::save(&self.ckpt_dir, &state, &self.model, &self.optim, tok)?;
        checkpoint::prune(&self.ckpt_dir, cfg.checkpoint.keep_last)?;
        self.last_saved = Some((self.step, dir.clone()));
        self.say(format!("step {}: checkpoint {}", self.step, dir.display()));
        Ok(dir)
    }
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

fn train_on_worker(config: &TrainConfig, opts: &TrainOptions) -> Result<TrainSummary> {
    let mut resolved = config.clone();
    resolved.resolve()?;
    let cfg = &resolved;
    cfg.validate()?;
    let run_dir = cfg.run.dir.clone();
    std::fs::create_dir_all(&run_dir)
        .with_context(|| format!("cannot create run directory {}", run_dir.display()))?;
    let _running = crate::runs::RunningMarker::create(&run_dir)?;
    let ckpt_dir = checkpoints_dir(&run_dir);
    let seq = cfg.seq_len();
    let batch = cfg.data.batch_size;
    let accum = cfg.data.grad_accum;

    // Data first: a bad file should fail before any work.
    let train_tokens = TokenFile::open(&cfg.data.train).context("training data (data.train)")?;
    train_tokens.check_fits(seq)?;
    train_tokens.check_ids(cfg.model.vocab_size)?;
    let valid_tokens = if cfg.data.valid.as_os_str().is_empty() {
        None
    } else {
        let v = TokenFile::open(&cfg.data.valid)
            .context("validation data (data.valid; set it to \"\" to train without validation)")?;
        v.check_fits(seq)?;
        v.check_ids(cfg.model.vocab_size)?;
        Some(v)
    };
    let tokenizer = if cfg.data.tokenizer.as_os_str().is_empty() {
        None
    } else {
        let (fingerprint, files) =
            checkpoint::fingerprint_dir(&cfg.data.tokenizer).context("data.tokenizer")?;
        let tok = ferrolm_tokenizer::Tokenizer::from_dir(&cfg.data.tokenizer)
            .map_err(|e| anyhow::anyhow!("data.tokenizer {}: {e}", cfg.data.tokenizer.display()))?;
        if tok.vocab_size() > cfg.model.vocab_size {
            bail!(
                "the tokenizer in {} has {} tokens but model.vocab_size is {}; set model.vocab_size to at \
                 least {}",
                cfg.data.tokenizer.display(),
                tok.vocab_size(),
                cfg.model.vocab_size,
                tok.vocab_size()
            );
        }
        Some(TokenizerIdentity {
            fingerprint,
            source: cfg.data.tokenizer.clone(),
            files,
            bpe_fingerprint: Some(tok.fingerprint()),
            vocab_size: Some(tok.vocab_size()),
        })
    };

    // Where to start.
    let resume_dir = match &opts.resume {
        Resume::No => {
            if let Some(existing) = checkpoint::latest(&ckpt_dir)? {
                bail!(
                    "run directory {} already has checkpoints (latest {}); resume it with --resume, or \
                     choose another run directory (nothing was changed)",
                    run_dir.display(),
                    existing.display()
                );
            }
            None
        }
        Resume::Latest => {
            let found = checkpoint::latest(&ckpt_dir)?;
            if found.is_none() && opts.verbose {
                eprintln!(
                    "no checkpoint in {} yet: starting a fresh run",
                    ckpt_dir.display()
                );
            }
            found
        }
        Resume::From(p) => Some(checkpoint::resolve(p)?),
    };
    let (model, optim, sampler, step, tokens_seen, wall_before) = match &resume_dir {
        Some(dir) => {
            let ck = checkpoint::load(dir, true)?;
            let bad: Vec<String> = ck
                .state
                .config
                .diff(cfg)
                .into_iter()
                .filter(|(k, _, _)| is_fixed_on_resume(k))
                .map(|(k, a, b)| format!("  {k}: checkpoint {a}, now {b}"))
                .collect();
            if !bad.is_empty() {
                bail!(
                    "cannot resume from {}: the config disagrees with the checkpoint's on settings that \
                     fix the run:\n{}\n(drop those overrides, or start a fresh run in another directory)",
                    dir.display(),
                    bad.join("\n")
                );
            }
            if let (Some(a), Some(b)) = (&ck.state.tokenizer, &tokenizer) {
                let same = match (&a.bpe_fingerprint, &b.bpe_fingerprint) {
                    (Some(x), Some(y)) => x == y,
                    _ => a.fingerprint == b.fingerprint,
                };
                if !same {
                    bail!(
                        "cannot resume from {}: the tokenizer in {} (fingerprint {}) is not the one the \
                         run was trained with ({}, from {})",
                        dir.display(),
                        cfg.data.tokenizer.display(),
                        b.fingerprint,
                        a.fingerprint,
                        a.source.display()
                    );
                }
            }
            if ck.state.step > cfg.run.max_steps {
                bail!(
                    "checkpoint {} is at step {}, beyond run.max_steps {}",
                    dir.display(),
                    ck.state.step,
                    cfg.run.max_steps
                );
            }
            let s = ck.state;
            (
                ck.model,
                ck.optimizer.expect("loaded with optimizer"),
                s.sampler,
                s.step,
                s.tokens_seen,
                s.wall_seconds,
            )
        }
        None => {
            let model = Model::new(cfg.model.clone(), cfg.run.seed)?;
            let mut optim = AdamW::new(cfg.adamw(), model.params.len());
            if cfg.optimizer.no_decay_norms {
                optim.no_decay = AdamW::no_decay_ranges(&model.specs, |s| s.shape.len() == 1);
            }
            let sampler = BatchSampler::new(cfg.data.sampling, Rng::new(cfg.data.seed));
            (model, optim, sampler, 0, 0, 0.0)
        }
    };

    std::fs::write(run_dir.join("config.toml"), cfg.to_toml())
        .with_context(|| format!("cannot write {}", run_dir.join("config.toml").display()))?;
    let metrics_path = run_dir.join("metrics.jsonl");
    let resumed = resume_dir.is_some();
    let mut metrics = MetricsWriter::open(&metrics_path, resume_dir.as_ref().map(|_| step))?;

    let show_bar = opts.progress && cfg.logging.progress && std::io::stderr().is_terminal();
    let pb = show_bar.then(|| {
        let pb = ProgressBar::new(cfg.run.max_steps);
        pb.set_style(
            ProgressStyle::with_template(
                "{bar:30.cyan/blue} {pos}/{len} {msg} [{elapsed_precise}<{eta_precise}]",
            )
            .expect("valid template")
            .progress_chars("##-"),
        );
        pb.set_position(step);
        pb
    });
    if opts.handle_sigint {
        install_sigint_handler();
    }
    SIGINTS.store(0, Ordering::SeqCst);

    let mut model = model;
    model.precision = cfg.run.precision;
    let mut run = Run {
        cfg,
        model,
        optim,
        sampler,
        step,
        tokens_seen,
        wall_before,
        started: Instant::now(),
        tokenizer,
        ckpt_dir: ckpt_dir.clone(),
        last_saved: resume_dir.map(|d| (step, d)),
        pb,
        verbose: opts.verbose,
    };
    let precision = run.cfg.run.precision;
    if precision != Precision::F32 {
        run.say(format!("precision {precision}: {}", precision.backend()));
    }
    if resumed {
        run.say(format!(
            "resumed at step {} from {}",
            run.step,
            run.last_saved.as_ref().unwrap().1.display()
        ));
    }

    let mut acts = Activations::new(&cfg.model, batch, seq);
    let max_val_windows = (cfg.eval.batches > 0).then_some(cfg.eval.batches * batch);
    let mut evaluator = match &valid_tokens {
        Some(v) => Some(Evaluator::new(v, batch, seq, max_val_windows)?),
        None => None,
    };
    let mut eval_acts = evaluator
        .as_ref()
        .filter(|e| e.batch() != batch)
        .map(|e| Activations::new(&cfg.model, e.batch(), seq));

    if cfg.checkpoint.save_step0 && run.step == 0 {
        let s = run.sampler.clone();
        run.save(&s, None, None)?;
    }

    let mut inputs = vec![0u32; batch * seq];
    let mut targets = vec![0u32; batch * seq];
    let tokens_per_step = (batch * seq * accum) as u64;
    let mut last_train_loss: Option<f32> = None;
    let mut last_val: Option<f32> = None;
    let mut best_val: Option<f32> = None;
    let mut interrupted = false;
    // Tokens and seconds spent in training steps since the last metrics line (evaluation and
    // checkpoint time excluded, so tokens/s measures training throughput).
    let mut since_log = (0u64, 0.0f64);
    let (warmup, cosine) = (cfg.schedule.warmup_steps, cfg.cosine_steps());
    let (max_lr, min_lr) = (cfg.optimizer.lr as f32, cfg.schedule.min_lr as f32);
    // Zeroed once here: every step's fused AdamW pass leaves them zeroed for the next (the loop
    // exits on any error in between).
    run.model.zero_grads();

    while run.step < cfg.run.max_steps {
        let stop_requested = SIGINTS.load(Ordering::SeqCst) > 0
            || opts.stop.as_ref().is_some_and(|s| s.load(Ordering::SeqCst))
            || opts.stop_after.is_some_and(|s| run.step >= s);
        if stop_requested {
            interrupted = true;
            break;
        }
        let step_start = Instant::now();
        let sampler_before = run.sampler.clone();
        let mut loss_sum = 0.0f64;
        for _ in 0..accum {
            run.sampler.fill(&train_tokens, seq, &mut inputs, &mut targets)?;
            let l = run
                .model
                .forward_backward(&mut acts, &inputs, &targets)
                .with_context(|| format!("step {}", run.step + 1))?;
            loss_sum += l as f64;
        }
        if accum > 1 {
            let scale = 1.0 / accum as f32;
            run.model
                .grads
                .par_chunks_mut(1 << 16)
                .for_each(|c| c.iter_mut().for_each(|g| *g *= scale));
        }
        let loss = (loss_sum / accum as f64) as f32;
        // Clipping is applied inside the AdamW pass (clip_scale), bitwise as clip_grad_norm would.
        let norm64 = grad_norm(&run.model.grads);
        let norm = norm64 as f32;
        let grad_scale = if cfg.optimizer.grad_clip > 0.0 {
            clip_scale(norm64, cfg.optimizer.grad_clip as f32)
        } else {
            1.0
        };
        if !loss.is_finite() || !norm.is_finite() {
            let what = if !loss.is_finite() {
                format!("loss {loss}")
            } else {
                format!("gradient norm {norm}")
            };
            let failed = run.step + 1;
            // The parameters are still those after step run.step: keep them.
            let kept = match &run.last_saved {
                Some((s, d)) if *s == run.step => d.clone(),
                _ => run.save(&sampler_before, None, last_train_loss)?,
            };
            if let Some(pb) = &run.pb {
                pb.abandon();
            }
            bail!(
                "non-finite {what} at step {failed}; stopped. The last good state (after step {}) is in \
                 checkpoint {}. Try a lower optimizer.lr, a longer warmup, or gradient clipping.",
                run.step,
                kept.display()
            );
        }
        let lr = lr_cosine(run.step, max_lr, min_lr, warmup, cosine);
        run.optim
            .step_scaled_and_zero_grads(&mut run.model.params, &mut run.model.grads, lr, grad_scale);
        run.step += 1;
        run.tokens_seen += tokens_per_step;
        since_log.0 += tokens_per_step;
        since_log.1 += step_start.elapsed().as_secs_f64();
        last_train_loss = Some(loss);

        let step = run.step;
        let at_end = step == cfg.run.max_steps;
        let do_eval = evaluator.is_some() && (at_end || step.is_multiple_of(cfg.eval_every()));
        let do_ckpt = at_end || (cfg.checkpoint.every > 0 && step.is_multiple_of(cfg.checkpoint.every));
        let do_log = do_eval || at_end || (cfg.logging.every > 0 && step.is_multiple_of(cfg.logging.every));

        let mut val_loss = None;
        if do_eval {
            let ev = evaluator.as_mut().expect("checked");
            let acts_ref = eval_acts.as_mut().unwrap_or(&mut acts);
            let r = ev.run(
                &run.model,
                valid_tokens.as_ref().expect("with evaluator"),
                acts_ref,
            )?;
            let v = r.loss as f32;
            val_loss = Some(v);
            last_val = Some(v);
            if best_val.is_none_or(|b| v < b) {
                best_val = Some(v);
            }
            run.say(format!(
                "step {step}: train loss {loss:.4}, val loss {v:.4} (ppl {:.2})",
                r.perplexity
            ));
        }
        if do_log {
            let tps = if since_log.1 > 0.0 {
                since_log.0 as f64 / since_log.1
            } else {
                0.0
            };
            since_log = (0, 0.0);
            metrics.write(&MetricsRecord {
                step,
                tokens: run.tokens_seen,
                wall_s: run.wall(),
                train_loss: Some(loss),
                val_loss,
                lr: Some(lr),
                grad_norm: Some(norm),
                tokens_per_s: Some(tps),
            })?;
            if let Some(pb) = &run.pb {
                pb.set_message(format!(
                    "loss {loss:.4} lr {lr:.2e} gnorm {norm:.3} {tps:.0} tok/s"
                ));
            }
        }
        if let Some(pb) = &run.pb {
            pb.set_position(step);
        }
        if do_ckpt {
            let s = run.sampler.clone();
            run.save(&s, val_loss, Some(loss))?;
        }
    }

    if interrupted && run.last_saved.as_ref().is_none_or(|(s, _)| *s != run.step) {
        let s = run.sampler.clone();
        run.save(&s, None, last_train_loss)?;
    }
    if let Some(pb) = &run.pb {
        pb.finish_and_clear();
    }
    drop(metrics);
    let plot_path = if cfg.logging.plot {
        let p = run_dir.join("loss.svg");
        let records = crate::metrics::read(&metrics_path)?;
        let title = format!("{}: loss", run_dir.display());
        crate::plot::plot_loss(&records, &p, &title)?;
        Some(p)
    } else {
        None
    };
    Ok(TrainSummary {
        run_dir,
        step: run.step,
        tokens_seen: run.tokens_seen,
        train_loss: last_train_loss,
        val_loss: last_val,
        best_val_loss: best_val,
        wall_seconds: run.wall(),
        checkpoint: run.last_saved.map(|(_, d)| d),
        metrics_path,
        plot_path,
        interrupted,
    })
}
