//! Incremental inference with a key/value cache, for generation.

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
            cache.argmax = Some(ops::decode_step(
                c,
                &self.params,
                state,
                refs,
                start,
                tokens[0],
                logits,
                bf16,
            ));
            cache.len = end;
            return Ok(());
        }

        let p = &self.params;
        let n = bsz * t_new;
        let (d, f, max_len) = (c.d_model, c.d_ff, cache.max_len);
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
            self.infer_layer(l, s, kv, t_new, bf16);
        }
        // Final norm and LM head on the last position of each sequence only.
        resize(&mut s.last, bsz * d);
        for bi in 0..bsz {
            let row = (bi * t_new + t_new - 1) * d;
            s.last[bi * d..(bi + 1) * d].copy_from_slice(&s.x[row..row + d]);
        }
        resize(&mut s.a, bsz * d.max(1));
        let normed = &mut s.a[..bsz * d];
        ops::rmsnorm_forward(
            normed,
            &mut s.rstd[..bsz],
            &s.last,
            &p[layout::ln_final(c)],
            bsz,
            d,
            RMSNORM_EPS,
        );
        ops::project_rows(normed, bsz, &mut [(logits, layout::lm_head(c))], p, bf16);
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
    fn infer_layer(&self, l: usize, s: &mut Scratch, kv: LayerCache<'_>, t_new: usize, bf16: Option<&[u16]>) {
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
            p,
            bf16,
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
            ops::attention_forward_cached(&mut s.atty, &s.q, kc, vc, bsz, t_new, start, max_len, h, dh);
        }
        ops::project_rows(&s.atty, n, &mut [(&mut s.tmp, r.wo)], p, bf16);
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
            ops::project_rows(f_in, n, &mut [(&mut s.h1, r.w1), (&mut s.h3, r.w3)], p, bf16);
            ops::swiglu_forward(&mut s.hg, &s.h1, &s.h3);
        } else {
            ops::project_rows(f_in, n, &mut [(&mut s.h1, r.w1)], p, bf16);
            ops::silu_forward(&mut s.hg, &s.h1);
        }
        ops::project_rows(&s.hg, n, &mut [(&mut s.tmp, r.w2)], p, bf16);
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
mod tests {
    use super::*;

    fn config() -> ModelConfig {
        ModelConfig {
            vocab_size: 97,
            context_length: 16,
            d_model: 48,
            n_layers: 2,
            n_heads: 3,
            d_ff: 72,
            ..ModelConfig::tiny()
        }
    }

    /// Logits per step, batch 2: a `prompt`-token prompt per sequence, then one token per step
    /// (fixed tokens, so every run sees the same inputs).
    fn run(model: &Model, bf16: Option<&Bf16Weights>, prompt: usize) -> Vec<Vec<f32>> {
        let c = &model.config;
        let mut cache = KvCache::new(c, 2, 12);
        let mut logits = vec![0.0; 2 * c.vocab_size];
        let mut steps = Vec::new();
        let mut tokens: Vec<u32> = (0..2 * prompt as u32).map(|i| (i * 31 + 5) % 97).collect();
        for i in 0..12 - prompt as u32 {
            match bf16 {
                Some(w) => model.forward_infer_bf16(w, &mut cache, &tokens, &mut logits),
                None => model.forward_infer(&mut cache, &tokens, &mut logits),
            }
            .unwrap();
            steps.push(logits.clone());
            tokens = vec![(i * 7 + 3) % 97, (i * 13 + 2) % 97];
        }
        steps
    }

    /// The largest |a − b| over all steps, relative to the largest |a| of its step.
    fn worst_relative(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
        let mut worst = 0.0f32;
        for (a, b) in a.iter().zip(b) {
            let scale = a.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            for (x, y) in a.iter().zip(b) {
                worst = worst.max((x - y).abs() / scale);
            }
        }
        worst
    }

    #[test]
    fn bf16_decode_logits_are_within_tolerance_of_f32() {
        let model = Model::new(config(), 11).unwrap();
        let w = model.bf16_weights();
        // The same weights rounded to bf16 but read through the f32 path: with a 1-token prompt
        // (every call decodes) the bf16 path must agree with it to f32 rounding, since only the
        // storage of the weights differs.
        // (The embedding and the norm gains stay f32 in the bf16 path.)
        let mut rounded = Model::new(config(), 11).unwrap();
        let c = config();
        let mut matrices = vec![layout::lm_head(&c)];
        for l in 0..c.n_layers {
            let r = layout::layer(&c, l);
            matrices.extend([r.wq, r.wk, r.wv, r.wo, r.w1, r.w2, r.w3]);
        }
        for range in matrices {
            for p in &mut rounded.params[range] {
                *p = crate::cpu::simd::round_bf16(*p);
            }
        }
        let bf16_steps = run(&model, Some(&w), 1);
        let exact = worst_relative(&run(&rounded, None, 1), &bf16_steps);
        assert!(exact < 1e-5, "bf16 path vs rounded weights in f32: {exact}");
        // Against f32 weights: bf16 keeps 8 significant bits (rounding error ≤ 2^-9 per weight).
        // Also with a 5-token prompt (10 rows, through the f32 GEMM) before the decode steps.
        for prompt in [1, 5] {
            let worst = worst_relative(&run(&model, None, prompt), &run(&model, Some(&w), prompt));
            assert!(
                worst < 2e-2,
                "prompt {prompt}: bf16 logits differ from f32 by {worst} of the largest"
            );
            assert!(
                worst > 1e-5,
                "prompt {prompt}: the bf16 path was not taken ({worst})"
            );
        }
    }

    /// Logits of every call for batch 1: a `prompt`-token prompt, then single tokens (the decode
    /// step), all through the general path when `general` is set.
    fn run_batch1(model: &Model, bf16: Option<&Bf16Weights>, prompt: usize, general: bool) -> Vec<Vec<f32>> {
        FORCE_GENERAL_PATH.with(|f| f.set(general));
        let c = &model.config;
        let max_len = c.context_length.min(13);
        let mut cache = KvCache::new(c, 1, max_len);
        let mut logits = vec![0.0; c.vocab_size];
        let mut steps = Vec::new();
        let v = c.vocab_size as u32;
        let mut tokens: Vec<u32> = (0..prompt as u32).map(|i| (i * 31 + 5) % v).collect();
        for i in 0..(max_len - prompt) as u32 {
            match bf16 {
                Some(w) => model.forward_infer_bf16(w, &mut cache, &tokens, &mut logits),
                None => model.forward_infer(&mut cache, &tokens, &mut logits),
            }
            .unwrap();
            if !general && ops::decode_step_supported(c) && tokens.len() == 1 {
                assert_eq!(cache.last_argmax(), Some(crate::sample::argmax(&logits)));
            } else {
                assert_eq!(cache.last_argmax(), None);
            }
            steps.push(logits.clone());
            tokens = vec![(i * 7 + 3) % v];
        }
        FORCE_GENERAL_PATH.with(|f| f.set(false));
        // The decode step ran unless the general path was forced.
        assert_eq!(cache.decode.is_some(), !general && ops::decode_step_supported(c));
        steps
    }

    #[test]
    fn decode_step_is_bit_identical_to_the_general_path() {
        // Odd sizes (d_head 16, 10 and 5 (no RoPE), d_ff 72 and 100, vocab 97), every supported
        // norm / FFN / position variant, f32 and bf16 weights, prompts of 1 and 4 tokens (the
        // general path fills the cache the decode step then reads), 1, 2 and 3 threads, called
        // from inside the pool and from outside it.
        let variants = [
            config(),
            ModelConfig {
                d_model: 30,
                n_heads: 3,
                d_ff: 100,
                ..config()
            },
            ModelConfig {
                d_model: 15,
                n_heads: 3,
                position: Position::None,
                ..config()
            },
            ModelConfig {
                norm: Norm::None,
                ffn: Ffn::Silu,
                ..config()
            },
            ModelConfig {
                position: Position::None,
                n_layers: 3,
                ..config()
            },
            ModelConfig {
                vocab_size: 3000,
                d_model: 64,
                n_heads: 4,
                d_ff: 160,
                ..config()
            },
        ];
        for c in variants {
            let model = Model::new(c.clone(), 5).unwrap();
            let w = model.bf16_weights();
            for bf16 in [None, Some(&w)] {
                for prompt in [1, 4] {
                    let want = run_batch1(&model, bf16, prompt, true);
                    for threads in [1, 2, 3] {
                        let pool = rayon::ThreadPoolBuilder::new()
                            .num_threads(threads)
                            .build()
                            .unwrap();
                        let inside = pool.install(|| run_batch1(&model, bf16, prompt, false));
                        assert!(
                            inside == want,
                            "{c:?} bf16 {} prompt {prompt}: {threads} threads differ",
                            bf16.is_some()
                        );
                        // From a thread outside any pool (the calling thread then is the first
                        // participant and the global pool's workers the helpers).
                        assert!(run_batch1(&model, bf16, prompt, false) == want);
                    }
                }
            }
        }
    }

    #[test]
    fn kv_cache_stays_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<KvCache>();
    }

    #[test]
    fn decode_step_does_not_deadlock_when_called_from_busy_workers() {
        // Two generations at once on a 2-thread pool: each caller is a worker, and the helper it
        // asks for is the other, busy, worker.
        let model = Model::new(config(), 5).unwrap();
        let want = run_batch1(&model, None, 1, true);
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        let (a, b) = pool.install(|| {
            rayon::join(
                || run_batch1(&model, None, 1, false),
                || run_batch1(&model, None, 1, false),
            )
        });
        assert!(a == want && b == want);
    }

    /// `forward_infer` reads the weights in `Model::precision`, as training does: in bf16 the
    /// same logits, bit for bit, as `forward_infer_bf16` with the explicit snapshot, on the
    /// batched path and the batch-1 decode step; a new sequence takes a new snapshot.
    #[test]
    fn forward_infer_reads_the_weights_in_the_models_precision() {
        let mut model = Model::new(config(), 21).unwrap();
        let f32_logits = run(&model, None, 3);
        let w = model.bf16_weights();
        let (explicit, explicit1) = (run(&model, Some(&w), 3), run_batch1(&model, Some(&w), 2, false));
        model.precision = Precision::Bf16;
        assert_eq!(run(&model, None, 3), explicit);
        assert_eq!(run_batch1(&model, None, 2, false), explicit1);
        assert_ne!(explicit, f32_logits, "bf16 precision ignored");
        // After the parameters change, a reset cache reads the new ones.
        let mut cache = KvCache::new(&model.config, 1, 8);
        let mut logits = vec![0.0; model.config.vocab_size];
        model.forward_infer(&mut cache, &[1, 2], &mut logits).unwrap();
        model.params.iter_mut().for_each(|p| *p *= 0.5);
        cache.reset();
        model.forward_infer(&mut cache, &[1, 2], &mut logits).unwrap();
        let mut want = vec![0.0; model.config.vocab_size];
        let mut fresh = KvCache::new(&model.config, 1, 8);
        model
            .forward_infer_bf16(&model.bf16_weights(), &mut fresh, &[1, 2], &mut want)
            .unwrap();
        assert_eq!(logits, want);
    }

    #[test]
    fn bf16_weights_of_another_model_are_rejected() {
        let model = Model::new(config(), 11).unwrap();
        let other = Model::new(ModelConfig { d_ff: 80, ..config() }, 11).unwrap();
        let mut cache = KvCache::new(&model.config, 1, 4);
        let mut logits = vec![0.0; 97];
        let err = model.forward_infer_bf16(&other.bf16_weights(), &mut cache, &[1], &mut logits);
        assert!(err.is_err());
        assert_eq!(cache.len, 0);
    }
}
