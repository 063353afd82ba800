//! Helpers shared by the training-system tests: a tiny model and small synthetic token files.
#![allow(dead_code)]

pub mod shared;
pub mod tiny;

use ferrolm_nn::{ModelConfig, Rng};
use ferrolm_train::data::{write_npy, TokenDtype};
use ferrolm_train::{train, Resume, TrainConfig, TrainOptions, TrainSummary};
use std::path::Path;

/// A model small enough that a training step takes about a millisecond: [`tiny::tiny_config`]
/// with 48 tokens and a context of 16.
pub fn tiny_model() -> ModelConfig {
    tiny::tiny_config(48, 16)
}

/// Tokens with structure a model can learn: a noisy repeating pattern over `vocab` ids.
pub fn pattern_tokens(n: usize, vocab: u32, seed: u64) -> Vec<u32> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|i| {
            if rng.below(10) == 0 {
                rng.below(vocab as u64) as u32
            } else {
                (i as u32 * 7 + (i as u32 / 5)) % vocab
            }
        })
        .collect()
}

/// A run config in `dir` on freshly written train/valid files, small enough to run in a second.
pub fn tiny_run(dir: &Path, steps: u64) -> TrainConfig {
    let model = tiny_model();
    std::fs::create_dir_all(dir).unwrap();
    let train = dir.join("train.npy");
    let valid = dir.join("valid.npy");
    write_npy(
        &train,
        &pattern_tokens(4000, model.vocab_size as u32, 1),
        TokenDtype::U16,
    )
    .unwrap();
    write_npy(
        &valid,
        &pattern_tokens(600, model.vocab_size as u32, 2),
        TokenDtype::U16,
    )
    .unwrap();
    let mut c = TrainConfig {
        model,
        ..TrainConfig::default()
    };
    c.run.dir = dir.join("run");
    c.run.max_steps = steps;
    c.data.train = train;
    c.data.valid = valid;
    c.data.batch_size = 4;
    c.optimizer.lr = 1e-2;
    c.schedule.warmup_steps = 3;
    c.schedule.min_lr = 1e-3;
    c.eval.every = 5;
    c.eval.batches = 2;
    c.logging.every = 1;
    c.logging.progress = false;
    c.checkpoint.every = 5;
    c.checkpoint.keep_last = 2;
    c
}

/// A [`tiny_run`] in a fresh temporary directory (keep the directory while its files are used).
pub fn tiny_run_in_tempdir(steps: u64) -> (tempfile::TempDir, TrainConfig) {
    let d = tempfile::tempdir().unwrap();
    let c = tiny_run(d.path(), steps);
    (d, c)
}

/// Trains `c` on from its latest checkpoint (`Resume::Latest`, every other option default).
pub fn resume_latest(c: &TrainConfig) -> anyhow::Result<TrainSummary> {
    train(
        c,
        &TrainOptions {
            resume: Resume::Latest,
            ..TrainOptions::default()
        },
    )
}
