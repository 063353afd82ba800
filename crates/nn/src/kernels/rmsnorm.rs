//! RMSNorm `y = x / sqrt(mean(x²) + eps) · g` over the last dimension, in f32.

use super::transpose::transpose_to_ptr;
use super::{fastmath, rows_per_task, SyncPtr};
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
    assert_eq!(out.len(), n * d, "rmsnorm_forward: out");
    assert_eq!(inp.len(), n * d, "rmsnorm_forward: inp");
    assert_eq!(rstd.len(), n, "rmsnorm_forward: rstd");
    assert_eq!(gain.len(), d, "rmsnorm_forward: gain");
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
    backward(dinp, dgain, dout, inp, gain, rstd, n, d, None)
}

/// `rmsnorm_backward` that also writes the accumulated dinp transposed: `dinp_t[c·ld_t + r] =
/// dinp[r·d + c]` (n ≤ ld_t; dinp_t holds d·ld_t floats), for the weight gradient of the product
/// that produced dout's consumer (`matmul_backward_weight_t`). Each row block is transposed while
/// in cache (non-temporal stores on 64-byte-aligned rows, see `transpose_to_ptr`); dinp and dgain
/// end bitwise as with `rmsnorm_backward`.
#[allow(clippy::too_many_arguments)]
pub fn rmsnorm_backward_t(
    dinp: &mut [f32],
    dgain: &mut [f32],
    dout: &[f32],
    inp: &[f32],
    gain: &[f32],
    rstd: &[f32],
    n: usize,
    d: usize,
    dinp_t: &mut [f32],
    ld_t: usize,
) {
    assert!(
        n <= ld_t && dinp_t.len() >= d * ld_t,
        "rmsnorm_backward_t: dinp_t"
    );
    let t = SyncPtr(dinp_t.as_mut_ptr());
    backward(dinp, dgain, dout, inp, gain, rstd, n, d, Some((t, ld_t)))
}

#[allow(clippy::too_many_arguments)]
fn backward(
    dinp: &mut [f32],
    dgain: &mut [f32],
    dout: &[f32],
    inp: &[f32],
    gain: &[f32],
    rstd: &[f32],
    n: usize,
    d: usize,
    transposed: Option<(SyncPtr, usize)>,
) {
    assert_eq!(dinp.len(), n * d, "rmsnorm_backward: dinp");
    assert_eq!(dout.len(), n * d, "rmsnorm_backward: dout");
    assert_eq!(inp.len(), n * d, "rmsnorm_backward: inp");
    assert_eq!(rstd.len(), n, "rmsnorm_backward: rstd");
    assert_eq!(gain.len(), d, "rmsnorm_backward: gain");
    assert_eq!(dgain.len(), d, "rmsnorm_backward: dgain");
    if n == 0 || d == 0 {
        return;
    }
    // One pass over the rows: each task adds its rows' input gradients and sums their dgain
    // terms into its own partial; the partials are then added in task order (the same order
    // whatever the thread count, so the result is deterministic). Blocks are whole 16-row tiles
    // where they can be, for the transposed copy.
    let rows = rows_per_task(n, d).next_multiple_of(16).min(n);
    let mut partial = vec![0.0f32; n.div_ceil(rows) * d];
    dinp.par_chunks_mut(rows * d)
        .zip(dout.par_chunks(rows * d))
        .zip(inp.par_chunks(rows * d))
        .zip(rstd.par_chunks(rows))
        .zip(partial.par_chunks_mut(d))
        .enumerate()
        .for_each(|(i, ((((dx, dy), x), rstd), dg))| {
            for (((dx, dy), x), &s) in dx
                .chunks_exact_mut(d)
                .zip(dy.chunks_exact(d))
                .zip(x.chunks_exact(d))
                .zip(rstd)
            {
                fastmath::rmsnorm_back_row(dx, dy, x, gain, s);
                fastmath::add_product(dg, dy, x, s);
            }
            if let Some((t, ld_t)) = transposed {
                // SAFETY: rmsnorm_backward_t checked that t points at d·ld_t writable floats of
                // an exclusively borrowed slice, n ≤ ld_t; this task writes only its columns
                // i·rows..i·rows + rstd.len() (≤ n) of each of the d rows, disjoint from every
                // other task's.
                unsafe { transpose_to_ptr(t.ptr().add(i * rows), ld_t, dx, d, rstd.len(), d) };
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

#[cfg(test)]
mod tests {
    use super::*;

    /// dinp and dgain bitwise as `rmsnorm_backward` (accumulating onto a nonzero dinp); dinp_t the
    /// exact transpose of the accumulated dinp, padding untouched; aligned and unaligned rows.
    #[test]
    fn transposed_input_gradient_is_the_exact_transpose() {
        for (n, d) in [(1, 5), (37, 48), (100, 130)] {
            let f = |len: usize, seed: usize| -> Vec<f32> {
                (0..len)
                    .map(|i| (((i * 7919 + seed * 104729) % 1009) as f32 / 1009.0 - 0.5) * 2.0)
                    .collect()
            };
            let (dy, x, gain, init) = (f(n * d, 1), f(n * d, 2), f(d, 3), f(n * d, 4));
            let rstd: Vec<f32> = (0..n).map(|i| 0.5 + (i % 7) as f32 * 0.1).collect();
            let (mut want, mut want_g) = (init.clone(), vec![0.25; d]);
            rmsnorm_backward(&mut want, &mut want_g, &dy, &x, &gain, &rstd, n, d);
            for (ld, skew) in [(n.div_ceil(16) * 16 + 16, 0), (n + 3, 1)] {
                let (mut got, mut got_g) = (init.clone(), vec![0.25; d]);
                let mut t = vec![-5.0f32; d * ld + 32];
                let off = t.as_ptr().align_offset(64) + skew;
                rmsnorm_backward_t(
                    &mut got,
                    &mut got_g,
                    &dy,
                    &x,
                    &gain,
                    &rstd,
                    n,
                    d,
                    &mut t[off..],
                    ld,
                );
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&got), bits(&want), "{n}x{d}");
                assert_eq!(bits(&got_g), bits(&want_g), "{n}x{d}");
                for c in 0..d {
                    for r in 0..ld {
                        let v = t[off + c * ld + r];
                        if r < n {
                            assert_eq!(v.to_bits(), want[r * d + c].to_bits(), "({c},{r}) ld {ld}");
                        } else {
                            assert_eq!(v, -5.0, "padding ({c},{r}) written");
                        }
                    }
                }
            }
        }
    }
}
