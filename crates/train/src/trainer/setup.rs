//! The trainer's first two parts: open and check the data (token files, tokenizer identity), and
//! resume from a checkpoint or initialize a fresh model, optimizer and sampler.

use super::Resume;
use crate::checkpoint::{self, ScheduleState, TokenizerIdentity};
use crate::config::{is_fixed_on_resume, TrainConfig};
use crate::data::{BatchSampler, TokenFile};
use anyhow::{bail, Context, Result};
use ferrolm_nn::model::Model;
use ferrolm_nn::optim::AdamW;
use ferrolm_nn::schedule::lr_cosine;
use ferrolm_nn::Rng;
use std::path::{Path, PathBuf};

/// A run's data, opened and checked against the config.
pub struct TrainData {
    pub train: TokenFile,
    /// None when `data.valid` is empty.
    pub valid: Option<TokenFile>,
    /// The tokenizer's identity (None when `data.tokenizer` is empty).
    pub tokenizer: Option<TokenizerIdentity>,
}

impl TrainData {
    /// Opens the token files and the tokenizer named by `cfg.data`, and checks that every window
    /// fits and every id is inside the vocabulary: a bad file fails before any work.
    pub fn open(cfg: &TrainConfig) -> Result<TrainData> {
        let seq = cfg.seq_len();
        let train = TokenFile::open(&cfg.data.train).context("training data (data.train)")?;
        train.check_fits(seq)?;
        train.check_ids(cfg.model.vocab_size)?;
        let valid = if cfg.data.valid.as_os_str().is_empty() {
            None
        } else {
            let v = TokenFile::open(&cfg.data.valid)
                .context("validation data (data.valid; set it to \"\" to train without validation)")?;
            v.check_fits(seq)?;
            v.check_ids(cfg.model.vocab_size)?;
            Some(v)
        };
        let tokenizer = tokenizer_identity(cfg)?;
        Ok(TrainData {
            train,
            valid,
            tokenizer,
        })
    }
}

/// The identity of `data.tokenizer` (None when empty); errors if its vocabulary does not fit the
/// model's.
fn tokenizer_identity(cfg: &TrainConfig) -> Result<Option<TokenizerIdentity>> {
    if cfg.data.tokenizer.as_os_str().is_empty() {
        return Ok(None);
    }
    let (fingerprint, files) = checkpoint::fingerprint_dir(&cfg.data.tokenizer).context("data.tokenizer")?;
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
    Ok(Some(TokenizerIdentity {
        fingerprint,
        source: cfg.data.tokenizer.clone(),
        files,
        bpe_fingerprint: Some(tok.fingerprint()),
        vocab_size: Some(tok.vocab_size()),
    }))
}

/// The state a run starts from.
pub struct Start {
    pub model: Model,
    pub optim: AdamW,
    pub sampler: BatchSampler,
    /// Completed steps.
    pub step: u64,
    pub tokens_seen: u64,
    /// Training seconds before this process.
    pub wall_seconds: f64,
    /// The checkpoint resumed from (None: a fresh run).
    pub resumed_from: Option<PathBuf>,
}

/// A checkpoint that cannot be resumed from, and why.
#[derive(Clone, Debug)]
pub struct Damaged {
    pub dir: PathBuf,
    /// The error, naming the damaged file.
    pub reason: String,
}

/// Where a run starts.
#[derive(Clone, Debug)]
pub enum Plan {
    /// A fresh run.
    Fresh,
    /// The run directory's saved config.toml, from step 0 (`--resume` before the first checkpoint).
    SavedConfig(PathBuf),
    /// An intact checkpoint; `skipped`: the newer ones that are damaged, newest first.
    Checkpoint { dir: PathBuf, skipped: Vec<Damaged> },
}

/// Checks the checkpoint in `dir` the way resuming needs it: its files match their checksums
/// and its state reads.
fn check_intact(dir: &Path) -> Result<()> {
    checkpoint::verify(dir)?;
    checkpoint::read_state(dir)?;
    Ok(())
}

/// The newest checkpoint under `parent` that is intact, and the newer damaged ones.
pub fn newest_intact(parent: &Path) -> Result<(Option<PathBuf>, Vec<Damaged>)> {
    let mut damaged = Vec::new();
    for (_, dir) in checkpoint::list(parent)?.into_iter().rev() {
        match check_intact(&dir) {
            Ok(()) => return Ok((Some(dir), damaged)),
            Err(e) => damaged.push(Damaged {
                dir,
                reason: format!("{e:#}"),
            }),
        }
    }
    Ok((None, damaged))
}

/// Where `resume` starts the run in `run_dir` (see [`Plan`]). A fresh start refuses a run
/// directory with checkpoints; `--resume` on a directory with neither checkpoints nor a
/// config.toml, or whose checkpoints are all damaged, is an error; an explicit damaged
/// checkpoint is refused with the command that resumes from the newest intact older one.
pub fn plan(resume: &Resume, run_dir: &Path) -> Result<Plan> {
    let ckpt_dir = super::checkpoints_dir(run_dir);
    match resume {
        Resume::No => {
            if let Some(existing) = checkpoint::latest(&ckpt_dir)? {
                bail!(
                    "run directory {} already has checkpoints (latest {}); resume it with --resume, or \
                     choose another run directory (nothing was changed)",
                    run_dir.display(),
                    existing.display()
                );
            }
            Ok(Plan::Fresh)
        }
        Resume::Latest => plan_latest(&ckpt_dir, Some(run_dir)),
        Resume::From(p) if p.join(checkpoint::STATE_FILE).is_file() => {
            if let Err(e) = check_intact(p) {
                let older = p.parent().map(newest_intact).transpose()?.and_then(|(d, _)| d);
                let hint = match older {
                    Some(o) => format!(
                        "to resume from the newest intact checkpoint: ferrolm train --run-dir {} --resume {}",
                        run_dir.display(),
                        o.display()
                    ),
                    None => "no intact checkpoint is left beside it".to_string(),
                };
                return Err(e.context(format!("cannot resume from {}; {hint}", p.display())));
            }
            Ok(Plan::Checkpoint {
                dir: p.clone(),
                skipped: Vec::new(),
            })
        }
        Resume::From(p) => {
            if !p.exists() {
                bail!("checkpoint path {} does not exist", p.display());
            }
            let dir = if p.join("checkpoints").is_dir() {
                p.join("checkpoints")
            } else {
                p.clone()
            };
            match plan_latest(&dir, None)? {
                Plan::Checkpoint { dir, skipped } => Ok(Plan::Checkpoint { dir, skipped }),
                _ => bail!(
                    "{} holds no checkpoint (expected {}, step-* directories or checkpoints/step-*)",
                    p.display(),
                    checkpoint::STATE_FILE
                ),
            }
        }
    }
}

/// The newest intact checkpoint under `ckpt_dir`; else, with `run_dir`, its saved config.
fn plan_latest(ckpt_dir: &Path, run_dir: Option<&Path>) -> Result<Plan> {
    let (found, skipped) = newest_intact(ckpt_dir)?;
    if let Some(dir) = found {
        return Ok(Plan::Checkpoint { dir, skipped });
    }
    if !skipped.is_empty() {
        let list: Vec<String> = skipped.iter().map(|d| format!("  {}", d.reason)).collect();
        bail!(
            "no intact checkpoint to resume from in {}:\n{}",
            ckpt_dir.display(),
            list.join("\n")
        );
    }
    match run_dir {
        Some(r) if r.join(CONFIG_FILE).is_file() => Ok(Plan::SavedConfig(r.join(CONFIG_FILE))),
        Some(r) => bail!(
            "nothing to resume in {}: it has no checkpoint and no {CONFIG_FILE} (start the run without \
             --resume)",
            r.display()
        ),
        None => Ok(Plan::Fresh),
    }
}

/// The run config's file in a run directory.
pub const CONFIG_FILE: &str = "config.toml";

/// The config a resumed run continues with when the user gives none: the one saved with the
/// checkpoint `resume` would start from, else the run directory's config.toml; None for a fresh
/// run. Errors as [`plan`] does (nothing to resume, only damaged checkpoints).
pub fn saved_config(resume: &Resume, run_dir: &Path) -> Result<Option<TrainConfig>> {
    match plan(resume, run_dir)? {
        Plan::Checkpoint { dir, .. } => Ok(Some(checkpoint::read_state(&dir)?.config)),
        Plan::SavedConfig(path) => Ok(Some(TrainConfig::load(&path)?)),
        Plan::Fresh => Ok(None),
    }
}

/// The learning-rate schedule a config gives (max, min, warmup, the cosine's end).
fn schedule_of(c: &TrainConfig) -> ScheduleState {
    ScheduleState {
        max_lr: c.optimizer.lr,
        min_lr: c.schedule.min_lr,
        warmup_steps: c.schedule.warmup_steps,
        cosine_steps: c.cosine_steps(),
    }
}

/// Checks that `cfg` continues the run `saved` describes at `step`, and returns the differences
/// to report (`section.key: old -> new`). Refused: settings that fix the computation (model,
/// optimizer, batch, sampling, seeds) and any change of the learning-rate schedule — also the
/// one a new `run.max_steps` makes when `schedule.cosine_steps` is 0 (the cosine then spans the
/// run). With `extend`, `cfg`'s cosine is pinned to the saved one, so a longer run continues at
/// the schedule's end rate `schedule.min_lr` (the same as a run started with
/// `schedule.cosine_steps` set to the old length).
pub fn check_continuation(
    saved: &TrainConfig,
    cfg: &mut TrainConfig,
    step: u64,
    extend: bool,
    what: &str,
) -> Result<Vec<String>> {
    if extend && cfg.cosine_steps() != saved.cosine_steps() {
        cfg.schedule.cosine_steps = saved.cosine_steps();
    }
    let diff = saved.diff(cfg);
    let fixed: Vec<String> = diff
        .iter()
        .filter(|(k, _, _)| is_fixed_on_resume(k) && !k.starts_with("schedule."))
        .map(|(k, a, b)| format!("  {k}: checkpoint {a}, now {b}"))
        .collect();
    if !fixed.is_empty() {
        bail!(
            "cannot resume from {what}: the config disagrees with the checkpoint's on settings that fix \
             the run:\n{}\n(drop those overrides, or start a fresh run in another directory)",
            fixed.join("\n")
        );
    }
    let (old, new) = (schedule_of(saved), schedule_of(cfg));
    if old != new {
        let lr = |s: &ScheduleState| {
            lr_cosine(
                step,
                s.max_lr as f32,
                s.min_lr as f32,
                s.warmup_steps,
                s.cosine_steps,
            )
        };
        bail!(
            "cannot resume from {what} at step {step}: the learning-rate schedule would change \
             (warmup {} -> {}, cosine to step {} -> {}, min_lr {} -> {}), so the learning rate of the \
             next step would be {:.3e} instead of {:.3e}. To run longer than planned, add --extend: the \
             saved schedule is kept and the extra steps run at its end rate schedule.min_lr (the same \
             as --set schedule.cosine_steps={}). To change the schedule, start a fresh run.",
            old.warmup_steps,
            new.warmup_steps,
            old.cosine_steps,
            new.cosine_steps,
            old.min_lr,
            new.min_lr,
            lr(&new),
            lr(&old),
            old.cosine_steps
        );
    }
    Ok(diff
        .into_iter()
        .map(|(k, a, b)| format!("{k}: {a} -> {b}"))
        .collect())
}

/// Loads the checkpoint in `dir` after checking that it continues the run `cfg` describes (see
/// [`check_continuation`]; `cfg` may be pinned by `extend`): the same tokenizer, not beyond
/// `run.max_steps`. Returns the start and the config changes to report.
pub fn resume_from(
    dir: &Path,
    cfg: &mut TrainConfig,
    tokenizer: Option<&TokenizerIdentity>,
    extend: bool,
) -> Result<(Start, Vec<String>)> {
    let ck = checkpoint::load(dir, true)?;
    if let (Some(a), Some(b)) = (&ck.state.tokenizer, tokenizer) {
        let same = match (&a.bpe_fingerprint, &b.bpe_fingerprint) {
            (Some(x), Some(y)) => x == y,
            _ => a.fingerprint == b.fingerprint,
        };
        if !same {
            bail!(
                "cannot resume from {}: the tokenizer in {} (fingerprint {}) is not the one the run was \
                 trained with ({}, from {})",
                dir.display(),
                cfg.data.tokenizer.display(),
                b.fingerprint,
                a.fingerprint,
                a.source.display()
            );
        }
    }
    let what = dir.display().to_string();
    let changes = check_continuation(&ck.state.config, cfg, ck.state.step, extend, &what)?;
    if ck.state.step > cfg.run.max_steps {
        bail!(
            "checkpoint {} is at step {}, beyond run.max_steps {}",
            dir.display(),
            ck.state.step,
            cfg.run.max_steps
        );
    }
    let verified = ck.verified;
    let s = ck.state;
    let start = Start {
        model: ck.model,
        optim: ck.optimizer.expect("loaded with optimizer"),
        sampler: s.sampler,
        step: s.step,
        tokens_seen: s.tokens_seen,
        wall_seconds: s.wall_seconds,
        resumed_from: Some(dir.to_path_buf()),
    };
    let mut notes = Vec::new();
    if !verified {
        notes.push(format!(
            "note: checkpoint {} has no checksums (saved by an older ferrolm): loaded without verifying \
             its files",
            dir.display()
        ));
    }
    if !changes.is_empty() {
        notes.push(format!("changed from the saved config: {}", changes.join(", ")));
    }
    Ok((start, notes))
}

/// Moves a damaged checkpoint out of the way (`step-N` -> `damaged-step-N`, never deleted), so
/// that pruning and `latest` skip it. Returns where it went.
pub fn move_aside(dir: &Path) -> Result<PathBuf> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let parent = dir.parent().unwrap_or(Path::new("."));
    let mut to = parent.join(format!("damaged-{name}"));
    let mut i = 1;
    while to.exists() {
        to = parent.join(format!("damaged-{name}-{i}"));
        i += 1;
    }
    std::fs::rename(dir, &to).with_context(|| format!("cannot move {} aside", dir.display()))?;
    Ok(to)
}

/// A fresh model (initialized from `run.seed`), optimizer and sampler (from `data.seed`).
pub fn initialize(cfg: &TrainConfig) -> Result<Start> {
    let model = Model::new(cfg.model.clone(), cfg.run.seed)?;
    let mut optim = AdamW::new(cfg.adamw(), model.params.len());
    if cfg.optimizer.no_decay_norms {
        optim.no_decay = AdamW::no_decay_ranges(&model.specs, |s| s.shape.len() == 1);
    }
    let sampler = BatchSampler::new(cfg.data.sampling, Rng::new(cfg.data.seed));
    Ok(Start {
        model,
        optim,
        sampler,
        step: 0,
        tokens_seen: 0,
        wall_seconds: 0.0,
        resumed_from: None,
    })
}
