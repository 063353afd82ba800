//! The row-wise steps of causal attention: the softmax of one score row (forward) and its backward
//! (dS from P and dP). Causal rows have every length from 1 to seq, so the short tails matter: the
//! AVX-512 versions finish each row with one masked vector instead of scalar code. Elsewhere the
//! portable `fastmath` routines do the same math.

use crate::cpu::fastmath;

/// `row[0..=t] ← softmax(row[0..=t])`, `row[t+1..] ← 0`.
pub fn softmax_causal_row(row: &mut [f32], t: usize) {
    assert!(
        t < row.len(),
        "softmax_causal_row: t {t} outside a row of {}",
        row.len()
    );
    #[cfg(target_arch = "x86_64")]
    if crate::cpu::simd::avx512f() {
        // SAFETY: the CPU has AVX-512F (checked just above); the function only touches
        // row[0..row.len()], the slice it is given.
        unsafe { avx512::softmax_causal_row(row, t) };
        return;
    }
    softmax_causal_row_portable(row, t);
}

/// `softmax_causal_row` without AVX-512.
pub fn softmax_causal_row_portable(row: &mut [f32], t: usize) {
    let (live, masked) = row.split_at_mut(t + 1);
    let max = fastmath::max(live);
    let sum = fastmath::exp_shift_sum(live, max);
    fastmath::scale(live, 1.0 / sum);
    masked.fill(0.0);
}

/// Backward of one softmax row: `ds[u] ← p[u]·(ds[u] − Σ_{v ≤ t} p[v]·ds[v])` for u ≤ t (ds holds
/// dP on entry, the gradient of the softmax output), `ds[t+1..] ← 0`. p has ds's length.
pub fn softmax_backward_row(ds: &mut [f32], p: &[f32], t: usize) {
    assert!(
        t < ds.len() && p.len() == ds.len(),
        "softmax_backward_row: lengths"
    );
    #[cfg(target_arch = "x86_64")]
    if crate::cpu::simd::avx512f() {
        // SAFETY: the CPU has AVX-512F (checked just above); the function only touches
        // ds[0..ds.len()] and p[0..t+1], inside the slices given (t < ds.len() == p.len()).
        unsafe { avx512::softmax_backward_row(ds, p, t) };
        return;
    }
    softmax_backward_row_portable(ds, p, t);
}

/// `softmax_backward_row` without AVX-512.
pub fn softmax_backward_row_portable(ds: &mut [f32], p: &[f32], t: usize) {
    let pr = &p[..t + 1];
    let (dr, masked) = ds.split_at_mut(t + 1);
    let dot = fastmath::dot(pr, dr);
    for (x, &pp) in dr.iter_mut().zip(pr) {
        *x = pp * (*x - dot);
    }
    masked.fill(0.0);
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    /// Below this e^x is denormal or 0: the result is 0 (as `fastmath::exp`).
    const LOW: f32 = -87.3;

    /// Lanes [0, n) of a 16-lane mask (n ≤ 16).
    #[inline(always)]
    fn mask(n: usize) -> __mmask16 {
        ((1u32 << n) - 1) as u16
    }

    /// e^x lane-wise for x ≤ 88 (the same reduction and polynomial as `fastmath::exp`).
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn exp(x: __m512) -> __m512 {
        let xc = _mm512_max_ps(x, _mm512_set1_ps(LOW));
        let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm512_mul_ps(
            xc,
            _mm512_set1_ps(LOG2E),
        ));
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_HI), xc);
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_LO), r);
        let mut p = _mm512_set1_ps(1.0 / 720.0);
        for c in [1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
            p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
        }
        let e = _mm512_scalef_ps(p, n);
        let low = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(x, _mm512_set1_ps(LOW));
        _mm512_mask_mov_ps(e, low, _mm512_setzero_ps())
    }

    /// See `super::softmax_causal_row`.
    ///
    /// # Safety
    /// The CPU must have AVX-512F, and t < row.len().
    #[target_feature(enable = "avx512f")]
    pub unsafe fn softmax_causal_row(row: &mut [f32], t: usize) {
        let n = t + 1;
        let ptr = row.as_mut_ptr();
        let (full, tail) = (n / 16 * 16, mask(n % 16));
        let mut mx = _mm512_set1_ps(f32::NEG_INFINITY);
        for i in (0..full).step_by(16) {
            mx = _mm512_max_ps(mx, _mm512_loadu_ps(ptr.add(i)));
        }
        mx = _mm512_max_ps(mx, _mm512_mask_loadu_ps(mx, tail, ptr.add(full)));
        let shift = _mm512_set1_ps(_mm512_reduce_max_ps(mx));
        let mut sum = _mm512_setzero_ps();
        for i in (0..full).step_by(16) {
            let e = exp(_mm512_sub_ps(_mm512_loadu_ps(ptr.add(i)), shift));
            _mm512_storeu_ps(ptr.add(i), e);
            sum = _mm512_add_ps(sum, e);
        }
        let e = exp(_mm512_sub_ps(_mm512_maskz_loadu_ps(tail, ptr.add(full)), shift));
        _mm512_mask_storeu_ps(ptr.add(full), tail, e);
        sum = _mm512_mask_add_ps(sum, tail, sum, e);
        let inv = _mm512_set1_ps(1.0 / _mm512_reduce_add_ps(sum));
        for i in (0..full).step_by(16) {
            _mm512_storeu_ps(ptr.add(i), _mm512_mul_ps(_mm512_loadu_ps(ptr.add(i)), inv));
        }
        let x = _mm512_maskz_loadu_ps(tail, ptr.add(full));
        _mm512_mask_storeu_ps(ptr.add(full), tail, _mm512_mul_ps(x, inv));
        row[n..].fill(0.0);
    }

    /// See `super::softmax_backward_row`.
    ///
    /// # Safety
    /// The CPU must have AVX-512F, t < ds.len() and t < p.len().
    #[target_feature(enable = "avx512f")]
    pub unsafe fn softmax_backward_row(ds: &mut [f32], p: &[f32], t: usize) {
        let n = t + 1;
        let (dp, pp) = (ds.as_mut_ptr(), p.as_ptr());
        let (full, tail) = (n / 16 * 16, mask(n % 16));
        let mut acc = _mm512_setzero_ps();
        for i in (0..full).step_by(16) {
            acc = _mm512_fmadd_ps(_mm512_loadu_ps(pp.add(i)), _mm512_loadu_ps(dp.add(i)), acc);
        }
        let (pt, dt) = (
            _mm512_maskz_loadu_ps(tail, pp.add(full)),
            _mm512_maskz_loadu_ps(tail, dp.add(full)),
        );
        acc = _mm512_fmadd_ps(pt, dt, acc);
        let dot = _mm512_set1_ps(_mm512_reduce_add_ps(acc));
        for i in (0..full).step_by(16) {
            let x = _mm512_sub_ps(_mm512_loadu_ps(dp.add(i)), dot);
            _mm512_storeu_ps(dp.add(i), _mm512_mul_ps(_mm512_loadu_ps(pp.add(i)), x));
        }
        _mm512_mask_storeu_ps(dp.add(full), tail, _mm512_mul_ps(pt, _mm512_sub_ps(dt, dot)));
        ds[n..].fill(0.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_match_portable_code_at_every_length() {
        let len = 53;
        for t in 0..len {
            let x: Vec<f32> = (0..len)
                .map(|i| ((i * 37 + t) % 23) as f32 * 0.9 - 10.0)
                .collect();
            let (mut a, mut b) = (x.clone(), x.clone());
            softmax_causal_row(&mut a, t);
            softmax_causal_row_portable(&mut b, t);
            let want: Vec<f64> = {
                let m = x[..=t].iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) as f64;
                let e: Vec<f64> = x[..=t].iter().map(|&v| (v as f64 - m).exp()).collect();
                let s: f64 = e.iter().sum();
                e.iter().map(|v| v / s).collect()
            };
            for u in 0..len {
                let w = if u <= t { want[u] } else { 0.0 };
                assert!((a[u] as f64 - w).abs() < 1e-6, "t {t} u {u}: {} vs {w}", a[u]);
                assert!((b[u] as f64 - w).abs() < 1e-6);
            }
            // Scores far below the maximum underflow to exactly 0.
            let mut far = x.clone();
            far[0] = -1e4;
            softmax_causal_row(&mut far, t);
            assert!(far.iter().all(|v| v.is_finite()));
            if t > 0 {
                assert_eq!(far[0], 0.0);
            }

            let dp: Vec<f32> = (0..len)
                .map(|i| ((i * 11 + 3 * t) % 7) as f32 * 0.3 - 1.0)
                .collect();
            let (mut c, mut d) = (dp.clone(), dp.clone());
            softmax_backward_row(&mut c, &a, t);
            softmax_backward_row_portable(&mut d, &a, t);
            let dot: f64 = (0..=t).map(|u| a[u] as f64 * dp[u] as f64).sum();
            for u in 0..len {
                let w = if u <= t {
                    a[u] as f64 * (dp[u] as f64 - dot)
                } else {
                    0.0
                };
                assert!((c[u] as f64 - w).abs() < 1e-6, "t {t} u {u}");
                assert!((d[u] as f64 - w).abs() < 1e-6);
            }
        }
    }
}
