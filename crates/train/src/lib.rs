//! The training system (see issue 4): token data, checkpoints, the trainer, the benchmarks behind
//! `ferrolm bench`, metrics, generation, and the quickstart with its built-in story corpus.
//!
//! The library API in one place:
//! - [`TrainConfig`] (TOML, defaults, `section.key=value` overrides) and [`train`] with
//!   [`TrainOptions`] → [`TrainSummary`]; the same run step by step with [`trainer::Trainer`]
//!   (`open`, `step`, `after_step`, `finish`), one optimizer step alone with [`trainer::Stepper`];
//! - [`bench`]: `bench train` (the trainer's step on random tokens), `bench generate`, `bench peak`;
//! - [`data::TokenFile`] (memory-mapped `.npy` tokens), [`data::get_batch`], [`data::BatchSampler`];
//! - [`checkpoint`]: crash-safe save/load/list/latest/prune;
//! - [`evaluate`] → [`EvalResult`]; [`generate_tokens`] / [`generate_text`] with [`GenerateConfig`];
//!   [`metrics`] (JSONL) and [`plot`] (SVG loss curves).

pub mod bench;
pub mod checkpoint;
pub mod config;
pub mod data;
pub mod eval;
pub mod generate;
pub mod metrics;
pub mod plot;
pub mod quickstart;
pub mod trainer;

pub use config::TrainConfig;
pub use eval::{evaluate, EvalResult};
pub use generate::{generate_text, generate_tokens, GenerateConfig, Generated, GeneratedText};
pub use trainer::{train, Resume, TrainOptions, TrainSummary};
