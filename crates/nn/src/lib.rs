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
pub mod error;
pub mod loss;
pub mod model;
pub mod ops;
pub mod optim;
pub mod rng;
pub mod sample;
pub mod schedule;
#[cfg(test)]
mod testing;

pub use config::{Ffn, ModelConfig, Norm, ParamSpec, Position, Precision};
pub use error::{NnError, Result};
pub use rng::Rng;
