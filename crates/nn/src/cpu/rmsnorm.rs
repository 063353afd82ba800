//! RMSNorm `y = x / sqrt(mean(x²) + eps) · g` over the last dimension, in f32.

use super::fastmath;
use super::par::rows_per_task;
use rayon::prelude::*;

/// `out (n, d) = inp / sqrt(mean(inp²) + eps) · gain`, gain (d); writes `rstd (n)` =
/// 1/sqrt(mean(inp²) + eps) for the backward. Overwrites out and rstd.
pub fn rmsnorm_forward(
    out: &mut [f32],
    rstd: &mut [f32],
    inp: &[f32],
    gain: &[f32],
    n: usize,
    d: usize,
    eps: f32,
) {
    check_lens!("rmsnorm_forward", out: n * d, inp: n * d, rstd: n, gain: d);
    let rows = rows_per_task(n, d);
    out.par_chunks_mut(rows * d)
        .zip(rstd.par_chunks_mut(rows))
        .zip(inp.par_chunks(rows * d))
        .for_each(|((out, rstd), inp)| {
            for ((y, r), x) in out
                .chunks_exact_mut(d)
                .zip(rstd.iter_mut())
                .zip(inp.chunks_exact(d))
            {
                *r = rmsnorm_row(y, x, gain, eps);
            }
        });
}

/// One row of `rmsnorm_forward` on the calling thread: `y = x / sqrt(mean(x²) + eps) · gain`, all
/// of length d; returns the rstd 1/sqrt(mean(x²) + eps). Overwrites y.
#[inline]
pub fn rmsnorm_row(y: &mut [f32], x: &[f32], gain: &[f32], eps: f32) -> f32 {
    let d = x.len();
    assert!(y.len() == d && gain.len() == d, "rmsnorm_row: lengths");
    fastmath::rmsnorm_row(y, x, gain, eps)
}

/// Backward of `rmsnorm_forward` given its `rstd`:
/// `dinp += rstd·g⊙dout − rstd³/d · x · Σ(dout⊙g⊙x)` (ACCUMULATED) and
/// `dgain += Σ_rows dout ⊙ x · rstd` (ACCUMULATED). Shapes as in the forward.
#[allow(clippy::too_many_arguments)]
pub fn rmsnorm_backward(
    dinp: &mut [f32],
    dgain: &mut [f32],
    dout: &[f32],
    inp: &[f32],
    gain: &[f32],
    rstd: &[f32],
    n: usize,
    d: usize,
) {
    check_lens!("rmsnorm_backward", dinp: n * d, dout: n * d, inp: n * d, rstd: n, gain: d, dgain: d);
    if n == 0 || d == 0 {
        return;
    }
    // One pass over the rows: each task adds its rows' input gradients and sums their dgain
    // terms into its own partial; the partials are then added in task order (the same order
    // whatever the thread count, so the result is deterministic).
    let rows = rows_per_task(n, d);
    let mut partial = vec![0.0f32; n.div_ceil(rows) * d];
    dinp.par_chunks_mut(rows * d)
        .zip(dout.par_chunks(rows * d))
        .zip(inp.par_chunks(rows * d))
        .zip(rstd.par_chunks(rows))
        .zip(partial.par_chunks_mut(d))
        .for_each(|((((dx, dy), x), rstd), dg)| {
            for (((dx, dy), x), &s) in dx
                .chunks_exact_mut(d)
                .zip(dy.chunks_exact(d))
                .zip(x.chunks_exact(d))
                .zip(rstd)
            {
                fastmath::rmsnorm_back_row(dx, dy, x, gain, s);
                fastmath::add_product(dg, dy, x, s);
            }
        });
    // Column blocks of dgain in parallel, each summing the partials in task order.
    let cols = 64;
    dgain.par_chunks_mut(cols).enumerate().for_each(|(cb, dg)| {
        let c0 = cb * cols;
        for p in partial.chunks_exact(d) {
            for (g, v) in dg.iter_mut().zip(&p[c0..]) {
                *g += v;
            }
        }
    });
}
