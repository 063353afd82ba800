//! The math of a Llama-style Transformer LM on f32 buffers (see issue 3).
//!
//! llm.c style: one flat buffer each for parameters, gradients, optimizer state and activations,
//! every backward written by hand. Kernels (`kernels`) are the backend boundary: the model calls
//! only them, so a CUDA backend can be added later without touching model code.

pub mod clip;
pub mod config;
pub mod kernels;
pub mod loss;
pub mod model;
pub mod optim;
pub mod phased;
pub mod profile;
pub mod rng;
pub mod sample;
pub mod schedule;

pub use config::{Ffn, ModelConfig, Norm, ParamSpec, Position};
pub use kernels::Precision;
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
