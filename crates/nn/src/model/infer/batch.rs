//! Continuous-batching decode: one new token for each of several independent sequences (each
//! with its own batch-1 `KvCache`, at its own position) through the model together, the linear
//! layers as one pass over each weight for all rows. Pre-norm configs run the whole step as one
//! call (`ops::decode_step_batch`, one parallel job); post-norm ones operation by operation
//! (`ops::project_batch` etc.). Each sequence's logits are bitwise those `forward_infer` gives it
//! alone, so batching never changes the text.

use super::{decode_weights, Bf16Weights, KvCache, Scratch};
use crate::config::{layout, Precision, RMSNORM_EPS};
use crate::model::Model;
use crate::ops::{self, CacheRefs};
use crate::{Ffn, NnError, Norm, Result};
use rayon::prelude::*;

/// The scratch and the bf16 weight snapshot of batched decode steps for one model.
pub struct BatchDecoder {
    bf16: Option<Bf16Weights>,
    /// The one-job batched step (configs `ops::decode_step_supported` accepts), built at first use.
    state: Option<ops::BatchDecodeState>,
    /// The rows of the step by operations (post-norm configs).
    s: Scratch,
    logits: Vec<f32>,
}

impl BatchDecoder {
    /// A decoder for `model` in `model.precision` (Bf16: a bf16 snapshot of its weights taken now;
    /// build a new decoder after the parameters change).
    pub fn new(model: &Model) -> BatchDecoder {
        BatchDecoder {
            bf16: (model.precision == Precision::Bf16).then(|| model.bf16_weights()),
            state: None,
            s: Scratch::default(),
            logits: Vec::new(),
        }
    }

    /// Appends `tokens[b]` to `caches[b]` (batch-1 caches, each at its own length, each with room
    /// for one more position) and writes that sequence's next-token logits to `logits[b]`
    /// (vocab values each).
    pub fn step(
        &mut self,
        model: &Model,
        caches: &mut [&mut KvCache],
        tokens: &[u32],
        logits: &mut [&mut [f32]],
    ) -> Result<()> {
        let c = &model.config;
        let n = caches.len();
        if n == 0 || tokens.len() != n || logits.len() != n {
            return Err(NnError::Shape(format!(
                "BatchDecoder::step: {} caches, {} tokens, {} logits",
                n,
                tokens.len(),
                logits.len()
            )));
        }
        for (cache, out) in caches.iter().zip(logits.iter()) {
            let ok = cache.config == *c && cache.batch == 1 && out.len() == c.vocab_size;
            if !ok || cache.len + 1 > cache.max_len.min(c.context_length) {
                return Err(NnError::Shape(
                    "BatchDecoder::step: a cache of another config, batch > 1, full, or logits not vocab long"
                        .into(),
                ));
            }
        }
        model.check_ids(tokens, false)?;
        if ops::decode_step_supported(c) {
            // The step as one parallel job.
            let w = decode_weights(model, &self.bf16);
            let state = state_for_pool(&mut self.state);
            let positions: Vec<usize> = caches.iter().map(|c| c.len).collect();
            let refs: Vec<CacheRefs<'_>> = caches
                .iter_mut()
                .map(|cache| CacheRefs {
                    k: &mut cache.k,
                    v: &mut cache.v,
                    k_t: &mut cache.k_t,
                    max_len: cache.max_len,
                    rope: cache.rope.as_ref(),
                })
                .collect();
            ops::decode_step_batch(&model.config, w, state, refs, &positions, tokens, logits);
        } else {
            self.step_by_ops(model, caches, tokens, logits);
        }
        for cache in caches.iter_mut() {
            cache.len += 1;
            cache.argmax = None;
        }
        Ok(())
    }

    /// `model.forward_infer` on one cache (a prompt, or a sequence decoded alone), reading the
    /// bf16 weights from this decoder's snapshot in `Precision::Bf16` (bitwise the same logits:
    /// the same snapshot of the same parameters) instead of a snapshot per cache.
    pub fn forward_infer(
        &self,
        model: &Model,
        cache: &mut KvCache,
        tokens: &[u32],
        logits: &mut [f32],
    ) -> Result<()> {
        match &self.bf16 {
            Some(w) if model.precision == Precision::Bf16 => {
                model.forward_infer_bf16(w, cache, tokens, logits)
            }
            _ => model.forward_infer(cache, tokens, logits),
        }
    }

    /// `forward_infer` of several prompts at once, `prompts[b]` appended to `caches[b]` (batch-1
    /// caches) and that sequence's next-token logits written to `logits[b]`: the prompts' rows go
    /// through each linear layer together (one pass over each weight for all of them), each
    /// sequence's attention over its own cache. Logits and caches bitwise those `forward_infer`
    /// gives each alone (the prompt path's products are `gemv_batch` rows, the same for any
    /// batch). A prompt of one token or of more than `ops::PROMPT_GEMV_MAX_ROWS` (the GEMM path),
    /// or a cache of batch > 1, runs alone through `forward_infer`. On an error no cache changed.
    pub fn prefill(
        &mut self,
        model: &Model,
        caches: &mut [&mut KvCache],
        prompts: &[&[u32]],
        logits: &mut [&mut [f32]],
    ) -> Result<()> {
        let n = caches.len();
        if prompts.len() != n || logits.len() != n {
            return Err(NnError::Shape(format!(
                "BatchDecoder::prefill: {n} caches, {} prompts, {} logits",
                prompts.len(),
                logits.len()
            )));
        }
        // joint[b]: prompt b runs with the others (at least two such prompts), else alone.
        let mut joint = Vec::with_capacity(n);
        for b in 0..n {
            let t = model.check_infer_call(caches[b], prompts[b], logits[b])?;
            joint.push(caches[b].batch == 1 && t > 1 && t <= ops::PROMPT_GEMV_MAX_ROWS);
        }
        if joint.iter().filter(|&&j| j).count() < 2 {
            joint.fill(false);
        }
        for b in (0..n).filter(|&b| !joint[b]) {
            self.forward_infer(model, caches[b], prompts[b], logits[b])?;
        }
        let mut group: Vec<&mut KvCache> = Vec::new();
        let mut outs: Vec<&mut [f32]> = Vec::new();
        let (mut tokens, mut rows) = (Vec::new(), Vec::new());
        let each = caches.iter_mut().zip(logits.iter_mut()).zip(prompts);
        for ((cache, out), prompt) in each.zip(&joint).filter(|(_, &j)| j).map(|(x, _)| x) {
            group.push(&mut **cache);
            outs.push(&mut **out);
            tokens.extend_from_slice(prompt);
            rows.push(prompt.len());
        }
        if group.is_empty() {
            return Ok(());
        }
        self.rows_through_model(model, &mut group, &tokens, &rows, &mut outs);
        for (cache, &t) in group.iter_mut().zip(&rows) {
            cache.len += t;
            cache.argmax = None;
        }
        Ok(())
    }

    /// Runs `f` once on every item, in parallel on the thread team of the batched steps (awake
    /// right after one): for per-sequence work between steps, such as sampling.
    pub fn for_each_mut<T: Send>(&mut self, items: &mut [T], f: impl Fn(&mut T) + Sync) {
        state_for_pool(&mut self.state).for_each_mut(items, f);
    }

    /// The step operation by operation (post-norm configs, which the fused step does not handle).
    fn step_by_ops(
        &mut self,
        model: &Model,
        caches: &mut [&mut KvCache],
        tokens: &[u32],
        logits: &mut [&mut [f32]],
    ) {
        let rows = vec![1; caches.len()];
        self.rows_through_model(model, caches, tokens, &rows, logits);
    }

    /// `rows[b]` new positions of sequence b (`tokens` holds them all, sequence after sequence)
    /// through the model, operation by operation; `logits[b]` gets the logits of sequence b's
    /// last position. The caches' lengths are left for the caller to advance.
    fn rows_through_model(
        &mut self,
        model: &Model,
        caches: &mut [&mut KvCache],
        tokens: &[u32],
        rows: &[usize],
        logits: &mut [&mut [f32]],
    ) {
        let c = &model.config;
        let (n, k) = (tokens.len(), caches.len());
        let (d, f) = (c.d_model, c.d_ff);
        self.s.fit(n, d, f);
        let p = &model.params;
        ops::embedding_forward(&mut self.s.x, tokens, &p[layout::embedding(c)], d);
        for l in 0..c.n_layers {
            self.layer(model, l, caches, rows);
        }
        let w = decode_weights(model, &self.bf16);
        // The final norm and the LM head on each sequence's last row only.
        let mut end = 0;
        let ends = rows.iter().map(|&t| {
            end += t;
            end
        });
        let normed = self.s.norm_last_rows(ends, &p[layout::ln_final(c)], d);
        self.logits.resize(k * c.vocab_size, 0.0);
        let jobs = &mut [(&mut self.logits[..], layout::lm_head(c))];
        ops::project_batch(normed, k, jobs, w);
        for (b, out) in logits.iter_mut().enumerate() {
            out.copy_from_slice(&self.logits[b * c.vocab_size..(b + 1) * c.vocab_size]);
        }
    }

    /// One block on the rows in `self.s.x` (updated in place): `rows[b]` positions of sequence
    /// b, their keys and values appended to its own cache; the same operations, sequence by
    /// sequence, as `Model::infer_layer`.
    fn layer(&mut self, model: &Model, l: usize, caches: &mut [&mut KvCache], rows: &[usize]) {
        let c = &model.config;
        let p = &model.params;
        let w = decode_weights(model, &self.bf16);
        let n: usize = rows.iter().sum();
        let (d, h, dh) = (c.d_model, c.n_heads, c.d_head());
        let (pre, post) = (c.norm == Norm::Pre, c.norm == Norm::Post);
        let r = layout::layer(c, l);
        if pre {
            self.s.norm_into_a(&p[r.ln1.clone()], n, d);
        } else {
            self.s.a.copy_from_slice(&self.s.x);
        }
        let jobs = &mut [
            (&mut self.s.q[..], r.wq),
            (&mut self.s.k[..], r.wk),
            (&mut self.s.v[..], r.wv),
        ];
        ops::project_batch(&self.s.a, n, jobs, w);
        // Each sequence's RoPE, key store and attention over its own cache, the sequences in
        // parallel (every operation is deterministic whatever the thread count).
        let spans = split_rows(&mut self.s.q, &mut self.s.k, &self.s.v, &mut self.s.atty, rows, d);
        spans
            .into_par_iter()
            .zip(caches.par_iter_mut())
            .for_each(|((q, k, v, atty), cache)| {
                let (pos, max_len, t) = (cache.len, cache.max_len, q.len() / d);
                if let Some(rope) = cache.rope.as_ref() {
                    let positions: Vec<usize> = (pos..pos + t).collect();
                    ops::rope_forward(q, &positions, h, rope);
                    ops::rope_forward(k, &positions, h, rope);
                }
                let layer = l * max_len * d..(l + 1) * max_len * d;
                ops::store_keys_transposed(&mut cache.k_t[layer.clone()], k, 1, t, pos, max_len, d);
                cache.k[layer.clone()][pos * d..(pos + t) * d].copy_from_slice(k);
                cache.v[layer.clone()][pos * d..(pos + t) * d].copy_from_slice(v);
                let (kc, kt, vc) = (
                    &cache.k[layer.clone()],
                    &cache.k_t[layer.clone()],
                    &cache.v[layer],
                );
                if t == 1 {
                    ops::attention_decode(atty, q, kt, vc, 1, pos + 1, max_len, h, dh);
                } else {
                    let shape = ops::AttnShape {
                        batch: 1,
                        seq: t,
                        n_heads: h,
                        d_head: dh,
                    };
                    ops::attention_forward_cached(atty, q, (kc, vc), shape, pos, max_len);
                }
            });
        ops::project_batch(&self.s.atty, n, &mut [(&mut self.s.tmp[..], r.wo)], w);
        ops::add_inplace(&mut self.s.x, &self.s.tmp);
        if post {
            self.s.renorm_x(&p[r.ln1], n, d);
        }
        if pre {
            self.s.norm_into_a(&p[r.ln2.clone()], n, d);
        } else {
            self.s.a.copy_from_slice(&self.s.x);
        }
        if c.ffn == Ffn::Swiglu {
            let jobs = &mut [(&mut self.s.h1[..], r.w1), (&mut self.s.h3[..], r.w3)];
            ops::project_batch(&self.s.a, n, jobs, w);
            ops::swiglu_forward(&mut self.s.hg, &self.s.h1, &self.s.h3);
        } else {
            ops::project_batch(&self.s.a, n, &mut [(&mut self.s.h1[..], r.w1)], w);
            ops::silu_forward(&mut self.s.hg, &self.s.h1);
        }
        ops::project_batch(&self.s.hg, n, &mut [(&mut self.s.tmp[..], r.w2)], w);
        ops::add_inplace(&mut self.s.x, &self.s.tmp);
        if post {
            self.s.renorm_x(&p[r.ln2], n, d);
        }
    }
}

/// The one-job step's state in `slot`, (re)built for the current pool's thread count.
impl Scratch {
    /// a = rmsnorm(x) with weights `w` (d), on n rows of d.
    fn norm_into_a(&mut self, w: &[f32], n: usize, d: usize) {
        ops::rmsnorm_forward(&mut self.a, &mut self.rstd, &self.x, w, n, d, RMSNORM_EPS);
    }

    /// x = rmsnorm(x) with weights `w` (d), on n rows of d (post-norm; through a copy in a).
    fn renorm_x(&mut self, w: &[f32], n: usize, d: usize) {
        self.a.copy_from_slice(&self.x);
        ops::rmsnorm_forward(&mut self.x, &mut self.rstd, &self.a, w, n, d, RMSNORM_EPS);
    }
}

/// The per-sequence row blocks (`rows[b]` rows of d each) of the q, k, v and attention buffers.
#[allow(clippy::type_complexity)]
fn split_rows<'a>(
    mut q: &'a mut [f32],
    mut k: &'a mut [f32],
    mut v: &'a [f32],
    mut atty: &'a mut [f32],
    rows: &[usize],
    d: usize,
) -> Vec<(&'a mut [f32], &'a mut [f32], &'a [f32], &'a mut [f32])> {
    let mut out = Vec::with_capacity(rows.len());
    for &t in rows {
        let (q0, q1) = std::mem::take(&mut q).split_at_mut(t * d);
        let (k0, k1) = std::mem::take(&mut k).split_at_mut(t * d);
        let (v0, v1) = v.split_at(t * d);
        let (a0, a1) = std::mem::take(&mut atty).split_at_mut(t * d);
        out.push((q0, k0, v0, a0));
        (q, k, v, atty) = (q1, k1, v1, a1);
    }
    out
}

fn state_for_pool(slot: &mut Option<ops::BatchDecodeState>) -> &mut ops::BatchDecodeState {
    let threads = rayon::current_num_threads();
    if !slot.as_ref().is_some_and(|s| s.fits(threads)) {
        *slot = Some(ops::BatchDecodeState::new(threads));
    }
    slot.as_mut().expect("just built")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ModelConfig, Position};

    /// Runs `check` on the two variants (RoPE, pre-norm, SwiGLU: the one-job step; no
    /// positions, post-norm, SiLU: step by operations), in f32 and bf16, on 1, 2 and 3 threads.
    fn for_each_variant(check: fn(&ModelConfig, Precision, usize)) {
        let base = ModelConfig {
            vocab_size: 97,
            context_length: 24,
            d_model: 48,
            n_layers: 2,
            n_heads: 3,
            d_ff: 72,
            ..ModelConfig::tiny()
        };
        let variants = [
            base.clone(),
            ModelConfig {
                position: Position::None,
                norm: Norm::Post,
                ffn: Ffn::Silu,
                ..base
            },
        ];
        crate::testing::for_each_pool(&[1, 2, 3], |threads, pool| {
            for c in variants.iter() {
                for precision in [Precision::F32, Precision::Bf16] {
                    pool.install(|| check(c, precision, threads));
                }
            }
        });
    }

    /// Sequences of different lengths decoded together (9 of them: more than the 8 rows of one
    /// kernel pass) give bitwise the logits each gets alone through `forward_infer`, with the
    /// sequences leaving and rejoining the batch (every variant, precision and thread count).
    #[test]
    fn batched_step_is_bitwise_each_sequence_alone() {
        for_each_variant(check_batched_equals_alone);
    }

    /// Prompts of different lengths prefilled together (a 1-token one among them, which runs
    /// alone) give bitwise the logits and cache contents `forward_infer` gives each alone, then a
    /// second round continues the same caches (every variant, precision and thread count). A
    /// prompt with an id outside the vocabulary fails the call and changes no cache.
    #[test]
    fn batched_prefill_is_bitwise_each_prompt_alone() {
        for_each_variant(check_prefill_equals_alone);
    }

    fn check_prefill_equals_alone(c: &ModelConfig, precision: Precision, threads: usize) {
        let mut model = Model::new(c.clone(), 5).unwrap();
        model.precision = precision;
        let mut dec = BatchDecoder::new(&model);
        let lens = [3usize, 1, 7, 2, 12, 5, 4];
        let fresh = || KvCache::new(c, 1, c.context_length);
        let mut alone: Vec<KvCache> = lens.iter().map(|_| fresh()).collect();
        let mut batched: Vec<KvCache> = lens.iter().map(|_| fresh()).collect();
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>();
        for round in 0..2 {
            let prompts: Vec<Vec<u32>> = lens
                .iter()
                .enumerate()
                .map(|(b, &len)| {
                    (0..len)
                        .map(|i| ((i * 17 + b * 5 + round * 3) % 97) as u32)
                        .collect()
                })
                .collect();
            let mut want = vec![vec![0.0f32; 97]; lens.len()];
            for b in 0..lens.len() {
                model
                    .forward_infer(&mut alone[b], &prompts[b], &mut want[b])
                    .unwrap();
            }
            let mut got = vec![vec![0.0f32; 97]; lens.len()];
            let refs: Vec<&[u32]> = prompts.iter().map(|p| &p[..]).collect();
            let mut caches: Vec<&mut KvCache> = batched.iter_mut().collect();
            let mut outs: Vec<&mut [f32]> = got.iter_mut().map(|v| &mut v[..]).collect();
            dec.prefill(&model, &mut caches, &refs, &mut outs).unwrap();
            for b in 0..lens.len() {
                let what = format!(
                    "{precision:?} {:?} {threads} threads round {round} prompt {b}",
                    c.norm
                );
                assert_eq!(bits(&got[b]), bits(&want[b]), "{what}: logits");
                assert_eq!(batched[b].len, alone[b].len, "{what}: length");
                let (x, y) = (&batched[b], &alone[b]);
                assert!(
                    bits(&x.k) == bits(&y.k) && bits(&x.v) == bits(&y.v),
                    "{what}: cache"
                );
                assert!(bits(&x.k_t) == bits(&y.k_t), "{what}: transposed keys");
            }
        }
        let lens_before: Vec<usize> = batched.iter().map(|x| x.len).collect();
        let bad: [&[u32]; 2] = [&[1, 2], &[3, 97]];
        let mut caches: Vec<&mut KvCache> = batched.iter_mut().take(2).collect();
        let mut got = vec![vec![0.0f32; 97]; 2];
        let mut outs: Vec<&mut [f32]> = got.iter_mut().map(|v| &mut v[..]).collect();
        assert!(dec.prefill(&model, &mut caches, &bad, &mut outs).is_err());
        assert_eq!(batched.iter().map(|x| x.len).collect::<Vec<_>>(), lens_before);
    }

    fn check_batched_equals_alone(c: &ModelConfig, precision: Precision, threads: usize) {
        let mut model = Model::new(c.clone(), 7).unwrap();
        model.precision = precision;
        let prompts: Vec<Vec<u32>> = (1..=9)
            .map(|len| (0..len).map(|i| (i * 13 + len) % 97).collect())
            .collect();
        let (mut alone, mut batched) = (Vec::new(), Vec::new());
        let mut logits = vec![vec![0.0f32; 97]; prompts.len()];
        for pr in &prompts {
            let mut ca = KvCache::new(c, 1, c.context_length);
            let mut cb = KvCache::new(c, 1, c.context_length);
            model.forward_infer(&mut ca, pr, &mut logits[0]).unwrap();
            model.forward_infer(&mut cb, pr, &mut logits[0]).unwrap();
            alone.push(ca);
            batched.push(cb);
        }
        let mut dec = BatchDecoder::new(&model);
        for step in 0..8u32 {
            // Steps of all nine, of every other one, of every third (sequences leave and rejoin).
            let every = [1, 2, 3, 1][step as usize % 4];
            let members: Vec<usize> = (0..prompts.len()).filter(|b| b % every == 0).collect();
            let tokens: Vec<u32> = members.iter().map(|&b| (b as u32 * 11 + step * 5) % 97).collect();
            let mut want = vec![vec![0.0f32; 97]; members.len()];
            for (i, &b) in members.iter().enumerate() {
                model
                    .forward_infer(&mut alone[b], &tokens[i..i + 1], &mut want[i])
                    .unwrap();
            }
            let mut caches: Vec<&mut KvCache> = batched
                .iter_mut()
                .enumerate()
                .filter(|(b, _)| b % every == 0)
                .map(|(_, cache)| cache)
                .collect();
            let mut outs: Vec<&mut [f32]> = logits
                .iter_mut()
                .take(members.len())
                .map(|v| &mut v[..])
                .collect();
            dec.step(&model, &mut caches, &tokens, &mut outs).unwrap();
            for (i, &b) in members.iter().enumerate() {
                let same = logits[i]
                    .iter()
                    .zip(&want[i])
                    .all(|(x, y)| x.to_bits() == y.to_bits());
                assert!(
                    same,
                    "{precision:?} {:?} {threads} threads step {step} sequence {b}",
                    c.position
                );
            }
        }
    }
}
