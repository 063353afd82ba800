//! The shared vocabulary of the crate: the model config (`ModelConfig`, `Norm`, `Ffn`,
//! `Position`), the parameter layout (names and shapes `ParamSpec`; offsets into the flat buffer
//! in `layout`), the matmul `Precision`, and the RMSNorm epsilon. Every level (model, operations,
//! CPU kernels) imports from here; this module imports from none of them.

pub mod layout;

use crate::error::{NnError, Result};
use serde::{Deserialize, Serialize};

/// RMSNorm epsilon (issue 3).
pub const RMSNORM_EPS: f32 = 1e-5;

/// The precision of the matmuls in the model's forward and backward passes and in generation
/// (`Model::precision`). Parameters, gradients, optimizer state, norms, softmax and attention
/// stay f32 either way. `ops::MatmulBackend::backend` names what it runs on on this machine.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// f32 everywhere.
    #[default]
    F32,
    /// bf16 operands, f32 accumulation (mixed precision, like PyTorch's bf16 autocast).
    Bf16,
}

impl Precision {
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
        }
    }
}

impl std::str::FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Precision, String> {
        match s {
            "f32" | "fp32" => Ok(Precision::F32),
            "bf16" => Ok(Precision::Bf16),
            _ => Err(format!("unknown precision {s:?}: use f32 or bf16")),
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Norm {
    /// `z = x + MHA(RMSNorm(x))`, `y = z + FFN(RMSNorm(z))` (the default).
    Pre,
    /// `z = RMSNorm(x + MHA(x))`, `y = RMSNorm(z + FFN(z))`.
    Post,
    /// No RMSNorm in the blocks (the final norm stays).
    None,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Position {
    Rope,
    None,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ffn {
    /// `W2(SiLU(W1 x) ⊙ W3 x)`.
    Swiglu,
    /// `W2 SiLU(W1 x)` (no w3 parameter).
    Silu,
}

/// Everything that fixes the shapes and the computation of a model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    pub vocab_size: usize,
    pub context_length: usize,
    pub d_model: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub d_ff: usize,
    #[serde(default = "default_theta")]
    pub rope_theta: f32,
    #[serde(default = "default_norm")]
    pub norm: Norm,
    #[serde(default = "default_position")]
    pub position: Position,
    #[serde(default = "default_ffn")]
    pub ffn: Ffn,
}

fn default_theta() -> f32 {
    10000.0
}
fn default_norm() -> Norm {
    Norm::Pre
}
fn default_position() -> Position {
    Position::Rope
}
fn default_ffn() -> Ffn {
    Ffn::Swiglu
}

/// One parameter tensor: its state-dict name, shape, and where it lives in the flat buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamSpec {
    pub name: String,
    pub shape: Vec<usize>,
    /// Offset in f32 elements into the flat parameter (and gradient, and optimizer) buffer.
    pub offset: usize,
}

impl ParamSpec {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
    pub fn range(&self) -> std::ops::Range<usize> {
        self.offset..self.offset + self.numel()
    }
}

impl ModelConfig {
    /// vocab 10000, context 256, d_model 512, d_ff 1344, 4 layers, 16 heads.
    pub fn small() -> ModelConfig {
        ModelConfig {
            vocab_size: 10000,
            context_length: 256,
            d_model: 512,
            n_layers: 4,
            n_heads: 16,
            d_ff: 1344,
            rope_theta: 10000.0,
            norm: Norm::Pre,
            position: Position::Rope,
            ffn: Ffn::Swiglu,
        }
    }

    /// Like `small` with d_model 256, d_ff 672, 8 heads.
    pub fn tiny() -> ModelConfig {
        ModelConfig {
            d_model: 256,
            d_ff: 672,
            n_heads: 8,
            ..ModelConfig::small()
        }
    }

    /// A preset by name: "small" or "tiny".
    pub fn preset(name: &str) -> Option<ModelConfig> {
        match name {
            "small" => Some(Self::small()),
            "tiny" => Some(Self::tiny()),
            _ => None,
        }
    }

    pub fn d_head(&self) -> usize {
        self.d_model / self.n_heads
    }

    /// Checks that the sizes are usable; says which field is wrong and why.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(NnError::Config(m));
        if self.vocab_size == 0 || self.context_length == 0 || self.d_model == 0 || self.d_ff == 0 {
            return bad("vocab_size, context_length, d_model and d_ff must be positive".into());
        }
        if self.n_heads == 0 || !self.d_model.is_multiple_of(self.n_heads) {
            return bad(format!(
                "d_model {} is not divisible by n_heads {}",
                self.d_model, self.n_heads
            ));
        }
        if self.position == Position::Rope && !self.d_head().is_multiple_of(2) {
            return bad(format!(
                "RoPE needs an even head size, got d_head {}",
                self.d_head()
            ));
        }
        if self.vocab_size > u32::MAX as usize {
            return bad("vocab_size must fit in u32".into());
        }
        if !self.rope_theta.is_finite() || self.rope_theta <= 0.0 {
            return bad(format!("rope_theta must be positive, got {}", self.rope_theta));
        }
        Ok(())
    }

    /// The parameters in state-dict order with their offsets in the flat buffer:
    /// `token_embeddings.weight` (vocab, d_model); per layer i: `layers.{i}.attn.{q,k,v,output}_proj.weight`
    /// (d_model, d_model), `layers.{i}.ln1.weight` (d_model) and `layers.{i}.ln2.weight` (d_model) unless
    /// norm is none, `layers.{i}.ffn.w1.weight` (d_ff, d_model), `layers.{i}.ffn.w2.weight` (d_model, d_ff),
    /// `layers.{i}.ffn.w3.weight` (d_ff, d_model) for SwiGLU; `ln_final.weight` (d_model);
    /// `lm_head.weight` (vocab, d_model).
    pub fn param_specs(&self) -> Vec<ParamSpec> {
        let (v, d, f) = (self.vocab_size, self.d_model, self.d_ff);
        let mut specs = Vec::new();
        let mut offset = 0;
        let mut push = |name: String, shape: Vec<usize>| {
            let numel: usize = shape.iter().product();
            specs.push(ParamSpec { name, shape, offset });
            offset += numel;
        };
        push("token_embeddings.weight".into(), vec![v, d]);
        for i in 0..self.n_layers {
            for p in ["q", "k", "v", "output"] {
                push(format!("layers.{i}.attn.{p}_proj.weight"), vec![d, d]);
            }
            if self.norm != Norm::None {
                push(format!("layers.{i}.ln1.weight"), vec![d]);
                push(format!("layers.{i}.ln2.weight"), vec![d]);
            }
            push(format!("layers.{i}.ffn.w1.weight"), vec![f, d]);
            push(format!("layers.{i}.ffn.w2.weight"), vec![d, f]);
            if self.ffn == Ffn::Swiglu {
                push(format!("layers.{i}.ffn.w3.weight"), vec![f, d]);
            }
        }
        push("ln_final.weight".into(), vec![d]);
        push("lm_head.weight".into(), vec![v, d]);
        specs
    }

    /// Total number of parameters (the flat buffer's length).
    pub fn num_params(&self) -> usize {
        self.param_specs().iter().map(|s| s.numel()).sum()
    }

    /// FLOPs per token of one training step (forward + backward), as issue 3 counts them:
    /// 6·(parameters excluding the embedding) + 12·n_layers·d_model·seq.
    pub fn train_flops_per_token(&self, seq: usize) -> f64 {
        let non_emb = self.num_params() - self.vocab_size * self.d_model;
        6.0 * non_emb as f64 + 12.0 * (self.n_layers * self.d_model * seq) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_have_the_documented_sizes() {
        let s = ModelConfig::small();
        s.validate().unwrap();
        // emb + head: 2·10000·512; per layer 4·512² + 2·512 + 3·1344·512; final norm 512.
        let expect = 2 * 10000 * 512 + 4 * (4 * 512 * 512 + 2 * 512 + 3 * 1344 * 512) + 512;
        assert_eq!(s.num_params(), expect);
        let specs = s.param_specs();
        assert_eq!(specs[0].name, "token_embeddings.weight");
        assert_eq!(specs.last().unwrap().name, "lm_head.weight");
        assert_eq!(specs.last().unwrap().range().end, expect);
        ModelConfig::tiny().validate().unwrap();
    }

    #[test]
    fn ablations_change_the_layout_and_bad_configs_are_rejected() {
        let mut c = ModelConfig::tiny();
        c.norm = Norm::None;
        c.ffn = Ffn::Silu;
        let names: Vec<String> = c.param_specs().into_iter().map(|s| s.name).collect();
        assert!(!names.iter().any(|n| n.contains("ln1") || n.contains("w3")));
        c.n_heads = 7;
        assert!(c.validate().is_err());
        let json = serde_json::to_string(&ModelConfig::small()).unwrap();
        let back: ModelConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, ModelConfig::small());
    }

    #[test]
    fn precision_parses_its_names() {
        assert_eq!("bf16".parse::<Precision>(), Ok(Precision::Bf16));
        assert!("fp8".parse::<Precision>().unwrap_err().contains("f32 or bf16"));
    }
}
