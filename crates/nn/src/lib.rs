//! The math of a Llama-style Transformer LM on f32 buffers (see issue 3).
//!
//! llm.c style: one flat buffer each for parameters, gradients, optimizer state and activations,
//! every backward written by hand. Three levels, imports pointing down only:
//! - `model` (the Transformer: `model::forward_backward` the training pass, `model::infer`
//!   generation with a KV cache), `loss`, `optim` (AdamW), `clip`, `schedule`, `sample`;
//! - `ops`, the backend boundary: every operation the model runs (linear layers in a
//!   `Precision`, RMSNorm, RoPE, attention, SwiGLU, cross-entropy, embedding, residual, the
//!   decode step). The model calls only `ops`; its module doc is the contract a second backend
//!   (CUDA) implements;
//! - `cpu`, the CPU backend below it (`cpu::gemm` the matrix products, `cpu::decode` the decode
//!   engine, `cpu::simd` the machine support), and `config`, the shared vocabulary
//!   (`ModelConfig`, `Precision`, the parameter `layout`).
//!
//! `bench` holds benchmark-only code (the arithmetic peak, per-kernel training profiles),
//! outside the model's path.

pub mod bench;
pub mod clip;
pub mod config;
pub mod cpu;
pub mod loss;
pub mod model;
pub mod ops;
pub mod optim;
pub mod rng;
pub mod sample;
pub mod schedule;

pub use config::{Ffn, ModelConfig, Norm, ParamSpec, Position, Precision};
pub use rng::Rng;

/// Errors of the math crate: bad shapes, ids out of range, configs that do not fit.
#[derive(Debug, thiserror::Error)]
pub enum NnError {
    #[error("target id {id} at position {pos} is outside the vocabulary (size {vocab})")]
    TargetOutOfRange { id: u32, pos: usize, vocab: usize },
    #[error("token id {id} at position {pos} is outside the vocabulary (size {vocab})")]
    TokenOutOfRange { id: u32, pos: usize, vocab: usize },
    #[error("shape mismatch: {0}")]
    Shape(String),
    #[error("invalid model config: {0}")]
    Config(String),
}

pub type Result<T> = std::result::Result<T, NnError>;
