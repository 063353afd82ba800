//! The [`Trainer`]: a run's state and its named parts — `open` (check the data, resume or
//! initialize), `step` (one optimizer step, see [`super::step`]), `after_step` (evaluate, log,
//! checkpoint) and `finish` (final checkpoint, plot). It prints nothing: the caller (see
//! [`super::train`]) reports what the parts return.

use super::setup::{self, Plan, Start, TrainData};
use super::step::{GradReducer, LocalReducer, SampledBatches, StepOutcome, StepSettings, StepStats, Stepper};
use super::{checkpoints_dir, Resume, TrainOptions, TrainSummary};
use crate::checkpoint::{self, CheckpointState, ScheduleState};
use crate::config::TrainConfig;
use crate::data::BatchSampler;
use crate::eval::{EvalResult, Evaluator};
use crate::metrics::{MetricsRecord, MetricsWriter, RunProgress};
use crate::run_lock;
use anyhow::{Context, Result};
use ferrolm_nn::model::Activations;
use std::path::{Path, PathBuf};
use std::time::Instant;

mod hooks;

/// What [`Trainer::after_step`] did.
#[derive(Clone, Debug, Default)]
pub struct AfterStep {
    /// The evaluation, if one ran at this step.
    pub eval: Option<EvalResult>,
    /// The metrics line, if one was written.
    pub logged: Option<MetricsRecord>,
    /// The checkpoint, if one was written.
    pub checkpoint: Option<PathBuf>,
}

/// A training run in progress.
pub struct Trainer {
    pub cfg: TrainConfig,
    pub data: TrainData,
    pub stepper: Stepper,
    /// The data order: the state for the next batch.
    pub sampler: BatchSampler,
    /// Completed optimizer steps.
    pub step: u64,
    pub tokens_seen: u64,
    /// The checkpoint this run was resumed from.
    pub resumed_from: Option<PathBuf>,
    /// What `open` has to tell the user: damaged checkpoints skipped, config changes, a start
    /// from the saved config, a checkpoint without checksums.
    pub notes: Vec<String>,
    wall_before: f64,
    started: Instant,
    ckpt_dir: PathBuf,
    metrics_path: PathBuf,
    /// None on the processes other than rank 0 (only rank 0 writes).
    metrics: Option<MetricsWriter>,
    /// This process's rank among those training together (0: it logs, evaluates and saves).
    pub rank: usize,
    last_saved: Option<(u64, PathBuf)>,
    evaluator: Option<Evaluator>,
    /// Evaluation activations when the evaluator's batch differs from training's.
    eval_acts: Option<Activations>,
    last_train_loss: Option<f32>,
    last_val: Option<f32>,
    best_val: Option<f32>,
    /// Tokens and seconds spent in training steps since the last metrics line (evaluation and
    /// checkpoint time excluded, so tokens/s measures training throughput).
    since_log: (u64, f64),
    /// Rank 0's lock of the run directory, held while the trainer lives (see [`crate::run_lock`]).
    _run_lock: Option<run_lock::RunLock>,
}

impl Trainer {
    /// Checks the config and the data, then starts as `opts.resume` says (see [`setup::plan`]):
    /// a fresh run, the run directory's saved config, or the newest intact checkpoint (damaged
    /// newer ones are moved aside and named in [`Trainer::notes`]). Only then creates the run
    /// directory, writes its config.toml and opens its metrics log, so a failed start leaves
    /// nothing behind.
    pub fn open(config: &TrainConfig, opts: &TrainOptions) -> Result<Trainer> {
        Self::open_with(config, opts, Box::new(LocalReducer), 0)
    }

    /// [`Trainer::open`] for process `rank` of `reducer.world_size()` training together:
    /// `config.data.grad_accum` counts this process's micro-batches per step, so a step takes
    /// grad_accum × world_size global micro-batches, and the run's config (written to config.toml
    /// and the checkpoints) is that of one process doing them all. Before rank 0 writes anything,
    /// every process's config, data, tokenizer and starting checkpoint are checked against rank
    /// 0's ([`GradReducer::agree`]). Only rank 0 writes (config, metrics, checkpoints, moving
    /// damaged checkpoints aside) and evaluates.
    pub fn open_with(
        config: &TrainConfig,
        opts: &TrainOptions,
        mut reducer: Box<dyn GradReducer>,
        rank: usize,
    ) -> Result<Trainer> {
        let mut cfg = config.clone();
        cfg.data.grad_accum *= reducer.world_size();
        if reducer.world_size() > 1 && cfg.run.max_minutes > 0.0 {
            anyhow::bail!(
                "run.max_minutes (--minutes) is not supported with several ranks yet (each rank would \
                 estimate its own step count): give --steps or --tokens"
            );
        }
        cfg.resolve()?;
        cfg.validate()?;
        let run_dir = cfg.run.dir.clone();
        let ckpt_dir = checkpoints_dir(&run_dir);
        // Data first: a bad file should fail before any work.
        let data = TrainData::open(&cfg)?;
        // Rank 0 locks an existing run directory before reading its checkpoints (a new one as soon
        // as it is created, below): a second trainer on it stops here.
        let mut run_lock = match rank == 0 && run_dir.is_dir() {
            true => Some(run_lock::lock(&run_dir)?),
            false => None,
        };
        let mut notes = Vec::new();
        let start = match setup::plan(&opts.resume, &run_dir)? {
            Plan::Fresh => {
                check_config_file(&run_dir, &cfg, opts.overwrite_config)?;
                match &opts.resume {
                    Resume::InitFrom(p) => setup::init_from(p, &cfg, data.tokenizer.as_ref())?,
                    _ => setup::initialize(&cfg)?,
                }
            }
            Plan::SavedConfig(path) => {
                let saved = TrainConfig::load(&path)?;
                let what = path.display().to_string();
                let changes = setup::check_continuation(&saved, &mut cfg, 0, opts.extend, &what)?;
                notes.push(format!(
                    "no checkpoint yet, starting {} from its saved config",
                    run_dir.display()
                ));
                if !changes.is_empty() {
                    notes.push(format!("changed from the saved config: {}", changes.join(", ")));
                }
                setup::initialize(&cfg)?
            }
            Plan::Checkpoint { dir, skipped } => {
                let tok = data.tokenizer.as_ref();
                let (start, more) = setup::resume_from(&dir, &mut cfg, tok, opts.extend)?;
                // Rank 0 alone moves damaged checkpoints aside (the others skip them as well).
                for d in skipped.into_iter().filter(|_| rank == 0) {
                    let to = setup::move_aside(&d.dir)?;
                    notes.push(format!(
                        "{}\n  moved it aside to {}; resuming from the newest intact checkpoint {}",
                        d.reason,
                        to.display(),
                        dir.display()
                    ));
                }
                notes.extend(more);
                start
            }
        };
        let identity = crate::dist::identity(&cfg, &data, start.resumed_from.as_deref(), start.step);
        reducer.agree(&identity)?;
        let metrics_path = run_dir.join("metrics.jsonl");
        let metrics = if rank == 0 {
            std::fs::create_dir_all(&run_dir)
                .with_context(|| format!("cannot create run directory {}", run_dir.display()))?;
            if run_lock.is_none() {
                run_lock = Some(run_lock::lock(&run_dir)?);
            }
            write_config(&run_dir, &cfg)?;
            let resumed_at = start.resumed_from.as_ref().map(|_| start.step);
            Some(MetricsWriter::open(&metrics_path, resumed_at)?)
        } else {
            None
        };
        let mut t = Self::from_start(cfg, data, start, ckpt_dir, metrics_path, metrics)?;
        t.notes = notes;
        t.rank = rank;
        t._run_lock = run_lock;
        t.stepper.set_reducer(reducer);
        Ok(t)
    }

    fn from_start(
        cfg: TrainConfig,
        data: TrainData,
        start: Start,
        ckpt_dir: PathBuf,
        metrics_path: PathBuf,
        metrics: Option<MetricsWriter>,
    ) -> Result<Trainer> {
        let (batch, seq) = (cfg.data.batch_size, cfg.seq_len());
        let mut model = start.model;
        model.precision = cfg.run.precision;
        let max_val_windows = (cfg.eval.batches > 0).then_some(cfg.eval.batches * batch);
        let evaluator = match &data.valid {
            Some(v) => Some(Evaluator::new(v, batch, seq, max_val_windows)?),
            None => None,
        };
        let eval_acts = evaluator
            .as_ref()
            .filter(|e| e.batch() != batch)
            .map(|e| Activations::new(&cfg.model, e.batch(), seq));
        let settings = step_settings(&cfg);
        Ok(Trainer {
            stepper: Stepper::new(model, start.optim, settings, batch, seq),
            sampler: start.sampler,
            step: start.step,
            tokens_seen: start.tokens_seen,
            last_saved: start.resumed_from.clone().map(|d| (start.step, d)),
            resumed_from: start.resumed_from,
            notes: Vec::new(),
            wall_before: start.wall_seconds,
            started: Instant::now(),
            ckpt_dir,
            metrics_path,
            metrics,
            rank: 0,
            evaluator,
            eval_acts,
            last_train_loss: None,
            last_val: None,
            best_val: None,
            since_log: (0, 0.0),
            _run_lock: None,
            cfg,
            data,
        })
    }

    /// Training seconds in total (including those before a resume).
    pub fn wall(&self) -> f64 {
        self.wall_before + self.started.elapsed().as_secs_f64()
    }

    /// Whether `run.max_steps` steps are done.
    pub fn is_done(&self) -> bool {
        self.step >= self.cfg.run.max_steps
    }

    /// Saves the initialization as checkpoint step 0 if `checkpoint.save_step0` asks for it and
    /// the run starts at step 0.
    pub fn save_step0(&mut self) -> Result<Option<PathBuf>> {
        if self.cfg.checkpoint.save_step0 && self.step == 0 {
            return self.save(None, None).map(Some);
        }
        Ok(None)
    }

    /// One optimizer step on the next micro-batches of the training data. On a non-finite loss or
    /// gradient nothing changes (parameters, moments, data order and step count stay as before).
    pub fn step(&mut self) -> Result<StepOutcome> {
        let t0 = Instant::now();
        let sampler_before = self.sampler.clone();
        let mut batches = SampledBatches {
            sampler: &mut self.sampler,
            tokens: &self.data.train,
            seq: self.cfg.seq_len(),
            rank: self.rank,
            world: self.stepper.reducer().world_size(),
        };
        let outcome = self.stepper.step(self.step, &mut batches)?;
        match &outcome {
            StepOutcome::Done(stats) => {
                let tokens =
                    (self.cfg.data.batch_size * self.cfg.seq_len() * self.cfg.data.grad_accum) as u64;
                self.step += 1;
                self.tokens_seen += tokens;
                self.since_log.0 += tokens;
                self.since_log.1 += t0.elapsed().as_secs_f64();
                self.last_train_loss = Some(stats.loss);
            }
            StepOutcome::NonFinite { .. } => self.sampler = sampler_before,
        }
        Ok(outcome)
    }

    /// After a completed step: evaluates, writes a metrics line and a checkpoint when the
    /// schedule (`eval.every`, `logging.every`, `checkpoint.every`, and the last step) says so.
    pub fn after_step(&mut self, stats: &StepStats) -> Result<AfterStep> {
        let cfg = &self.cfg;
        let step = self.step;
        let at_end = step == cfg.run.max_steps;
        let every = |n: u64| n > 0 && step.is_multiple_of(n);
        // Only rank 0 evaluates, logs and saves (the others hold the same parameters).
        let root = self.rank == 0;
        let do_eval = root && self.evaluator.is_some() && (at_end || every(cfg.eval_every()));
        let do_ckpt = root && (at_end || every(cfg.checkpoint.every));
        let do_log = root && (do_eval || at_end || every(cfg.logging.every));
        let mut out = AfterStep::default();
        if do_eval {
            out.eval = Some(self.evaluate()?);
        }
        let val_loss = out.eval.as_ref().map(|r| r.loss as f32);
        if do_log {
            out.logged = Some(self.log(stats, val_loss)?);
        }
        if do_ckpt {
            out.checkpoint = Some(self.save(val_loss, Some(stats.loss))?);
        }
        Ok(out)
    }

    fn evaluate(&mut self) -> Result<EvalResult> {
        let ev = self.evaluator.as_mut().expect("called with an evaluator");
        let valid = self.data.valid.as_ref().expect("with evaluator");
        let r = match self.eval_acts.as_mut() {
            Some(acts) => ev.run(&self.stepper.model, valid, acts)?,
            None => {
                let (model, acts) = self.stepper.activations();
                ev.run(model, valid, acts)?
            }
        };
        let v = r.loss as f32;
        self.last_val = Some(v);
        if self.best_val.is_none_or(|b| v < b) {
            self.best_val = Some(v);
        }
        Ok(r)
    }

    fn log(&mut self, stats: &StepStats, val_loss: Option<f32>) -> Result<MetricsRecord> {
        let (tokens, secs) = std::mem::take(&mut self.since_log);
        let tps = if secs > 0.0 { tokens as f64 / secs } else { 0.0 };
        let record = MetricsRecord {
            step: self.step,
            tokens: self.tokens_seen,
            wall_s: self.wall(),
            train_loss: Some(stats.loss),
            val_loss,
            lr: Some(stats.lr),
            grad_norm: Some(stats.grad_norm),
            tokens_per_s: Some(tps),
        };
        if let Some(m) = self.metrics.as_mut() {
            m.write(&record)?;
        }
        Ok(record)
    }

    /// Saves the current state as the checkpoint of `self.step` and prunes old ones (on rank 0;
    /// the other processes save nothing and return the checkpoint rank 0 writes).
    pub fn save(&mut self, val_loss: Option<f32>, train_loss: Option<f32>) -> Result<PathBuf> {
        if self.rank != 0 {
            let dir = self.ckpt_dir.join(checkpoint::dir_name(self.step));
            self.last_saved = Some((self.step, dir.clone()));
            return Ok(dir);
        }
        let cfg = &self.cfg;
        let optim = &self.stepper.optim;
        let state = CheckpointState {
            format_version: checkpoint::FORMAT_VERSION,
            step: self.step,
            tokens_seen: self.tokens_seen,
            wall_seconds: self.wall(),
            model: cfg.model.clone(),
            optimizer: optim.config.clone(),
            optimizer_t: optim.t,
            no_decay: optim.no_decay.iter().map(|r| (r.start, r.end)).collect(),
            schedule: ScheduleState {
                max_lr: cfg.optimizer.lr,
                min_lr: cfg.schedule.min_lr,
                warmup_steps: cfg.schedule.warmup_steps,
                cosine_steps: cfg.cosine_steps(),
            },
            sampler: self.sampler.clone(),
            tokenizer: self.data.tokenizer.clone(),
            val_loss,
            train_loss,
            config: cfg.clone(),
        };
        let tok = (!cfg.data.tokenizer.as_os_str().is_empty()).then_some(cfg.data.tokenizer.as_path());
        let dir = checkpoint::save(&self.ckpt_dir, &state, &self.stepper.model, optim, tok)?;
        checkpoint::prune(&self.ckpt_dir, cfg.checkpoint.keep_last)?;
        self.last_saved = Some((self.step, dir.clone()));
        Ok(dir)
    }

    /// Makes sure a checkpoint of the current step exists (after a stop or a non-finite step):
    /// returns it and whether it was written now.
    pub fn save_if_unsaved(&mut self) -> Result<(PathBuf, bool)> {
        match &self.last_saved {
            Some((s, d)) if *s == self.step => Ok((d.clone(), false)),
            _ => Ok((self.save(None, self.last_train_loss)?, true)),
        }
    }

    /// Ends the run: closes the metrics log, draws the loss plot (`logging.plot`) and sums up.
    pub fn finish(self, interrupted: bool) -> Result<TrainSummary> {
        let run_dir = self.cfg.run.dir.clone();
        drop(self.metrics);
        let plot_path = if self.cfg.logging.plot && self.rank == 0 {
            let p = run_dir.join("loss.svg");
            plot(&self.metrics_path, &p, &run_dir)?;
            Some(p)
        } else {
            None
        };
        Ok(TrainSummary {
            progress: RunProgress {
                step: self.step,
                tokens: self.tokens_seen,
                wall_seconds: self.wall_before + self.started.elapsed().as_secs_f64(),
                train_loss: self.last_train_loss,
                val_loss: self.last_val,
                best_val_loss: self.best_val,
            },
            checkpoint: self.last_saved.map(|(_, d)| d),
            metrics_path: self.metrics_path,
            plot_path,
            interrupted,
            notes: self.notes,
            run_dir,
        })
    }
}

/// Writes the run directory's config.toml atomically (a temporary file renamed over it), so a
/// kill never leaves a torn one for `--resume` to read.
fn write_config(run_dir: &Path, cfg: &TrainConfig) -> Result<()> {
    let path = run_dir.join(setup::CONFIG_FILE);
    let tmp = run_dir.join(format!(".{}.tmp-{}", setup::CONFIG_FILE, std::process::id()));
    std::fs::write(&tmp, cfg.to_toml()).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))
}

/// Refuses to replace a run directory's config.toml by a different one (a fresh start in a
/// directory whose run never saved a checkpoint) unless `overwrite`.
fn check_config_file(run_dir: &Path, cfg: &TrainConfig, overwrite: bool) -> Result<()> {
    let path = run_dir.join(setup::CONFIG_FILE);
    if overwrite || !path.is_file() {
        return Ok(());
    }
    let changes: Vec<String> = match TrainConfig::load(&path) {
        Ok(saved) => saved
            .diff(cfg)
            .into_iter()
            .map(|(k, a, b)| format!("  {k}: {a} -> {b}"))
            .collect(),
        Err(e) => vec![format!("  (it does not read: {e:#})")],
    };
    if changes.is_empty() {
        return Ok(());
    }
    anyhow::bail!(
        "run directory {} already has a {} from an earlier start that saved no checkpoint, and this \
         run's config differs:\n{}\nResume it with --resume (it starts from its saved config), choose \
         another run directory, or pass --overwrite-config to replace it (nothing was changed)",
        run_dir.display(),
        setup::CONFIG_FILE,
        changes.join("\n")
    )
}

/// A run's step settings from its config.
pub fn step_settings(cfg: &TrainConfig) -> StepSettings {
    StepSettings {
        grad_accum: cfg.data.grad_accum,
        grad_clip: cfg.optimizer.grad_clip as f32,
        max_lr: cfg.optimizer.lr as f32,
        min_lr: cfg.schedule.min_lr as f32,
        warmup_steps: cfg.schedule.warmup_steps,
        cosine_steps: cfg.cosine_steps(),
    }
}

fn plot(metrics: &Path, out: &Path, run_dir: &Path) -> Result<()> {
    let records = crate::metrics::read(metrics)?;
    let title = format!("{}: loss", run_dir.display());
    crate::plot::plot_loss(&records, out, &title)
}
