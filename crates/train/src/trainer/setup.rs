//! The trainer's first two parts: open and check the data (token files, tokenizer identity), and
//! resume from a checkpoint or initialize a fresh model, optimizer and sampler.

use super::Resume;
use crate::checkpoint::{self, TokenizerIdentity};
use crate::config::{is_fixed_on_resume, TrainConfig};
use crate::data::{BatchSampler, TokenFile};
use anyhow::{bail, Context, Result};
use ferrolm_nn::model::Model;
use ferrolm_nn::optim::AdamW;
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

/// The checkpoint `resume` names in `ckpt_dir` (None: start fresh). A fresh start refuses a run
/// directory that already has checkpoints.
pub fn resume_dir(
    resume: &Resume,
    run_dir: &Path,
    ckpt_dir: &Path,
    verbose: bool,
) -> Result<Option<PathBuf>> {
    Ok(match resume {
        Resume::No => {
            if let Some(existing) = checkpoint::latest(ckpt_dir)? {
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
            let found = checkpoint::latest(ckpt_dir)?;
            if found.is_none() && verbose {
                eprintln!(
                    "no checkpoint in {} yet: starting a fresh run",
                    ckpt_dir.display()
                );
            }
            found
        }
        Resume::From(p) => Some(checkpoint::resolve(p)?),
    })
}

/// Loads the checkpoint in `dir` after checking that it continues the run `cfg` describes: the
/// same settings that fix the computation, the same tokenizer, not beyond `run.max_steps`.
pub fn resume_from(dir: &Path, cfg: &TrainConfig, tokenizer: Option<&TokenizerIdentity>) -> Result<Start> {
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
            "cannot resume from {}: the config disagrees with the checkpoint's on settings that fix the \
             run:\n{}\n(drop those overrides, or start a fresh run in another directory)",
            dir.display(),
            bad.join("\n")
        );
    }
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
    if ck.state.step > cfg.run.max_steps {
        bail!(
            "checkpoint {} is at step {}, beyond run.max_steps {}",
            dir.display(),
            ck.state.step,
            cfg.run.max_steps
        );
    }
    let s = ck.state;
    Ok(Start {
        model: ck.model,
        optim: ck.optimizer.expect("loaded with optimizer"),
        sampler: s.sampler,
        step: s.step,
        tokens_seen: s.tokens_seen,
        wall_seconds: s.wall_seconds,
        resumed_from: Some(dir.to_path_buf()),
    })
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
