//! One decode step of several independent sequences (continuous batching: one new token each,
//! each with its own batch-1 KV cache at its own position) as ONE parallel job.
//!
//! The same phases as the batch-1 step (`step.rs`: per layer QKV, attention, Wo, W1/W3, W2, then
//! the LM head) on the persistent thread team (`phased`), so a step wakes no pool and makes no
//! rayon call: each product chunk reads its weight rows once for all the sequences
//! (`gemv_batch::rows_strided`), and the attention phase is split over (sequence, head) pairs.
//! Every value is computed by the kernels of the batch-1 step in the same order (row products
//! bitwise `gemv_rows`'s, `rmsnorm_row`, `rope_forward_span`, `decode_head`, `swiglu_rows`, the
//! same residual adds), so each sequence's logits are bit-identical to `decode_step` on it alone,
//! whatever it is batched with and whatever the number of threads.

use super::phased::{run_phased, Team};
use super::seq::Seq;
use super::seq::{CacheRefs, Shared};
use super::step::{rows, rows_per_chunk, Chunks, Core, Local, Plan, Residual};
use crate::config::{layout, RMSNORM_EPS};
use crate::cpu::fastmath;
use crate::cpu::gemm::gemv::{DecodeWeights, Weights};
use crate::cpu::gemm::gemv_batch::rows_strided;
use crate::cpu::rmsnorm::rmsnorm_row;
use crate::ModelConfig;
use std::ops::Range;

/// The scratch of batched decode steps for one config and thread count: the step's activations
/// (one row per sequence) and the per-participant buffers, grown to the largest batch seen.
pub struct BatchDecodeState {
    participants: usize,
    chunks: Vec<usize>,
    locals: Vec<Local>,
    /// The helpers, kept awake from one step to the next.
    team: Team,
    /// Residual stream (B, d), q/k/v (B, 3d), attention output (B, d), gated FFN hidden (B, d_ff).
    x: Vec<f32>,
    qkv: Vec<f32>,
    atty: Vec<f32>,
    hg: Vec<f32>,
}

impl BatchDecodeState {
    /// Scratch for `participants` threads (at least 1); buffers grow at the first steps.
    pub fn new(participants: usize) -> BatchDecodeState {
        let p = participants.max(1);
        BatchDecodeState {
            participants: p,
            chunks: Vec::new(),
            locals: (0..p).map(|_| Local::default()).collect(),
            team: Team::default(),
            x: Vec::new(),
            qkv: Vec::new(),
            atty: Vec::new(),
            hg: Vec::new(),
        }
    }

    /// Whether this state was built for `participants` threads.
    pub fn fits(&self, participants: usize) -> bool {
        self.participants == participants.max(1)
    }

    /// Runs `f` once on every item, the items shared out over the step's thread team (whose
    /// helpers are still awake from the last step: per-sequence work between steps, such as
    /// sampling, then wakes no pool and does not wait for a lingering helper to return to it).
    pub fn for_each_mut<T: Send>(&mut self, items: &mut [T], f: impl Fn(&mut T) + Sync) {
        let n = items.len();
        let base = ItemsPtr(items.as_mut_ptr());
        let base = &base;
        run_phased(
            &mut self.team,
            &[n],
            &mut self.locals,
            |_, _| {},
            |_, _, i| {
                // SAFETY: run_phased runs each chunk i < n exactly once, so item i is reached
                // by one thread only; `items` is borrowed mutably until run_phased returns.
                f(unsafe { &mut *base.0.add(i) })
            },
        );
    }

    /// The split of a step of `batch` sequences (chunks per phase into `self.chunks`), with the
    /// buffers grown to fit it.
    fn plan(&mut self, c: &ModelConfig, batch: usize, max_len: usize) -> Plan {
        let (d, f, v, h) = (c.d_model, c.d_ff, c.vocab_size, c.n_heads);
        let p = self.participants;
        let plan = Plan {
            qkv_rows: rows_per_chunk(3 * d, p),
            wo_rows: rows_per_chunk(d, p),
            ffn_rows: rows_per_chunk(f, p),
            w2_rows: rows_per_chunk(d, p),
            head_rows: rows_per_chunk(v, p),
            units: if p <= 1 {
                (batch * h).max(1)
            } else {
                (batch * h).div_ceil(2 * p).max(1)
            },
        };
        self.chunks.clear();
        for _ in 0..c.n_layers {
            self.chunks.extend([
                (3 * d).div_ceil(plan.qkv_rows),
                (batch * h).div_ceil(plan.units),
                d.div_ceil(plan.wo_rows),
                f.div_ceil(plan.ffn_rows),
                d.div_ceil(plan.w2_rows),
            ]);
        }
        self.chunks.push(v.div_ceil(plan.head_rows));
        let widest = [
            plan.qkv_rows,
            plan.wo_rows,
            plan.ffn_rows,
            plan.w2_rows,
            plan.head_rows,
        ]
        .into_iter()
        .max()
        .unwrap_or(0);
        for l in self.locals.iter_mut() {
            grow(&mut l.a, batch * d);
            grow(&mut l.t1, batch * widest);
            grow(&mut l.t3, batch * plan.ffn_rows);
            grow(&mut l.scores, max_len);
        }
        grow(&mut self.x, batch * d);
        grow(&mut self.qkv, batch * 3 * d);
        grow(&mut self.atty, batch * d);
        grow(&mut self.hg, batch * f);
        plan
    }
}

/// The items of `for_each_mut`, handed to the participants one element each.
struct ItemsPtr<T>(*mut T);

// SAFETY: each element is handed to exactly one participant (see `for_each_mut`), so sharing the
// pointer sends the elements, which are Send.
unsafe impl<T: Send> Sync for ItemsPtr<T> {}

/// Grows `v` to at least `len` zeros (never shrinks: the scratch keeps the largest batch seen).
fn grow(v: &mut Vec<f32>, len: usize) {
    if v.len() < len {
        v.resize(len, 0.0);
    }
}

/// Appends `tokens[b]` at position `positions[b]` of the batch-1 cache `caches[b]` for every
/// sequence b and writes its next-token logits to `logits[b]` (vocab each): for each sequence
/// bitwise what `decode_step` gives it alone, computed as one parallel job over
/// `rayon::current_num_threads()` participants (see the module doc). The weight matrices are
/// read from the bf16 snapshot when `w` has one. The caller checks the shapes, the tokens, room
/// in each cache and that the config is `step::supported`.
pub fn decode_step_batch(
    c: &ModelConfig,
    w: DecodeWeights,
    state: &mut BatchDecodeState,
    caches: Vec<CacheRefs<'_>>,
    positions: &[usize],
    tokens: &[u32],
    logits: &mut [&mut [f32]],
) {
    let n = caches.len();
    let (d, vocab) = (c.d_model, c.vocab_size);
    assert!(
        n > 0 && positions.len() == n && tokens.len() == n && logits.len() == n,
        "decode_step_batch: caches, positions, tokens and logits differ in number"
    );
    let mut longest = 0;
    for ((cache, &pos), out) in caches.iter().zip(positions).zip(logits.iter()) {
        assert!(
            pos < cache.max_len,
            "decode_step_batch: position {pos} past the cache"
        );
        assert_eq!(out.len(), vocab, "decode_step_batch: logits");
        for buf in [&cache.k, &cache.v, &cache.k_t] {
            assert_eq!(
                buf.len(),
                c.n_layers * cache.max_len * d,
                "decode_step_batch: cache size"
            );
        }
        longest = longest.max(cache.max_len);
    }
    let plan = state.plan(c, n, longest);
    let emb = &w.p[layout::embedding(c)];
    for (b, &t) in tokens.iter().enumerate() {
        let t = t as usize;
        state.x[b * d..(b + 1) * d].copy_from_slice(&emb[t * d..(t + 1) * d]);
    }
    let seqs: Vec<Seq<'_>> = caches
        .into_iter()
        .zip(positions)
        .map(|(cache, &pos)| Seq::new(cache, pos))
        .collect();
    let acts = [
        &mut state.x[..n * d],
        &mut state.qkv[..n * 3 * d],
        &mut state.atty[..n * d],
        &mut state.hg[..n * c.d_ff],
    ];
    let step = BatchStep {
        core: Core::new(c, w, plan, acts),
        n,
        seqs,
        outs: logits.iter_mut().map(|o| Shared::new(o)).collect(),
    };
    step.run(&mut state.team, &state.chunks, &mut state.locals);
}

/// One batched step's inputs and shared buffers, read by every participant.
///
/// SAFETY (all `Shared` accesses in the methods), as for `step::Step`, row by row: `run_phased`
/// finishes every chunk of a phase before any chunk of the next starts and runs each chunk once.
/// - QKV: reads x (prepare), writes its own columns of every sequence's qkv row and, of this
///   layer's caches, the elements of each sequence's position in those columns.
/// - attention: reads qkv and the layer's caches (written only in the QKV phase), writes the
///   columns of its own (sequence, head) pairs of atty.
/// - Wo / W2: read atty / hg, write their own columns of every sequence's row of x.
/// - W1/W3: reads x (prepare), writes its own columns of every row of hg.
/// - head: reads x (prepare), writes its own rows of every sequence's logits.
///
/// So within a phase every element is written by at most one chunk, and nothing written in a
/// phase is read in it.
struct BatchStep<'a> {
    /// The plan, and the activations x, qkv, atty, hg (one row per sequence).
    core: Core<'a>,
    /// Sequences in the step.
    n: usize,
    seqs: Vec<Seq<'a>>,
    outs: Vec<Shared<'a>>,
}

impl BatchStep<'_> {
    /// The weight rows `r` (k values each) of the matrix starting at parameter `w0`, in the
    /// precision the step reads.
    #[inline(always)]
    fn weights(&self, w0: usize, r: &Range<usize>, k: usize) -> Weights<'_> {
        self.core.weights(w0 + r.start * k..w0 + r.end * k)
    }

    /// `t (n, r.len()) = input (n, k) · rows r of the matrix at w0`ᵀ.
    fn product(&self, t: &mut [f32], w0: usize, r: &Range<usize>, input: &[f32], k: usize) {
        let len = r.len();
        rows_strided(t, (1, len), self.weights(w0, r, k), input, self.n, k);
    }
}

impl Chunks for BatchStep<'_> {
    /// Before a participant's first chunk of a phase: the normalized inputs of the phases that
    /// read x (QKV, W1/W3, head) into `local.a`, row by row.
    fn prepare(&self, local: &mut Local, phase: usize) {
        let Some(gain) = self.core.x_gain(phase) else {
            return;
        };
        let d = self.core.c.d_model;
        // SAFETY: see `BatchStep` (x is not written in these phases).
        let xs = unsafe { self.core.x.all() };
        for (a, x) in local.a[..self.n * d].chunks_exact_mut(d).zip(xs.chunks_exact(d)) {
            if self.core.normalizes(phase) {
                rmsnorm_row(a, x, &self.core.w.p[gain.clone()], RMSNORM_EPS);
            } else {
                a.copy_from_slice(x);
            }
        }
    }

    fn core(&self) -> &Core<'_> {
        &self.core
    }

    /// LM-head rows of the chunk for every sequence.
    fn head(&self, local: &mut Local, _chunk: usize, r: Range<usize>) {
        let d = self.core.c.d_model;
        let len = r.len();
        let t = &mut local.t1[..self.n * len];
        self.product(
            t,
            layout::lm_head(self.core.c).start,
            &r,
            &local.a[..self.n * d],
            d,
        );
        for (out, vals) in self.outs.iter().zip(t.chunks_exact(len)) {
            // SAFETY: see `BatchStep`.
            unsafe { out.part(r.clone()) }.copy_from_slice(vals);
        }
    }

    /// Layer l's q/k/v rows of the chunk for every sequence, RoPE on q and k at the sequence's
    /// position, k and v into its cache.
    fn qkv_chunk(&self, local: &mut Local, l: usize, chunk: usize) {
        let d = self.core.c.d_model;
        let wq = layout::layer(self.core.c, l).wq;
        let r = rows(chunk, self.core.plan.qkv_rows, 3 * d);
        let len = r.len();
        let t = &mut local.t1[..self.n * len];
        self.product(t, wq.start, &r, &local.a[..self.n * d], d);
        for (b, (seq, vals)) in self.seqs.iter().zip(t.chunks_exact(len)).enumerate() {
            // SAFETY: see `BatchStep`.
            let o = unsafe { self.core.qkv.part(b * 3 * d + r.start..b * 3 * d + r.end) };
            o.copy_from_slice(vals);
            // SAFETY: see `BatchStep` (QKV: the elements of the sequence's position in this
            // chunk's rows of its cache).
            unsafe { seq.store_qkv(o, &r, l, d) };
        }
    }

    /// Layer l's attention of the chunk's (sequence, head) pairs over each sequence's cached
    /// positions 0..=pos.
    fn attention_chunk(&self, local: &mut Local, l: usize, chunk: usize) {
        let (d, n_heads, dh) = (self.core.c.d_model, self.core.c.n_heads, self.core.c.d_head());
        // SAFETY: see `BatchStep`.
        let q = unsafe { self.core.qkv.all() };
        for unit in rows(chunk, self.core.plan.units, self.n * n_heads) {
            let (b, hh) = (unit / n_heads, unit % n_heads);
            let cols = b * d + hh * dh..b * d + (hh + 1) * dh;
            // SAFETY: see `BatchStep`.
            let o = unsafe { self.core.atty.part(cols) };
            let q = &q[b * 3 * d + hh * dh..b * 3 * d + (hh + 1) * dh];
            // SAFETY: see `BatchStep` (attention: the caches are written only in the QKV phase).
            unsafe { self.seqs[b].attend(o, &mut local.scores, q, l, hh, d, dh, self.core.scale) };
        }
    }

    fn residual_chunk(&self, local: &mut Local, r: Range<usize>, prod: Residual) {
        let Residual { w0, input, k, .. } = prod;
        let d = self.core.c.d_model;
        let len = r.len();
        let t = &mut local.t1[..self.n * len];
        // SAFETY: see `BatchStep`.
        self.product(t, w0, &r, unsafe { input.all() }, k);
        for (b, vals) in t.chunks_exact(len).enumerate() {
            // SAFETY: see `BatchStep`.
            let x = unsafe { self.core.x.part(b * d + r.start..b * d + r.end) };
            for (x, v) in x.iter_mut().zip(vals) {
                *x += v;
            }
        }
    }

    /// Layer l's W1 (and W3) rows of the chunk for every sequence, through SwiGLU (SiLU) into hg.
    fn ffn_chunk(&self, local: &mut Local, l: usize, chunk: usize) {
        let (d, f) = (self.core.c.d_model, self.core.c.d_ff);
        let lr = layout::layer(self.core.c, l);
        let r = rows(chunk, self.core.plan.ffn_rows, f);
        let len = r.len();
        let a = &local.a[..self.n * d];
        let t1 = &mut local.t1[..self.n * len];
        self.product(t1, lr.w1.start, &r, a, d);
        let t3 = &mut local.t3[..self.n * len];
        if self.core.swiglu {
            self.product(t3, lr.w3.start, &r, a, d);
        }
        for b in 0..self.n {
            // SAFETY: see `BatchStep`.
            let o = unsafe { self.core.hg.part(b * f + r.start..b * f + r.end) };
            let g = &t1[b * len..(b + 1) * len];
            let up = self.core.swiglu.then(|| &t3[b * len..(b + 1) * len]);
            fastmath::swiglu_rows(o, g, up);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::for_each_pool;

    #[test]
    fn for_each_mut_visits_every_item_once_on_any_thread_count() {
        for_each_pool(&[1, 2, 3], |threads, pool| {
            pool.install(|| {
                let mut state = BatchDecodeState::new(threads);
                for n in [0usize, 1, 2, 9, 40] {
                    let mut items: Vec<(usize, u32)> = (0..n).map(|i| (i, 0)).collect();
                    state.for_each_mut(&mut items, |(i, seen)| *seen += 1 + *i as u32);
                    let want: Vec<(usize, u32)> = (0..n).map(|i| (i, 1 + i as u32)).collect();
                    assert_eq!(items, want, "{threads} threads, {n} items");
                }
            });
        });
    }
}
