//! The machine's measured arithmetic peak: multiply-add loops on registers only (no memory
//! traffic), run on every thread of the current rayon pool. It is the ceiling the matmuls and a
//! whole training step are judged against (`ferrolm bench peak`, and the "% of peak" that
//! `bench train` prints), measured rather than taken from a data sheet because clock speeds under
//! AVX-512 / AMX load differ between machines.
//!
//! FLOPs count a multiply-add as 2, as the model's FLOP counts do.

use std::time::Instant;

/// The unit that `bf16_peak` measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bf16Unit {
    /// AMX tiles (`tdpbf16ps`, 16×16×32 per instruction).
    Amx,
    /// AVX-512 BF16 (`vdpbf16ps`, 16 lanes × 2 products per instruction).
    Avx512Bf16,
}

/// Multiply-adds of f32 per inner iteration of `f32_iters` (12 registers of 16 lanes).
const F32_FLOPS_PER_ITER: f64 = 12.0 * 16.0 * 2.0;

/// `iters` iterations of 12 independent 16-lane f32 multiply-adds (fused where the CPU has
/// AVX-512, else whatever the compiler vectorizes); returns a value that depends on all of them,
/// so the loop cannot be removed.
fn f32_iters(iters: u64) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if crate::cpu::simd::avx512f() {
        // SAFETY: the CPU has AVX-512F (checked just above); the loop touches no memory.
        return unsafe { f32_iters_avx512(iters) };
    }
    let mut acc = [[0.0f32; 16]; 12];
    let a = std::hint::black_box(0.999_999f32);
    let b = std::hint::black_box(1e-7f32);
    for _ in 0..iters {
        for r in acc.iter_mut() {
            for x in r.iter_mut() {
                *x = *x * a + b;
            }
        }
    }
    acc.iter().flatten().sum()
}

/// The body of a register-only peak loop, in a `#[target_feature]` function: 12 independent
/// 16-lane f32 accumulators from zero, each updated `iters` times by `step` (one instruction,
/// `acc` naming the accumulator), then the sum of all their lanes (so nothing can be removed).
#[cfg(target_arch = "x86_64")]
macro_rules! twelve_accumulators {
    ($iters:expr, |$acc:ident| $step:expr) => {{
        let mut accs = [_mm512_setzero_ps(); 12];
        for _ in 0..$iters {
            for $acc in accs.iter_mut() {
                *$acc = $step;
            }
        }
        let mut s = _mm512_setzero_ps();
        for r in accs {
            s = _mm512_add_ps(s, r);
        }
        _mm512_reduce_add_ps(s)
    }};
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn f32_iters_avx512(iters: u64) -> f32 {
    use std::arch::x86_64::*;
    let a = _mm512_set1_ps(std::hint::black_box(0.999_999));
    let b = _mm512_set1_ps(std::hint::black_box(1e-7));
    twelve_accumulators!(iters, |r| _mm512_fmadd_ps(*r, a, b))
}

/// FLOPs of one iteration of `bf16_iters_avx512`: 12 × 16 lanes × 2 products × 2.
const AVX512_BF16_FLOPS_PER_ITER: f64 = 12.0 * 16.0 * 2.0 * 2.0;

/// `iters` × 12 independent `vdpbf16ps` (AVX-512 BF16) of all-ones bf16 pairs, no memory
/// traffic. Returns the sum of all lanes, 384 · iters (exact while below 2²⁴).
///
/// # Safety
/// `crate::cpu::simd::avx512_bf16()` must be true.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn bf16_iters_avx512(iters: u64) -> f32 {
    use std::arch::x86_64::*;
    let ones: __m512bh = std::mem::transmute(_mm512_set1_epi16(0x3F80)); // bf16 1.0
    let ones = std::hint::black_box(ones);
    twelve_accumulators!(iters, |r| _mm512_dpbf16_ps(*r, ones, ones))
}

/// Never called: `crate::cpu::simd::avx512_bf16()` is false off x86_64.
///
/// # Safety
/// None needed; it panics.
#[cfg(not(target_arch = "x86_64"))]
unsafe fn bf16_iters_avx512(_iters: u64) -> f32 {
    unreachable!("AVX-512 BF16 exists only on x86_64")
}

/// Runs `body(iters)` on every thread of the current pool at once and returns the total FLOP/s:
/// iterations are doubled until one run takes at least `min_seconds`, and the best of three runs
/// at that size is kept (the peak is a ceiling, so noise only ever lowers it).
fn measure(min_seconds: f64, flops_per_iter: f64, body: impl Fn(u64) -> f32 + Sync) -> f64 {
    let threads = rayon::current_num_threads() as f64;
    let run = |iters: u64| -> f64 {
        let t0 = Instant::now();
        let sinks = rayon::broadcast(|_| body(iters));
        std::hint::black_box(sinks);
        t0.elapsed().as_secs_f64()
    };
    let mut iters = 1u64 << 12;
    while run(iters) < min_seconds && iters < 1 << 40 {
        iters *= 2;
    }
    let best = (0..3).map(|_| run(iters)).fold(f64::INFINITY, f64::min);
    threads * iters as f64 * flops_per_iter / best
}

/// The f32 multiply-add peak of all threads of the current pool together, in FLOP/s. Each run
/// lasts at least `min_seconds` (0.05 s gives a stable figure).
pub fn f32_peak(min_seconds: f64) -> f64 {
    measure(min_seconds, F32_FLOPS_PER_ITER, f32_iters)
}

/// The unit the bf16 GEMM would use here, if any (the same choice as `gemm_bf16`, without the
/// environment override).
pub fn bf16_unit() -> Option<Bf16Unit> {
    if crate::cpu::simd::amx() {
        Some(Bf16Unit::Amx)
    } else if crate::cpu::simd::avx512_bf16() {
        Some(Bf16Unit::Avx512Bf16)
    } else {
        None
    }
}

/// The bf16 multiply-add peak (f32 accumulation) of all threads of the current pool, in FLOP/s,
/// on `bf16_unit()`; None where the CPU has neither AMX nor AVX-512 BF16.
pub fn bf16_peak(min_seconds: f64) -> Option<(Bf16Unit, f64)> {
    let unit = bf16_unit()?;
    let flops = match unit {
        Bf16Unit::Amx => measure(min_seconds, AMX_FLOPS_PER_ITER, |iters| {
            let tiles = crate::cpu::gemm::amx::TileGuard::new();
            tiles.peak_loop(iters)
        }),
        Bf16Unit::Avx512Bf16 => measure(min_seconds, AVX512_BF16_FLOPS_PER_ITER, |iters| {
            // SAFETY: bf16_unit() returned Avx512Bf16 only because simd::avx512_bf16() is true.
            unsafe { bf16_iters_avx512(iters) }
        }),
    };
    Some((unit, flops))
}

/// FLOPs of one iteration of `TileGuard::peak_loop`: four 16×16×32 tile products.
const AMX_FLOPS_PER_ITER: f64 = 4.0 * 16.0 * 16.0 * 32.0 * 2.0;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f32_loop_computes_the_recurrence() {
        // 12 × 16 lanes of x ← 0.999999·x + 1e-7 from 0, 3 times: each lane is
        // 1e-7·(1 + a + a²); a wrong count of lanes or iterations changes the sum.
        let a = 0.999_999f64;
        let lane = 1e-7 * (1.0 + a + a * a);
        let got = f32_iters(3) as f64;
        assert!((got - 192.0 * lane).abs() < 1e-3 * 192.0 * lane, "{got}");
    }

    #[test]
    fn bf16_loop_runs_every_product() {
        if !crate::cpu::simd::runs_here(crate::cpu::simd::avx512_bf16(), "AVX-512 BF16") {
            return;
        }
        // SAFETY: crate::cpu::simd::avx512_bf16() checked.
        let (zero, seven) = unsafe { (bf16_iters_avx512(0), bf16_iters_avx512(7)) };
        assert_eq!(zero, 0.0);
        assert_eq!(seven, 7.0 * 384.0);
    }

    #[test]
    fn peaks_are_positive_and_bf16_matches_the_unit() {
        let f32_flops = f32_peak(0.002);
        assert!(f32_flops.is_finite() && f32_flops > 1e8, "{f32_flops}");
        match bf16_peak(0.002) {
            Some((unit, flops)) => {
                assert_eq!(Some(unit), bf16_unit());
                assert!(flops.is_finite() && flops > 1e8, "{flops}");
            }
            None => assert!(bf16_unit().is_none()),
        }
    }
}
