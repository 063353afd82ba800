//! Incremental inference with a key/value cache, for generation.

use super::{layout, Model, RMSNORM_EPS};
use crate::kernels::{self, Precision, RopeTable};
use crate::{Ffn, ModelConfig, NnError, Norm, Position, Result};

/// Key/value cache for incremental inference (generation), for `batch` sequences of up to `max_len`.
/// All sequences advance together: each `forward_infer` appends the same number of tokens to each.
pub struct KvCache {
    pub batch: usize,
    pub max_len: usize,
    /// Number of positions already in the cache.
    pub len: usize,
    config: ModelConfig,
    /// Keys (after RoPE) and values, per layer (batch, max_len, d_model).
    k: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    rope: Option<RopeTable>,
    positions: Vec<usize>,
    scratch: Scratch,
}

/// Buffers for the rows of one call, grown to the largest call seen.
#[derive(Default)]
struct Scratch {
    x: Vec<f32>,
    a: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    atty: Vec<f32>,
    tmp: Vec<f32>,
    rstd: Vec<f32>,
    h1: Vec<f32>,
    h3: Vec<f32>,
    hg: Vec<f32>,
    last: Vec<f32>,
}

impl KvCache {
    pub fn new(config: &ModelConfig, batch: usize, max_len: usize) -> KvCache {
        let d = config.d_model;
        let rope = (config.position == Position::Rope && config.d_head().is_multiple_of(2))
            .then(|| RopeTable::new(config.d_head(), max_len, config.rope_theta));
        KvCache {
            batch,
            max_len,
            len: 0,
            config: config.clone(),
            k: (0..config.n_layers)
                .map(|_| vec![0.0; batch * max_len * d])
                .collect(),
            v: (0..config.n_layers)
                .map(|_| vec![0.0; batch * max_len * d])
                .collect(),
            rope,
            positions: Vec::new(),
            scratch: Scratch::default(),
        }
    }

    /// Empties the cache (keeps its buffers) to start new sequences.
    pub fn reset(&mut self) {
        self.len = 0;
    }
}

fn resize(v: &mut Vec<f32>, len: usize) {
    v.resize(len, 0.0);
}

impl Model {
    /// Incremental inference: appends `tokens` (one new token per sequence in the cache's batch,
    /// or a whole prompt for batch 1) at positions cache.len.. and writes the logits of the last
    /// position of each sequence into `logits` (batch·vocab). Errors past max_len / context_length.
    ///
    /// In general `tokens` is (batch, t_new) row-major: t_new new tokens for each sequence.
    pub fn forward_infer(&self, cache: &mut KvCache, tokens: &[u32], logits: &mut [f32]) -> Result<()> {
        let c = &self.config;
        let (bsz, vocab) = (cache.batch, c.vocab_size);
        if cache.config != *c {
            return Err(NnError::Shape(
                "KV cache was built for a different model config".into(),
            ));
        }
        if bsz == 0 || tokens.is_empty() || !tokens.len().is_multiple_of(bsz) {
            return Err(NnError::Shape(format!(
                "forward_infer: {} tokens do not split into the cache's {bsz} sequences",
                tokens.len()
            )));
        }
        if logits.len() != bsz * vocab {
            return Err(NnError::Shape(format!(
                "forward_infer: logits has {} values, expected batch {bsz} × vocab {vocab}",
                logits.len()
            )));
        }
        let t_new = tokens.len() / bsz;
        let (start, end) = (cache.len, cache.len + t_new);
        if end > cache.max_len || end > c.context_length {
            return Err(NnError::Shape(format!(
                "forward_infer: {end} positions exceed the cache length {} or the context length {}",
                cache.max_len, c.context_length
            )));
        }
        self.check_ids(tokens, false)?;

        let p = &self.params;
        let n = bsz * t_new;
        let (d, f, h, dh, max_len) = (c.d_model, c.d_ff, c.n_heads, c.d_head(), cache.max_len);
        let (pre, post) = (c.norm == Norm::Pre, c.norm == Norm::Post);
        let s = &mut cache.scratch;
        for buf in [
            &mut s.x,
            &mut s.a,
            &mut s.q,
            &mut s.k,
            &mut s.v,
            &mut s.atty,
            &mut s.tmp,
        ] {
            resize(buf, n * d);
        }
        for buf in [&mut s.h1, &mut s.h3, &mut s.hg] {
            resize(buf, n * f);
        }
        resize(&mut s.rstd, n);
        cache.positions.clear();
        cache.positions.extend((0..n).map(|i| start + i % t_new));
        let positions = &cache.positions;

        kernels::embedding_forward(&mut s.x, tokens, &p[layout::embedding(c)], d);
        for l in 0..c.n_layers {
            let r = layout::layer(c, l);
            let a_in: &[f32] = if pre {
                kernels::rmsnorm_forward(&mut s.a, &mut s.rstd, &s.x, &p[r.ln1.clone()], n, d, RMSNORM_EPS);
                &s.a
            } else {
                &s.x
            };
            kernels::matmul_forward(Precision::F32, &mut s.q, a_in, &p[r.wq], n, d, d);
            kernels::matmul_forward(Precision::F32, &mut s.k, a_in, &p[r.wk], n, d, d);
            kernels::matmul_forward(Precision::F32, &mut s.v, a_in, &p[r.wv], n, d, d);
            if let Some(rope) = &cache.rope {
                kernels::rope_forward(&mut s.q, positions, h, rope);
                kernels::rope_forward(&mut s.k, positions, h, rope);
            }
            let (kc, vc) = (&mut cache.k[l], &mut cache.v[l]);
            for bi in 0..bsz {
                let dst = (bi * max_len + start) * d..(bi * max_len + end) * d;
                let src = bi * t_new * d..(bi + 1) * t_new * d;
                kc[dst.clone()].copy_from_slice(&s.k[src.clone()]);
                vc[dst].copy_from_slice(&s.v[src]);
            }
            kernels::attention_forward_cached(&mut s.atty, &s.q, kc, vc, bsz, t_new, start, max_len, h, dh);
            kernels::matmul_forward(Precision::F32, &mut s.tmp, &s.atty, &p[r.wo], n, d, d);
            kernels::add_inplace(&mut s.x, &s.tmp);
            if post {
                s.a.copy_from_slice(&s.x);
                kernels::rmsnorm_forward(&mut s.x, &mut s.rstd, &s.a, &p[r.ln1], n, d, RMSNORM_EPS);
            }
            let f_in: &[f32] = if pre {
                kernels::rmsnorm_forward(&mut s.a, &mut s.rstd, &s.x, &p[r.ln2.clone()], n, d, RMSNORM_EPS);
                &s.a
            } else {
                &s.x
            };
            kernels::matmul_forward(Precision::F32, &mut s.h1, f_in, &p[r.w1], n, d, f);
            if c.ffn == Ffn::Swiglu {
                kernels::matmul_forward(Precision::F32, &mut s.h3, f_in, &p[r.w3], n, d, f);
                kernels::swiglu_forward(&mut s.hg, &s.h1, &s.h3);
            } else {
                kernels::silu_forward(&mut s.hg, &s.h1);
            }
            kernels::matmul_forward(Precision::F32, &mut s.tmp, &s.hg, &p[r.w2], n, f, d);
            kernels::add_inplace(&mut s.x, &s.tmp);
            if post {
                s.a.copy_from_slice(&s.x);
                kernels::rmsnorm_forward(&mut s.x, &mut s.rstd, &s.a, &p[r.ln2], n, d, RMSNORM_EPS);
            }
        }
        // Final norm and LM head on the last position of each sequence only.
        resize(&mut s.last, bsz * d);
        for bi in 0..bsz {
            let row = (bi * t_new + t_new - 1) * d;
            s.last[bi * d..(bi + 1) * d].copy_from_slice(&s.x[row..row + d]);
        }
        resize(&mut s.a, bsz * d.max(1));
        let normed = &mut s.a[..bsz * d];
        kernels::rmsnorm_forward(
            normed,
            &mut s.rstd[..bsz],
            &s.last,
            &p[layout::ln_final(c)],
            bsz,
            d,
            RMSNORM_EPS,
        );
        kernels::matmul_forward(
            Precision::F32,
            logits,
            normed,
            &p[layout::lm_head(c)],
            bsz,
            d,
            vocab,
        );
        cache.len = end;
        Ok(())
    }
}
