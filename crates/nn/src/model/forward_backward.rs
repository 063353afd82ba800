//! Training forward and hand-written backward over (batch, seq) token ids, on activation buffers
//! allocated once per (batch, seq).

use super::residual::{post_norm_backward, residual, PostNorm};
use super::Model;
use crate::config::{layout, Precision, RMSNORM_EPS};
use crate::loss::mean;
use crate::ops::laps::Laps;
use crate::ops::{self, RopeTable};
use crate::{Ffn, ModelConfig, NnError, Norm, Position, Result};
use std::ops::Range;

/// One layer's saved activations, each (N, ·) with N = batch·seq rows. Buffers an ablation does
/// not need are empty.
struct LayerActs {
    /// Pre-norm: RMSNorm(x), the attention input (N, d).
    ln1_out: Vec<f32>,
    /// 1/rms of the ln1 input (N).
    rstd1: Vec<f32>,
    /// Q and K after RoPE, V (N, d).
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    /// Attention output before the output projection (N, d).
    atty: Vec<f32>,
    /// Post-norm: x + MHA(x), the ln1 input (N, d).
    sum1: Vec<f32>,
    /// The residual stream between the sublayers (N, d).
    z: Vec<f32>,
    /// Pre-norm: RMSNorm(z), the FFN input (N, d).
    ln2_out: Vec<f32>,
    rstd2: Vec<f32>,
    /// W1 x and W3 x (N, d_ff) (h3 empty for SiLU), and the gated product fed to W2.
    h1: Vec<f32>,
    h3: Vec<f32>,
    hg: Vec<f32>,
    /// Post-norm: z + FFN(z), the ln2 input (N, d).
    sum2: Vec<f32>,
}

/// Scratch for the backward, allocated on the first `forward_backward`.
struct GradScratch {
    dres: Vec<f32>,
    db: Vec<f32>,
    dtmp: Vec<f32>,
    dq: Vec<f32>,
    dk: Vec<f32>,
    dv: Vec<f32>,
    dhg: Vec<f32>,
    dh1: Vec<f32>,
    dh3: Vec<f32>,
    /// dh1ᵀ and dh3ᵀ (d_ff, N) for the f32 W1/W3 weight gradients (SwiGLU only), rows
    /// `transposed_ld(N)` apart from the first 64-byte boundary on (`transposed_buffer`);
    /// allocated on first use.
    dh1t: Vec<f32>,
    dh3t: Vec<f32>,
}

/// Row stride of a transposed (·, n) gradient: n rounded up to whole cache lines plus one, so
/// rows start on 64-byte boundaries but not all in the same cache sets.
fn transposed_ld(n: usize) -> usize {
    n.div_ceil(16) * 16 + 16
}

/// A transposed-gradient buffer of `rows` rows of `transposed_ld(n)` (allocated on first use),
/// from its first 64-byte boundary on.
fn transposed_buffer(v: &mut Vec<f32>, rows: usize, n: usize) -> &mut [f32] {
    let len = rows * transposed_ld(n) + 16;
    if v.len() < len {
        v.resize(len, 0.0);
    }
    let off = v.as_ptr().align_offset(64).min(16);
    &mut v[off..]
}

/// Activation buffers for training on (batch, seq) tokens, allocated once and reused every step.
pub struct Activations {
    pub batch: usize,
    pub seq: usize,
    config: ModelConfig,
    /// Position of each of the N rows (row i is position i mod seq).
    positions: Vec<usize>,
    rope: Option<RopeTable>,
    /// The residual stream entering each layer, and leaving the last (n_layers + 1, N·d).
    residual: Vec<Vec<f32>>,
    layers: Vec<LayerActs>,
    lnf_out: Vec<f32>,
    lnf_rstd: Vec<f32>,
    /// (N, vocab): logits after a forward, their gradient after `forward_backward`.
    logits: Vec<f32>,
    losses: Vec<f32>,
    tmp: Vec<f32>,
    grad: Option<GradScratch>,
}

impl Activations {
    pub fn new(config: &ModelConfig, batch: usize, seq: usize) -> Activations {
        let c = config;
        let n = batch * seq;
        let (d, f) = (c.d_model, c.d_ff);
        let z = |len: usize| vec![0.0f32; len];
        let pre = c.norm == Norm::Pre;
        let post = c.norm == Norm::Post;
        let layers = (0..c.n_layers)
            .map(|_| LayerActs {
                ln1_out: z(if pre { n * d } else { 0 }),
                rstd1: z(n),
                q: z(n * d),
                k: z(n * d),
                v: z(n * d),
                atty: z(n * d),
                sum1: z(if post { n * d } else { 0 }),
                z: z(n * d),
                ln2_out: z(if pre { n * d } else { 0 }),
                rstd2: z(n),
                h1: z(n * f),
                h3: z(if c.ffn == Ffn::Swiglu { n * f } else { 0 }),
                hg: z(n * f),
                sum2: z(if post { n * d } else { 0 }),
            })
            .collect();
        let rope = (c.position == Position::Rope && c.d_head().is_multiple_of(2))
            .then(|| RopeTable::new(c.d_head(), seq, c.rope_theta));
        Activations {
            batch,
            seq,
            config: c.clone(),
            positions: (0..n).map(|i| i % seq.max(1)).collect(),
            rope,
            residual: (0..=c.n_layers).map(|_| z(n * d)).collect(),
            layers,
            lnf_out: z(n * d),
            lnf_rstd: z(n),
            logits: z(n * c.vocab_size),
            losses: z(n),
            tmp: z(n * d),
            grad: None,
        }
    }

    /// The logits (batch·seq, vocab) of the last `Model::forward_loss` / `forward_logits`
    /// (after `forward_backward` this buffer holds their gradient instead).
    pub fn logits(&self) -> &[f32] {
        &self.logits
    }

    fn alloc_grad(&mut self) {
        if self.grad.is_some() {
            return;
        }
        let c = &self.config;
        let n = self.batch * self.seq;
        let (d, f) = (c.d_model, c.d_ff);
        let z = |len: usize| vec![0.0f32; len];
        self.grad = Some(GradScratch {
            dres: z(n * d),
            db: z(n * d),
            dtmp: z(n * d),
            dq: z(n * d),
            dk: z(n * d),
            dv: z(n * d),
            dhg: z(n * f),
            dh1: z(n * f),
            dh3: z(if c.ffn == Ffn::Swiglu { n * f } else { 0 }),
            dh1t: Vec::new(),
            dh3t: Vec::new(),
        });
    }
}

impl Model {
    fn check_batch(&self, acts: &Activations, inputs: &[u32], targets: Option<&[u32]>) -> Result<()> {
        if acts.config != self.config {
            return Err(NnError::Shape(
                "activations were built for a different model config".into(),
            ));
        }
        let n = acts.batch * acts.seq;
        if acts.seq > self.config.context_length {
            return Err(NnError::Shape(format!(
                "seq {} is longer than the context length {}",
                acts.seq, self.config.context_length
            )));
        }
        if inputs.len() != n || targets.is_some_and(|t| t.len() != n) {
            return Err(NnError::Shape(format!(
                "inputs has {} ids and targets {:?}, activations expect batch {} × seq {} = {n}",
                inputs.len(),
                targets.map(|t| t.len()),
                acts.batch,
                acts.seq
            )));
        }
        self.check_ids(inputs, false)?;
        if let Some(t) = targets {
            self.check_ids(t, true)?;
        }
        Ok(())
    }

    /// Forward only: the logits (batch·seq, vocab) of `inputs` (batch·seq ids), in `acts`.
    pub fn forward_logits<'a>(&self, acts: &'a mut Activations, inputs: &[u32]) -> Result<&'a [f32]> {
        self.check_batch(acts, inputs, None)?;
        forward(&self.config, self.precision, &self.params, acts, inputs);
        Ok(&acts.logits)
    }

    /// Forward only: the mean loss (for evaluation); does not touch gradients.
    pub fn forward_loss(&self, acts: &mut Activations, inputs: &[u32], targets: &[u32]) -> Result<f32> {
        self.check_batch(acts, inputs, Some(targets))?;
        if targets.is_empty() {
            return Ok(0.0);
        }
        forward(&self.config, self.precision, &self.params, acts, inputs);
        let v = self.config.vocab_size;
        ops::cross_entropy_forward(&mut acts.losses, &acts.logits, targets, v);
        Ok(mean(&acts.losses))
    }

    /// Forward and backward on `inputs`/`targets` (batch·seq ids each, row-major (batch, seq)),
    /// seq ≤ context_length. Returns the mean cross-entropy loss over the batch·seq positions
    /// and ADDS the gradient of that mean loss into `self.grads` (call `zero_grads` first;
    /// accumulation over micro-batches sums, the caller scales by 1/k).
    /// Errors on an id ≥ vocab_size or shapes that do not match `acts`.
    pub fn forward_backward(
        &mut self,
        acts: &mut Activations,
        inputs: &[u32],
        targets: &[u32],
    ) -> Result<f32> {
        self.forward_backward_with(acts, inputs, targets, &mut |_, _| {})
    }

    /// [`Model::forward_backward`] that also reports, during the backward, each group of
    /// parameters whose gradient this call has finished adding: `on_ready(range, g)` with `range`
    /// offsets in `self.grads` and `g = &self.grads[range]`, in the order of
    /// [`Model::grad_ready_order`] (from the end of the buffer to its start). A caller can start
    /// sending those gradients while the backward goes on (data-parallel training). The hook only
    /// reads: the gradients are bitwise those of `forward_backward`. Nothing is reported when
    /// `targets` is empty or on an error.
    pub fn forward_backward_with(
        &mut self,
        acts: &mut Activations,
        inputs: &[u32],
        targets: &[u32],
        on_ready: &mut dyn FnMut(Range<usize>, &[f32]),
    ) -> Result<f32> {
        self.check_batch(acts, inputs, Some(targets))?;
        if targets.is_empty() {
            return Ok(0.0);
        }
        acts.alloc_grad();
        forward(&self.config, self.precision, &self.params, acts, inputs);
        let v = self.config.vocab_size;
        let scale = 1.0 / targets.len() as f32;
        let mut laps = Laps::start();
        ops::cross_entropy_fused(&mut acts.logits, &mut acts.losses, targets, v, scale);
        let loss = mean(&acts.losses);
        laps.mark("cross-entropy");
        backward(
            &self.config,
            self.precision,
            &self.params,
            &mut self.grads,
            acts,
            inputs,
            on_ready,
        );
        Ok(loss)
    }

    /// The parameter ranges (offsets in `grads`) that [`Model::forward_backward_with`] reports,
    /// in its order: the final norm and LM head, then each layer from the last to the first, then
    /// the embedding. They are contiguous and descending: together they cover `0..num_params`.
    pub fn grad_ready_order(&self) -> Vec<Range<usize>> {
        let c = &self.config;
        let mut out = Vec::with_capacity(c.n_layers + 2);
        out.push(layout::ln_final(c).start..layout::lm_head(c).end);
        out.extend((0..c.n_layers).rev().map(|l| layer_span(c, l)));
        out.push(layout::embedding(c));
        out
    }
}

/// All of layer `l`'s tensors: contiguous in the layout, wq first and w3 (empty for SiLU) last.
fn layer_span(c: &ModelConfig, l: usize) -> Range<usize> {
    let r = layout::layer(c, l);
    r.wq.start..r.w3.end
}

/// `N` disjoint ranges of `g`, in increasing order, as mutable slices (the gradients of weights
/// whose products share an operand).
fn disjoint_mut<const N: usize>(g: &mut [f32], ranges: [std::ops::Range<usize>; N]) -> [&mut [f32]; N] {
    let mut rest = g;
    let mut base = 0;
    ranges.map(|r| {
        assert!(
            r.start >= base,
            "disjoint_mut: ranges overlap or are out of order"
        );
        let (_, tail) = std::mem::take(&mut rest).split_at_mut(r.start - base);
        let (mid, tail) = tail.split_at_mut(r.len());
        rest = tail;
        base = r.end;
        mid
    })
}

/// The shape of `acts`' attention calls.
fn attn_shape(c: &ModelConfig, acts: &Activations) -> ops::AttnShape {
    ops::AttnShape {
        batch: acts.batch,
        seq: acts.seq,
        n_heads: c.n_heads,
        d_head: c.d_head(),
    }
}

/// The forward through the LM head into `acts.logits`.
fn forward(c: &ModelConfig, prec: Precision, p: &[f32], acts: &mut Activations, inputs: &[u32]) {
    let (b, t) = (acts.batch, acts.seq);
    let n = b * t;
    let (d, f, h) = (c.d_model, c.d_ff, c.n_heads);
    let shape = attn_shape(c, acts);
    let (pre, post) = (c.norm == Norm::Pre, c.norm == Norm::Post);
    let mut laps = Laps::start();
    ops::embedding_forward(&mut acts.residual[0], inputs, &p[layout::embedding(c)], d);
    laps.mark("fwd embedding");
    for l in 0..c.n_layers {
        let r = layout::layer(c, l);
        let (before, after) = acts.residual.split_at_mut(l + 1);
        let (xin, xout) = (&before[l], &mut after[0]);
        let tmp = &mut acts.tmp;
        let LayerActs {
            ln1_out,
            rstd1,
            q,
            k,
            v,
            atty,
            sum1,
            z,
            ln2_out,
            rstd2,
            h1,
            h3,
            hg,
            sum2,
        } = &mut acts.layers[l];
        // Attention sublayer.
        let a_in: &[f32] = if pre {
            ops::rmsnorm_forward(ln1_out, rstd1, xin, &p[r.ln1.clone()], n, d, RMSNORM_EPS);
            laps.mark("fwd rmsnorm");
            ln1_out
        } else {
            xin
        };
        let qkv: &mut [(&mut [f32], &[f32])] = &mut [(q, &p[r.wq]), (k, &p[r.wk]), (v, &p[r.wv])];
        ops::matmul_forward_shared(prec, qkv, a_in, n, d, d);
        laps.mark("fwd matmul q/k/v");
        if let Some(rope) = &acts.rope {
            ops::rope_forward(q, &acts.positions, h, rope);
            ops::rope_forward(k, &acts.positions, h, rope);
            laps.mark("fwd rope");
        }
        ops::attention_forward_recompute(atty, ops::Qkv::new(q, k, v), shape);
        laps.mark("fwd attention");
        ops::matmul_forward(prec, tmp, atty, &p[r.wo], n, d, d);
        laps.mark("fwd matmul o");
        residual(z, xin, tmp, PostNorm::when(post, sum1, rstd1, &p[r.ln1]));
        laps.mark("fwd residual (+ norm)");
        // FFN sublayer.
        let f_in: &[f32] = if pre {
            ops::rmsnorm_forward(ln2_out, rstd2, z, &p[r.ln2.clone()], n, d, RMSNORM_EPS);
            laps.mark("fwd rmsnorm");
            ln2_out
        } else {
            z
        };
        if c.ffn == Ffn::Swiglu {
            let w13: &mut [(&mut [f32], &[f32])] = &mut [(h1, &p[r.w1]), (h3, &p[r.w3])];
            ops::matmul_forward_shared(prec, w13, f_in, n, d, f);
            laps.mark("fwd matmul w1/w3");
            ops::swiglu_forward(hg, h1, h3);
        } else {
            ops::matmul_forward(prec, h1, f_in, &p[r.w1], n, d, f);
            laps.mark("fwd matmul w1/w3");
            ops::silu_forward(hg, h1);
        }
        laps.mark("fwd swiglu");
        ops::matmul_forward(prec, tmp, hg, &p[r.w2], n, f, d);
        laps.mark("fwd matmul w2");
        residual(xout, z, tmp, PostNorm::when(post, sum2, rstd2, &p[r.ln2]));
        laps.mark("fwd residual (+ norm)");
    }
    let x_last = &acts.residual[c.n_layers];
    ops::rmsnorm_forward(
        &mut acts.lnf_out,
        &mut acts.lnf_rstd,
        x_last,
        &p[layout::ln_final(c)],
        n,
        d,
        RMSNORM_EPS,
    );
    laps.mark("fwd rmsnorm");
    ops::matmul_forward(
        prec,
        &mut acts.logits,
        &acts.lnf_out,
        &p[layout::lm_head(c)],
        n,
        d,
        c.vocab_size,
    );
    laps.mark("fwd matmul head");
}

/// The backward from `acts.logits` holding dLoss/dlogits; adds every parameter's gradient into `g`,
/// telling `on_ready` each range of `g` as it becomes final (see `Model::grad_ready_order`).
fn backward(
    c: &ModelConfig,
    prec: Precision,
    p: &[f32],
    g: &mut [f32],
    acts: &mut Activations,
    inputs: &[u32],
    on_ready: &mut dyn FnMut(Range<usize>, &[f32]),
) {
    let (b, t) = (acts.batch, acts.seq);
    let n = b * t;
    let (d, h, vocab) = (c.d_model, c.n_heads, c.vocab_size);
    let shape = attn_shape(c, acts);
    let (pre, post) = (c.norm == Norm::Pre, c.norm == Norm::Post);
    let s = acts.grad.as_mut().expect("gradient scratch allocated");
    let GradScratch {
        dres,
        db,
        dtmp,
        dq,
        dk,
        dv,
        dhg,
        dh1,
        dh3,
        dh1t,
        dh3t,
    } = s;

    // LM head and final norm.
    let mut laps = Laps::start();
    let head = layout::lm_head(c);
    ops::matmul_backward_input(prec, dtmp, &acts.logits, &p[head.clone()], n, d, vocab, false);
    laps.mark("bwd matmul head, input grad");
    ops::matmul_backward_weight(prec, &mut g[head], &acts.logits, &acts.lnf_out, n, d, vocab);
    laps.mark("bwd matmul head, weight grad");
    dres.fill(0.0);
    let lnf = layout::ln_final(c);
    let x_last = &acts.residual[c.n_layers];
    ops::rmsnorm_backward(
        dres,
        &mut g[lnf.clone()],
        dtmp,
        x_last,
        &p[lnf],
        &acts.lnf_rstd,
        n,
        d,
    );
    laps.mark("bwd rmsnorm");
    let tail = layout::ln_final(c).start..layout::lm_head(c).end;
    on_ready(tail.clone(), &g[tail]);

    for l in (0..c.n_layers).rev() {
        // Here dres = dLoss/d(layer output).
        let r = layout::layer(c, l);
        let xin = &acts.residual[l];
        let la = &acts.layers[l];
        if post {
            post_norm_backward(db, g, p, r.ln2.clone(), dres, &la.sum2, &la.rstd2, d, &mut laps);
        }
        // FFN sublayer: dz holds dLoss/d(FFN output) and receives the input gradient.
        let dz: &mut [f32] = if post { db } else { dres };
        let f_in: &[f32] = if pre { &la.ln2_out } else { &la.z };
        let scratch = FfnScratch {
            dtmp,
            dhg,
            dh1,
            dh3,
            dh1t,
            dh3t,
        };
        ffn_backward(c, prec, p, g, l, la, dz, f_in, scratch, n, &mut laps);
        if post {
            post_norm_backward(dres, g, p, r.ln1.clone(), db, &la.sum1, &la.rstd1, d, &mut laps);
        }
        // Attention sublayer: dres holds dLoss/d(attention output) and receives the input gradient.
        let a_in: &[f32] = if pre { &la.ln1_out } else { xin };
        ops::matmul_backward_weight(prec, &mut g[r.wo.clone()], dres, &la.atty, n, d, d);
        laps.mark("bwd matmul o, weight grad");
        ops::matmul_backward_input(prec, dtmp, dres, &p[r.wo], n, d, d, false);
        laps.mark("bwd matmul o, input grad");
        let x = ops::Qkv::new(&la.q[..], &la.k, &la.v);
        ops::attention_backward_recompute(ops::Qkv::new(dq, dk, dv), dtmp, x, shape);
        laps.mark("bwd attention");
        if let Some(rope) = &acts.rope {
            ops::rope_backward(dq, &acts.positions, h, rope);
            ops::rope_backward(dk, &acts.positions, h, rope);
            laps.mark("bwd rope");
        }
        let [gq, gk, gv] = disjoint_mut(g, [r.wq.clone(), r.wk.clone(), r.wv.clone()]);
        let qkv: &mut [ops::WeightGrad] = &mut [(gq, (dq, 1, d)), (gk, (dk, 1, d)), (gv, (dv, 1, d))];
        ops::matmul_backward_weight_shared(prec, qkv, a_in, n, d, d);
        laps.mark("bwd matmul q/k/v, weight grad");
        let dst: &mut [f32] = if pre { dtmp } else { dres };
        ops::matmul_backward_input(prec, dst, dq, &p[r.wq], n, d, d, !pre);
        ops::matmul_backward_input(prec, dst, dk, &p[r.wk], n, d, d, true);
        ops::matmul_backward_input(prec, dst, dv, &p[r.wv], n, d, d, true);
        laps.mark("bwd matmul q/k/v, input grad");
        if pre {
            ops::rmsnorm_backward(dres, &mut g[r.ln1.clone()], dtmp, xin, &p[r.ln1], &la.rstd1, n, d);
            laps.mark("bwd rmsnorm");
        }
        let span = layer_span(c, l);
        on_ready(span.clone(), &g[span]);
    }
    let emb = layout::embedding(c);
    ops::embedding_backward(&mut g[emb.clone()], dres, inputs, d);
    laps.mark("bwd embedding");
    on_ready(emb.clone(), &g[emb]);
}

/// The gradient buffers the FFN backward works in (see `GradScratch`).
struct FfnScratch<'a> {
    dtmp: &'a mut Vec<f32>,
    dhg: &'a mut Vec<f32>,
    dh1: &'a mut Vec<f32>,
    dh3: &'a mut Vec<f32>,
    dh1t: &'a mut Vec<f32>,
    dh3t: &'a mut Vec<f32>,
}

/// Backward of layer `l`'s FFN sublayer: `dz` (N, d) holds dLoss/d(FFN output) and receives
/// the input gradient (ACCUMULATED, or through ln2 for pre-norm); `f_in` is the FFN's input. The
/// W1/W2/W3 (and ln2) gradients are ACCUMULATED into `g`.
#[allow(clippy::too_many_arguments)]
fn ffn_backward(
    c: &ModelConfig,
    prec: Precision,
    p: &[f32],
    g: &mut [f32],
    l: usize,
    la: &LayerActs,
    dz: &mut [f32],
    f_in: &[f32],
    s: FfnScratch<'_>,
    n: usize,
    laps: &mut Laps,
) {
    let (d, f) = (c.d_model, c.d_ff);
    let pre = c.norm == Norm::Pre;
    let (dtmp, dhg, dh1, dh3, dh1t, dh3t) = (s.dtmp, s.dhg, s.dh1, s.dh3, s.dh1t, s.dh3t);
    let r = layout::layer(c, l);
    ops::matmul_backward_weight(prec, &mut g[r.w2.clone()], dz, &la.hg, n, f, d);
    laps.mark("bwd matmul w2, weight grad");
    ops::matmul_backward_input(prec, dhg, dz, &p[r.w2], n, f, d, false);
    laps.mark("bwd matmul w2, input grad");
    if c.ffn == Ffn::Swiglu && prec == Precision::F32 {
        // The W1/W3 weight gradients from dh1ᵀ, dh3ᵀ, which the SwiGLU backward writes
        // as it goes (issue 5: in a small-preset step 67 -> 56 ms for the products, +3 ms
        // for the writes; the bf16 products gained nothing, so they keep the plain path).
        let ld = transposed_ld(n);
        let (t1, t3) = (transposed_buffer(dh1t, f, n), transposed_buffer(dh3t, f, n));
        ops::swiglu_backward_t(dh1, dh3, t1, t3, ld, dhg, &la.h1, &la.h3, f);
        laps.mark("bwd swiglu");
        let [gw1, gw3] = disjoint_mut(g, [r.w1.clone(), r.w3.clone()]);
        let w13: &mut [ops::WeightGrad] = &mut [(gw1, (t1, ld, 1)), (gw3, (t3, ld, 1))];
        ops::matmul_backward_weight_shared(prec, w13, f_in, n, d, f);
    } else if c.ffn == Ffn::Swiglu {
        ops::swiglu_backward(dh1, dh3, dhg, &la.h1, &la.h3);
        laps.mark("bwd swiglu");
        let [gw1, gw3] = disjoint_mut(g, [r.w1.clone(), r.w3.clone()]);
        let w13: &mut [ops::WeightGrad] = &mut [(gw1, (dh1, 1, f)), (gw3, (dh3, 1, f))];
        ops::matmul_backward_weight_shared(prec, w13, f_in, n, d, f);
    } else {
        ops::silu_backward(dh1, dhg, &la.h1);
        laps.mark("bwd swiglu");
        ops::matmul_backward_weight(prec, &mut g[r.w1.clone()], dh1, f_in, n, d, f);
    }
    laps.mark("bwd matmul w1/w3, weight grad");
    // d f_in = dh1 W1 (+ dh3 W3): straight into dz, or through ln2 for pre-norm.
    let swiglu = c.ffn == Ffn::Swiglu;
    if pre {
        ops::matmul_backward_input(prec, dtmp, dh1, &p[r.w1], n, d, f, false);
        if swiglu {
            ops::matmul_backward_input(prec, dtmp, dh3, &p[r.w3], n, d, f, true);
        }
        laps.mark("bwd matmul w1/w3, input grad");
        ops::rmsnorm_backward(dz, &mut g[r.ln2.clone()], dtmp, &la.z, &p[r.ln2], &la.rstd2, n, d);
        laps.mark("bwd rmsnorm");
    } else {
        ops::matmul_backward_input(prec, dz, dh1, &p[r.w1], n, d, f, true);
        if swiglu {
            ops::matmul_backward_input(prec, dz, dh3, &p[r.w3], n, d, f, true);
        }
        laps.mark("bwd matmul w1/w3, input grad");
    }
}
