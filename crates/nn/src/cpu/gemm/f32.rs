//! The f32 FMA GEMM on the `gemm` crate: strided products (`gemm_strided`), the same split into
//! single-threaded row blocks (`gemm_row_blocks`), the choice between them for a model product
//! (`gemm_fma`), and the bounds every strided GEMM checks (`check_gemm_bounds`).

use rayon::prelude::*;

/// `dst (m, n) = [dst +] alpha · A (m, k) · B (k, n)`, with A and B given by row and column strides
/// (so transposes are free) and dst by its row stride (column stride 1). `accumulate` false
/// overwrites dst (its old contents are never read, NaN included). `parallel` lets gemm use the
/// rayon pool; pass false when already inside a rayon task.
#[allow(clippy::too_many_arguments)]
pub fn gemm_strided(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    dst_rs: usize,
    accumulate: bool,
    a: (&[f32], usize, usize),
    b: (&[f32], usize, usize),
    alpha: f32,
    parallel: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    check_gemm_bounds(m, n, k, dst, dst_rs, a, b);
    if k == 0 {
        if !accumulate {
            for r in 0..m {
                dst[r * dst_rs..r * dst_rs + n].fill(0.0);
            }
        }
        return;
    }
    let (a, a_rs, a_cs) = a;
    let (b, b_rs, b_cs) = b;
    let threads = rayon::current_num_threads();
    let par = if parallel && threads > 1 && m * n * k >= 48 * 48 * 48 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: check_gemm_bounds above proves that every element gemm addresses, dst[r·dst_rs + c] for
    // r < m, c < n, a[r·a_rs + i·a_cs] for i < k and b[i·b_rs + c·b_cs], lies inside its slice;
    // dst is a unique &mut borrow so it cannot alias a or b; with read_dst false gemm never reads
    // dst (no uninitialized or NaN values leak in); strides fit isize because slices do.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
            accumulate,
            a.as_ptr(),
            a_cs as isize,
            a_rs as isize,
            b.as_ptr(),
            b_cs as isize,
            b_rs as isize,
            1.0,
            alpha,
            false,
            false,
            false,
            par,
        );
    }
}

/// `gemm_strided` with the rows of dst split into blocks, one single-threaded gemm per block on
/// the rayon pool: about one block per thread (two per thread from 4096 rows). Where k is long
/// and dst small, as in the weight gradients, this beats the gemm crate's own threading (issue 5:
/// 1.35 -> 0.80 ms for tiny's d→d weight gradient, 3.6 -> 2.9 ms for small's). Bitwise the same
/// as one call whatever the number of blocks: the gemm crate's k-blocking does not depend on m
/// (tested), so the result does not depend on the thread count either.
#[allow(clippy::too_many_arguments)]
pub fn gemm_row_blocks(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    dst_rs: usize,
    accumulate: bool,
    a: (&[f32], usize, usize),
    b: (&[f32], usize, usize),
) {
    let threads = rayon::current_num_threads();
    if k == 0 || threads == 1 || m < 2 * 65 || n <= 64 {
        return gemm_strided(m, n, k, dst, dst_rs, accumulate, a, b, 1.0, true);
    }
    check_gemm_bounds(m, n, k, dst, dst_rs, a, b);
    // Blocks of more than 64 rows and n > 64: the gemm crate treats m ≤ 64 with n ≤ 64 as a
    // special case with its own k-blocking (and vectors as matrix-vector products).
    let blocks = threads * m.div_ceil(4096);
    let rows = m.div_ceil(blocks).max(65);
    let (a, a_rs, a_cs) = a;
    dst[..(m - 1) * dst_rs + n]
        .par_chunks_mut(rows * dst_rs)
        .enumerate()
        .for_each(|(i, dblock)| {
            let r0 = i * rows;
            let mb = rows.min(m - r0);
            gemm_strided(
                mb,
                n,
                k,
                dblock,
                dst_rs,
                accumulate,
                (&a[r0 * a_rs..], a_rs, a_cs),
                b,
                1.0,
                false,
            );
        });
}

/// The f32 FMA GEMM for the model's products: row blocks (`gemm_row_blocks`) where the
/// reduction is longer than the output is wide (k > n: weight gradients, the LM head's input
/// gradient, W2's forward), else the gemm crate's own threading (measured per shape in issue 5:
/// row blocks were faster for every k > n shape of the tiny and small presets and slower for the
/// LM head's forward). Either way bitwise the same result.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_fma(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    dst_rs: usize,
    accumulate: bool,
    a: (&[f32], usize, usize),
    b: (&[f32], usize, usize),
) {
    if k > n {
        gemm_row_blocks(m, n, k, dst, dst_rs, accumulate, a, b)
    } else {
        gemm_strided(m, n, k, dst, dst_rs, accumulate, a, b, 1.0, true)
    }
}

/// The bounds every strided GEMM relies on (m, n ≥ 1): dst holds m rows of n at stride dst_rs,
/// and, when k > 0, A (m, k) and B (k, n) lie inside their slices at their strides.
pub(crate) fn check_gemm_bounds(
    m: usize,
    n: usize,
    k: usize,
    dst: &[f32],
    dst_rs: usize,
    a: (&[f32], usize, usize),
    b: (&[f32], usize, usize),
) {
    assert!(n <= dst_rs || m == 1, "gemm: dst row stride {dst_rs} < n {n}");
    assert!((m - 1) * dst_rs + n <= dst.len(), "gemm: dst too short");
    if k > 0 {
        assert!((m - 1) * a.1 + (k - 1) * a.2 < a.0.len(), "gemm: lhs too short");
        assert!((k - 1) * b.1 + (n - 1) * b.2 < b.0.len(), "gemm: rhs too short");
    }
}
