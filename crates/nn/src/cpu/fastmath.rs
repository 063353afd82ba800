//! Vectorized exp and the row reductions built on it (softmax numerators, max, dot products,
//! RMSNorm and SwiGLU rows), for the elementwise kernels. The loops are written so LLVM
//! vectorizes them; each public function picks at run time a copy compiled for AVX-512 or
//! AVX2+FMA where the CPU has them (`simd::dispatch!`), else the portable copy.

use super::simd;

const LOG2E: f32 = std::f32::consts::LOG2_E;
/// ln 2 split in a part exact in f32 and the rest (Cody-Waite reduction).
const LN2_HI: f32 = 0.693_145_75;
const LN2_LO: f32 = 1.428_606_8e-6;
/// 1.5·2²³: adding it rounds to the nearest integer, which then sits in the low mantissa bits.
const ROUND: f32 = 12_582_912.0;
const LANES: usize = 16;

/// e^x in f32, within a few ulp for x in [−87.3, 88]; 0 below (where e^x is denormal or 0),
/// and e^88 ≈ 1.7e38 above (never inf, and NaN only for NaN).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let xc = x.clamp(-87.3, 88.0);
    let k = xc * LOG2E + ROUND;
    let n = k - ROUND;
    let bits = (k.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
    let r = xc - n * LN2_HI - n * LN2_LO;
    // e^r on |r| ≤ ln2/2: degree-6 Taylor polynomial (truncation error < r⁷/7! ≈ 1.2e-7).
    let p = 1.0
        + r * (1.0 + r * (0.5 + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    let scale = f32::from_bits(((bits + 127) << 23) as u32);
    if x < -87.3 {
        0.0
    } else {
        p * scale
    }
}

/// The largest value of `x` (−inf when empty; NaNs are ignored).
#[inline(always)]
fn max_body(x: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let chunks = x.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for i in 0..LANES {
            acc[i] = acc[i].max(c[i]);
        }
    }
    let m = rest.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    acc.iter().fold(m, |m, &v| m.max(v))
}

/// `x ← e^(x − shift)`, returns Σ of the new values.
#[inline(always)]
fn exp_shift_sum_body(x: &mut [f32], shift: f32) -> f32 {
    let mut acc = [0.0f32; LANES];
    let mut chunks = x.chunks_exact_mut(LANES);
    for c in &mut chunks {
        for i in 0..LANES {
            let e = exp(c[i] - shift);
            c[i] = e;
            acc[i] += e;
        }
    }
    let mut s = 0.0;
    for v in chunks.into_remainder() {
        *v = exp(*v - shift);
        s += *v;
    }
    s + acc.iter().sum::<f32>()
}

/// Σ e^(x − shift), x unchanged.
#[inline(always)]
fn sum_exp_shift_body(x: &[f32], shift: f32) -> f32 {
    let mut acc = [0.0f32; LANES];
    let chunks = x.chunks_exact(LANES);
    let rest: f32 = chunks.remainder().iter().map(|&v| exp(v - shift)).sum();
    for c in chunks {
        for i in 0..LANES {
            acc[i] += exp(c[i] - shift);
        }
    }
    rest + acc.iter().sum::<f32>()
}

/// Σ a·b.
#[inline(always)]
fn dot_body(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let rest: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..LANES {
            acc[i] += x[i] * y[i];
        }
    }
    rest + acc.iter().sum::<f32>()
}

/// Σ x² in 16 lanes.
#[inline(always)]
fn sum_squares(x: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let chunks = x.chunks_exact(LANES);
    let rest: f32 = chunks.remainder().iter().map(|v| v * v).sum();
    for c in chunks {
        for i in 0..LANES {
            acc[i] += c[i] * c[i];
        }
    }
    rest + acc.iter().sum::<f32>()
}

/// One RMSNorm row: `y = x · s · g` with s = 1/√(mean(x²) + eps); returns s.
#[inline(always)]
fn rmsnorm_row_body(y: &mut [f32], x: &[f32], g: &[f32], eps: f32) -> f32 {
    let s = 1.0 / (sum_squares(x) / x.len() as f32 + eps).sqrt();
    for ((y, x), g) in y.iter_mut().zip(x).zip(g) {
        *y = x * s * g;
    }
    s
}

/// One RMSNorm backward row, input gradient ACCUMULATED: `dx += s·g·dy − (s³·Σ dy·g·x / d)·x`.
#[inline(always)]
fn rmsnorm_back_row_body(dx: &mut [f32], dy: &[f32], x: &[f32], g: &[f32], s: f32) {
    let mut acc = [0.0f32; LANES];
    let (cy, cg, cx) = (
        dy.chunks_exact(LANES),
        g.chunks_exact(LANES),
        x.chunks_exact(LANES),
    );
    let rest: f32 = cy
        .remainder()
        .iter()
        .zip(cg.remainder())
        .zip(cx.remainder())
        .map(|((a, g), x)| a * g * x)
        .sum();
    for ((a, g), x) in cy.zip(cg).zip(cx) {
        for i in 0..LANES {
            acc[i] += a[i] * g[i] * x[i];
        }
    }
    let dot = rest + acc.iter().sum::<f32>();
    let c = s * s * s * dot / x.len() as f32;
    for (((dx, dy), g), x) in dx.iter_mut().zip(dy).zip(g).zip(x) {
        *dx += s * g * dy - c * x;
    }
}

/// `acc += a ⊙ b · s`.
#[inline(always)]
fn add_product_body(acc: &mut [f32], a: &[f32], b: &[f32], s: f32) {
    for ((o, a), b) in acc.iter_mut().zip(a).zip(b) {
        *o += a * b * s;
    }
}

/// `x ← x · a`.
#[inline(always)]
fn scale_body(x: &mut [f32], a: f32) {
    x.iter_mut().for_each(|v| *v *= a);
}

/// `out = SiLU(a) ⊙ b` (b = None: SiLU(a)).
#[inline(always)]
fn swiglu_body(out: &mut [f32], a: &[f32], b: Option<&[f32]>) {
    match b {
        Some(b) => {
            for ((o, &a), &b) in out.iter_mut().zip(a).zip(b) {
                *o = a / (1.0 + exp(-a)) * b;
            }
        }
        None => {
            for (o, &a) in out.iter_mut().zip(a) {
                *o = a / (1.0 + exp(-a));
            }
        }
    }
}

/// SwiGLU backward body: see `swiglu::swiglu_backward`; `b` None is the SiLU backward (into da).
#[inline(always)]
fn swiglu_back_body(da: &mut [f32], db: Option<&mut [f32]>, dy: &[f32], a: &[f32], b: Option<&[f32]>) {
    match (db, b) {
        (Some(db), Some(b)) => {
            for ((((da, db), &dy), &a), &b) in da.iter_mut().zip(db.iter_mut()).zip(dy).zip(a).zip(b) {
                let s = 1.0 / (1.0 + exp(-a));
                *da = dy * b * s * (1.0 + a * (1.0 - s));
                *db = dy * a * s;
            }
        }
        _ => {
            for ((da, &dy), &a) in da.iter_mut().zip(dy).zip(a) {
                let s = 1.0 / (1.0 + exp(-a));
                *da = dy * s * (1.0 + a * (1.0 - s));
            }
        }
    }
}

simd::dispatch!(
    /// The largest value of `x` (−inf when empty).
    pub fn max(x: &[f32]) -> f32 = max_body
);
simd::dispatch!(
    /// `x ← e^(x − shift)`; returns the sum of the new values (softmax numerators).
    pub fn exp_shift_sum(x: &mut [f32], shift: f32) -> f32 = exp_shift_sum_body
);
simd::dispatch!(
    /// Σ e^(x − shift) (log-sum-exp denominators), x unchanged.
    pub fn sum_exp_shift(x: &[f32], shift: f32) -> f32 = sum_exp_shift_body
);
simd::dispatch!(
    /// Σ a·b over the common length.
    pub fn dot(a: &[f32], b: &[f32]) -> f32 = dot_body
);
simd::dispatch!(
    /// `x ← x · a`.
    pub fn scale(x: &mut [f32], a: f32) -> () = scale_body
);
simd::dispatch!(
    /// One RMSNorm row (`rmsnorm::rmsnorm_forward`): y = x·s·g, returns s = 1/√(mean(x²) + eps).
    pub fn rmsnorm_row(y: &mut [f32], x: &[f32], g: &[f32], eps: f32) -> f32 = rmsnorm_row_body
);
simd::dispatch!(
    /// One RMSNorm backward row (`rmsnorm::rmsnorm_backward`), dx accumulated.
    pub fn rmsnorm_back_row(dx: &mut [f32], dy: &[f32], x: &[f32], g: &[f32], s: f32) -> () = rmsnorm_back_row_body
);
simd::dispatch!(
    /// `acc += a ⊙ b · s` over the common length.
    pub fn add_product(acc: &mut [f32], a: &[f32], b: &[f32], s: f32) -> () = add_product_body
);
simd::dispatch!(
    /// `out = SiLU(a) ⊙ b`, or SiLU(a) when b is None.
    pub fn swiglu_rows(out: &mut [f32], a: &[f32], b: Option<&[f32]>) -> () = swiglu_body
);
simd::dispatch!(
    /// Backward of `swiglu_rows` (see `swiglu::swiglu_backward`).
    pub fn swiglu_back_rows(da: &mut [f32], db: Option<&mut [f32]>, dy: &[f32], a: &[f32], b: Option<&[f32]>) -> () = swiglu_back_body
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_accurate_and_saturates_without_inf_or_nan() {
        let mut worst = 0.0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let want = (x as f64).exp();
            worst = worst.max(((exp(x) as f64 - want) / want).abs());
            x += 0.0137;
        }
        assert!(worst < 4e-7, "relative error {worst:e}");
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(-1e4), 0.0);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert!(exp(1e4).is_finite());
    }

    #[test]
    fn dispatched_row_functions_match_scalar_code() {
        // Lengths around the 16-lane blocks, so remainders are covered.
        for n in [0usize, 1, 15, 16, 17, 100] {
            let x: Vec<f32> = (0..n).map(|i| ((i * 37) % 23) as f32 * 0.7 - 8.0).collect();
            let m = max(&x);
            assert_eq!(m, x.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)));
            let mut y = x.clone();
            let s2 = sum_exp_shift(&y, m);
            let s = exp_shift_sum(&mut y, m);
            assert!((s - s2).abs() <= 1e-6 * s.max(1.0));
            let want: f64 = x.iter().map(|&v| ((v - m) as f64).exp()).sum();
            assert!((s as f64 - want).abs() <= 1e-6 * want.max(1.0), "{s} {want}");
            for (a, b) in y.iter().zip(&x) {
                assert!((*a as f64 - ((b - m) as f64).exp()).abs() < 1e-6);
            }
            let d = dot(&x, &y);
            let want: f64 = x.iter().zip(&y).map(|(a, b)| *a as f64 * *b as f64).sum();
            assert!(
                (d as f64 - want).abs() <= 1e-5 * want.abs().max(1.0),
                "{d} {want}"
            );
            let mut out = vec![0.0; n];
            swiglu_rows(&mut out, &x, Some(&y));
            for ((o, a), b) in out.iter().zip(&x).zip(&y) {
                let want = *a as f64 / (1.0 + (-*a as f64).exp()) * *b as f64;
                assert!((*o as f64 - want).abs() < 1e-6 * want.abs().max(1.0));
            }
        }
    }
}
