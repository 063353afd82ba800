//! Matrix-vector products of several independent positions at once (continuous-batching decode):
//! each weight row is read once per call and multiplied with all B inputs, instead of B separate
//! `gemv` passes that stream the weights B times. Every output is bitwise the `gemv::gemv_rows`
//! result for its row (the same 16-lane FMA order over k, the same masked tail, the same final
//! reduction), so a sequence decoded in a batch gives exactly the logits it gets alone.

use super::gemv::{gemv_rows, Weights, PARALLEL_MIN_ELEMS};
use crate::cpu::simd;
use rayon::prelude::*;

/// Batch rows handled per pass over a weight row (accumulators kept in registers).
const ROWS_PER_PASS: usize = 4;

/// How many weight rows ahead of the ones being multiplied the kernel prefetches (into L2: the
/// batched products are slow enough per row that fetching 6 rows ahead into L2 overlaps the
/// weight stream with the FMAs better than 2 rows ahead into L1, 10–15% off a batch-8 step).
const PREFETCH_ROWS: usize = 6;

/// For each `(out, w)` job: `out (B, d_out) = xs (B, k) · wᵀ` with w (d_out, k) row-major, every
/// weight row read once for the B rows of `xs`. The output rows of all jobs together are split
/// into one contiguous block per thread. Overwrites the outs.
pub fn gemv_batch(xs: &[f32], batch: usize, jobs: &mut [(&mut [f32], Weights<'_>)]) {
    assert!(
        batch > 0 && xs.len().is_multiple_of(batch),
        "gemv_batch: xs is not (batch, k)"
    );
    let k = xs.len() / batch;
    for (o, w) in jobs.iter() {
        assert_eq!(o.len() % batch, 0, "gemv_batch: out is not (batch, d_out)");
        assert_eq!(
            w.len(),
            o.len() / batch * k,
            "gemv_batch: weight is not (d_out, k)"
        );
    }
    if k == 0 {
        jobs.iter_mut().for_each(|(o, _)| o.fill(0.0));
        return;
    }
    let rows: usize = jobs.iter().map(|(o, _)| o.len() / batch).sum();
    let threads = rayon::current_num_threads();
    // Tasks: (job, first weight row, row count); each fills a (count, batch) block, scattered
    // into the outs afterwards.
    let per = if threads <= 1 || rows * k < PARALLEL_MIN_ELEMS {
        rows.max(1)
    } else {
        rows.div_ceil(threads).div_ceil(16) * 16
    };
    let mut tasks: Vec<(usize, usize, usize)> = Vec::new();
    for (j, (o, _)) in jobs.iter().enumerate() {
        let d_out = o.len() / batch;
        let mut r = 0;
        while r < d_out {
            let take = per.min(d_out - r);
            tasks.push((j, r, take));
            r += take;
        }
    }
    let ws: Vec<Weights<'_>> = jobs.iter().map(|(_, w)| *w).collect();
    let blocks: Vec<Vec<f32>> = tasks
        .par_iter()
        .with_max_len(1)
        .map(|&(j, r0, count)| {
            let mut block = vec![0.0f32; count * batch];
            let w = slice_rows(ws[j], r0 * k, count * k);
            rows_block(&mut block, w, xs, batch, k);
            block
        })
        .collect();
    for (&(j, r0, count), block) in tasks.iter().zip(&blocks) {
        let out = &mut jobs[j].0;
        let d_out = out.len() / batch;
        for (i, vals) in block.chunks_exact(batch).enumerate().take(count) {
            for (b, &v) in vals.iter().enumerate() {
                out[b * d_out + r0 + i] = v;
            }
        }
    }
}

fn slice_rows(w: Weights<'_>, start: usize, len: usize) -> Weights<'_> {
    match w {
        Weights::F32(w) => Weights::F32(&w[start..start + len]),
        Weights::Bf16(w) => Weights::Bf16(&w[start..start + len]),
    }
}

/// `block[o·batch + b] = w[o] · xs[b]` for the w.len()/k rows of w.
fn rows_block(block: &mut [f32], w: Weights<'_>, xs: &[f32], batch: usize, k: usize) {
    rows_strided(block, (batch, 1), w, xs, batch, k);
}

/// `out[o·so + b·sb] = w[o] · xs[b]` (strides `(so, sb)`) for the n = w.len()/k rows o of w
/// (row-major, k values each) and the `batch` rows b of xs (batch, k): each weight row read
/// once for all batch rows, each value bitwise `gemv_rows`'s for that row. Other elements of out
/// are left alone. Panics if out is too short.
pub fn rows_strided(
    out: &mut [f32],
    (so, sb): (usize, usize),
    w: Weights<'_>,
    xs: &[f32],
    batch: usize,
    k: usize,
) {
    let n = w.len().checked_div(k).unwrap_or(0);
    assert!(k > 0 && w.len() == n * k, "rows_strided: w is not (n, k)");
    assert_eq!(xs.len(), batch * k, "rows_strided: xs is not (batch, k)");
    if n == 0 || batch == 0 {
        return;
    }
    assert!(
        (n - 1) * so + (batch - 1) * sb < out.len(),
        "rows_strided: out too short"
    );
    #[cfg(target_arch = "x86_64")]
    if simd::avx512_bw_vl() {
        match w {
            // SAFETY: the CPU has AVX-512F/BW/VL (checked above); w holds n rows of k values and
            // xs batch rows of k (asserted above), the bounds the kernel relies on.
            Weights::F32(w) => unsafe { avx512::block_f32(out, (so, sb), w, xs, batch, k) },
            // SAFETY: as above.
            Weights::Bf16(w) => unsafe { avx512::block_bf16(out, (so, sb), w, xs, batch, k) },
        }
        return;
    }
    // Portable: the gemv of each row (the same code `gemv_rows` runs).
    let mut col = vec![0.0f32; n];
    for (b, x) in xs.chunks_exact(k).enumerate() {
        gemv_rows(&mut col, w, x);
        for (o, &v) in col.iter().enumerate() {
            out[o * so + b * sb] = v;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{PREFETCH_ROWS, ROWS_PER_PASS};
    // The same masked loads as `gemv`'s kernel (bf16 widened to f32).
    use crate::cpu::gemm::gemv::avx512::{load_bf16, load_f32};
    use std::arch::x86_64::*;

    /// Defines `$name(out, strides, w, xs, batch, k)`: out[o·so + b·sb] = Σ_i w[o·k + i]·xs[b·k + i],
    /// each sum in `gemv`'s order. Four weight rows a quarter of the matrix apart (four long
    /// sequential streams in different pages, as `gemv` reads them) by up to ROWS_PER_PASS batch
    /// rows per pass: 16 accumulators in registers, 4 weight and 4 input loads per 16 FMAs; the
    /// next batch rows reuse the four weight rows from L1.
    macro_rules! block_kernel {
        ($name:ident, $pass:ident, $t:ty, $load:ident) => {
            /// The R weight rows `rows` times the M batch rows from `b0`; the first batch group
            /// (`fetch`) prefetches each stream PREFETCH_ROWS rows ahead.
            ///
            /// # Safety
            /// As `$name`, with every rows[r] < n and b0 + M ≤ batch.
            #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
            unsafe fn $pass<const R: usize, const M: usize>(
                out: &mut [f32],
                (so, sb): (usize, usize),
                (wp, xp): (*const $t, *const f32),
                k: usize,
                rows: [usize; R],
                b0: usize,
            ) {
                let full = k / 16 * 16;
                let tail: __mmask16 = ((1u32 << (k - full)) - 1) as __mmask16;
                let all: __mmask16 = 0xffff;
                let fetch = b0 == 0;
                let mut acc = [[_mm512_setzero_ps(); M]; R];
                let mut wv = [_mm512_setzero_ps(); R];
                // The rows PREFETCH_ROWS ahead in each stream are fetched while these are
                // multiplied (the hardware prefetchers alone left the streams latency-bound). A
                // prefetch never faults; past the end of w it is only wasted.
                let ahead = wp.wrapping_add(PREFETCH_ROWS * k) as *const i8;
                // SAFETY: rows[r] < n and b0..b0+M < batch, offsets i < k: every address loaded
                // is inside w (n·k) or xs (batch·k); tail loads are masked to the valid elements.
                let mut i = 0;
                while i < full {
                    for r in 0..R {
                        if fetch {
                            let at = (rows[r] * k + i) * std::mem::size_of::<$t>();
                            _mm_prefetch::<_MM_HINT_T1>(ahead.wrapping_add(at));
                        }
                        wv[r] = $load(wp.add(rows[r] * k + i), all);
                    }
                    for j in 0..M {
                        let xv = _mm512_loadu_ps(xp.add((b0 + j) * k + i));
                        for r in 0..R {
                            acc[r][j] = _mm512_fmadd_ps(wv[r], xv, acc[r][j]);
                        }
                    }
                    i += 16;
                }
                if tail != 0 {
                    for r in 0..R {
                        wv[r] = $load(wp.add(rows[r] * k + full), tail);
                    }
                    for j in 0..M {
                        let xv = _mm512_maskz_loadu_ps(tail, xp.add((b0 + j) * k + full));
                        for r in 0..R {
                            acc[r][j] = _mm512_fmadd_ps(wv[r], xv, acc[r][j]);
                        }
                    }
                }
                if R == 4 && M == 4 {
                    // All 16 sums at once, in `_mm512_reduce_add_ps`'s order (see reduce16).
                    let mut v = [_mm512_setzero_ps(); 16];
                    for r in 0..R {
                        for j in 0..M {
                            v[4 * r + j] = acc[r][j];
                        }
                    }
                    let sums = reduce16(v);
                    for r in 0..R {
                        for j in 0..M {
                            out[rows[r] * so + (b0 + j) * sb] = sums[4 * j + r];
                        }
                    }
                } else {
                    for r in 0..R {
                        for j in 0..M {
                            out[rows[r] * so + (b0 + j) * sb] = _mm512_reduce_add_ps(acc[r][j]);
                        }
                    }
                }
            }

            /// `out[o·so + b·sb]` = row o of w (n = w.len()/k rows) · row b of xs.
            ///
            /// # Safety
            /// The CPU must have AVX-512F/BW/VL.
            #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
            pub(super) unsafe fn $name(
                out: &mut [f32],
                strides: (usize, usize),
                w: &[$t],
                xs: &[f32],
                batch: usize,
                k: usize,
            ) {
                let n = w.len() / k;
                assert!(xs.len() >= batch * k);
                let ptrs = (w.as_ptr(), xs.as_ptr());
                let q = n / 4;
                for o in 0..n - 3 * q {
                    // Rows o, o + q, o + 2q, o + 3q; past 4q, the leftover rows one at a time.
                    let quad = o < q;
                    let rows = [o, o + q, o + 2 * q, o + 3 * q];
                    let one = [if quad { o } else { 3 * q + o }];
                    let mut b0 = 0;
                    while b0 < batch {
                        let m = ROWS_PER_PASS.min(batch - b0);
                        // SAFETY: every row < n and b0 + m ≤ batch, as $pass requires.
                        match (quad, m) {
                            (true, 1) => $pass::<4, 1>(out, strides, ptrs, k, rows, b0),
                            (true, 2) => $pass::<4, 2>(out, strides, ptrs, k, rows, b0),
                            (true, 3) => $pass::<4, 3>(out, strides, ptrs, k, rows, b0),
                            (true, 4) => $pass::<4, 4>(out, strides, ptrs, k, rows, b0),
                            (false, 1) => $pass::<1, 1>(out, strides, ptrs, k, one, b0),
                            (false, 2) => $pass::<1, 2>(out, strides, ptrs, k, one, b0),
                            (false, 3) => $pass::<1, 3>(out, strides, ptrs, k, one, b0),
                            (false, 4) => $pass::<1, 4>(out, strides, ptrs, k, one, b0),
                            _ => unreachable!("m is 1..=ROWS_PER_PASS"),
                        }
                        b0 += m;
                    }
                }
            }
        };
    }

    /// The lane sums of 16 vectors, `sums[4c + j]` = the sum of `v[4j + c]`, each added in the
    /// tree of `_mm512_reduce_add_ps` (lane i + lane i+8, then i + i+4, i + i+2, i + i+1, so
    /// bitwise its result) but for all 16 at once: 15 adds and 30 shuffles instead of 16 trees.
    ///
    /// # Safety
    /// The CPU must have AVX-512F.
    #[target_feature(enable = "avx512f")]
    unsafe fn reduce16(v: [__m512; 16]) -> [f32; 16] {
        // Halves: u[m] holds v[2m]'s lanes i + (i+8) in its low 256 bits, v[2m+1]'s in its high.
        let u: [__m512; 8] = std::array::from_fn(|m| {
            let (a, b) = (v[2 * m], v[2 * m + 1]);
            _mm512_add_ps(
                _mm512_shuffle_f32x4::<0b01_00_01_00>(a, b),
                _mm512_shuffle_f32x4::<0b11_10_11_10>(a, b),
            )
        });
        // Quarters: 128-bit block c of t[p] holds v[4p + c]'s lanes i + (i+4).
        let t: [__m512; 4] = std::array::from_fn(|p| {
            let (a, b) = (u[2 * p], u[2 * p + 1]);
            _mm512_add_ps(
                _mm512_shuffle_f32x4::<0b10_00_10_00>(a, b),
                _mm512_shuffle_f32x4::<0b11_01_11_01>(a, b),
            )
        });
        // Pairs: block c of w[r] holds v[8r + c]'s lanes i + (i+2), then v[8r + 4 + c]'s.
        let w: [__m512; 2] = std::array::from_fn(|r| {
            let (a, b) = (t[2 * r], t[2 * r + 1]);
            _mm512_add_ps(
                _mm512_shuffle_ps::<0b01_00_01_00>(a, b),
                _mm512_shuffle_ps::<0b11_10_11_10>(a, b),
            )
        });
        // Last pair: block c holds the sums of v[c], v[4 + c], v[8 + c], v[12 + c].
        let z = _mm512_add_ps(
            _mm512_shuffle_ps::<0b10_00_10_00>(w[0], w[1]),
            _mm512_shuffle_ps::<0b11_01_11_01>(w[0], w[1]),
        );
        let mut sums = [0.0f32; 16];
        _mm512_storeu_ps(sums.as_mut_ptr(), z);
        sums
    }

    block_kernel!(block_f32, pass_f32, f32, load_f32);
    block_kernel!(block_bf16, pass_bf16, u16, load_bf16);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (((i * 7919 + seed * 104_729) % 1000) as f32 / 500.0) - 1.0)
            .collect()
    }

    #[test]
    fn batched_rows_are_bitwise_the_single_row_gemv() {
        // Odd k (masked tail), batch sizes across the 8-row pass, f32 and bf16, enough rows to
        // split across threads.
        for &(batch, k, d_out) in &[(1, 5, 3), (3, 37, 70), (8, 64, 33), (11, 250, 300), (16, 96, 520)] {
            let xs = data(batch * k, 1);
            let w = data(d_out * k, 2);
            let wb = super::super::gemv::to_bf16(&w);
            for weights in [Weights::F32(&w), Weights::Bf16(&wb)] {
                let mut out = vec![0.0f32; batch * d_out];
                gemv_batch(&xs, batch, &mut [(&mut out, weights)]);
                for b in 0..batch {
                    let mut want = vec![0.0f32; d_out];
                    gemv_rows(&mut want, weights, &xs[b * k..(b + 1) * k]);
                    let got = &out[b * d_out..(b + 1) * d_out];
                    assert!(
                        got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()),
                        "batch {batch} k {k} row {b}"
                    );
                }
            }
        }
    }
}
