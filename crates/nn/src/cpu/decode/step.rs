//! One decode step of a single sequence (batch 1, one new token) as ONE parallel job.
//!
//! Batch-1 decoding reads every weight once per token: for small, 4 matrix-vector passes per layer
//! and the LM head, with norms, RoPE, attention, residual adds and SwiGLU between them. Run as
//! separate rayon calls (~50 per token), each pass wakes the pool and each elementwise kernel is a
//! round trip to it (the calling thread is usually outside the pool); on this VM a wake-up costs
//! 10–100 µs, and perf put ~30% of the CPU time of `bench generate` in wake-ups and sleeps.
//! Here the whole step is one `phased::run_phased` job: per layer five phases (QKV, attention, Wo,
//! W1/W3, W2) and then the LM head, each split into chunks of weight rows that the calling thread
//! and the helpers claim; the pool is woken once per generation (the helpers linger between
//! tokens, see `phased::Team`). The elementwise work is fused into
//! the chunks (RoPE and the KV-cache writes into the QKV chunks, SwiGLU into the W1/W3 chunks, the
//! residual adds into the Wo / W2 chunks); the norms run on each participant (d values) before
//! its first chunk of a phase.
//!
//! Every value is computed by the same kernels and in the same order as the general path in
//! `model/infer.rs` (row dot products by `gemv_rows`, norms by `rmsnorm_row`, ...), so the logits are
//! bit-identical to it whatever the number of threads.

use super::phased::{run_phased, Team};
pub use super::seq::CacheRefs;
use super::seq::{Seq, Shared};
use crate::config::{layout, RMSNORM_EPS};
use crate::cpu::fastmath;
use crate::cpu::gemm::gemv::{self, DecodeWeights, Weights};
use crate::cpu::rmsnorm::rmsnorm_row;
use crate::{Ffn, ModelConfig, Norm};
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Phases per layer: QKV, attention, Wo (+ residual), W1/W3 (+ SwiGLU), W2 (+ residual).
pub(super) const PER_LAYER: usize = 5;

/// Chunks per participant and product: few, because every chunk costs two atomic operations on
/// cache lines the threads share and restarts the weight streams (measured on small, 2 threads:
/// 2–4 chunks per participant 1380 tokens/s bf16, 256 KiB chunks 1330, 64 KiB 1250), but more than
/// one, so the caller can start alone while a helper wakes up and the phases end balanced.
const CHUNKS_PER_PARTICIPANT: usize = 2;

/// Whether `decode_step` handles this config (post-norm blocks renormalize the residual stream
/// in place, which the fused residual adds do not do; they take the general path).
pub fn supported(c: &ModelConfig) -> bool {
    c.norm != Norm::Post
}

/// Rows per chunk of each product, and attention units per attention chunk: heads (batch 1) or
/// (sequence, head) pairs (`batch_step`).
#[derive(Clone, Copy, Default)]
pub(super) struct Plan {
    pub(super) qkv_rows: usize,
    pub(super) wo_rows: usize,
    pub(super) ffn_rows: usize,
    pub(super) w2_rows: usize,
    pub(super) head_rows: usize,
    pub(super) units: usize,
}

/// The split of one step into chunks and the per-participant buffers, for one config and thread
/// count; plus the step's shared activations (one row each).
pub struct DecodeState {
    participants: usize,
    /// Chunks per phase (PER_LAYER per layer, then the LM head).
    chunks: Vec<usize>,
    /// How each phase is split into chunks.
    plan: Plan,
    locals: Vec<Local>,
    /// The helpers, kept awake from one token to the next.
    team: Team,
    /// Per LM-head chunk: the index of its first largest logit (NaNs skipped; usize::MAX when
    /// every logit of the chunk is NaN), so the step ends with the argmax without another pass.
    chunk_argmax: Vec<AtomicUsize>,
    /// Residual stream (d), q/k/v (3d), attention output (d), gated FFN hidden (d_ff).
    x: Vec<f32>,
    qkv: Vec<f32>,
    atty: Vec<f32>,
    hg: Vec<f32>,
}

/// A participant's own buffers (of a batched step: B rows where one row is named).
#[derive(Default)]
pub(super) struct Local {
    /// The normalized input of the current phase (d).
    pub(super) a: Vec<f32>,
    /// Products of one chunk before they are combined (rows per chunk).
    pub(super) t1: Vec<f32>,
    pub(super) t3: Vec<f32>,
    /// Attention scores of one head (the longest cache).
    pub(super) scores: Vec<f32>,
}

/// The chunks of a decode step's phases (`Step`, `batch_step::BatchStep`): per layer QKV,
/// attention, Wo (+ residual), W1/W3 (+ SwiGLU), W2 (+ residual), then the LM head.
pub(super) trait Chunks {
    /// What the step reads everywhere.
    fn core(&self) -> &Core<'_>;
    /// Before a participant's first chunk of a phase: the normalized input of the phases that
    /// read x (QKV, W1/W3, head) into `local.a`.
    fn prepare(&self, local: &mut Local, phase: usize);
    /// LM-head rows `r` (of chunk `chunk`).
    fn head(&self, local: &mut Local, chunk: usize, r: Range<usize>);
    /// Layer l's Q, K and V rows of the chunk.
    fn qkv_chunk(&self, local: &mut Local, l: usize, chunk: usize);
    /// Layer l's attention heads of the chunk.
    fn attention_chunk(&self, local: &mut Local, l: usize, chunk: usize);
    /// Rows `r` of `prod`, a product added into the residual stream.
    fn residual_chunk(&self, local: &mut Local, r: Range<usize>, prod: Residual);
    /// Layer l's W1 (and W3) rows of the chunk, through SwiGLU (SiLU) into hg.
    fn ffn_chunk(&self, local: &mut Local, l: usize, chunk: usize);

    /// The whole step as one job on `team`, `chunks[phase]` chunks per phase, one `Local` per
    /// participant.
    fn run(&self, team: &mut Team, chunks: &[usize], locals: &mut [Local])
    where
        Self: Sync,
    {
        run_phased(
            team,
            chunks,
            locals,
            |local, phase| self.prepare(local, phase),
            |local, phase, chunk| self.work(local, phase, chunk),
        );
    }

    /// One chunk of a phase.
    fn work(&self, local: &mut Local, phase: usize, chunk: usize) {
        let core = self.core();
        if phase == core.head_phase {
            return self.head(local, chunk, rows(chunk, core.plan.head_rows, core.c.vocab_size));
        }
        let l = phase / PER_LAYER;
        match phase % PER_LAYER {
            0 => self.qkv_chunk(local, l, chunk),
            1 => self.attention_chunk(local, l, chunk),
            3 => self.ffn_chunk(local, l, chunk),
            _ => {
                let prod = core.residual(phase);
                self.residual_chunk(local, rows(chunk, prod.per, core.c.d_model), prod)
            }
        }
    }
}

/// Rows per chunk for a product of `rows` rows: CHUNKS_PER_PARTICIPANT chunks per participant,
/// a multiple of 16 rows (so RoPE pairs and the vectorized SwiGLU blocks never straddle chunks);
/// everything in one chunk for one participant.
pub(super) fn rows_per_chunk(rows: usize, participants: usize) -> usize {
    if participants <= 1 {
        return rows.max(1);
    }
    rows.div_ceil(CHUNKS_PER_PARTICIPANT * participants)
        .next_multiple_of(16)
}

impl DecodeState {
    /// The plan for `participants` threads (at least 1) and a cache of `max_len` positions.
    pub fn new(c: &ModelConfig, max_len: usize, participants: usize) -> DecodeState {
        let (d, f, v, h) = (c.d_model, c.d_ff, c.vocab_size, c.n_heads);
        let p = participants.max(1);
        let qkv_rows = rows_per_chunk(3 * d, p);
        let wo_rows = rows_per_chunk(d, p);
        let ffn_rows = rows_per_chunk(f, p);
        let w2_rows = rows_per_chunk(d, p);
        let head_rows = rows_per_chunk(v, p);
        let heads = if p <= 1 {
            h.max(1)
        } else {
            h.div_ceil(2 * p).max(1)
        };
        let mut chunks = Vec::with_capacity(PER_LAYER * c.n_layers + 1);
        for _ in 0..c.n_layers {
            chunks.extend([
                (3 * d).div_ceil(qkv_rows),
                h.div_ceil(heads),
                d.div_ceil(wo_rows),
                f.div_ceil(ffn_rows),
                d.div_ceil(w2_rows),
            ]);
        }
        chunks.push(v.div_ceil(head_rows));
        let chunk_argmax = (0..v.div_ceil(head_rows))
            .map(|_| AtomicUsize::new(usize::MAX))
            .collect();
        let tmp = wo_rows.max(ffn_rows).max(w2_rows).min(d.max(f));
        let locals = (0..p)
            .map(|_| Local {
                a: vec![0.0; d],
                t1: vec![0.0; tmp],
                t3: vec![0.0; tmp],
                scores: vec![0.0; max_len],
            })
            .collect();
        DecodeState {
            participants: p,
            chunks,
            plan: Plan {
                qkv_rows,
                wo_rows,
                ffn_rows,
                w2_rows,
                head_rows,
                units: heads,
            },
            locals,
            team: Team::default(),
            chunk_argmax,
            x: vec![0.0; d],
            qkv: vec![0.0; 3 * d],
            atty: vec![0.0; d],
            hg: vec![0.0; f],
        }
    }

    /// Whether this state was built for `participants` threads.
    pub fn fits(&self, participants: usize) -> bool {
        self.participants == participants.max(1)
    }
}

/// The index of the first largest value of `x`, NaNs skipped (None when all are NaN or x is
/// empty): a vectorized max, then the first position holding it.
fn first_max(x: &[f32]) -> Option<usize> {
    let m = fastmath::max(x);
    x.iter().position(|&v| v == m)
}

/// Appends `token` at position `pos` of a batch-1 cache of the model `c` with parameters `w` and
/// writes the next-token logits (vocab): the same result as the general `forward_infer` path for
/// one row, computed as one parallel job over `rayon::current_num_threads()` participants (see
/// the module doc). The weight matrices are read from the bf16 snapshot when `w` has one.
/// Returns the index of the largest logit (the first on ties, NaN never chosen, 0 if all are
/// NaN: `sample::argmax`), found chunk by chunk with the LM head. The caller checks the shapes, the token and that the
/// config is `supported`.
pub fn decode_step(
    c: &ModelConfig,
    w: DecodeWeights,
    state: &mut DecodeState,
    cache: CacheRefs<'_>,
    pos: usize,
    token: u32,
    logits: &mut [f32],
) -> u32 {
    let (d, vocab) = (c.d_model, c.vocab_size);
    let max_len = cache.max_len;
    let layer_len = max_len * d;
    assert!(pos < max_len, "decode_step: position {pos} past the cache");
    assert_eq!(logits.len(), vocab, "decode_step: logits");
    for buf in [&cache.k, &cache.v, &cache.k_t] {
        assert_eq!(buf.len(), c.n_layers * layer_len, "decode_step: cache size");
    }
    let t = token as usize;
    state
        .x
        .copy_from_slice(&w.p[layout::embedding(c)][t * d..(t + 1) * d]);
    let acts = [&mut state.x[..], &mut state.qkv, &mut state.atty, &mut state.hg];
    let step = Step {
        core: Core::new(c, w, state.plan, acts),
        chunk_argmax: &state.chunk_argmax,
        seq: Seq::new(cache, pos),
        out: Shared::new(logits),
    };
    step.run(&mut state.team, &state.chunks, &mut state.locals);
    // The chunks in index order: the first chunk holding the largest value has its first index.
    // (run_phased returned after every chunk, so the Relaxed stores are visible.)
    // SAFETY: the job is over; nobody writes the logits any more.
    let logits = unsafe { step.out.all() };
    let mut best: Option<usize> = None;
    for a in step.chunk_argmax {
        let i = a.load(Ordering::Relaxed);
        if i != usize::MAX && best.is_none_or(|b| logits[i] > logits[b]) {
            best = Some(i);
        }
    }
    best.unwrap_or(0) as u32
}

/// One decode step's inputs and shared buffers, read by every participant.
///
/// SAFETY (all `Shared` accesses in the methods): `run_phased` finishes every chunk of a phase
/// before any chunk of the next starts and runs each chunk once. Per phase kind:
/// - QKV: reads x (prepare), writes its own rows of qkv and, of this layer's cache, the
///   elements of position pos in its rows (distinct rows ⇒ distinct elements).
/// - attention: reads qkv and the layer's caches (written only in the QKV phase), writes its
///   own heads of atty.
/// - Wo / W2: read atty / hg, write their own rows of x.
/// - W1/W3: reads x (prepare), writes its own rows of hg.
/// - head: reads x (prepare), writes its own rows of the logits.
///
/// So within a phase every element is written by at most one chunk, and nothing written in
/// a phase is read in it.
struct Step<'a> {
    /// How each phase is split into chunks, and the activations x, qkv, atty, hg (one row each).
    core: Core<'a>,
    chunk_argmax: &'a [AtomicUsize],
    /// The cache and the position appended.
    seq: Seq<'a>,
    out: Shared<'a>,
}

/// A product whose output is added into the residual stream: weight rows of length `k` starting
/// at parameter `w0`, `per` rows a chunk, applied to `input`.
pub(super) struct Residual<'s, 'a> {
    pub(super) per: usize,
    pub(super) w0: usize,
    pub(super) input: &'s Shared<'a>,
    pub(super) k: usize,
}

/// What a decode step (`Step`, `batch_step::BatchStep`) reads everywhere: the model and its
/// weights, how each phase is split into chunks (`plan`), the model's switches, and the
/// activations the participants share (x, qkv, atty, hg: one row per sequence).
pub(super) struct Core<'a> {
    pub(super) c: &'a ModelConfig,
    pub(super) w: DecodeWeights<'a>,
    pub(super) plan: Plan,
    pub(super) head_phase: usize,
    pub(super) pre: bool,
    pub(super) swiglu: bool,
    /// 1/√d_head.
    pub(super) scale: f32,
    pub(super) x: Shared<'a>,
    pub(super) qkv: Shared<'a>,
    pub(super) atty: Shared<'a>,
    pub(super) hg: Shared<'a>,
}

impl<'a> Core<'a> {
    /// The step of model `c` with parameters `p` (read from `bf16` when given) and activations
    /// [x, qkv, atty, hg].
    pub(super) fn new(
        c: &'a ModelConfig,
        w: DecodeWeights<'a>,
        plan: Plan,
        [x, qkv, atty, hg]: [&'a mut [f32]; 4],
    ) -> Self {
        Core {
            c,
            w,
            plan,
            head_phase: PER_LAYER * c.n_layers,
            pre: c.norm == Norm::Pre,
            swiglu: c.ffn == Ffn::Swiglu,
            scale: 1.0 / (c.d_head() as f32).sqrt(),
            x: Shared::new(x),
            qkv: Shared::new(qkv),
            atty: Shared::new(atty),
            hg: Shared::new(hg),
        }
    }

    /// The parameters at `r`, in the precision the step reads.
    #[inline(always)]
    pub(super) fn weights(&self, r: Range<usize>) -> Weights<'_> {
        self.w.at(r)
    }

    /// For the phases that read x (QKV, W1/W3, head): the gain of the norm before them (applied
    /// where `normalizes`); None for the other phases.
    pub(super) fn x_gain(&self, phase: usize) -> Option<Range<usize>> {
        if phase == self.head_phase {
            return Some(layout::ln_final(self.c));
        }
        let r = layout::layer(self.c, phase / PER_LAYER);
        match phase % PER_LAYER {
            0 => Some(r.ln1),
            3 => Some(r.ln2),
            _ => None,
        }
    }

    /// The residual product of `phase` (of its layer: Wo on atty, or W2 on hg).
    pub(super) fn residual(&self, phase: usize) -> Residual<'_, 'a> {
        let r = layout::layer(self.c, phase / PER_LAYER);
        if phase % PER_LAYER == 2 {
            Residual {
                per: self.plan.wo_rows,
                w0: r.wo.start,
                input: &self.atty,
                k: self.c.d_model,
            }
        } else {
            Residual {
                per: self.plan.w2_rows,
                w0: r.w2.start,
                input: &self.hg,
                k: self.c.d_ff,
            }
        }
    }

    /// Whether a phase that reads x reads it normalized (pre-norm blocks and the head) or as it is.
    pub(super) fn normalizes(&self, phase: usize) -> bool {
        self.pre || phase == self.head_phase
    }
}

/// Rows `chunk·per .. min((chunk + 1)·per, n)`.
#[inline(always)]
pub(super) fn rows(chunk: usize, per: usize, n: usize) -> Range<usize> {
    chunk * per..((chunk + 1) * per).min(n)
}

impl Chunks for Step<'_> {
    /// Before a participant's first chunk of a phase: the normalized input of the phases that
    /// read x (QKV, W1/W3, head) into `local.a`.
    fn prepare(&self, local: &mut Local, phase: usize) {
        let Some(g) = self.core.x_gain(phase) else {
            return;
        };
        // SAFETY: see `Step` (x is not written in these phases).
        let xs = unsafe { self.core.x.all() };
        if self.core.normalizes(phase) {
            rmsnorm_row(&mut local.a, xs, &self.core.w.p[g], RMSNORM_EPS);
        } else {
            local.a.copy_from_slice(xs);
        }
    }

    fn core(&self) -> &Core<'_> {
        &self.core
    }

    /// LM-head rows of the chunk, and the chunk's first largest logit.
    fn head(&self, local: &mut Local, chunk: usize, r: Range<usize>) {
        let d = self.core.c.d_model;
        let head = layout::lm_head(self.core.c).start;
        let w = self.core.weights(head + r.start * d..head + r.end * d);
        // SAFETY: see `Step`.
        let o = unsafe { self.out.part(r.clone()) };
        gemv::gemv_rows(o, w, &local.a);
        let best = first_max(o).map_or(usize::MAX, |i| r.start + i);
        self.chunk_argmax[chunk].store(best, Ordering::Relaxed);
    }

    /// Layer l's q/k/v rows of the chunk, RoPE on q and k, k and v into the cache.
    fn qkv_chunk(&self, local: &mut Local, l: usize, chunk: usize) {
        let d = self.core.c.d_model;
        let wq = layout::layer(self.core.c, l).wq;
        let r = rows(chunk, self.core.plan.qkv_rows, 3 * d);
        let w = self.core.weights(wq.start + r.start * d..wq.start + r.end * d);
        // SAFETY: see `Step`.
        let o = unsafe { self.core.qkv.part(r.clone()) };
        gemv::gemv_rows(o, w, &local.a);
        // SAFETY: see `Step` (QKV: the cache elements of position pos in this chunk's rows).
        unsafe { self.seq.store_qkv(o, &r, l, d) };
    }

    /// Layer l's attention heads of the chunk over the cached positions 0..=pos.
    fn attention_chunk(&self, local: &mut Local, l: usize, chunk: usize) {
        let (d, n_heads, dh) = (self.core.c.d_model, self.core.c.n_heads, self.core.c.d_head());
        // SAFETY: see `Step`.
        let q = unsafe { self.core.qkv.all() };
        for hh in rows(chunk, self.core.plan.units, n_heads) {
            let cols = hh * dh..(hh + 1) * dh;
            // SAFETY: see `Step`.
            let o = unsafe { self.core.atty.part(cols.clone()) };
            // SAFETY: see `Step` (attention: the cache is written only in the QKV phase).
            unsafe {
                self.seq
                    .attend(o, &mut local.scores, &q[cols], l, hh, d, dh, self.core.scale)
            };
        }
    }

    fn residual_chunk(&self, local: &mut Local, r: Range<usize>, prod: Residual) {
        let Residual { w0, input, k, .. } = prod;
        let tmp = &mut local.t1[..r.len()];
        let w = self.core.weights(w0 + r.start * k..w0 + r.end * k);
        // SAFETY: see `Step`.
        gemv::gemv_rows(tmp, w, unsafe { input.all() });
        // SAFETY: see `Step`.
        for (x, t) in unsafe { self.core.x.part(r) }.iter_mut().zip(tmp.iter()) {
            *x += t;
        }
    }

    /// Layer l's W1 (and W3) rows of the chunk, through SwiGLU (SiLU) into hg.
    fn ffn_chunk(&self, local: &mut Local, l: usize, chunk: usize) {
        let (d, f) = (self.core.c.d_model, self.core.c.d_ff);
        let lr = layout::layer(self.core.c, l);
        let r = rows(chunk, self.core.plan.ffn_rows, f);
        let (t1, t3) = (&mut local.t1[..r.len()], &mut local.t3[..r.len()]);
        gemv::gemv_rows(
            t1,
            self.core
                .weights(lr.w1.start + r.start * d..lr.w1.start + r.end * d),
            &local.a,
        );
        // SAFETY: see `Step`.
        let o = unsafe { self.core.hg.part(r.clone()) };
        if self.core.swiglu {
            gemv::gemv_rows(
                t3,
                self.core
                    .weights(lr.w3.start + r.start * d..lr.w3.start + r.end * d),
                &local.a,
            );
        }
        fastmath::swiglu_rows(o, t1, self.core.swiglu.then_some(&*t3));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::argmax;

    #[test]
    fn first_max_agrees_with_sample_argmax() {
        let (nan, inf) = (f32::NAN, f32::INFINITY);
        let cases: [&[f32]; 7] = [
            &[1.0, 3.0, 2.0, 3.0],
            &[nan, -1.0, nan, -0.5],
            &[-inf, -inf, nan],
            &[0.0, -0.0, 0.0],
            &[-0.0, 0.0],
            &[2.0, inf, nan, inf],
            &[5.0],
        ];
        for x in cases {
            assert_eq!(first_max(x).map(|i| i as u32), Some(argmax(x)), "{x:?}");
        }
        assert_eq!(first_max(&[nan, nan]), None);
        // 40 values: the vectorized max sees full 16-lane blocks and a remainder.
        let long: Vec<f32> = (0..40).map(|i| ((i * 17) % 23) as f32).collect();
        assert_eq!(first_max(&long).map(|i| i as u32), Some(argmax(&long)));
    }
}
