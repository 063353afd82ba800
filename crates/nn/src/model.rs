//! The Transformer LM: parameters, gradients and activations in flat preallocated buffers.
//!
//! API CONTRACT (stub; the nn owner replaces the bodies, keeps the signatures or updates callers).

use crate::{ModelConfig, ParamSpec, Result, Rng};

/// Parameters and their gradients, one flat f32 buffer each, laid out by `config.param_specs()`.
pub struct Model {
    pub config: ModelConfig,
    pub specs: Vec<ParamSpec>,
    pub params: Vec<f32>,
    pub grads: Vec<f32>,
}

/// Activation buffers for training on (batch, seq) tokens, allocated once and reused every step.
pub struct Activations {
    pub batch: usize,
    pub seq: usize,
}

/// Key/value cache for incremental inference (generation), for `batch` sequences of up to `max_len`.
pub struct KvCache {
    pub batch: usize,
    pub max_len: usize,
    /// Number of positions already in the cache.
    pub len: usize,
}

impl Model {
    /// Initialized as issue 3 says (truncated normal linears, N(0,1) cut ±3 embedding, gains 1),
    /// deterministic from `seed`.
    pub fn new(config: ModelConfig, seed: u64) -> Result<Model> {
        let _ = (config, Rng::new(seed));
        todo!()
    }

    /// A model with all parameters zero (for loading a checkpoint into).
    pub fn zeros(config: ModelConfig) -> Result<Model> {
        let _ = config;
        todo!()
    }

    /// The parameter tensor `name` (state-dict name), or None.
    pub fn param(&self, name: &str) -> Option<&[f32]> {
        let _ = name;
        todo!()
    }

    pub fn param_mut(&mut self, name: &str) -> Option<&mut [f32]> {
        let _ = name;
        todo!()
    }

    pub fn zero_grads(&mut self) {
        self.grads.iter_mut().for_each(|g| *g = 0.0);
    }

    /// Forward and backward on `inputs`/`targets` (batch·seq ids each, row-major (batch, seq)),
    /// seq ≤ context_length. Returns the mean cross-entropy loss over the batch·seq positions
    /// and ADDS the gradient of that mean loss into `self.grads` (call `zero_grads` first;
    /// accumulation over micro-batches sums, the caller scales by 1/k).
    /// Errors on an id ≥ vocab_size or shapes that do not match `acts`.
    pub fn forward_backward(
        &mut self,
        acts: &mut Activations,
        inputs: &[u32],
        targets: &[u32],
    ) -> Result<f32> {
        let _ = (acts, inputs, targets);
        todo!()
    }

    /// Forward only: the mean loss (for evaluation); does not touch gradients.
    pub fn forward_loss(&self, acts: &mut Activations, inputs: &[u32], targets: &[u32]) -> Result<f32> {
        let _ = (acts, inputs, targets);
        todo!()
    }

    /// Incremental inference: appends `tokens` (one new token per sequence in the cache's batch,
    /// or a whole prompt for batch 1) at positions cache.len.. and writes the logits of the last
    /// position of each sequence into `logits` (batch·vocab). Errors past max_len / context_length.
    pub fn forward_infer(&self, cache: &mut KvCache, tokens: &[u32], logits: &mut [f32]) -> Result<()> {
        let _ = (cache, tokens, logits);
        todo!()
    }
}

impl Activations {
    pub fn new(config: &ModelConfig, batch: usize, seq: usize) -> Activations {
        let _ = config;
        Activations { batch, seq }
    }
}

impl KvCache {
    pub fn new(config: &ModelConfig, batch: usize, max_len: usize) -> KvCache {
        let _ = config;
        KvCache {
            batch,
            max_len,
            len: 0,
        }
    }
}
