//! The training system (see issue 4): token data, checkpoints, the trainer, the benchmarks behind
//! `ferrolm bench`, metrics, generation, and the quickstart with its built-in story corpus.
//!
//! The library API in one place:
//! - [`TrainConfig`] (TOML, defaults, `section.key=value` overrides; [`config_check`] its range
//!   checks and error lines, [`config_docs`] its commented form) and [`train`] with
//!   [`TrainOptions`] → [`TrainSummary`]; the same run step by step with [`trainer::Trainer`]
//!   (`open`, `step`, `after_step`, `finish`), one optimizer step alone with [`trainer::Stepper`];
//! - [`bench`]: `bench train` (the trainer's step on random tokens), `bench generate`, `bench peak`;
//! - [`data::TokenFile`] (memory-mapped `.npy` tokens), [`data::get_batch`], [`data::BatchSampler`];
//! - [`checkpoint`]: crash-safe save/load/list/latest/prune;
//! - [`evaluate`] → [`EvalResult`]; [`generate_tokens`] / [`generate_text`] with [`GenerateConfig`];
//!   [`metrics`] (JSONL) and [`plot`] (SVG loss curves); [`runs`] (the runs under a directory);
//! - [`budget`] (training by time) and [`progress`] (plain progress lines without a terminal);
//!   [`run_lock`] (one trainer per run directory).

pub mod bench;
pub mod budget;
pub mod checkpoint;
pub mod config;
pub mod config_check;
pub mod config_docs;
pub mod data;
pub mod dist;
pub mod eval;
pub mod generate;
pub mod metrics;
pub mod plot;
pub mod progress;
pub mod quickstart;
pub mod run_lock;
pub mod runs;
pub mod trainer;

pub use config::TrainConfig;
pub use eval::{evaluate, EvalResult};
pub use generate::{generate_text, generate_tokens, GenerateConfig, Generated, GeneratedText};
pub use trainer::{train, Resume, TrainOptions, TrainSummary};
