//! Packing f32 matrices into the bf16 tile layouts of the packed GEMM (`gemm::bf16`), with
//! AVX-512 BF16 conversion (round to nearest even; like the tile unit, denormals become zero).
//!
//! - A panels (16 rows each): element (i, p) at `(i / 16) · 16·kp + (p / 32) · 512 + (i % 16) · 32
//!   + p % 32`, i.e. per k-tile a 16 × 32 bf16 tile, row-major.
//! - B panels (16 columns each, "VNNI"): element (p, jj) at `(p / 2) · 32 + jj · 2 + p % 2`, i.e.
//!   per k-tile 16 rows of k-pairs, each row holding the pair (p, p + 1) of all 16 columns.
//!
//! Each packer writes one output per term of the bf16 split (`split_part`): one output is the
//! plain bf16 GEMM's operand, three are the f32-accurate split GEMM's (`gemm::f32_amx`).
//!
//! kp is k rounded up to 32; everything past k (and past the matrix's rows / columns) is zero.
//! A matrix is given as `(slice, row stride, col stride)`; the two layouts that occur in a model
//! (contiguous along k, or contiguous along the other dimension: a transposed view) have
//! vectorized paths, anything else a scalar one.

use crate::cpu::simd::{self, f32_to_bf16};
#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// Packs rows `r0..r0 + rows` of A (k columns) into A panels, one per term of the bf16 split
/// (`outs[t]` gets term t, `split_part`; a single output is plain rounding); every output has
/// len round_up(rows, 32) · kp. Panics unless `simd::avx512_bf16()`.
pub fn pack_a_panels(outs: &mut [&mut [u16]], a: (&[f32], usize, usize), r0: usize, rows: usize, k: usize) {
    let mp = rows.div_ceil(32) * 32;
    let len = outs.first().map_or(0, |o| o.len());
    let kp = len / mp;
    assert!(
        (1..=3).contains(&outs.len())
            && outs.iter().all(|o| o.len() == len)
            && kp >= k
            && kp.is_multiple_of(32)
            && len == mp * kp,
        "pack_a_panels: bad output size"
    );
    assert!(
        rows > 0 && k > 0 && (r0 + rows - 1) * a.1 + (k - 1) * a.2 < a.0.len(),
        "pack_a_panels: A too short"
    );
    assert!(simd::avx512_bf16(), "pack_a_panels needs AVX-512 BF16");
    let rows = ARows {
        a,
        r0,
        rows,
        k,
        kp,
        mp,
    };
    // SAFETY: the CPU has the features (asserted); the asserts above bound every read of A and
    // every write of the outputs (see the index math in each function).
    #[cfg(target_arch = "x86_64")]
    unsafe {
        if a.2 == 1 {
            pack_a_k_contiguous(outs, rows)
        } else if a.1 == 1 {
            pack_a_m_contiguous(outs, rows)
        } else {
            pack_a_scalar(outs, rows)
        }
    }
}

/// What the A packers pack: rows `r0..r0 + rows` of A (strided `(data, rs, cs)`, k columns)
/// into mp (rows padded to a multiple of 32) × kp (k padded) panels.
#[derive(Clone, Copy)]
struct ARows<'a> {
    a: (&'a [f32], usize, usize),
    r0: usize,
    rows: usize,
    k: usize,
    kp: usize,
    mp: usize,
}

/// What the single-panel B packers pack: columns `j0..j0 + nj` of B (strided `(data, rs, cs)`,
/// k rows), padded to kp rows, into the panel at element `at` of each output, output i getting
/// term `first + i`.
#[derive(Clone, Copy)]
struct BPanel<'a> {
    b: (&'a [f32], usize, usize),
    first: usize,
    at: usize,
    k: usize,
    kp: usize,
    j0: usize,
    nj: usize,
}

/// Packs columns `j0..j0 + 16·P` of B (k rows, n columns) into P consecutive B panels per term,
/// `outs[i]` getting term `first + i`; every output has len P · 16 · kp. Columns past n are
/// zero. Panics unless `simd::avx512_bf16()`.
pub fn pack_b_panels(
    outs: &mut [&mut [u16]],
    first: usize,
    b: (&[f32], usize, usize),
    k: usize,
    kp: usize,
    n: usize,
    j0: usize,
) {
    let len = outs.first().map_or(0, |o| o.len());
    assert!(
        (1..=3).contains(&(first + outs.len()))
            && !outs.is_empty()
            && outs.iter().all(|o| o.len() == len)
            && kp >= k
            && kp.is_multiple_of(32)
            && len > 0
            && len.is_multiple_of(16 * kp),
        "pack_b_panels: bad output size"
    );
    assert!(
        k > 0 && n > 0 && (k - 1) * b.1 + (n - 1) * b.2 < b.0.len(),
        "pack_b_panels: B too short"
    );
    assert!(simd::avx512_bf16(), "pack_b_panels needs AVX-512 BF16");
    // SAFETY: as in pack_a_panels; each panel reads columns j < n only (nj below).
    #[cfg(target_arch = "x86_64")]
    unsafe {
        if b.2 == 1 {
            // Row-major B: k outer, panels inner, so each row is read in one sequential run
            // across the panels instead of 64 bytes at a time per panel.
            pack_b_n_contiguous(outs, first, b, k, kp, n, j0)
        } else {
            for t in 0..len / (16 * kp) {
                let jt = j0 + 16 * t;
                let panel = t * 16 * kp..(t + 1) * 16 * kp;
                if jt >= n {
                    for out in outs.iter_mut() {
                        out[panel.clone()].fill(0);
                    }
                } else {
                    let (at, j0, nj) = (panel.start, jt, 16.min(n - jt));
                    let panel = BPanel {
                        b,
                        first,
                        at,
                        k,
                        kp,
                        j0,
                        nj,
                    };
                    if b.1 == 1 {
                        pack_b_k_contiguous(outs, panel)
                    } else {
                        pack_b_scalar(outs, panel)
                    }
                }
            }
        }
    }
}

/// Packs columns `j0..j0 + 16` of B into one B panel (`pack_b_panels` with P = 1): the tests'
/// reference for the multi-panel packs.
#[cfg(test)]
fn pack_b_panel(outs: &mut [&mut [u16]], b: (&[f32], usize, usize), k: usize, n: usize, j0: usize) {
    let kp = outs[0].len() / 16;
    pack_b_panels(outs, 0, b, k, kp, n, j0)
}

/// Lane mask for the first `len` (clamped to 0..=16) of 16 lanes.
#[inline(always)]
fn mask16(len: usize) -> u16 {
    if len >= 16 {
        0xffff
    } else {
        ((1u32 << len) - 1) as u16
    }
}

/// Loads `min(len, 16)` floats from `p` (zeros in the other lanes; masked-off lanes are not
/// read, so `p` may point past the end when `len` is 0).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn load16(p: *const f32, len: usize) -> __m512 {
    if len >= 16 {
        _mm512_loadu_ps(p)
    } else {
        _mm512_maskz_loadu_ps(mask16(len), p)
    }
}

/// 32 bf16 from two vectors of 16 floats: lanes 0..16 from `lo`, 16..32 from `hi`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
#[inline]
fn to_bf16x32(lo: __m512, hi: __m512) -> __m512i {
    // SAFETY: a bit cast between two 512-bit vector types.
    unsafe { std::mem::transmute::<__m512bh, __m512i>(_mm512_cvtne2ps_pbh(hi, lo)) }
}

/// The residual whose bf16 rounding is term `part` of x's split into three bf16 terms,
/// `x = h + m + l` with `h = bf16(x)`, `m = bf16(x − h)`, `l = bf16(x − h − m)`: x itself for
/// part 0, x − h for 1, x − h − m for 2 (each difference exact in f32). Three terms hold all 24
/// bits of an f32 significand, so h + m + l = x exactly unless a term would be denormal (those
/// become zero, as in the tile unit): |x| ≳ 2⁻¹⁰⁰ for the split to be exact. Infinity splits
/// into NaN terms.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
#[inline]
fn split_part(x: __m512, part: usize) -> __m512 {
    let mut r = x;
    for _ in 0..part {
        let rounded = _mm512_cvtpbh_ps(_mm512_cvtneps_pbh(r));
        r = _mm512_sub_ps(r, rounded);
    }
    r
}

/// `split_part` of one value, for the scalar packers.
fn split_part_scalar(x: f32, part: usize) -> f32 {
    let mut r = x;
    for _ in 0..part {
        r -= simd::round_bf16(r);
    }
    r
}

/// Interleaves the two halves of 32 u16 lanes: [x0, y0, x1, y1, ...] from [x0..x15, y0..y15].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
#[inline]
fn interleave_halves(v: __m512i) -> __m512i {
    const IDX: [u16; 32] = {
        let mut idx = [0u16; 32];
        let mut i = 0;
        while i < 16 {
            idx[2 * i] = i as u16;
            idx[2 * i + 1] = 16 + i as u16;
            i += 1;
        }
        idx
    };
    // SAFETY: IDX is 64 bytes, an unaligned load reads exactly it.
    let idx = unsafe { _mm512_loadu_si512(IDX.as_ptr().cast()) };
    _mm512_permutexvar_epi16(idx, v)
}

/// Transposes a 16 × 16 matrix of 32-bit lanes held in 16 vectors (row r in `rows[r]`), in four
/// stages; stage b swaps bit b of the row index with bit b of the column index.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
fn transpose16x16_epi32(rows: &mut [__m512i; 16]) {
    const fn index(bit: usize, high: bool) -> [u32; 16] {
        let mut idx = [0u32; 16];
        let mut c = 0;
        while c < 16 {
            let cb = c >> bit & 1 == 1;
            idx[c] = match (high, cb) {
                (false, false) => c as u32,
                (false, true) => 16 + (c & !(1 << bit)) as u32,
                (true, false) => (c | 1 << bit) as u32,
                (true, true) => 16 + c as u32,
            };
            c += 1;
        }
        idx
    }
    const IDX: [[[u32; 16]; 2]; 4] = [
        [index(0, false), index(0, true)],
        [index(1, false), index(1, true)],
        [index(2, false), index(2, true)],
        [index(3, false), index(3, true)],
    ];
    for (bit, [lo, hi]) in IDX.iter().enumerate() {
        // SAFETY: each index array is 64 bytes.
        let (lo, hi) = unsafe {
            (
                _mm512_loadu_si512(lo.as_ptr().cast()),
                _mm512_loadu_si512(hi.as_ptr().cast()),
            )
        };
        let s = 1 << bit;
        for r in 0..16 {
            if r & s == 0 {
                let (x, y) = (rows[r], rows[r | s]);
                rows[r] = _mm512_permutex2var_epi32(x, lo, y);
                rows[r | s] = _mm512_permutex2var_epi32(x, hi, y);
            }
        }
    }
}

/// Stores the bf16 terms of 32 floats (lanes 0..16 from `lo`, 16..32 from `hi`; k-pairs
/// interleaved when `pairs`) at element `at` of each output, term `first + i` into `outs[i]`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
#[inline]
unsafe fn store_terms(outs: &mut [&mut [u16]], first: usize, at: usize, lo: __m512, hi: __m512, pairs: bool) {
    for (i, out) in outs.iter_mut().enumerate() {
        let t = first + i;
        let v = to_bf16x32(split_part(lo, t), split_part(hi, t));
        let v = if pairs { interleave_halves(v) } else { v };
        _mm512_storeu_si512(out.as_mut_ptr().add(at).cast(), v);
    }
}

/// Rows ahead that the packers reading rows one after another (A along k, B along n) prefetch.
const AHEAD: usize = 8;

/// A contiguous along k: each tile row is 32 consecutive elements of one row of A.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn pack_a_k_contiguous(outs: &mut [&mut [u16]], job: ARows) {
    let (a, rs, _) = job.a;
    let (r0, rows, k, kp, mp) = (job.r0, job.rows, job.k, job.kp, job.mp);
    // One pass per term: writing all terms per load measured slower in the step (the head's
    // input gradient +5 ms, W1/W3's +6), the source rows being read from L2 anyway.
    for (term, out) in outs.iter_mut().enumerate() {
        for i in 0..mp {
            let panel = (i / 16) * 16 * kp + (i % 16) * 32;
            for p0 in (0..kp).step_by(32) {
                let at = panel + (p0 / 32) * 512;
                let (lo, hi) = if i < rows && p0 < k {
                    let src = a.as_ptr().wrapping_add((r0 + i) * rs + p0);
                    let len = k - p0;
                    if term == 0 && i + AHEAD < rows {
                        // The first pass reads A from L3 or memory, one row after another:
                        // fetch the same columns AHEAD rows down (a prefetch never faults).
                        let ahead = src.wrapping_add(AHEAD * rs) as *const i8;
                        _mm_prefetch::<_MM_HINT_T0>(ahead);
                        _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(64));
                    }
                    (
                        load16(src, len),
                        load16(src.wrapping_add(16), len.saturating_sub(16)),
                    )
                } else {
                    (_mm512_setzero_ps(), _mm512_setzero_ps())
                };
                store_terms(std::slice::from_mut(out), term, at, lo, hi, false);
            }
        }
    }
}

/// A contiguous along its rows (a transposed view, e.g. doutᵀ in the weight gradient): read 16
/// rows at each k, interleave k-pairs, transpose 16 × 16 pairs into tile rows. The 32 source
/// vectors of a tile are loaded once for all terms.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn pack_a_m_contiguous(outs: &mut [&mut [u16]], job: ARows) {
    let (a, _, cs) = job.a;
    let (r0, rows, k, kp, mp) = (job.r0, job.rows, job.k, job.kp, job.mp);
    // k outer, panels inner: consecutive panels read the next 64 bytes of the same 32 rows of
    // the source, which the hardware prefetcher follows (rows are far apart: one page each for
    // the LM head's gradient).
    for p0 in (0..kp).step_by(32) {
        for i0 in (0..mp).step_by(16) {
            let ni = rows.saturating_sub(i0).min(16);
            let at = (i0 / 16) * 16 * kp + (p0 / 32) * 512;
            let mut src = [_mm512_setzero_ps(); 32];
            if ni > 0 {
                for (dp, v) in src.iter_mut().enumerate() {
                    if p0 + dp < k {
                        *v = load16(a.as_ptr().add(r0 + i0 + (p0 + dp) * cs), ni);
                    }
                }
            }
            for (term, out) in outs.iter_mut().enumerate() {
                let mut t = [_mm512_setzero_si512(); 16];
                if ni > 0 {
                    for (q, tq) in t.iter_mut().enumerate() {
                        let (x, y) = (split_part(src[2 * q], term), split_part(src[2 * q + 1], term));
                        *tq = interleave_halves(to_bf16x32(x, y));
                    }
                    transpose16x16_epi32(&mut t);
                }
                for (i, ti) in t.iter().enumerate() {
                    _mm512_storeu_si512(out.as_mut_ptr().add(at + i * 32).cast(), *ti);
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
unsafe fn pack_a_scalar(outs: &mut [&mut [u16]], job: ARows) {
    let (a, rs, cs) = job.a;
    let (r0, rows, k, kp) = (job.r0, job.rows, job.k, job.kp);
    for (term, out) in outs.iter_mut().enumerate() {
        out.fill(0);
        for i in 0..rows {
            for p in 0..k {
                out[(i / 16) * 16 * kp + (p / 32) * 512 + (i % 16) * 32 + p % 32] =
                    f32_to_bf16(split_part_scalar(a[(r0 + i) * rs + p * cs], term));
            }
        }
    }
}

/// B contiguous along n (row-major (k, n), e.g. a weight in the input gradient): rows p and p + 1
/// interleave into one 64-byte tile row.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn pack_b_n_contiguous(
    outs: &mut [&mut [u16]],
    first: usize,
    (b, rs, _): (&[f32], usize, usize),
    k: usize,
    kp: usize,
    n: usize,
    j0: usize,
) {
    let panels = outs[0].len() / (16 * kp);
    for q in 0..kp / 2 {
        let p = 2 * q;
        for t in 0..panels {
            let jt = j0 + 16 * t;
            let nj = n.saturating_sub(jt).min(16);
            let row = |p: usize| {
                if p < k && nj > 0 {
                    load16(b.as_ptr().add(p * rs + jt), nj)
                } else {
                    _mm512_setzero_ps()
                }
            };
            if p + AHEAD + 1 < k && nj > 0 {
                // As in pack_a_k_contiguous: the same columns AHEAD rows down.
                for r in [p + AHEAD, p + AHEAD + 1] {
                    _mm_prefetch::<_MM_HINT_T0>(b.as_ptr().wrapping_add(r * rs + jt) as *const i8);
                }
            }
            store_terms(outs, first, t * 16 * kp + q * 32, row(p), row(p + 1), true);
        }
    }
}

/// B contiguous along k (a transposed view, e.g. Wᵀ of a weight (n, k) in the forward pass): each
/// column's 32 k-values are 16 pairs; transpose 16 columns × 16 pairs into tile rows. Writes the
/// panel at element `at` of each output.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn pack_b_k_contiguous(outs: &mut [&mut [u16]], panel: BPanel) {
    let (b, _, cs) = panel.b;
    let (first, at, k, kp, j0, nj) = (panel.first, panel.at, panel.k, panel.kp, panel.j0, panel.nj);
    for p0 in (0..kp).step_by(32) {
        let mut src = [(_mm512_setzero_ps(), _mm512_setzero_ps()); 16];
        let len = k.saturating_sub(p0);
        if len > 0 {
            for (jj, v) in src.iter_mut().enumerate().take(nj) {
                let col = b.as_ptr().wrapping_add((j0 + jj) * cs + p0);
                *v = (
                    load16(col, len),
                    load16(col.wrapping_add(16), len.saturating_sub(16)),
                );
            }
        }
        for (i, out) in outs.iter_mut().enumerate() {
            let term = first + i;
            let mut t = [_mm512_setzero_si512(); 16];
            if len > 0 {
                for (tj, &(lo, hi)) in t.iter_mut().zip(&src) {
                    *tj = to_bf16x32(split_part(lo, term), split_part(hi, term));
                }
                transpose16x16_epi32(&mut t);
            }
            for (q, tq) in t.iter().enumerate() {
                _mm512_storeu_si512(out.as_mut_ptr().add(at + (p0 / 2 + q) * 32).cast(), *tq);
            }
        }
    }
}

/// Any strides, element by element.
#[cfg(target_arch = "x86_64")]
unsafe fn pack_b_scalar(outs: &mut [&mut [u16]], panel: BPanel) {
    let (b, rs, cs) = panel.b;
    let (first, at, k, kp, j0, nj) = (panel.first, panel.at, panel.k, panel.kp, panel.j0, panel.nj);
    for (i, out) in outs.iter_mut().enumerate() {
        let term = first + i;
        let panel = &mut out[at..];
        panel[..16 * kp].fill(0);
        for p in 0..k {
            for jj in 0..nj {
                panel[(p / 2) * 32 + jj * 2 + p % 2] =
                    f32_to_bf16(split_part_scalar(b[p * rs + (j0 + jj) * cs], term));
            }
        }
    }
}

#[cfg(test)]
mod tests;
