//! Where each parameter lives in the flat buffer, computed arithmetically in the order of
//! `ModelConfig::param_specs` (so a training step needs no name lookups or allocation).

use super::{Ffn, ModelConfig, Norm};
use std::ops::Range;

/// The ranges of one layer's tensors.
pub(crate) struct LayerRanges {
    pub wq: Range<usize>,
    pub wk: Range<usize>,
    pub wv: Range<usize>,
    pub wo: Range<usize>,
    /// Empty when norm is none.
    pub ln1: Range<usize>,
    pub ln2: Range<usize>,
    pub w1: Range<usize>,
    pub w2: Range<usize>,
    /// Empty for the SiLU FFN.
    pub w3: Range<usize>,
}

fn take(off: &mut usize, n: usize) -> Range<usize> {
    let r = *off..*off + n;
    *off += n;
    r
}

fn layer_size(c: &ModelConfig) -> usize {
    let (d, f) = (c.d_model, c.d_ff);
    let norms = if c.norm == Norm::None { 0 } else { 2 * d };
    let ffn = if c.ffn == Ffn::Swiglu {
        3 * d * f
    } else {
        2 * d * f
    };
    4 * d * d + norms + ffn
}

pub(crate) fn embedding(c: &ModelConfig) -> Range<usize> {
    0..c.vocab_size * c.d_model
}

pub(crate) fn layer(c: &ModelConfig, l: usize) -> LayerRanges {
    let (d, f) = (c.d_model, c.d_ff);
    let mut off = c.vocab_size * d + l * layer_size(c);
    let norm = if c.norm == Norm::None { 0 } else { d };
    LayerRanges {
        wq: take(&mut off, d * d),
        wk: take(&mut off, d * d),
        wv: take(&mut off, d * d),
        wo: take(&mut off, d * d),
        ln1: take(&mut off, norm),
        ln2: take(&mut off, norm),
        w1: take(&mut off, f * d),
        w2: take(&mut off, d * f),
        w3: take(&mut off, if c.ffn == Ffn::Swiglu { f * d } else { 0 }),
    }
}

pub(crate) fn ln_final(c: &ModelConfig) -> Range<usize> {
    let off = c.vocab_size * c.d_model + c.n_layers * layer_size(c);
    off..off + c.d_model
}

pub(crate) fn lm_head(c: &ModelConfig) -> Range<usize> {
    let off = ln_final(c).end;
    off..off + c.vocab_size * c.d_model
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Position;

    #[test]
    fn ranges_match_param_specs_for_every_ablation() {
        for norm in [Norm::Pre, Norm::Post, Norm::None] {
            for ffn in [Ffn::Swiglu, Ffn::Silu] {
                let c = ModelConfig {
                    vocab_size: 13,
                    context_length: 8,
                    d_model: 6,
                    n_layers: 2,
                    n_heads: 2,
                    d_ff: 10,
                    rope_theta: 10000.0,
                    norm,
                    position: Position::Rope,
                    ffn,
                };
                let specs = c.param_specs();
                let get = |name: &str| specs.iter().find(|s| s.name == name).map(|s| s.range());
                assert_eq!(get("token_embeddings.weight"), Some(embedding(&c)));
                for l in 0..2 {
                    let r = layer(&c, l);
                    assert_eq!(get(&format!("layers.{l}.attn.q_proj.weight")), Some(r.wq));
                    assert_eq!(get(&format!("layers.{l}.attn.k_proj.weight")), Some(r.wk));
                    assert_eq!(get(&format!("layers.{l}.attn.v_proj.weight")), Some(r.wv));
                    assert_eq!(get(&format!("layers.{l}.attn.output_proj.weight")), Some(r.wo));
                    // Tensors an ablation lacks have no spec and an empty range.
                    let opt = |r: &Range<usize>| (!r.is_empty()).then(|| r.clone());
                    assert_eq!(get(&format!("layers.{l}.ln1.weight")), opt(&r.ln1));
                    assert_eq!(get(&format!("layers.{l}.ln2.weight")), opt(&r.ln2));
                    assert_eq!(get(&format!("layers.{l}.ffn.w1.weight")), Some(r.w1));
                    assert_eq!(get(&format!("layers.{l}.ffn.w2.weight")), Some(r.w2));
                    assert_eq!(get(&format!("layers.{l}.ffn.w3.weight")), opt(&r.w3));
                }
                assert_eq!(get("ln_final.weight"), Some(ln_final(&c)));
                assert_eq!(get("lm_head.weight"), Some(lm_head(&c)));
                assert_eq!(lm_head(&c).end, c.num_params());
            }
        }
    }
}
