//! The Transformer LM: parameters, gradients and activations in flat preallocated buffers.
//!
//! Token embedding → n_layers blocks (pre-norm `z = x + MHA(RMSNorm(x))`, `y = z + FFN(RMSNorm(z))`,
//! or the post/none ablations) → final RMSNorm → untied LM head. The forward and every backward,
//! written by hand, are in `forward_backward.rs` (the residual connections and post-norms in
//! `residual.rs`); `infer.rs` runs incremental inference with a KV cache. All math goes through
//! the backend boundary `crate::ops`; the parameter offsets are `config::layout`.

mod forward_backward;
mod infer;
mod residual;

pub use crate::config::RMSNORM_EPS;
pub use forward_backward::Activations;
pub use infer::{BatchDecoder, Bf16Weights, KvCache};

use crate::config::Precision;
use crate::{ModelConfig, NnError, ParamSpec, Result, Rng};

/// Parameters and their gradients, one flat f32 buffer each, laid out by `config.param_specs()`.
pub struct Model {
    pub config: ModelConfig,
    pub specs: Vec<ParamSpec>,
    pub params: Vec<f32>,
    pub grads: Vec<f32>,
    /// The precision of the matmuls in `forward_*` / `forward_backward` and of the weights
    /// `forward_infer` reads (f32 by default; `Precision::Bf16` = bf16 operands with f32 sums,
    /// parameters and gradients stay f32; in generation a bf16 snapshot of the weights, taken
    /// when a `KvCache` starts a sequence).
    pub precision: Precision,
}

impl Model {
    /// Initialized as issue 3 says (truncated normal linears with variance 2/(d_in+d_out) cut at
    /// ±3σ, N(0,1) cut ±3 embedding, gains 1), deterministic from `seed`: tensors are filled in
    /// state-dict order from one `Rng` stream.
    pub fn new(config: ModelConfig, seed: u64) -> Result<Model> {
        let mut model = Model::zeros(config)?;
        let mut rng = Rng::new(seed);
        for spec in &model.specs {
            let dst = &mut model.params[spec.range()];
            match spec.shape.as_slice() {
                [_] => dst.fill(1.0),
                [d_out, d_in] => {
                    let std = if spec.name == "token_embeddings.weight" {
                        1.0
                    } else {
                        (2.0 / (d_in + d_out) as f64).sqrt()
                    };
                    for x in dst.iter_mut() {
                        *x = rng.trunc_normal(std, 3.0 * std) as f32;
                    }
                }
                other => unreachable!("parameter {} has shape {other:?}", spec.name),
            }
        }
        Ok(model)
    }

    /// A model with all parameters zero (for loading a checkpoint into).
    pub fn zeros(config: ModelConfig) -> Result<Model> {
        config.validate()?;
        let specs = config.param_specs();
        let n = specs.last().map_or(0, |s| s.range().end);
        Ok(Model {
            config,
            specs,
            params: vec![0.0; n],
            grads: vec![0.0; n],
            precision: Precision::F32,
        })
    }

    fn spec(&self, name: &str) -> Option<&ParamSpec> {
        self.specs.iter().find(|s| s.name == name)
    }

    /// The parameter tensor `name` (state-dict name), or None.
    pub fn param(&self, name: &str) -> Option<&[f32]> {
        let r = self.spec(name)?.range();
        Some(&self.params[r])
    }

    pub fn param_mut(&mut self, name: &str) -> Option<&mut [f32]> {
        let r = self.spec(name)?.range();
        Some(&mut self.params[r])
    }

    /// The gradient of parameter `name`, or None.
    pub fn grad(&self, name: &str) -> Option<&[f32]> {
        let r = self.spec(name)?.range();
        Some(&self.grads[r])
    }

    pub fn zero_grads(&mut self) {
        use rayon::prelude::*;
        self.grads.par_chunks_mut(1 << 16).for_each(|c| c.fill(0.0));
    }

    /// Errors unless every id < vocab_size.
    fn check_ids(&self, ids: &[u32], targets: bool) -> Result<()> {
        let vocab = self.config.vocab_size;
        match ids.iter().enumerate().find(|(_, &id)| id as usize >= vocab) {
            None => Ok(()),
            Some((pos, &id)) if targets => Err(NnError::TargetOutOfRange { id, pos, vocab }),
            Some((pos, &id)) => Err(NnError::TokenOutOfRange { id, pos, vocab }),
        }
    }
}
