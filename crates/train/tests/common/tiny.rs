//! The tiny model of the tests of several crates (train's `common::tiny`; the serve and interop
//! tests include this file through `#[path]`).

use ferrolm_nn::ModelConfig;

/// `ModelConfig::tiny()` cut down to d_model 32 and 2 layers of 4 heads with d_ff 64 (a training
/// step takes about a millisecond), with `vocab_size` tokens and a context of `context_length`.
pub fn tiny_config(vocab_size: usize, context_length: usize) -> ModelConfig {
    ModelConfig {
        vocab_size,
        context_length,
        d_model: 32,
        n_layers: 2,
        n_heads: 4,
        d_ff: 64,
        ..ModelConfig::tiny()
    }
}
