//! Models in and out of ferrolm: export to Hugging Face `transformers` (a `LlamaForCausalLM`
//! directory) and to GGUF (llama.cpp's format), and import of Hugging Face Llama directories.
//!
//! - [`llama`]: the name mapping between ferrolm's state dict and HF's / GGUF's, the q/k row
//!   permutation between interleaved-pair RoPE (ferrolm, Meta) and half-split RoPE (HF), and the
//!   check that a ferrolm config is expressible as a Llama;
//! - [`dtype`]: f32 → f16/bf16 conversion and Q8_0 blocks;
//! - [`hf_export`] / [`hf_import`]: checkpoint ↔ HF directory (config, weights, tokenizer);
//! - [`gguf`]: a GGUF v3 writer (and a reader, for tests and checks).

pub mod dtype;
pub mod gguf;
pub mod hf_export;
pub mod hf_import;
pub mod llama;

pub use dtype::DType;
pub use gguf::export_gguf;
pub use hf_export::export_hf;
pub use hf_import::import_hf;
