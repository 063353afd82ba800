//! Causal multi-head scaled dot-product attention, heads as consecutive column blocks of width
//! d_head in (batch, seq, n_heads·d_head) buffers. `attention_forward`/`attention_backward` keep
//! the probabilities (batch, n_heads, seq, seq) for the backward; the `_recompute` pair (what the
//! model trains with) keeps none and recomputes them per head in a cache-sized scratch.
//! Work is parallel over the batch; per (batch, head) the products go through register-blocked
//! tiles (`tiles`) that skip the masked upper triangle; the softmax rows are in `rows`.

pub mod rows;
pub mod tiles;

use rayon::iter::Either;
use rayon::prelude::*;
use rows::{softmax_backward_row, softmax_causal_row};
use std::cell::RefCell;
use tiles::{pack_rows, pack_transposed, Strided, Tiles};

/// Rows per block of the score-side products: a block's rows of S (or dP) are computed and then
/// softmaxed (or turned into dS) while they are still in L1 (16 and 64 measured the same).
pub const BLOCK: usize = 32;

/// The shape of an attention call: `batch` sequences of `seq` positions, `n_heads` heads of
/// width `d_head`; q, k, v and out are (batch, seq, n_heads·d_head).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttnShape {
    pub batch: usize,
    pub seq: usize,
    pub n_heads: usize,
    pub d_head: usize,
}

impl AttnShape {
    /// Floats of one (batch, seq, n_heads·d_head) buffer.
    pub fn len(&self) -> usize {
        self.batch * self.seq * self.n_heads * self.d_head
    }

    /// Whether the buffers hold no float.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Floats of the probabilities (batch, n_heads, seq, seq).
    pub fn att_len(&self) -> usize {
        self.batch * self.n_heads * self.seq * self.seq
    }
}

/// The three attention inputs q, k, v, or (with `&mut [f32]`) their gradients.
#[derive(Clone, Copy, Debug)]
pub struct Qkv<T> {
    pub q: T,
    pub k: T,
    pub v: T,
}

impl<T> Qkv<T> {
    pub fn new(q: T, k: T, v: T) -> Qkv<T> {
        Qkv { q, k, v }
    }
}

/// `out (batch, seq, n_heads·d_head)` = per head `softmax(QKᵀ/√d_head, causal) · V`; `att
/// (batch, n_heads, seq, seq)` gets the probabilities (row t: columns ≤ t, zeros above the
/// diagonal). q, k, v (batch, seq, n_heads·d_head), RoPE already applied. Overwrites out and att.
pub fn attention_forward(out: &mut [f32], att: &mut [f32], x: Qkv<&[f32]>, shape: AttnShape) {
    assert_eq!(att.len(), shape.att_len(), "attention_forward: att");
    forward("attention_forward", out, Some(att), x, shape);
}

/// `attention_forward` without storing the probabilities: each sequence's heads go through one
/// (seq, seq) scratch per thread that stays in cache, and `attention_backward_recompute`
/// recomputes them. Saves batch·n_heads·seq² floats per layer; `out` is bit-identical to
/// `attention_forward`'s. Shapes as there.
pub fn attention_forward_recompute(out: &mut [f32], x: Qkv<&[f32]>, shape: AttnShape) {
    forward("attention_forward_recompute", out, None, x, shape);
}

/// Panics with "`op`: `name`" unless each named buffer holds `len` floats.
fn check_lens(op: &str, len: usize, bufs: &[(&str, &[f32])]) {
    for (name, x) in bufs {
        assert_eq!(x.len(), len, "{op}: {name}");
    }
}

/// `x` (batch, `per` floats each) as one `Some` chunk per sequence, or `None` for each of the
/// `batch` sequences when there is no `x`: what a parallel loop over the sequences zips with.
fn per_sequence<T: Send>(
    x: Option<impl IndexedParallelIterator<Item = T>>,
    batch: usize,
) -> impl IndexedParallelIterator<Item = Option<T>> {
    match x {
        Some(chunks) => Either::Left(chunks.map(Some)),
        None => Either::Right((0..batch).into_par_iter().map(|_| None)),
    }
}

/// Both forwards: each head's probabilities go into `att` (batch, n_heads, seq, seq) when given,
/// else into a per-thread (seq, seq) scratch; the same `Head` calls either way.
fn forward(op: &str, out: &mut [f32], att: Option<&mut [f32]>, x: Qkv<&[f32]>, shape: AttnShape) {
    let Qkv { q, k, v } = x;
    check_lens(op, shape.len(), &[("out", out), ("q", q), ("k", k), ("v", v)]);
    let Some(hd) = Head::new(shape) else {
        return;
    };
    let (n_heads, bd, tt) = (shape.n_heads, hd.t_len * hd.d, hd.t_len * hd.t_len);
    let stored = att.is_some();
    let att = per_sequence(att.map(|a| a.par_chunks_mut(n_heads * tt)), shape.batch);
    out.par_chunks_mut(bd)
        .zip(att)
        .zip(q.par_chunks(bd).zip(k.par_chunks(bd)).zip(v.par_chunks(bd)))
        .for_each(|((out, mut att), ((q, k), v))| {
            hd.with_scratch(if stored { 0 } else { 1 }, |sq, s| {
                for h in 0..n_heads {
                    let p = match &mut att {
                        Some(att) => &mut att[h * tt..(h + 1) * tt],
                        None => &mut *sq,
                    };
                    hd.probs(p, s, q, k, h);
                    hd.values(out, p, s, v, h);
                }
            })
        });
}

/// One sequence's per-head products: shapes and the softmax scale. Every product goes through
/// `tiles::Tiles::gemm` in MR-row tiles that skip the masked triangle; the storing and
/// the recomputing entry points share this code, so their results are bit-identical.
struct Head {
    t_len: usize,
    d: usize,
    d_head: usize,
    scale: f32,
    tiles: Tiles,
}

impl Head {
    /// The heads of `shape`'s sequences; None when there is nothing to compute (no sequence or
    /// no position).
    fn new(shape: AttnShape) -> Option<Head> {
        if shape.batch == 0 || shape.seq == 0 {
            return None;
        }
        Some(Head {
            t_len: shape.seq,
            d: shape.n_heads * shape.d_head,
            d_head: shape.d_head,
            scale: 1.0 / (shape.d_head as f32).sqrt(),
            tiles: Tiles::detect(),
        })
    }

    /// Runs f with this thread's scratch: `squares` (seq, seq) matrices in one slice, and the
    /// packs. The scratch lives on between calls (allocating it per call cost page faults);
    /// a nested call on the same thread gets a fresh one.
    fn with_scratch<R>(&self, squares: usize, f: impl FnOnce(&mut [f32], &mut Packs) -> R) -> R {
        let (n_sq, n_pack) = (squares * self.t_len * self.t_len, self.t_len * self.d_head);
        let grow = |x: &mut Vec<f32>, n: usize| {
            if x.len() < n {
                x.resize(n, 0.0);
            }
        };
        let run = |sq: &mut Vec<f32>, packs: &mut Packs| {
            grow(sq, n_sq);
            for x in [&mut packs.xt, &mut packs.a, &mut packs.b, &mut packs.c] {
                grow(x, n_pack);
            }
            f(&mut sq[..n_sq], packs)
        };
        SCRATCH.with(|cell| match cell.try_borrow_mut() {
            Ok(mut g) => {
                let (sq, packs) = &mut *g;
                run(sq, packs)
            }
            Err(_) => run(&mut Vec::new(), &mut Packs::default()),
        })
    }

    /// xp (seq, d_head) = head h's columns of x (seq, d), contiguous: the products read their
    /// right-hand operands by rows, and rows d floats apart would fall in a few L1 sets.
    fn gather(&self, xp: &mut [f32], x: &[f32], h: usize) {
        pack_rows(xp, &x[h * self.d_head..], self.d, self.d_head, self.t_len);
    }

    /// xt (d_head, seq) = head h's columns of x (seq, d), transposed.
    fn transpose(&self, xt: &mut [f32], x: &[f32], h: usize) {
        pack_transposed(xt, &x[h * self.d_head..], self.d, self.d_head, self.t_len);
    }

    /// p (seq, seq) = causal softmax(scale · Q_h K_hᵀ) for head h of one sequence (q, k
    /// (seq, d)), zeros above the diagonal.
    fn probs(&self, p: &mut [f32], s: &mut Packs, q: &[f32], k: &[f32], h: usize) {
        let (t_len, d, dh, c) = (self.t_len, self.d, self.d_head, h * self.d_head);
        self.transpose(&mut s.xt, k, h);
        let qa = Strided {
            data: &q[c..],
            rs: d,
            cs: 1,
        };
        for r0 in (0..t_len).step_by(BLOCK) {
            let r1 = (r0 + BLOCK).min(t_len);
            // S[i, 0..i1] = scale · Q[i] K[0..i1]ᵀ for the rows i of each tile [i0, i1).
            let kt = (&s.xt[..], t_len);
            self.tiles
                .gemm((p, t_len), r0..r1, qa, kt, self.scale, |_, i1| (i1, 0, dh));
            for t in r0..r1 {
                softmax_causal_row(&mut p[t * t_len..(t + 1) * t_len], t);
            }
        }
    }

    /// Head h's columns of out (seq, d) = P · V_h, P from `probs`.
    fn values(&self, out: &mut [f32], p: &[f32], s: &mut Packs, v: &[f32], h: usize) {
        let (t_len, d, dh, c) = (self.t_len, self.d, self.d_head, h * self.d_head);
        self.gather(&mut s.a, v, h);
        let pa = Strided {
            data: p,
            rs: t_len,
            cs: 1,
        };
        // O[i] = P[i, 0..i1] · V[0..i1] (P is zero beyond the diagonal).
        let vp = (&s.a[..], dh);
        self.tiles
            .gemm((&mut out[c..], d), 0..t_len, pa, vp, 1.0, |_, i1| (dh, 0, i1));
    }

    /// Head h's columns of dx = (dq, dk, dv) (seq, d), OVERWRITTEN, given its probabilities p
    /// (seq, seq); ds (seq, seq) is scratch (left holding dS, the gradient of the scaled scores).
    fn backward(
        &self,
        dx: &mut Qkv<&mut [f32]>,
        (p, ds): (&[f32], &mut [f32]),
        s: &mut Packs,
        dout: &[f32],
        x: &Qkv<&[f32]>,
        h: usize,
    ) {
        let (t_len, d, dh, scale, c) = (self.t_len, self.d, self.d_head, self.scale, h * self.d_head);
        let (Qkv { q, k, v }, tiles) = (x, self.tiles);
        // xt = Vᵀ, a = K, b = Q, c = dO, each head h's columns packed.
        self.transpose(&mut s.xt, v, h);
        self.gather(&mut s.a, k, h);
        self.gather(&mut s.b, q, h);
        self.gather(&mut s.c, dout, h);
        let da = Strided {
            data: &s.c,
            rs: dh,
            cs: 1,
        };
        for r0 in (0..t_len).step_by(BLOCK) {
            let r1 = (r0 + BLOCK).min(t_len);
            // dP[i, 0..i1] = dO[i] · V[0..i1]ᵀ
            tiles.gemm((ds, t_len), r0..r1, da, (&s.xt, t_len), 1.0, |_, i1| (i1, 0, dh));
            // dS = P ⊙ (dP − Σ_u P dP), zero above the diagonal.
            for t in r0..r1 {
                let row = t * t_len..(t + 1) * t_len;
                softmax_backward_row(&mut ds[row.clone()], &p[row], t);
            }
            // dQ[i] = scale · dS[i, 0..i1] · K[0..i1]
            let sa = Strided {
                data: ds,
                rs: t_len,
                cs: 1,
            };
            tiles.gemm((&mut dx.q[c..], d), r0..r1, sa, (&s.a, dh), scale, |_, i1| {
                (dh, 0, i1)
            });
        }
        // dV[j] = Σ_{i ≥ j0} P[i, j] dO[i]; dK[j] = scale · Σ_{i ≥ j0} dS[i, j] Q[i] for the rows j
        // of each tile [j0, j1) (P and dS are zero above the diagonal).
        let pt = Strided {
            data: p,
            rs: 1,
            cs: t_len,
        };
        let span = |j0, _| (dh, j0, t_len);
        tiles.gemm((&mut dx.v[c..], d), 0..t_len, pt, (&s.c, dh), 1.0, span);
        let st = Strided {
            data: ds,
            rs: 1,
            cs: t_len,
        };
        tiles.gemm((&mut dx.k[c..], d), 0..t_len, st, (&s.b, dh), scale, span);
    }
}

/// One thread's per-head scratch, each (seq, d_head) or (d_head, seq).
#[derive(Default)]
struct Packs {
    xt: Vec<f32>,
    a: Vec<f32>,
    b: Vec<f32>,
    c: Vec<f32>,
}

thread_local! {
    /// Each thread's (seq, seq) squares and packs, see `Head::with_scratch`.
    static SCRATCH: RefCell<(Vec<f32>, Packs)> = RefCell::new(Default::default());
}

/// Backward of `attention_forward` given its `att`: dx = (dq, dk, dv) (batch, seq,
/// n_heads·d_head) are OVERWRITTEN; `datt` (batch, n_heads, seq, seq) is scratch (left holding
/// dS, the gradient of the scaled scores). Shapes as in the forward.
pub fn attention_backward(
    dx: Qkv<&mut [f32]>,
    datt: &mut [f32],
    dout: &[f32],
    x: Qkv<&[f32]>,
    att: &[f32],
    shape: AttnShape,
) {
    assert_eq!(att.len(), shape.att_len(), "attention_backward: att");
    assert_eq!(datt.len(), shape.att_len(), "attention_backward: datt");
    backward("attention_backward", dx, Some((datt, att)), dout, x, shape);
}

/// Backward of `attention_forward_recompute`: recomputes each head's probabilities (bit-identical
/// to the forward's) in a per-thread (seq, seq) scratch, then as `attention_backward`. dx = (dq,
/// dk, dv) (batch, seq, n_heads·d_head) are OVERWRITTEN. Shapes as in the forward.
pub fn attention_backward_recompute(dx: Qkv<&mut [f32]>, dout: &[f32], x: Qkv<&[f32]>, shape: AttnShape) {
    backward("attention_backward_recompute", dx, None, dout, x, shape);
}

/// Both backwards: with `stored` = (datt, att), each head's probabilities are read from att and
/// its dS left in datt; without, the probabilities are recomputed into a per-thread (seq, seq)
/// scratch and dS goes into a second one. The same `Head` calls either way.
fn backward(
    op: &str,
    dx: Qkv<&mut [f32]>,
    stored: Option<(&mut [f32], &[f32])>,
    dout: &[f32],
    x: Qkv<&[f32]>,
    shape: AttnShape,
) {
    let (Qkv { q: dq, k: dk, v: dv }, Qkv { q, k, v }) = (dx, x);
    let bufs = [
        ("dq", &*dq),
        ("dk", &*dk),
        ("dv", &*dv),
        ("dout", dout),
        ("q", q),
        ("k", k),
        ("v", v),
    ];
    check_lens(op, shape.len(), &bufs);
    let Some(hd) = Head::new(shape) else {
        return;
    };
    let (n_heads, bd, tt) = (shape.n_heads, hd.t_len * hd.d, hd.t_len * hd.t_len);
    let recompute = stored.is_none();
    let stored = stored.map(|(datt, att)| {
        datt.par_chunks_mut(n_heads * tt)
            .zip(att.par_chunks(n_heads * tt))
    });
    dq.par_chunks_mut(bd)
        .zip(dk.par_chunks_mut(bd))
        .zip(dv.par_chunks_mut(bd))
        .zip(per_sequence(stored, shape.batch))
        .zip(dout.par_chunks(bd))
        .zip(q.par_chunks(bd).zip(k.par_chunks(bd)).zip(v.par_chunks(bd)))
        .for_each(|(((((dq, dk), dv), mut stored), dout), ((q, k), v))| {
            hd.with_scratch(if recompute { 2 } else { 0 }, |sq, s| {
                let (sp, sds) = sq.split_at_mut(sq.len() / 2);
                for h in 0..n_heads {
                    let (p, ds): (&[f32], &mut [f32]) = match &mut stored {
                        Some((datt, att)) => (&att[h * tt..(h + 1) * tt], &mut datt[h * tt..(h + 1) * tt]),
                        None => {
                            hd.probs(sp, s, q, k, h);
                            (&*sp, &mut *sds)
                        }
                    };
                    let mut dx = Qkv::new(&mut *dq, &mut *dk, &mut *dv);
                    hd.backward(&mut dx, (p, ds), s, dout, &Qkv::new(q, k, v), h);
                }
            })
        });
}

/// Attention of new queries over a KV cache (for generation). `shape.seq` = t_new, the new
/// queries: q and out (batch, t_new, n_heads·d_head); k_cache, v_cache (batch, max_len,
/// n_heads·d_head) with positions < start + t_new filled (RoPE applied to keys). Query t sits at
/// position start + t and sees positions 0..=start + t. Overwrites out.
pub fn attention_forward_cached(
    out: &mut [f32],
    q: &[f32],
    (k_cache, v_cache): (&[f32], &[f32]),
    shape: AttnShape,
    start: usize,
    max_len: usize,
) {
    let AttnShape {
        batch,
        seq: t_new,
        n_heads,
        d_head,
    } = shape;
    let d = n_heads * d_head;
    assert_eq!(out.len(), shape.len(), "attention_forward_cached: out");
    assert_eq!(q.len(), shape.len(), "attention_forward_cached: q");
    let cache_len = batch * max_len * d;
    assert_eq!(k_cache.len(), cache_len, "attention_forward_cached: k_cache");
    assert_eq!(v_cache.len(), cache_len, "attention_forward_cached: v_cache");
    assert!(start + t_new <= max_len, "attention_forward_cached: past max_len");
    if batch == 0 || t_new == 0 {
        return;
    }
    let scale = 1.0 / (d_head as f32).sqrt();
    let total = start + t_new;
    out.par_chunks_mut(t_new * d)
        .zip(q.par_chunks(t_new * d))
        .zip(
            k_cache
                .par_chunks(max_len * d)
                .zip(v_cache.par_chunks(max_len * d)),
        )
        .for_each(|((out, q), (kc, vc))| {
            let mut scores = vec![0.0f32; total];
            for t in 0..t_new {
                let n_keys = start + t + 1;
                for h in 0..n_heads {
                    let c = h * d_head;
                    let qv = &q[t * d + c..t * d + c + d_head];
                    for (u, s) in scores[..n_keys].iter_mut().enumerate() {
                        let kv = &kc[u * d + c..u * d + c + d_head];
                        *s = qv.iter().zip(kv).map(|(a, b)| a * b).sum::<f32>() * scale;
                    }
                    softmax_causal_row(&mut scores[..n_keys], n_keys - 1);
                    let o = &mut out[t * d + c..t * d + c + d_head];
                    o.fill(0.0);
                    for (u, &p) in scores[..n_keys].iter().enumerate() {
                        for (o, &x) in o.iter_mut().zip(&vc[u * d + c..u * d + c + d_head]) {
                            *o += p * x;
                        }
                    }
                }
            }
        });
}
