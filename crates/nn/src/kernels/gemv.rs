//! Decode-time kernels (generation, one position per sequence): matrix-vector products that stream
//! each weight row once, and attention of one query per sequence over the KV cache.
//!
//! Generation is bound by reading the weights, so the matrix-vector products are written for
//! bandwidth: four weight rows per pass with AVX-512 (x stays in L1), one contiguous block of rows
//! per thread (one rayon task each, not many small ones), and several products that share their
//! input (Q, K, V; W1, W3) in one parallel pass. Weights are f32 or bf16 (u16 bit patterns, f32
//! accumulation: bf16 halves the bytes read). Each kernel picks at run time an AVX-512 copy where
//! the CPU has it, else a portable one.

use rayon::prelude::*;

/// The weights of a linear layer, (d_out, d_in) row-major, in the precision inference reads.
#[derive(Clone, Copy, Debug)]
pub enum Weights<'a> {
    F32(&'a [f32]),
    /// bf16 bit patterns (the high 16 bits of an f32).
    Bf16(&'a [u16]),
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

/// f32 → bf16 with round-to-nearest-even (what `half` and PyTorch do); NaN stays a (quiet) NaN,
/// ±inf stays ±inf, values past the largest bf16 round to ±inf.
pub fn f32_to_bf16(x: f32) -> u16 {
    let b = x.to_bits();
    if x.is_nan() {
        return ((b >> 16) | 0x0040) as u16;
    }
    let round = 0x7fff + ((b >> 16) & 1);
    (b.wrapping_add(round) >> 16) as u16
}

/// bf16 → f32 (exact).
pub fn bf16_to_f32(b: u16) -> f32 {
    f32::from_bits((b as u32) << 16)
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

/// Below this many weight elements in one call, the products run on the calling thread: waking
/// another costs more than it saves.
const PARALLEL_MIN_ELEMS: usize = 1 << 15;

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
    if avx512() {
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
                *o = super::fastmath::dot(row, x);
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
fn avx512() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512bw")
        && std::arch::is_x86_feature_detected!("avx512vl")
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    /// Loads 16 bf16 values (masked) and widens them to f32 (bf16 is the high half of an f32).
    #[inline(always)]
    unsafe fn load_bf16(p: *const u16, mask: __mmask16) -> __m512 {
        let h = _mm256_maskz_loadu_epi16(mask, p as *const i16);
        _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(h)))
    }

    #[inline(always)]
    unsafe fn load_f32(p: *const f32, mask: __mmask16) -> __m512 {
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

/// Attention of one new position per sequence over the KV cache (generation):
/// `out (batch, d)`, `q (batch, d)` (after RoPE), keys stored transposed per head
/// `k_t (batch, n_heads, d_head, max_len)` and values `v_cache (batch, max_len, d)`, the first
/// `n_keys` positions filled (the new one included); d = n_heads·d_head. Scaled dot-product
/// softmax attention per head, no mask needed (every cached key precedes the query). With the
/// keys transposed the scores are d_head vector multiply-adds over the positions, with no
/// horizontal sums. Parallel over (sequence, head) pairs. Overwrites out.
#[allow(clippy::too_many_arguments)]
pub fn attention_decode(
    out: &mut [f32],
    q: &[f32],
    k_t: &[f32],
    v_cache: &[f32],
    batch: usize,
    n_keys: usize,
    max_len: usize,
    n_heads: usize,
    d_head: usize,
) {
    let d = n_heads * d_head;
    assert_eq!(out.len(), batch * d, "attention_decode: out");
    assert_eq!(q.len(), batch * d, "attention_decode: q");
    assert_eq!(k_t.len(), batch * max_len * d, "attention_decode: k_t");
    assert_eq!(v_cache.len(), batch * max_len * d, "attention_decode: v_cache");
    assert!(n_keys >= 1 && n_keys <= max_len, "attention_decode: n_keys");
    if d_head == 0 {
        return;
    }
    let scale = 1.0 / (d_head as f32).sqrt();
    let units = batch * n_heads;
    let threads = rayon::current_num_threads();
    let per = if threads > 1 && n_keys * d * batch >= PARALLEL_MIN_ELEMS {
        units.div_ceil(threads)
    } else {
        units
    };
    out.par_chunks_mut(per * d_head)
        .enumerate()
        .with_max_len(1)
        .for_each(|(c, out)| {
            let mut scores = vec![0.0f32; n_keys];
            for (j, o) in out.chunks_exact_mut(d_head).enumerate() {
                let unit = c * per + j;
                let (b, h) = (unit / n_heads, unit % n_heads);
                let qh = &q[b * d + h * d_head..][..d_head];
                let kt = &k_t[unit * d_head * max_len..][..d_head * max_len];
                let vc = &v_cache[b * max_len * d + h * d_head..];
                decode_head(o, &mut scores, qh, kt, vc, max_len, d, scale);
            }
        });
}

/// One head: scores[u] = scale·Σ_j q_j·kt[j][u], softmax, o = Σ_u p_u v_u; kt rows of length
/// max_len, values at stride d.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn decode_head_body(
    o: &mut [f32],
    scores: &mut [f32],
    q: &[f32],
    kt: &[f32],
    vc: &[f32],
    max_len: usize,
    d: usize,
    scale: f32,
) {
    let dh = q.len();
    let n = scores.len();
    // Blocks of 64 positions: the 64 partial scores stay in registers over the d_head rows.
    const B: usize = 64;
    let mut u0 = 0;
    while u0 + B <= n {
        let mut acc = [0.0f32; B];
        for (&qj, row) in q.iter().zip(kt.chunks_exact(max_len)) {
            let row: &[f32; B] = row[u0..u0 + B].try_into().expect("64 positions");
            for i in 0..B {
                acc[i] += qj * row[i];
            }
        }
        for (s, a) in scores[u0..u0 + B].iter_mut().zip(acc) {
            *s = a * scale;
        }
        u0 += B;
    }
    if u0 < n {
        let rest = &mut scores[u0..];
        rest.fill(0.0);
        for (&qj, row) in q.iter().zip(kt.chunks_exact(max_len)) {
            for (s, &k) in rest.iter_mut().zip(&row[u0..n]) {
                *s += qj * k;
            }
        }
        rest.iter_mut().for_each(|s| *s *= scale);
    }
    let m = super::fastmath::max(scores);
    let sum = super::fastmath::exp_shift_sum(scores, m);
    let inv = 1.0 / sum;
    match dh {
        16 => weighted_values::<16>(o, scores, vc, d, inv),
        32 => weighted_values::<32>(o, scores, vc, d, inv),
        64 => weighted_values::<64>(o, scores, vc, d, inv),
        _ => {
            o.fill(0.0);
            for (u, &p) in scores.iter().enumerate() {
                let p = p * inv;
                for (o, &v) in o.iter_mut().zip(&vc[u * d..u * d + dh]) {
                    *o += p * v;
                }
            }
        }
    }
}

/// `o = inv · Σ_u p_u v_u` for a head of DH values (rows of vc at stride d), accumulated in
/// registers, two positions at a time (two independent multiply-add chains).
#[inline(always)]
fn weighted_values<const DH: usize>(o: &mut [f32], p: &[f32], vc: &[f32], d: usize, inv: f32) {
    let (mut a0, mut a1) = ([0.0f32; DH], [0.0f32; DH]);
    let pairs = p.len() / 2;
    for u in 0..pairs {
        let (p0, p1) = (p[2 * u], p[2 * u + 1]);
        let v0: &[f32; DH] = vc[2 * u * d..][..DH].try_into().expect("DH values");
        let v1: &[f32; DH] = vc[(2 * u + 1) * d..][..DH].try_into().expect("DH values");
        for i in 0..DH {
            a0[i] += p0 * v0[i];
            a1[i] += p1 * v1[i];
        }
    }
    if p.len() % 2 == 1 {
        let u = p.len() - 1;
        let v0: &[f32; DH] = vc[u * d..][..DH].try_into().expect("DH values");
        for i in 0..DH {
            a0[i] += p[u] * v0[i];
        }
    }
    for ((o, a), b) in o.iter_mut().zip(a0).zip(a1) {
        *o = (a + b) * inv;
    }
}

/// One head of `attention_decode` on the calling thread: `o (d_head)` from the query `q (d_head)`,
/// the head's transposed keys `kt (d_head, max_len)` and its values `vc[u·d..u·d + d_head]` for
/// the `scores.len()` cached positions u (scores is scratch of that length). Overwrites o.
#[allow(clippy::too_many_arguments)]
pub(crate) fn decode_head(
    o: &mut [f32],
    scores: &mut [f32],
    q: &[f32],
    kt: &[f32],
    vc: &[f32],
    max_len: usize,
    d: usize,
    scale: f32,
) {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f")]
        #[allow(clippy::too_many_arguments)]
        fn v4(
            o: &mut [f32],
            s: &mut [f32],
            q: &[f32],
            kt: &[f32],
            vc: &[f32],
            m: usize,
            d: usize,
            scale: f32,
        ) {
            decode_head_body(o, s, q, kt, vc, m, d, scale)
        }
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports AVX-512F (checked just above), the only requirement for
            // calling a function compiled with that target feature.
            return unsafe { v4(o, scores, q, kt, vc, max_len, d, scale) };
        }
    }
    decode_head_body(o, scores, q, kt, vc, max_len, d, scale)
}

/// Writes keys `k (batch, t_new, d)` for positions start.. into the transposed per-head cache
/// `k_t (batch, n_heads, d_head, max_len)` that `attention_decode` reads.
pub fn store_keys_transposed(
    k_t: &mut [f32],
    k: &[f32],
    batch: usize,
    t_new: usize,
    start: usize,
    max_len: usize,
    d: usize,
) {
    assert_eq!(k_t.len(), batch * max_len * d, "store_keys_transposed: k_t");
    assert_eq!(k.len(), batch * t_new * d, "store_keys_transposed: k");
    assert!(start + t_new <= max_len, "store_keys_transposed: past max_len");
    for b in 0..batch {
        for t in 0..t_new {
            let row = &k[(b * t_new + t) * d..][..d];
            for (c, &v) in row.iter().enumerate() {
                k_t[(b * d + c) * max_len + start + t] = v;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize, seed: usize) -> Vec<f32> {
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
    fn bf16_rounds_to_nearest_even() {
        assert_eq!(f32_to_bf16(1.0), 0x3f80);
        // 1 + 2^-8 is halfway between bf16 1.0 and 1.0078125: ties go to the even one (1.0).
        assert_eq!(f32_to_bf16(f32::from_bits(0x3f80_8000)), 0x3f80);
        // 1.0078125 + half an ulp: tie, rounds up to the even 1.015625.
        assert_eq!(f32_to_bf16(f32::from_bits(0x3f81_8000)), 0x3f82);
        assert_eq!(f32_to_bf16(f32::from_bits(0x3f80_8001)), 0x3f81);
        assert_eq!(f32_to_bf16(-2.5), 0xc020);
        assert_eq!(f32_to_bf16(f32::INFINITY), 0x7f80);
        assert_eq!(f32_to_bf16(f32::MAX), 0x7f80);
        assert!(bf16_to_f32(f32_to_bf16(f32::NAN)).is_nan());
        for &v in &[0.1f32, -3.7, 1e-20, 6.5e4] {
            let r = bf16_to_f32(f32_to_bf16(v));
            assert!((r - v).abs() <= v.abs() / 256.0, "{v} {r}");
        }
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
        let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
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

    #[test]
    fn attention_decode_matches_naive_softmax_attention() {
        // Head sizes with and without a specialized value loop; position counts below, at and
        // past the 64-position score blocks.
        for (batch, max_len, h, dh, keys) in [
            (2, 9, 3, 20, &[1, 5, 9][..]),
            (1, 131, 2, 32, &[1, 63, 64, 65, 128, 131][..]),
            (2, 70, 3, 16, &[2, 64, 70][..]),
            (1, 66, 1, 64, &[66][..]),
        ] {
            check_attention_decode(batch, max_len, h, dh, keys);
        }
    }

    fn check_attention_decode(batch: usize, max_len: usize, h: usize, dh: usize, keys: &[usize]) {
        let d = h * dh;
        let (kc, vc, q) = (
            data(batch * max_len * d, 6),
            data(batch * max_len * d, 7),
            data(batch * d, 8),
        );
        let mut kt = vec![0.0; batch * max_len * d];
        store_keys_transposed(&mut kt, &kc, batch, max_len, 0, max_len, d);
        for &n_keys in keys {
            let mut out = vec![f32::NAN; batch * d];
            attention_decode(&mut out, &q, &kt, &vc, batch, n_keys, max_len, h, dh);
            for b in 0..batch {
                for hh in 0..h {
                    let qh = &q[b * d + hh * dh..][..dh];
                    let s: Vec<f64> = (0..n_keys)
                        .map(|u| {
                            let k = &kc[(b * max_len + u) * d + hh * dh..][..dh];
                            qh.iter().zip(k).map(|(a, b)| *a as f64 * *b as f64).sum::<f64>()
                                / (dh as f64).sqrt()
                        })
                        .collect();
                    let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let z: f64 = s.iter().map(|v| (v - m).exp()).sum();
                    for j in 0..dh {
                        let want: f64 = (0..n_keys)
                            .map(|u| (s[u] - m).exp() / z * vc[(b * max_len + u) * d + hh * dh + j] as f64)
                            .sum();
                        let got = out[b * d + hh * dh + j] as f64;
                        assert!((got - want).abs() < 1e-5, "{n_keys} {b} {hh} {j}: {got} {want}");
                    }
                }
            }
        }
    }
}
