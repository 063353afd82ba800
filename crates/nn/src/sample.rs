//! Sampling the next token from logits: greedy, temperature, top-p (nucleus), seeded.
//!
//! API CONTRACT (stub).

use crate::Rng;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SamplingConfig {
    /// 0 means greedy (argmax).
    pub temperature: f32,
    /// Nucleus mass in (0, 1]; 1 disables top-p.
    pub top_p: f32,
}

/// Draws a token id from `logits` (vocab). `scratch` is reused memory (any length) to avoid
/// allocating per token.
pub fn sample(logits: &[f32], cfg: SamplingConfig, rng: &mut Rng, scratch: &mut Vec<(f32, u32)>) -> u32 {
    let _ = (logits, cfg, rng, scratch);
    todo!()
}
