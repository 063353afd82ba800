//! AdamW, in the order `torch.optim.AdamW` applies it.
//!
//! API CONTRACT (stub).

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdamWConfig {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            weight_decay: 0.1,
        }
    }
}

/// AdamW state over one flat parameter buffer: first and second moments and the step count.
#[derive(Clone, Debug)]
pub struct AdamW {
    pub config: AdamWConfig,
    pub m: Vec<f32>,
    pub v: Vec<f32>,
    /// Steps taken so far.
    pub t: u64,
    /// Element ranges that get no weight decay (empty: all decay, the reference's default).
    pub no_decay: Vec<std::ops::Range<usize>>,
}

impl AdamW {
    pub fn new(config: AdamWConfig, num_params: usize) -> AdamW {
        AdamW {
            config,
            m: vec![0.0; num_params],
            v: vec![0.0; num_params],
            t: 0,
            no_decay: Vec::new(),
        }
    }

    /// One step with learning rate `lr` (the scheduled α; `config.lr` is not used here).
    pub fn step(&mut self, params: &mut [f32], grads: &[f32], lr: f32) {
        let _ = (params, grads, lr);
        todo!()
    }
}
