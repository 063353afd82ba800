//! ferrolm's model as a Llama: which configs are expressible, the tensor names in Hugging Face's
//! and GGUF's conventions, and the q/k row permutation between the two RoPE layouts.
//!
//! ferrolm rotates interleaved pairs `(x[2j], x[2j+1])` of each head (Meta's original Llama and
//! GGUF's layout); HF's `LlamaAttention` rotates halves `(x[j], x[j + d_head/2])` (`rotate_half`).
//! The two give the same attention scores when the rows of W_q and W_k are permuted per head:
//! HF row `t·d_head/2 + j` = ferrolm row `2j + t` (t ∈ {0, 1}, j < d_head/2), which is what
//! transformers' `convert_llama_weights_to_hf.py` does with
//! `w.view(n_heads, d_head/2, 2, d_in).transpose(1, 2)`.

use anyhow::{bail, Context, Result};
use ferrolm_nn::model::Model;
use ferrolm_nn::{Ffn, ModelConfig, Norm, ParamSpec, Position};

/// RMSNorm epsilon of every ferrolm model (HF's `rms_norm_eps`, GGUF's
/// `llama.attention.layer_norm_rms_epsilon`).
pub const RMS_NORM_EPS: f32 = ferrolm_nn::model::RMSNORM_EPS;

/// Errors unless `c` is a pre-norm, RoPE, SwiGLU model (the only block Llama has), naming the
/// setting that blocks the export.
pub fn check_expressible(c: &ModelConfig) -> Result<()> {
    let mut why = Vec::new();
    match c.norm {
        Norm::Pre => {}
        Norm::Post => why.push("model.norm = \"post\" (Llama blocks are pre-norm)"),
        Norm::None => why.push("model.norm = \"none\" (Llama blocks have RMSNorms)"),
    }
    if c.position == Position::None {
        why.push("model.position = \"none\" (Llama uses RoPE)");
    }
    if c.ffn == Ffn::Silu {
        why.push("model.ffn = \"silu\" (Llama's MLP is SwiGLU: gate, up and down projections)");
    }
    if !why.is_empty() {
        bail!(
            "this model cannot be exported as a Llama: {}. Only pre-norm RoPE SwiGLU models \
             (the defaults) can be",
            why.join("; ")
        );
    }
    Ok(())
}

/// Whether a tensor's rows must be permuted between ferrolm's and HF's RoPE layouts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rows {
    /// Copied as is.
    Same,
    /// q or k projection: permuted per head (see the module docs).
    Rope,
}

/// One tensor in the three conventions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorName {
    pub ferrolm: String,
    pub hf: String,
    pub gguf: String,
    pub rows: Rows,
}

/// Every tensor of a Llama-expressible `c`, in ferrolm's state-dict order.
pub fn tensor_names(c: &ModelConfig) -> Vec<TensorName> {
    let t = |ferrolm: String, hf: String, gguf: String, rows| TensorName {
        ferrolm,
        hf,
        gguf,
        rows,
    };
    let mut out = vec![t(
        "token_embeddings.weight".into(),
        "model.embed_tokens.weight".into(),
        "token_embd.weight".into(),
        Rows::Same,
    )];
    for i in 0..c.n_layers {
        let l = |f: &str, h: &str, g: &str, rows| {
            t(
                format!("layers.{i}.{f}.weight"),
                format!("model.layers.{i}.{h}.weight"),
                format!("blk.{i}.{g}.weight"),
                rows,
            )
        };
        out.push(l("attn.q_proj", "self_attn.q_proj", "attn_q", Rows::Rope));
        out.push(l("attn.k_proj", "self_attn.k_proj", "attn_k", Rows::Rope));
        out.push(l("attn.v_proj", "self_attn.v_proj", "attn_v", Rows::Same));
        out.push(l(
            "attn.output_proj",
            "self_attn.o_proj",
            "attn_output",
            Rows::Same,
        ));
        out.push(l("ln1", "input_layernorm", "attn_norm", Rows::Same));
        out.push(l("ln2", "post_attention_layernorm", "ffn_norm", Rows::Same));
        out.push(l("ffn.w1", "mlp.gate_proj", "ffn_gate", Rows::Same));
        out.push(l("ffn.w2", "mlp.down_proj", "ffn_down", Rows::Same));
        out.push(l("ffn.w3", "mlp.up_proj", "ffn_up", Rows::Same));
    }
    out.push(t(
        "ln_final.weight".into(),
        "model.norm.weight".into(),
        "output_norm.weight".into(),
        Rows::Same,
    ));
    out.push(t(
        "lm_head.weight".into(),
        "lm_head.weight".into(),
        "output.weight".into(),
        Rows::Same,
    ));
    out
}

/// The spec (shape and place in `model.params`) of `model`'s tensor named `t.ferrolm`, or an
/// error naming it.
pub fn spec_of<'m>(model: &'m Model, t: &TensorName) -> Result<&'m ParamSpec> {
    model
        .specs
        .iter()
        .find(|s| s.name == t.ferrolm)
        .with_context(|| format!("the model has no tensor {}", t.ferrolm))
}

/// Interleaved-pair rows (ferrolm) → half-split rows (HF) of a q or k projection `w`
/// (n_heads·d_head rows of `cols` values each).
pub fn permute_to_half(w: &[f32], n_heads: usize, d_head: usize, cols: usize) -> Vec<f32> {
    permute(w, n_heads, d_head, cols, true)
}

/// Half-split rows (HF) → interleaved-pair rows (ferrolm): the inverse of [`permute_to_half`].
pub fn permute_to_interleaved(w: &[f32], n_heads: usize, d_head: usize, cols: usize) -> Vec<f32> {
    permute(w, n_heads, d_head, cols, false)
}

fn permute(w: &[f32], n_heads: usize, d_head: usize, cols: usize, to_half: bool) -> Vec<f32> {
    assert_eq!(
        w.len(),
        n_heads * d_head * cols,
        "permute: w is not (n_heads·d_head, cols)"
    );
    assert!(d_head.is_multiple_of(2), "permute: odd d_head {d_head}");
    let half = d_head / 2;
    let mut out = vec![0.0; w.len()];
    for h in 0..n_heads {
        for j in 0..half {
            for t in 0..2 {
                let inter = h * d_head + 2 * j + t;
                let split = h * d_head + t * half + j;
                let (src, dst) = if to_half { (inter, split) } else { (split, inter) };
                out[dst * cols..(dst + 1) * cols].copy_from_slice(&w[src * cols..(src + 1) * cols]);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutation_matches_the_view_transpose_formula() {
        // 2 heads of d_head 4, 1 column: row r holds r.
        let w: Vec<f32> = (0..8).map(|r| r as f32).collect();
        // view(2, 2, 2, 1).transpose(1, 2): per head rows [0, 2, 1, 3].
        assert_eq!(permute_to_half(&w, 2, 4, 1), [0., 2., 1., 3., 4., 6., 5., 7.]);
        assert_eq!(permute_to_interleaved(&permute_to_half(&w, 2, 4, 1), 2, 4, 1), w);
    }
}
