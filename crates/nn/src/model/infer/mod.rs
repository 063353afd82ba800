//! Incremental inference with a key/value cache, for generation.

mod batch;

pub use batch::BatchDecoder;

use super::Model;
use crate::config::{layout, Precision, RMSNORM_EPS};
use crate::ops::{self, CacheRefs, DecodeState, RopeTable};
use crate::{Ffn, ModelConfig, NnError, Norm, Position, Result};

/// A bf16 copy of a model's parameters (round-to-nearest-even), for generation that reads half
/// the bytes per token: `Model::forward_infer_bf16` reads its matrices in the matrix-vector
/// products of decoding (f32 accumulation, f32 activations, norms and KV cache). A snapshot:
/// build it again after the parameters change.
pub struct Bf16Weights {
    params: Vec<u16>,
}

/// `model`'s parameters with the bf16 snapshot `bf16` when there is one.
fn decode_weights<'a>(model: &'a Model, bf16: &'a Option<Bf16Weights>) -> ops::DecodeWeights<'a> {
    ops::DecodeWeights {
        p: &model.params,
        bf16: bf16.as_ref().map(|w| &w.params[..]),
    }
}

impl Model {
    /// The bf16 copy of the current parameters, for `forward_infer_bf16`.
    pub fn bf16_weights(&self) -> Bf16Weights {
        Bf16Weights {
            params: ops::to_bf16(&self.params),
        }
    }
}

/// Key/value cache for incremental inference (generation), for `batch` sequences of up to `max_len`.
/// All sequences advance together: each `forward_infer` appends the same number of tokens to each.
pub struct KvCache {
    pub batch: usize,
    pub max_len: usize,
    /// Number of positions already in the cache.
    pub len: usize,
    config: ModelConfig,
    /// Keys (after RoPE) and values, (n_layers, batch, max_len, d_model).
    k: Vec<f32>,
    v: Vec<f32>,
    /// The same keys transposed per head (n_layers, batch, n_heads, d_head, max_len), for decoding.
    k_t: Vec<f32>,
    rope: Option<RopeTable>,
    positions: Vec<usize>,
    scratch: Scratch,
    /// The one-job decode step of batch 1 (`decode_step`), built at its first use.
    decode: Option<DecodeState>,
    /// The argmax of the last call's logits when it was a decode step.
    argmax: Option<u32>,
    /// The bf16 snapshot of the weights `forward_infer` reads for a model in `Precision::Bf16`,
    /// taken at the first call of each sequence (on an empty cache).
    bf16: Option<Bf16Weights>,
}

/// Buffers for the rows of one call, grown to the largest call seen (also `BatchDecoder`'s).
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

impl Scratch {
    /// Sizes the buffers for `n` rows: `d` (d_model) values a row in x..tmp, `f` (d_ff) in
    /// h1/h3/hg, one in rstd (`last` is sized by its user).
    fn fit(&mut self, n: usize, d: usize, f: usize) {
        for buf in [
            &mut self.x,
            &mut self.a,
            &mut self.q,
            &mut self.k,
            &mut self.v,
            &mut self.atty,
            &mut self.tmp,
        ] {
            resize(buf, n * d);
        }
        for buf in [&mut self.h1, &mut self.h3, &mut self.hg] {
            resize(buf, n * f);
        }
        resize(&mut self.rstd, n);
    }

    /// The final norm of the rows of `x` that end at each of `ends` (row index + 1; one per
    /// sequence, its last position): the rows are copied into `last` and normalized with the
    /// weights `gain` (d) into `a`, whose first ends.len()·d values this returns.
    fn norm_last_rows(
        &mut self,
        ends: impl ExactSizeIterator<Item = usize>,
        gain: &[f32],
        d: usize,
    ) -> &[f32] {
        let k = ends.len();
        self.last.clear();
        for end in ends {
            self.last.extend_from_slice(&self.x[(end - 1) * d..end * d]);
        }
        let normed = &mut self.a[..k * d];
        ops::rmsnorm_forward(normed, &mut self.rstd[..k], &self.last, gain, k, d, RMSNORM_EPS);
        &self.a[..k * d]
    }
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
            k: vec![0.0; config.n_layers * batch * max_len * d],
            v: vec![0.0; config.n_layers * batch * max_len * d],
            k_t: vec![0.0; config.n_layers * batch * max_len * d],
            rope,
            positions: Vec::new(),
            scratch: Scratch::default(),
            decode: None,
            argmax: None,
            bf16: None,
        }
    }

    /// Empties the cache (keeps its buffers) to start new sequences.
    pub fn reset(&mut self) {
        self.len = 0;
        self.argmax = None;
    }

    /// The index of the largest logit written by the last `forward_infer` (the first on ties, NaN
    /// never chosen: `sample::argmax`) when that call decoded one token of a batch-1 cache, where
    /// it comes for free with the LM head; None after other calls (use `sample::argmax`).
    pub fn last_argmax(&self) -> Option<u32> {
        self.argmax
    }
}

#[cfg(test)]
thread_local! {
    /// Tests: run every call on this thread through the general path (to compare against it).
    static FORCE_GENERAL_PATH: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether the batch-1 decode step is switched off on this thread (only ever by tests).
fn general_path_forced() -> bool {
    #[cfg(test)]
    return FORCE_GENERAL_PATH.with(|f| f.get());
    #[cfg(not(test))]
    false
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
    ///
    /// The weights are read in `self.precision`, as in training: with `Precision::Bf16` from a
    /// bf16 snapshot of the parameters that the cache takes at the first call of each sequence
    /// (when it is empty, after `KvCache::new` or `reset`), as `forward_infer_bf16` reads them.
    pub fn forward_infer(&self, cache: &mut KvCache, tokens: &[u32], logits: &mut [f32]) -> Result<()> {
        if self.precision == Precision::F32 {
            return self.forward_infer_with(cache, tokens, logits, None);
        }
        let snapshot = match cache.bf16.take() {
            Some(w) if cache.len > 0 && w.params.len() == self.params.len() => w,
            _ => self.bf16_weights(),
        };
        let result = self.forward_infer_with(cache, tokens, logits, Some(&snapshot.params));
        cache.bf16 = Some(snapshot);
        result
    }

    /// `forward_infer` with the weight matrices read in bf16 from `weights` (built by
    /// `bf16_weights` from this model) wherever a call has at most 4 rows (decoding); longer
    /// prompts run through the f32 GEMM on the f32 parameters.
    pub fn forward_infer_bf16(
        &self,
        weights: &Bf16Weights,
        cache: &mut KvCache,
        tokens: &[u32],
        logits: &mut [f32],
    ) -> Result<()> {
        if weights.params.len() != self.params.len() {
            return Err(NnError::Shape(format!(
                "forward_infer_bf16: the bf16 weights have {} values, the model {}",
                weights.params.len(),
                self.params.len()
            )));
        }
        self.forward_infer_with(cache, tokens, logits, Some(&weights.params))
    }

    fn forward_infer_with(
        &self,
        cache: &mut KvCache,
        tokens: &[u32],
        logits: &mut [f32],
        bf16: Option<&[u16]>,
    ) -> Result<()> {
        let t_new = self.check_infer_call(cache, tokens, logits)?;
        let c = &self.config;
        let w = ops::DecodeWeights {
            p: &self.params,
            bf16,
        };
        let bsz = cache.batch;
        let (start, end) = (cache.len, cache.len + t_new);
        cache.argmax = None;
        if bsz == 1 && t_new == 1 && ops::decode_step_supported(c) && !general_path_forced() {
            let threads = rayon::current_num_threads();
            if !cache.decode.as_ref().is_some_and(|s| s.fits(threads)) {
                cache.decode = Some(DecodeState::new(c, cache.max_len, threads));
            }
            let state = cache.decode.as_mut().expect("just built");
            let refs = CacheRefs {
                k: &mut cache.k,
                v: &mut cache.v,
                k_t: &mut cache.k_t,
                max_len: cache.max_len,
                rope: cache.rope.as_ref(),
            };
            cache.argmax = Some(ops::decode_step(c, w, state, refs, start, tokens[0], logits));
            cache.len = end;
            return Ok(());
        }

        let p = &self.params;
        let n = bsz * t_new;
        let (d, f, max_len) = (c.d_model, c.d_ff, cache.max_len);
        let s = &mut cache.scratch;
        s.fit(n, d, f);
        cache.positions.clear();
        cache.positions.extend((0..n).map(|i| start + i % t_new));

        ops::embedding_forward(&mut s.x, tokens, &p[layout::embedding(c)], d);
        for l in 0..c.n_layers {
            let layer = l * bsz * max_len * d..(l + 1) * bsz * max_len * d;
            let kv = LayerCache {
                k: &mut cache.k[layer.clone()],
                v: &mut cache.v[layer.clone()],
                k_t: &mut cache.k_t[layer],
                rope: cache.rope.as_ref(),
                positions: &cache.positions,
                batch: bsz,
                start,
                max_len,
            };
            self.infer_layer(l, s, kv, t_new, w);
        }
        // Final norm and LM head on the last position of each sequence only.
        let ends = (0..bsz).map(|b| (b + 1) * t_new);
        let normed = s.norm_last_rows(ends, &p[layout::ln_final(c)], d);
        ops::project_rows(normed, bsz, &mut [(logits, layout::lm_head(c))], w);
        cache.len = end;
        Ok(())
    }

    /// Checks a `forward_infer` call (config, token count, ids, logits length, room in the cache);
    /// returns the new positions per sequence.
    fn check_infer_call(&self, cache: &KvCache, tokens: &[u32], logits: &[f32]) -> Result<usize> {
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
        let end = cache.len + t_new;
        if end > cache.max_len || end > c.context_length {
            return Err(NnError::Shape(format!(
                "forward_infer: {end} positions exceed the cache length {} or the context length {}",
                cache.max_len, c.context_length
            )));
        }
        self.check_ids(tokens, false)?;
        Ok(t_new)
    }

    /// One block of the general inference path on the n = batch·t_new rows in `s.x` (updated in
    /// place), appending their keys and values at positions start.. of the layer's cache `kv`.
    fn infer_layer(
        &self,
        l: usize,
        s: &mut Scratch,
        kv: LayerCache<'_>,
        t_new: usize,
        w: ops::DecodeWeights,
    ) {
        let c = &self.config;
        let p = &self.params;
        let (bsz, start, max_len) = (kv.batch, kv.start, kv.max_len);
        let end = start + t_new;
        let n = bsz * t_new;
        let (d, h, dh) = (c.d_model, c.n_heads, c.d_head());
        let (pre, post) = (c.norm == Norm::Pre, c.norm == Norm::Post);
        let r = layout::layer(c, l);
        let a_in: &[f32] = if pre {
            ops::rmsnorm_forward(&mut s.a, &mut s.rstd, &s.x, &p[r.ln1.clone()], n, d, RMSNORM_EPS);
            &s.a
        } else {
            &s.x
        };
        ops::project_rows(
            a_in,
            n,
            &mut [(&mut s.q, r.wq), (&mut s.k, r.wk), (&mut s.v, r.wv)],
            w,
        );
        if let Some(rope) = kv.rope {
            ops::rope_forward(&mut s.q, kv.positions, h, rope);
            ops::rope_forward(&mut s.k, kv.positions, h, rope);
        }
        let (kc, vc, kt) = (kv.k, kv.v, kv.k_t);
        ops::store_keys_transposed(kt, &s.k, bsz, t_new, start, max_len, d);
        for bi in 0..bsz {
            let dst = (bi * max_len + start) * d..(bi * max_len + end) * d;
            let src = bi * t_new * d..(bi + 1) * t_new * d;
            kc[dst.clone()].copy_from_slice(&s.k[src.clone()]);
            vc[dst].copy_from_slice(&s.v[src]);
        }
        if t_new == 1 {
            ops::attention_decode(&mut s.atty, &s.q, kt, vc, bsz, end, max_len, h, dh);
        } else {
            let shape = ops::AttnShape {
                batch: bsz,
                seq: t_new,
                n_heads: h,
                d_head: dh,
            };
            ops::attention_forward_cached(&mut s.atty, &s.q, (kc, vc), shape, start, max_len);
        }
        ops::project_rows(&s.atty, n, &mut [(&mut s.tmp, r.wo)], w);
        ops::add_inplace(&mut s.x, &s.tmp);
        if post {
            s.a.copy_from_slice(&s.x);
            ops::rmsnorm_forward(&mut s.x, &mut s.rstd, &s.a, &p[r.ln1], n, d, RMSNORM_EPS);
        }
        let f_in: &[f32] = if pre {
            ops::rmsnorm_forward(&mut s.a, &mut s.rstd, &s.x, &p[r.ln2.clone()], n, d, RMSNORM_EPS);
            &s.a
        } else {
            &s.x
        };
        if c.ffn == Ffn::Swiglu {
            ops::project_rows(f_in, n, &mut [(&mut s.h1, r.w1), (&mut s.h3, r.w3)], w);
            ops::swiglu_forward(&mut s.hg, &s.h1, &s.h3);
        } else {
            ops::project_rows(f_in, n, &mut [(&mut s.h1, r.w1)], w);
            ops::silu_forward(&mut s.hg, &s.h1);
        }
        ops::project_rows(&s.hg, n, &mut [(&mut s.tmp, r.w2)], w);
        ops::add_inplace(&mut s.x, &s.tmp);
        if post {
            s.a.copy_from_slice(&s.x);
            ops::rmsnorm_forward(&mut s.x, &mut s.rstd, &s.a, &p[r.ln2], n, d, RMSNORM_EPS);
        }
    }
}

/// One layer's part of the KV cache for a general-path call: keys and values
/// (batch, max_len, d), keys transposed (batch, n_heads, d_head, max_len), and the positions of
/// the call's rows.
struct LayerCache<'a> {
    k: &'a mut [f32],
    v: &'a mut [f32],
    k_t: &'a mut [f32],
    rope: Option<&'a RopeTable>,
    positions: &'a [usize],
    batch: usize,
    start: usize,
    max_len: usize,
}

#[cfg(test)]
mod tests;
