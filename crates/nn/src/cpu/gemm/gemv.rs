//! Decode-time kernels (generation, one position per sequence): matrix-vector products that stream
//! each weight row once, and attention of one query per sequence over the KV cache.
//!
//! Generation is bound by reading the weights, so the matrix-vector products are written for
//! bandwidth: four weight rows per pass with AVX-512 (x stays in L1), one contiguous block of rows
//! per thread (one rayon task each, not many small ones), and several products that share their
//! input (Q, K, V; W1, W3) in one parallel pass. Weights are f32 or bf16 (u16 bit patterns, f32
//! accumulation: bf16 halves the bytes read). Each kernel picks at run time an AVX-512 copy where
//! the CPU has it, else a portable one.

use crate::cpu::simd::{self, bf16_to_f32, f32_to_bf16};
use rayon::prelude::*;
use std::ops::Range;

/// The weights of a linear layer, (d_out, d_in) row-major, in the precision inference reads.
#[derive(Clone, Copy, Debug)]
pub enum Weights<'a> {
    F32(&'a [f32]),
    /// bf16 bit patterns (the high 16 bits of an f32).
    Bf16(&'a [u16]),
}

/// A model's parameters as decoding reads them: the f32 values `p` (norm gains, and the
/// weights where there is no snapshot), and the bf16 snapshot of the same layout, when given,
/// for the weight matrices.
#[derive(Clone, Copy, Debug)]
pub struct DecodeWeights<'a> {
    pub p: &'a [f32],
    pub bf16: Option<&'a [u16]>,
}

impl<'a> DecodeWeights<'a> {
    /// The weight matrix at `r` of the layout: from the bf16 snapshot when there is one.
    #[inline(always)]
    pub fn at(&self, r: Range<usize>) -> Weights<'a> {
        match self.bf16 {
            Some(b) => Weights::Bf16(&b[r]),
            None => Weights::F32(&self.p[r]),
        }
    }
}

impl Weights<'_> {
    pub fn len(&self) -> usize {
        match self {
            Weights::F32(w) => w.len(),
            Weights::Bf16(w) => w.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Splits after `mid` elements.
    fn split_at(self, mid: usize) -> (Self, Self) {
        match self {
            Weights::F32(w) => {
                let (a, b) = w.split_at(mid);
                (Weights::F32(a), Weights::F32(b))
            }
            Weights::Bf16(w) => {
                let (a, b) = w.split_at(mid);
                (Weights::Bf16(a), Weights::Bf16(b))
            }
        }
    }
}

/// A bf16 copy of `src` (round-to-nearest-even).
pub fn to_bf16(src: &[f32]) -> Vec<u16> {
    let mut out = vec![0u16; src.len()];
    out.par_chunks_mut(1 << 16)
        .zip(src.par_chunks(1 << 16))
        .for_each(|(o, s)| {
            for (o, &s) in o.iter_mut().zip(s) {
                *o = f32_to_bf16(s);
            }
        });
    out
}

/// Up to this many rows (positions × sequences) per call, linear layers run as matrix-vector
/// products that stream the weights once per row (`matmul_forward`, `decode::project_rows`);
/// more rows go through a GEMM, which repacks the weights but reuses them across rows.
pub const GEMV_MAX_ROWS: usize = 4;

/// Below this many weight elements in one call, the products run on the calling thread: waking
/// another costs more than it saves.
pub(crate) const PARALLEL_MIN_ELEMS: usize = 1 << 15;

/// Matrix-vector products sharing their input, in one parallel pass: for each `(out, w)` job,
/// `out[o] = w[o] · x` with w (out.len(), x.len()) row-major. The rows of all jobs together are
/// split into one contiguous block per thread. Overwrites the outs.
pub fn gemv_multi(x: &[f32], jobs: &mut [(&mut [f32], Weights<'_>)]) {
    let k = x.len();
    for (o, w) in jobs.iter() {
        assert_eq!(w.len(), o.len() * k, "gemv: weight is not (out.len(), x.len())");
    }
    let rows: usize = jobs.iter().map(|(o, _)| o.len()).sum();
    let threads = rayon::current_num_threads();
    if k == 0 || threads <= 1 || rows * k < PARALLEL_MIN_ELEMS {
        for (o, w) in jobs.iter_mut() {
            gemv_rows(o, *w, x);
        }
        return;
    }
    // Rows per thread, rounded up to 16 (whole cache lines of out).
    let per = rows.div_ceil(threads).div_ceil(16) * 16;
    let mut tasks: Vec<Vec<(&mut [f32], Weights<'_>)>> = (0..threads).map(|_| Vec::new()).collect();
    let (mut t, mut room) = (0, per);
    for (o, w) in jobs.iter_mut() {
        let (mut o, mut w): (&mut [f32], Weights<'_>) = (o, *w);
        while !o.is_empty() {
            let take = room.min(o.len());
            let (oa, ob) = std::mem::take(&mut o).split_at_mut(take);
            let (wa, wb) = w.split_at(take * k);
            tasks[t].push((oa, wa));
            (o, w) = (ob, wb);
            room -= take;
            if room == 0 {
                t += 1;
                room = per;
            }
        }
    }
    tasks.into_par_iter().with_max_len(1).for_each(|task| {
        for (o, w) in task {
            gemv_rows(o, w, x);
        }
    });
}

/// `out[o] = w[o] · x` on the calling thread, w (out.len(), x.len()) row-major.
pub fn gemv_rows(out: &mut [f32], w: Weights<'_>, x: &[f32]) {
    assert_eq!(w.len(), out.len() * x.len(), "gemv_rows: weight shape");
    if x.is_empty() {
        out.fill(0.0);
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if simd::avx512_bw_vl() {
        match w {
            // SAFETY: the CPU has AVX-512F/BW/VL (checked by avx512()) and the assert above gives
            // w.len() == out.len()·x.len(), the bound the kernels rely on.
            Weights::F32(w) => unsafe { avx512::rows_f32(out, w, x) },
            // SAFETY: as above.
            Weights::Bf16(w) => unsafe { avx512::rows_bf16(out, w, x) },
        }
        return;
    }
    match w {
        Weights::F32(w) => {
            for (o, row) in out.iter_mut().zip(w.chunks_exact(x.len())) {
                *o = crate::cpu::fastmath::dot(row, x);
            }
        }
        Weights::Bf16(w) => {
            for (o, row) in out.iter_mut().zip(w.chunks_exact(x.len())) {
                *o = dot_bf16_portable(row, x);
            }
        }
    }
}

/// Σ bf16(w)·x with 16 partial sums (vectorizable), for CPUs without AVX-512.
fn dot_bf16_portable(w: &[u16], x: &[f32]) -> f32 {
    let mut acc = [0.0f32; 16];
    let (cw, cx) = (w.chunks_exact(16), x.chunks_exact(16));
    let rest: f32 = cw
        .remainder()
        .iter()
        .zip(cx.remainder())
        .map(|(&a, &b)| bf16_to_f32(a) * b)
        .sum();
    for (a, b) in cw.zip(cx) {
        for i in 0..16 {
            acc[i] += bf16_to_f32(a[i]) * b[i];
        }
    }
    rest + acc.iter().sum::<f32>()
}

#[cfg(target_arch = "x86_64")]
pub(super) mod avx512 {
    use std::arch::x86_64::*;

    /// Loads 16 bf16 values (masked) and widens them to f32 (bf16 is the high half of an f32).
    /// Also `gemv_batch`'s load.
    ///
    /// # Safety
    /// The CPU must have AVX-512F/BW/VL; `p` must be readable for the lanes `mask` selects.
    #[inline(always)]
    pub(in crate::cpu::gemm) unsafe fn load_bf16(p: *const u16, mask: __mmask16) -> __m512 {
        let h = _mm256_maskz_loadu_epi16(mask, p as *const i16);
        _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(h)))
    }

    /// Loads 16 f32 values (masked).
    ///
    /// # Safety
    /// As [`load_bf16`]: AVX-512F, and `p` readable for the lanes `mask` selects.
    #[inline(always)]
    pub(in crate::cpu::gemm) unsafe fn load_f32(p: *const f32, mask: __mmask16) -> __m512 {
        _mm512_maskz_loadu_ps(mask, p)
    }

    /// Defines `$name(out, w, x)`: out[o] = Σ_i w[o·k + i]·x[i], k = x.len(), four rows per pass.
    macro_rules! rows_kernel {
        ($name:ident, $t:ty, $load:ident) => {
            /// # Safety
            /// The CPU must have AVX-512F/BW/VL, and `w.len() >= out.len() * x.len()`.
            #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
            pub(super) unsafe fn $name(out: &mut [f32], w: &[$t], x: &[f32]) {
                let k = x.len();
                let n = out.len();
                debug_assert!(w.len() >= n * k);
                let full = k / 16 * 16;
                let tail: __mmask16 = ((1u32 << (k - full)) - 1) as __mmask16;
                let all: __mmask16 = 0xffff;
                let (xp, wp) = (x.as_ptr(), w.as_ptr());
                let mut r = 0;
                // SAFETY (all pointer arithmetic below): rows r..r+4 < n, offsets i < k, so every
                // address is inside w (n·k elements) or x (k); the tail loads are masked to the
                // k − full valid elements, and masked-off lanes are never touched.
                // Rows r, r + q, r + 2q, r + 3q together: four long sequential streams (in
                // different pages) rather than four short adjacent ones.
                let q = n / 4;
                while r < q {
                    let w0 = wp.add(r * k);
                    let (w1, w2, w3) = (w0.add(q * k), w0.add(2 * q * k), w0.add(3 * q * k));
                    let mut a0 = _mm512_setzero_ps();
                    let mut a1 = _mm512_setzero_ps();
                    let mut a2 = _mm512_setzero_ps();
                    let mut a3 = _mm512_setzero_ps();
                    let mut i = 0;
                    while i < full {
                        let xv = _mm512_loadu_ps(xp.add(i));
                        a0 = _mm512_fmadd_ps($load(w0.add(i), all), xv, a0);
                        a1 = _mm512_fmadd_ps($load(w1.add(i), all), xv, a1);
                        a2 = _mm512_fmadd_ps($load(w2.add(i), all), xv, a2);
                        a3 = _mm512_fmadd_ps($load(w3.add(i), all), xv, a3);
                        i += 16;
                    }
                    if tail != 0 {
                        let xv = _mm512_maskz_loadu_ps(tail, xp.add(full));
                        a0 = _mm512_fmadd_ps($load(w0.add(full), tail), xv, a0);
                        a1 = _mm512_fmadd_ps($load(w1.add(full), tail), xv, a1);
                        a2 = _mm512_fmadd_ps($load(w2.add(full), tail), xv, a2);
                        a3 = _mm512_fmadd_ps($load(w3.add(full), tail), xv, a3);
                    }
                    out[r] = _mm512_reduce_add_ps(a0);
                    out[r + q] = _mm512_reduce_add_ps(a1);
                    out[r + 2 * q] = _mm512_reduce_add_ps(a2);
                    out[r + 3 * q] = _mm512_reduce_add_ps(a3);
                    r += 1;
                }
                r = 4 * q;
                while r < n {
                    let w0 = wp.add(r * k);
                    let mut a0 = _mm512_setzero_ps();
                    let mut i = 0;
                    while i < full {
                        a0 = _mm512_fmadd_ps($load(w0.add(i), all), _mm512_loadu_ps(xp.add(i)), a0);
                        i += 16;
                    }
                    if tail != 0 {
                        let xv = _mm512_maskz_loadu_ps(tail, xp.add(full));
                        a0 = _mm512_fmadd_ps($load(w0.add(full), tail), xv, a0);
                    }
                    out[r] = _mm512_reduce_add_ps(a0);
                    r += 1;
                }
            }
        };
    }

    rows_kernel!(rows_f32, f32, load_f32);
    rows_kernel!(rows_bf16, u16, load_bf16);
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Deterministic test values in [−1, 1).
    pub(crate) fn data(n: usize, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (((i * 7919 + seed * 104729) % 1013) as f32 / 1013.0 - 0.5) * 2.0)
            .collect()
    }

    fn naive(w: &[f64], x: &[f32], n: usize) -> Vec<f64> {
        let k = x.len();
        (0..n)
            .map(|o| (0..k).map(|i| w[o * k + i] * x[i] as f64).sum())
            .collect()
    }

    #[test]
    fn gemv_f32_and_bf16_match_naive_for_odd_sizes() {
        for &(n, k) in &[(1, 1), (3, 5), (4, 16), (7, 17), (37, 70), (130, 512), (9, 1344)] {
            let w = data(n * k, 1);
            let x = data(k, 2);
            let want = naive(&w.iter().map(|&v| v as f64).collect::<Vec<_>>(), &x, n);
            let mut out = vec![f32::NAN; n];
            gemv_rows(&mut out, Weights::F32(&w), &x);
            for (a, b) in out.iter().zip(&want) {
                assert!(
                    (*a as f64 - b).abs() < 1e-5 * (k as f64).sqrt(),
                    "f32 {n}x{k}: {a} {b}"
                );
            }
            // bf16: exact against the naive product of the rounded weights.
            let wb = to_bf16(&w);
            let want_b = naive(
                &wb.iter().map(|&v| bf16_to_f32(v) as f64).collect::<Vec<_>>(),
                &x,
                n,
            );
            gemv_rows(&mut out, Weights::Bf16(&wb), &x);
            for (a, b) in out.iter().zip(&want_b) {
                assert!(
                    (*a as f64 - b).abs() < 1e-5 * (k as f64).sqrt(),
                    "bf16 {n}x{k}: {a} {b}"
                );
            }
            // The portable bf16 path agrees too.
            for (o, row) in out.iter().zip(wb.chunks_exact(k)) {
                assert!((o - dot_bf16_portable(row, &x)).abs() < 1e-5 * (k as f32).sqrt());
            }
        }
    }

    #[test]
    fn gemv_multi_splits_rows_over_threads_like_separate_products() {
        let pool = crate::testing::pool(3);
        let k = 300;
        let x = data(k, 3);
        let (wa, wb) = (data(123 * k, 4), to_bf16(&data(77 * k, 5)));
        let (mut oa, mut ob) = (vec![f32::NAN; 123], vec![f32::NAN; 77]);
        pool.install(|| {
            gemv_multi(
                &x,
                &mut [(&mut oa, Weights::F32(&wa)), (&mut ob, Weights::Bf16(&wb))],
            );
        });
        let (mut ra, mut rb) = (vec![0.0; 123], vec![0.0; 77]);
        gemv_rows(&mut ra, Weights::F32(&wa), &x);
        gemv_rows(&mut rb, Weights::Bf16(&wb), &x);
        assert_eq!(oa, ra);
        assert_eq!(ob, rb);
    }
}
