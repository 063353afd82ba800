//! The FFN's elementwise parts: SwiGLU gate `SiLU(h1) ⊙ h3` and plain SiLU, SiLU(x) = x·σ(x).

use super::fastmath::{swiglu_back_rows, swiglu_rows};
use super::gemm::transpose::transpose_to_ptr;
use super::par::{zip3_chunks, SyncPtr, CHUNK};
use rayon::prelude::*;

/// `out = SiLU(h1) ⊙ h3`, all of the same length (n·d_ff). Overwrites out.
pub fn swiglu_forward(out: &mut [f32], h1: &[f32], h3: &[f32]) {
    zip3_chunks("swiglu_forward", out, h1, h3, |o, a, b| {
        swiglu_rows(o, a, Some(b))
    });
}

/// Backward of `swiglu_forward`: `dh1 = dout ⊙ h3 ⊙ σ(h1)(1 + h1(1 − σ(h1)))`, `dh3 = dout ⊙ SiLU(h1)`.
/// Overwrites dh1 and dh3.
pub fn swiglu_backward(dh1: &mut [f32], dh3: &mut [f32], dout: &[f32], h1: &[f32], h3: &[f32]) {
    let n = dout.len();
    assert!(
        dh1.len() == n && dh3.len() == n && h1.len() == n && h3.len() == n,
        "swiglu_backward: lengths"
    );
    dh1.par_chunks_mut(CHUNK)
        .zip(dh3.par_chunks_mut(CHUNK))
        .zip(dout.par_chunks(CHUNK))
        .zip(h1.par_chunks(CHUNK).zip(h3.par_chunks(CHUNK)))
        .for_each(|(((d1, d3), dy), (a, b))| swiglu_back_rows(d1, Some(d3), dy, a, Some(b)));
}

/// `swiglu_backward` on (rows, cols) matrices that also writes the two gradients transposed:
/// `dh1t[c·ld_t + r] = dh1[r·cols + c]` and the same for dh3t (rows ≤ ld_t; each (cols, ld_t)),
/// for the weight gradients (`matmul_backward_weight_t`). Blocks of 64 rows: a block is
/// transposed while it is still in cache (with non-temporal stores where dh1t, dh3t and ld_t
/// keep the rows 64-byte aligned: see `transpose_to_ptr`). Overwrites dh1, dh3 and the first
/// `rows` columns of dh1t, dh3t; bitwise the same dh1, dh3 as `swiglu_backward`.
#[allow(clippy::too_many_arguments)]
pub fn swiglu_backward_t(
    dh1: &mut [f32],
    dh3: &mut [f32],
    dh1t: &mut [f32],
    dh3t: &mut [f32],
    ld_t: usize,
    dout: &[f32],
    h1: &[f32],
    h3: &[f32],
    cols: usize,
) {
    let n = dout.len();
    assert!(
        dh1.len() == n && dh3.len() == n && h1.len() == n && h3.len() == n,
        "swiglu_backward_t: lengths"
    );
    if n == 0 || cols == 0 {
        return;
    }
    assert_eq!(n % cols, 0, "swiglu_backward_t: not whole rows");
    let rows = n / cols;
    assert!(
        rows <= ld_t && dh1t.len() >= cols * ld_t && dh3t.len() >= cols * ld_t,
        "swiglu_backward_t: transposed outputs"
    );
    const BLOCK: usize = 64;
    let (t1, t3) = (SyncPtr(dh1t.as_mut_ptr()), SyncPtr(dh3t.as_mut_ptr()));
    let len = BLOCK * cols;
    dh1.par_chunks_mut(len)
        .zip(dh3.par_chunks_mut(len))
        .zip(dout.par_chunks(len))
        .zip(h1.par_chunks(len).zip(h3.par_chunks(len)))
        .enumerate()
        .for_each(|(i, (((d1, d3), dy), (a, b)))| {
            swiglu_back_rows(d1, Some(d3), dy, a, Some(b));
            let (r0, nr) = (i * BLOCK, d1.len() / cols);
            // SAFETY: dh1t and dh3t hold cols·ld_t floats (asserted) and are exclusively
            // borrowed for this call; this task writes only their columns r0..r0 + nr
            // (r0 + nr ≤ rows ≤ ld_t) of each of the cols rows, and the tasks' row blocks are
            // disjoint, so no element is written twice or read meanwhile.
            unsafe {
                transpose_to_ptr(t1.ptr().add(r0), ld_t, d1, cols, nr, cols, true);
                transpose_to_ptr(t3.ptr().add(r0), ld_t, d3, cols, nr, cols, true);
            }
        });
}

/// `out = SiLU(inp)`. Overwrites out.
pub fn silu_forward(out: &mut [f32], inp: &[f32]) {
    assert_eq!(out.len(), inp.len(), "silu_forward: lengths");
    out.par_chunks_mut(CHUNK)
        .zip(inp.par_chunks(CHUNK))
        .for_each(|(o, x)| swiglu_rows(o, x, None));
}

/// `dinp = dout ⊙ σ(x)(1 + x(1 − σ(x)))`. Overwrites dinp.
pub fn silu_backward(dinp: &mut [f32], dout: &[f32], inp: &[f32]) {
    zip3_chunks("silu_backward", dinp, dout, inp, |dx, dy, x| {
        swiglu_back_rows(dx, None, dy, x, None)
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fill(len: usize, seed: usize) -> Vec<f32> {
        (0..len)
            .map(|i| (((i * 7919 + seed * 104729) % 1009) as f32 / 1009.0 - 0.5) * 4.0)
            .collect()
    }

    /// dh1, dh3 bitwise as `swiglu_backward`; dh1t, dh3t their exact transposes, padding
    /// untouched. Sizes off every block and tile width, rows with an aligned and an unaligned
    /// stride (the streaming and the plain stores), and a start off a 64-byte boundary.
    #[test]
    fn transposed_outputs_are_exact_transposes() {
        for (rows, cols) in [(1, 1), (17, 33), (64, 16), (130, 48), (300, 70)] {
            let n = rows * cols;
            let (dy, h1, h3) = (fill(n, 1), fill(n, 2), fill(n, 3));
            let (mut w1, mut w3) = (vec![0.0; n], vec![0.0; n]);
            swiglu_backward(&mut w1, &mut w3, &dy, &h1, &h3);
            for (ld, skew) in [
                (rows.div_ceil(16) * 16 + 16, 0),
                (rows + 3, 0),
                (rows.div_ceil(16) * 16, 5),
            ] {
                let (mut d1, mut d3) = (vec![f32::NAN; n], vec![f32::NAN; n]);
                let mut t1 = vec![-7.0f32; cols * ld + 32];
                let mut t3 = t1.clone();
                let off = t1.as_ptr().align_offset(64) + skew;
                let off3 = t3.as_ptr().align_offset(64) + skew;
                swiglu_backward_t(
                    &mut d1,
                    &mut d3,
                    &mut t1[off..],
                    &mut t3[off3..],
                    ld,
                    &dy,
                    &h1,
                    &h3,
                    cols,
                );
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&d1), bits(&w1), "{rows}x{cols}");
                assert_eq!(bits(&d3), bits(&w3), "{rows}x{cols}");
                for c in 0..cols {
                    for r in 0..ld {
                        let (g1, g3) = (t1[off + c * ld + r], t3[off3 + c * ld + r]);
                        if r < rows {
                            assert_eq!(g1.to_bits(), w1[r * cols + c].to_bits(), "dh1t ({c},{r}) ld {ld}");
                            assert_eq!(g3.to_bits(), w3[r * cols + c].to_bits(), "dh3t ({c},{r}) ld {ld}");
                        } else {
                            assert!(g1 == -7.0 && g3 == -7.0, "padding ({c},{r}) written, ld {ld}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    #[should_panic(expected = "transposed outputs")]
    fn transposed_outputs_must_fit() {
        let v = vec![0.5f32; 6];
        let (mut a, mut b) = (vec![0.0; 6], vec![0.0; 6]);
        let (mut t1, mut t3) = (vec![0.0; 5], vec![0.0; 6]);
        swiglu_backward_t(&mut a, &mut b, &mut t1, &mut t3, 2, &v, &v, &v, 3);
    }
}
