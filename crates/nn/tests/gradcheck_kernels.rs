//! Finite-difference gradient checks for every kernel's backward: each kernel's forward is compared
//! with a naive f64 reference (tests/reference), and its f32 backward, fed an arbitrary upstream
//! gradient w, with central differences of the f64 reference loss L(x) = Σ w ⊙ f(x). Errors are
//! relative to the largest entry of each gradient; f32 rounding gives ≤ ~1e-6 here, a wrong term
//! gives ≥ 1e-2, so the tolerances (1e-5 forward, 2e-5 backward) are tight and can fail.

mod reference;

use ferrolm_nn::ops::*;
use reference::*;

const H: f64 = 1e-5;
const FWD: f64 = 1e-5;
const BWD: f64 = 2e-5;

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Asserts the kernel gradient `got` matches central differences of the f64 loss `loss` at `x`
/// (relative error within `BWD`).
fn assert_grad(what: &str, got: &[f32], x: &[f64], loss: impl FnMut(&[f64]) -> f64) {
    assert_close(what, got, &numeric_grad(x, H, loss), BWD, 1e-3);
}

#[test]
fn matmul() {
    let (n, d_in, d_out) = (5, 7, 6);
    let mut r = Lcg(1);
    let (x, w, dy) = (
        r.vec(n * d_in, 1.0),
        r.vec(d_out * d_in, 1.0),
        r.vec(n * d_out, 1.0),
    );
    let mut y = vec![0.0; n * d_out];
    matmul_forward(Precision::F32, &mut y, &to32(&x), &to32(&w), n, d_in, d_out);
    assert_close("matmul y", &y, &linear(&x, &w, d_in, d_out), FWD, 1e-3);
    // Backward accumulates onto what is there.
    let (mut dx, mut dw) = (vec![0.5f32; n * d_in], vec![-0.25f32; d_out * d_in]);
    let (x32, dy32) = (to32(&x), to32(&dy));
    matmul_backward_input(Precision::F32, &mut dx, &dy32, &to32(&w), n, d_in, d_out, true);
    matmul_backward_weight(Precision::F32, &mut dw, &dy32, &x32, n, d_in, d_out);
    let nx: Vec<f64> = numeric_grad(&x, H, |x| dot(&dy, &linear(x, &w, d_in, d_out)))
        .iter()
        .map(|g| g + 0.5)
        .collect();
    let nw: Vec<f64> = numeric_grad(&w, H, |w| dot(&dy, &linear(&x, w, d_in, d_out)))
        .iter()
        .map(|g| g - 0.25)
        .collect();
    assert_close("matmul dx", &dx, &nx, BWD, 1e-3);
    assert_close("matmul dw", &dw, &nw, BWD, 1e-3);
    // The overwrite variant ignores old contents, NaN included.
    let mut dx2 = vec![f32::NAN; n * d_in];
    matmul_backward_input(
        Precision::F32,
        &mut dx2,
        &to32(&dy),
        &to32(&w),
        n,
        d_in,
        d_out,
        false,
    );
    let want: Vec<f64> = nx.iter().map(|g| g - 0.5).collect();
    assert_close("matmul dx overwrite", &dx2, &want, BWD, 1e-3);
}

#[test]
fn rmsnorm() {
    let (n, d) = (4, 9);
    let mut r = Lcg(2);
    let x = r.vec(n * d, 2.0);
    let g: Vec<f64> = r.vec(d, 0.5).iter().map(|v| 1.0 + v).collect();
    let dy = r.vec(n * d, 1.0);
    let (mut y, mut rstd) = (vec![0.0; n * d], vec![0.0; n]);
    rmsnorm_forward(&mut y, &mut rstd, &to32(&x), &to32(&g), n, d, 1e-5);
    assert_close("rmsnorm y", &y, &reference::rmsnorm(&x, &g), FWD, 1e-3);
    let (mut dx, mut dg) = (vec![0.0; n * d], vec![1.0; d]);
    rmsnorm_backward(&mut dx, &mut dg, &to32(&dy), &to32(&x), &to32(&g), &rstd, n, d);
    let nx = numeric_grad(&x, H, |x| dot(&dy, &reference::rmsnorm(x, &g)));
    let ng: Vec<f64> = numeric_grad(&g, H, |g| dot(&dy, &reference::rmsnorm(&x, g)))
        .iter()
        .map(|v| v + 1.0)
        .collect();
    assert_close("rmsnorm dx", &dx, &nx, BWD, 1e-3);
    assert_close("rmsnorm dgain", &dg, &ng, BWD, 1e-3);
}

#[test]
fn rmsnorm_many_rows_and_wide_columns() {
    // More rows than one rayon task and more columns than one dgain block.
    let (n, d) = (300, 130);
    let mut r = Lcg(12);
    let (x, dy) = (r.vec(n * d, 1.0), r.vec(n * d, 1.0));
    let g: Vec<f64> = r.vec(d, 0.5).iter().map(|v| 1.0 + v).collect();
    let (mut y, mut rstd) = (vec![0.0; n * d], vec![0.0; n]);
    rmsnorm_forward(&mut y, &mut rstd, &to32(&x), &to32(&g), n, d, 1e-5);
    let (mut dx, mut dg) = (vec![0.0; n * d], vec![0.0; d]);
    rmsnorm_backward(&mut dx, &mut dg, &to32(&dy), &to32(&x), &to32(&g), &rstd, n, d);
    // dgain_j = Σ_rows dy·x·rstd exactly (linear in g), so compare with the f64 formula.
    let want: Vec<f64> = (0..d)
        .map(|j| {
            (0..n)
                .map(|i| {
                    let row = &x[i * d..(i + 1) * d];
                    let s = 1.0 / (row.iter().map(|v| v * v).sum::<f64>() / d as f64 + EPS).sqrt();
                    dy[i * d + j] * x[i * d + j] * s
                })
                .sum()
        })
        .collect();
    assert_close("rmsnorm dgain wide", &dg, &want, 1e-5, 1e-3);
}

#[test]
fn rope() {
    let (h, dh, theta) = (2, 6, 100.0);
    let pos = [0usize, 3, 1, 7, 2];
    let n = pos.len();
    let mut r = Lcg(3);
    let (x, dy) = (r.vec(n * h * dh, 1.0), r.vec(n * h * dh, 1.0));
    let table = RopeTable::new(dh, 8, theta as f32);
    let mut y = to32(&x);
    rope_forward(&mut y, &pos, h, &table);
    assert_close("rope y", &y, &reference::rope(&x, &pos, dh, theta), FWD, 1e-3);
    let mut dx = to32(&dy);
    rope_backward(&mut dx, &pos, h, &table);
    let nx = numeric_grad(&x, H, |x| dot(&dy, &reference::rope(x, &pos, dh, theta)));
    assert_close("rope dx", &dx, &nx, BWD, 1e-3);
}

#[test]
fn attention_small() {
    check_attention(2, 9, 2, 4, None);
}

#[test]
fn attention_across_causal_blocks() {
    // seq crosses the kernels' row block and column tile; check a sample of coordinates.
    check_attention(1, ferrolm_nn::cpu::attention::BLOCK + 3, 2, 4, Some(60));
}

fn check_attention(batch: usize, seq: usize, h: usize, dh: usize, sample: Option<usize>) {
    let d = h * dh;
    let len = batch * seq * d;
    let mut r = Lcg(4 + seq as u64);
    let (q, k, v, dy) = (r.vec(len, 1.5), r.vec(len, 1.5), r.vec(len, 1.0), r.vec(len, 1.0));
    let (q32, k32, v32, dy32) = (to32(&q), to32(&k), to32(&v), to32(&dy));
    let mut out = vec![0.0; len];
    let mut att = vec![f32::NAN; batch * h * seq * seq];
    let shape = AttnShape {
        batch,
        seq,
        n_heads: h,
        d_head: dh,
    };
    attention_forward(&mut out, &mut att, Qkv::new(&q32, &k32, &v32), shape);
    assert_close(
        "attention out",
        &out,
        &reference::attention(&q, &k, &v, batch, seq, h),
        FWD,
        1e-3,
    );
    for (i, row) in att.chunks(seq).enumerate() {
        let t = i % seq;
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        assert!(row[t + 1..].iter().all(|&p| p == 0.0));
    }
    let (mut dq, mut dk, mut dv) = (vec![f32::NAN; len], vec![f32::NAN; len], vec![f32::NAN; len]);
    let mut datt = vec![f32::NAN; att.len()];
    let dx = Qkv::new(&mut dq[..], &mut dk, &mut dv);
    attention_backward(dx, &mut datt, &dy32, Qkv::new(&q32, &k32, &v32), &att, shape);
    let idx: Vec<usize> = match sample {
        None => (0..len).collect(),
        Some(m) => (0..m).map(|_| r.below(len) as usize).collect(),
    };
    let f = |q: &[f64], k: &[f64], v: &[f64]| dot(&dy, &reference::attention(q, k, v, batch, seq, h));
    let pick = |g: &[f32]| idx.iter().map(|&i| g[i]).collect::<Vec<f32>>();
    let at = |x: &[f64], which: usize| -> Vec<f64> {
        idx.iter()
            .map(|&i| {
                let mut xp = x.to_vec();
                xp[i] += H;
                let mut xm = x.to_vec();
                xm[i] -= H;
                let (fp, fm) = match which {
                    0 => (f(&xp, &k, &v), f(&xm, &k, &v)),
                    1 => (f(&q, &xp, &v), f(&q, &xm, &v)),
                    _ => (f(&q, &k, &xp), f(&q, &k, &xm)),
                };
                (fp - fm) / (2.0 * H)
            })
            .collect()
    };
    let (nq, nk, nv) = (at(&q, 0), at(&k, 1), at(&v, 2));
    assert_close("attention dq", &pick(&dq), &nq, BWD, 1e-3);
    assert_close("attention dk", &pick(&dk), &nk, BWD, 1e-3);
    assert_close("attention dv", &pick(&dv), &nv, BWD, 1e-3);

    // The recomputing pair (no stored probabilities): same finite-difference check, and
    // bit-identical to the storing pair (it recomputes the very same probabilities).
    let mut out_r = vec![f32::NAN; len];
    attention_forward_recompute(&mut out_r, Qkv::new(&q32, &k32, &v32), shape);
    assert_eq!(out_r, out, "recompute forward differs from the storing forward");
    let (mut rq, mut rk, mut rv) = (vec![f32::NAN; len], vec![f32::NAN; len], vec![f32::NAN; len]);
    let dx = Qkv::new(&mut rq[..], &mut rk, &mut rv);
    attention_backward_recompute(dx, &dy32, Qkv::new(&q32, &k32, &v32), shape);
    assert_close("recompute attention dq", &pick(&rq), &nq, BWD, 1e-3);
    assert_close("recompute attention dk", &pick(&rk), &nk, BWD, 1e-3);
    assert_close("recompute attention dv", &pick(&rv), &nv, BWD, 1e-3);
    assert_eq!((rq, rk, rv), (dq, dk, dv), "recompute backward differs");
}

/// Plain-loop f64 backward of causal attention: (dq, dk, dv) for upstream gradient dy, all
/// (batch, seq, n_heads·d_head).
#[allow(clippy::too_many_arguments)]
fn attention_backward_loops(
    dy: &[f64],
    q: &[f64],
    k: &[f64],
    v: &[f64],
    batch: usize,
    seq: usize,
    n_heads: usize,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let d = q.len() / (batch * seq);
    let dh = d / n_heads;
    let scale = 1.0 / (dh as f64).sqrt();
    let (mut dq, mut dk, mut dv) = (vec![0.0; q.len()], vec![0.0; q.len()], vec![0.0; q.len()]);
    let at = |b: usize, t: usize, h: usize, c: usize| (b * seq + t) * d + h * dh + c;
    for b in 0..batch {
        for h in 0..n_heads {
            for t in 0..seq {
                let s: Vec<f64> = (0..=t)
                    .map(|u| {
                        (0..dh)
                            .map(|c| q[at(b, t, h, c)] * k[at(b, u, h, c)])
                            .sum::<f64>()
                            * scale
                    })
                    .collect();
                let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let z: f64 = s.iter().map(|x| (x - m).exp()).sum();
                let p: Vec<f64> = s.iter().map(|x| (x - m).exp() / z).collect();
                let dp: Vec<f64> = (0..=t)
                    .map(|u| (0..dh).map(|c| dy[at(b, t, h, c)] * v[at(b, u, h, c)]).sum())
                    .collect();
                let dot: f64 = p.iter().zip(&dp).map(|(a, b)| a * b).sum();
                for u in 0..=t {
                    let ds = p[u] * (dp[u] - dot) * scale;
                    for c in 0..dh {
                        dv[at(b, u, h, c)] += p[u] * dy[at(b, t, h, c)];
                        dq[at(b, t, h, c)] += ds * k[at(b, u, h, c)];
                        dk[at(b, u, h, c)] += ds * q[at(b, t, h, c)];
                    }
                }
            }
        }
    }
    (dq, dk, dv)
}

#[test]
fn attention_matches_plain_loops_at_odd_sizes() {
    // seq not a multiple of the kernels' row tile (8), column tile (32) or row block, every
    // d_head the tiles handle (one masked vector, one, two, two per pass), batch 1-3.
    for (batch, seq, h, dh) in [
        (1, 37, 2, 8),
        (2, 45, 1, 16),
        (3, 19, 2, 32),
        (1, 70, 1, 64),
        (2, 33, 3, 32),
    ] {
        let d = h * dh;
        let len = batch * seq * d;
        let mut r = Lcg(100 + seq as u64);
        let (q, k, v, dy) = (r.vec(len, 1.5), r.vec(len, 1.5), r.vec(len, 1.0), r.vec(len, 1.0));
        let (q32, k32, v32, dy32) = (to32(&q), to32(&k), to32(&v), to32(&dy));
        let what = format!("batch {batch} seq {seq} heads {h} d_head {dh}");
        let mut out = vec![f32::NAN; len];
        let mut att = vec![f32::NAN; batch * h * seq * seq];
        let (x, shape) = (
            Qkv::new(&q32[..], &k32, &v32),
            AttnShape {
                batch,
                seq,
                n_heads: h,
                d_head: dh,
            },
        );
        attention_forward(&mut out, &mut att, x, shape);
        let want = reference::attention(&q, &k, &v, batch, seq, h);
        assert_close(&format!("out, {what}"), &out, &want, FWD, 1e-3);
        let mut out_r = vec![f32::NAN; len];
        attention_forward_recompute(&mut out_r, x, shape);
        assert_eq!(out_r, out, "recompute forward differs, {what}");

        let (wq, wk, wv) = attention_backward_loops(&dy, &q, &k, &v, batch, seq, h);
        let (mut dq, mut dk, mut dv) = (vec![f32::NAN; len], vec![f32::NAN; len], vec![f32::NAN; len]);
        let mut datt = vec![f32::NAN; att.len()];
        attention_backward(
            Qkv::new(&mut dq[..], &mut dk, &mut dv),
            &mut datt,
            &dy32,
            x,
            &att,
            shape,
        );
        assert_close(&format!("dq, {what}"), &dq, &wq, BWD, 1e-3);
        assert_close(&format!("dk, {what}"), &dk, &wk, BWD, 1e-3);
        assert_close(&format!("dv, {what}"), &dv, &wv, BWD, 1e-3);
        let (mut rq, mut rk, mut rv) = (vec![f32::NAN; len], vec![f32::NAN; len], vec![f32::NAN; len]);
        attention_backward_recompute(Qkv::new(&mut rq[..], &mut rk, &mut rv), &dy32, x, shape);
        assert_eq!((rq, rk, rv), (dq, dk, dv), "recompute backward differs, {what}");
    }
}

#[test]
fn cached_attention_matches_full_attention() {
    let (batch, seq, h, dh, max_len) = (2, 7, 2, 4, 9);
    let d = h * dh;
    let mut r = Lcg(5);
    let (q, k, v) = (
        r.vec(batch * seq * d, 1.0),
        r.vec(batch * seq * d, 1.0),
        r.vec(batch * seq * d, 1.0),
    );
    let want = reference::attention(&q, &k, &v, batch, seq, h);
    // Cache holds all seq positions; query the last 3 (start = 4).
    let (start, t_new) = (4, 3);
    let (mut kc, mut vc) = (vec![0.0; batch * max_len * d], vec![0.0; batch * max_len * d]);
    let mut qn = vec![];
    let mut want_n = vec![];
    for b in 0..batch {
        for t in 0..seq {
            let src = (b * seq + t) * d..(b * seq + t + 1) * d;
            let dst = (b * max_len + t) * d;
            kc[dst..dst + d].copy_from_slice(&to32(&k[src.clone()]));
            vc[dst..dst + d].copy_from_slice(&to32(&v[src.clone()]));
            if t >= start {
                qn.extend(to32(&q[src.clone()]));
                want_n.extend_from_slice(&want[src]);
            }
        }
    }
    let mut out = vec![0.0; batch * t_new * d];
    let shape = AttnShape {
        batch,
        seq: t_new,
        n_heads: h,
        d_head: dh,
    };
    attention_forward_cached(&mut out, &qn, (&kc, &vc), shape, start, max_len);
    assert_close("cached attention", &out, &want_n, FWD, 1e-3);
}

#[test]
fn swiglu_and_silu() {
    let n = 40;
    let mut r = Lcg(6);
    let (a, b, dy) = (r.vec(n, 4.0), r.vec(n, 2.0), r.vec(n, 1.0));
    let sw = |a: &[f64], b: &[f64]| -> Vec<f64> { a.iter().zip(b).map(|(x, y)| silu(*x) * y).collect() };
    let mut y = vec![0.0; n];
    swiglu_forward(&mut y, &to32(&a), &to32(&b));
    assert_close("swiglu y", &y, &sw(&a, &b), FWD, 1e-3);
    let (mut da, mut db) = (vec![0.0; n], vec![0.0; n]);
    swiglu_backward(&mut da, &mut db, &to32(&dy), &to32(&a), &to32(&b));
    assert_grad("swiglu dh1", &da, &a, |a| dot(&dy, &sw(a, &b)));
    assert_grad("swiglu dh3", &db, &b, |b| dot(&dy, &sw(&a, b)));
    let si = |a: &[f64]| -> Vec<f64> { a.iter().map(|&x| silu(x)).collect() };
    silu_forward(&mut y, &to32(&a));
    assert_close("silu y", &y, &si(&a), FWD, 1e-3);
    silu_backward(&mut da, &to32(&dy), &to32(&a));
    assert_grad("silu dx", &da, &a, |a| dot(&dy, &si(a)));
}

#[test]
fn embedding() {
    let (vocab, d) = (5, 3);
    let ids = [4u32, 0, 4, 2];
    let mut r = Lcg(7);
    let (table, dy) = (r.vec(vocab * d, 1.0), r.vec(ids.len() * d, 1.0));
    let lookup = |t: &[f64]| -> Vec<f64> {
        ids.iter()
            .flat_map(|&i| t[i as usize * d..(i as usize + 1) * d].to_vec())
            .collect()
    };
    let mut y = vec![0.0; ids.len() * d];
    embedding_forward(&mut y, &ids, &to32(&table), d);
    assert_close("embedding y", &y, &lookup(&to64(&to32(&table))), 0.0, 1e-3);
    let mut dt = vec![0.0; vocab * d];
    embedding_backward(&mut dt, &to32(&dy), &ids, d);
    assert_grad("embedding dtable", &dt, &table, |t| dot(&dy, &lookup(t)));
}

#[test]
fn cross_entropy_kernels() {
    let (n, vocab) = (6, 13);
    let mut r = Lcg(8);
    let x = r.vec(n * vocab, 5.0);
    let t: Vec<u32> = (0..n).map(|_| r.below(vocab)).collect();
    let mut losses = vec![0.0; n];
    cross_entropy_forward(&mut losses, &to32(&x), &t, vocab);
    let mean = losses.iter().map(|&l| l as f64).sum::<f64>() / n as f64;
    let want = reference::cross_entropy(&x, &t, vocab);
    assert!((mean - want).abs() < 1e-6 * want, "{mean} vs {want}");
    let num = numeric_grad(&x, H, |x| reference::cross_entropy(x, &t, vocab));
    let mut dx = vec![f32::NAN; n * vocab];
    cross_entropy_backward(&mut dx, &to32(&x), &t, vocab, 1.0 / n as f32);
    assert_close("cross-entropy dlogits", &dx, &num, BWD, 1e-3);
    let mut fused = to32(&x);
    let mut fl = vec![0.0; n];
    cross_entropy_fused(&mut fused, &mut fl, &t, vocab, 1.0 / n as f32);
    assert_close("fused dlogits", &fused, &num, BWD, 1e-3);
    assert_close("fused losses", &fl, &to64(&losses), 1e-6, 1e-3);
    // The library API agrees.
    let mut d2 = vec![0.0; n * vocab];
    let l = ferrolm_nn::loss::cross_entropy_with_grad(&to32(&x), &t, vocab, &mut d2).unwrap();
    assert!((l as f64 - want).abs() < 1e-6 * want);
    assert_close("cross_entropy_with_grad", &d2, &num, BWD, 1e-3);
}

#[test]
fn cross_entropy_extreme_logits_are_exact_and_finite() {
    // Magnitudes up to 1e30: no inf/NaN; losses are the exact margins.
    for scale in [1e4f32, 1e6, 1e30] {
        let logits = [scale, -scale, 0.0, 0.5 * scale, 0.0, -0.5 * scale];
        let targets = [1u32, 0];
        let mut d = [0.0; 6];
        let l = ferrolm_nn::loss::cross_entropy_with_grad(&logits, &targets, 3, &mut d).unwrap();
        // Row 0: lse = scale, loss = 2·scale; row 1: lse = 0.5·scale, loss = 0. Mean = scale.
        assert!(((l - scale) / scale).abs() < 1e-6, "scale {scale}: loss {l}");
        assert_eq!(d, [0.5, -0.5, 0.0, 0.0, 0.0, 0.0]);
        let mut fused = logits;
        let mut losses = [0.0; 2];
        cross_entropy_fused(&mut fused, &mut losses, &targets, 3, 0.5);
        assert_eq!(losses, [2.0 * scale, 0.0]);
        assert_eq!(fused, d);
    }

    // A small loss on top of huge logits keeps full precision (no lse − x_t cancellation).
    let logits = [1e4f32, 1e4 - 1.0, 1e4 - 2.0];
    let want = (1.0 + (-1.0f64).exp() + (-2.0f64).exp()).ln() + 1.0;
    let l = ferrolm_nn::loss::cross_entropy(&logits, &[1], 3).unwrap();
    assert!((l as f64 - want).abs() < 1e-6 * want, "{l} vs {want}");
    let (mut fused, mut losses) = (logits, [0.0]);
    cross_entropy_fused(&mut fused, &mut losses, &[1], 3, 1.0);
    assert!(
        (losses[0] as f64 - want).abs() < 1e-6 * want,
        "{} vs {want}",
        losses[0]
    );
}
