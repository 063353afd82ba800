//! The bf16 microkernel for CPUs with AVX-512 BF16 but no AMX (AMD Zen 4 and later, Intel Cooper
//! Lake): `vdpbf16ps` adds, in each of 16 f32 lanes, the two products of a bf16 pair. It reads
//! the same packed panels as the AMX kernel (`pack_bf16`), so the GEMM driver is shared.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// `C (32×32 f32) = [C +] A · B` over `ktiles` k-tiles of 32, with the same panel layout and
/// arguments as `amx::TileGuard::kernel_32x32`: A is two 16-row packed panels (`a0` rows 0..16,
/// `a1` rows 16..32), B two 16-column VNNI panels (`b0`, `b1`), k-tile `t` of each at
/// `t · 512` elements; C at `c` with row stride `c_stride` f32, read first when `load_c`.
///
/// # Safety
/// `crate::cpu::simd::avx512_bf16()` must be true; each panel must hold `ktiles · 512` elements; `c` must be valid
/// for reads and writes of 32 rows × 32 f32 at stride `c_stride`.
#[allow(clippy::too_many_arguments)]
pub unsafe fn kernel_32x32(
    a0: *const u16,
    a1: *const u16,
    b0: *const u16,
    b1: *const u16,
    ktiles: usize,
    c: *mut f32,
    c_stride: usize,
    load_c: bool,
) {
    #[cfg(target_arch = "x86_64")]
    for (a, row0) in [(a0, 0), (a1, 16)] {
        for half in 0..2 {
            kernel_8x32(
                a.add(half * 8 * 32),
                b0,
                b1,
                ktiles,
                c.add((row0 + 8 * half) * c_stride),
                c_stride,
                load_c,
            );
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (a0, a1, b0, b1, ktiles, c, c_stride, load_c);
        unreachable!("AVX-512 BF16 exists only on x86_64");
    }
}

/// FLOPs of one iteration of `peak_loop`: 12 × 16 lanes × 2 products × 2.
pub const PEAK_FLOPS_PER_ITER: f64 = 12.0 * 16.0 * 2.0 * 2.0;

/// The throughput loop behind `peak::bf16_peak`: `iters` × 12 independent `vdpbf16ps` of
/// all-ones bf16 pairs, no memory traffic. Returns the sum of all lanes, 384 · iters (exact
/// while below 2²⁴).
///
/// # Safety
/// `crate::cpu::simd::avx512_bf16()` must be true.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
pub unsafe fn peak_loop(iters: u64) -> f32 {
    let ones: __m512bh = std::mem::transmute(_mm512_set1_epi16(0x3F80)); // bf16 1.0
    let ones = std::hint::black_box(ones);
    let mut acc = [_mm512_setzero_ps(); 12];
    for _ in 0..iters {
        for r in acc.iter_mut() {
            *r = _mm512_dpbf16_ps(*r, ones, ones);
        }
    }
    let mut s = _mm512_setzero_ps();
    for r in acc {
        s = _mm512_add_ps(s, r);
    }
    _mm512_reduce_add_ps(s)
}

/// Never called: `crate::cpu::simd::avx512_bf16()` is false off x86_64.
///
/// # Safety
/// None needed; it panics.
#[cfg(not(target_arch = "x86_64"))]
pub unsafe fn peak_loop(_iters: u64) -> f32 {
    unreachable!("AVX-512 BF16 exists only on x86_64")
}

/// 8 rows × 32 columns: 16 accumulators; per k-pair two B loads and eight broadcasts of A.
/// `a` points at the first of the 8 rows inside a 16-row panel (row stride 32 elements per tile).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn kernel_8x32(
    a: *const u16,
    b0: *const u16,
    b1: *const u16,
    ktiles: usize,
    c: *mut f32,
    c_stride: usize,
    load_c: bool,
) {
    let mut acc = [[_mm512_setzero_ps(); 2]; 8];
    if load_c {
        for (r, acc) in acc.iter_mut().enumerate() {
            acc[0] = _mm512_loadu_ps(c.add(r * c_stride));
            acc[1] = _mm512_loadu_ps(c.add(r * c_stride + 16));
        }
    }
    for t in 0..ktiles {
        let (at, bt0, bt1) = (a.add(t * 512), b0.add(t * 512), b1.add(t * 512));
        for q in 0..16 {
            let vb0: __m512bh = std::mem::transmute(_mm512_loadu_si512(bt0.add(q * 32).cast()));
            let vb1: __m512bh = std::mem::transmute(_mm512_loadu_si512(bt1.add(q * 32).cast()));
            for (r, acc) in acc.iter_mut().enumerate() {
                let pair = (at.add(r * 32 + 2 * q) as *const i32).read_unaligned();
                let va: __m512bh = std::mem::transmute(_mm512_set1_epi32(pair));
                acc[0] = _mm512_dpbf16_ps(acc[0], va, vb0);
                acc[1] = _mm512_dpbf16_ps(acc[1], va, vb1);
            }
        }
    }
    for (r, acc) in acc.iter().enumerate() {
        _mm512_storeu_ps(c.add(r * c_stride), acc[0]);
        _mm512_storeu_ps(c.add(r * c_stride + 16), acc[1]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_32x32_matches_loops() {
        if !crate::cpu::simd::avx512_bf16() {
            eprintln!("skipped: no AVX-512 BF16 on this machine");
            return;
        }
        super::super::pack_bf16::check_microkernel_32x32(|a0, a1, b0, b1, kt, c, cs, load_c| {
            // SAFETY: crate::cpu::simd::avx512_bf16() checked; the checker's panels hold `kt` tiles each and c 32 rows
            // of stride cs ≥ 32.
            unsafe { kernel_32x32(a0, a1, b0, b1, kt, c, cs, load_c) }
        });
    }

    #[test]
    fn peak_loop_runs_every_product() {
        if !crate::cpu::simd::avx512_bf16() {
            eprintln!("skipped: no AVX-512 BF16 on this machine");
            return;
        }
        // SAFETY: crate::cpu::simd::avx512_bf16() checked.
        let (zero, seven) = unsafe { (peak_loop(0), peak_loop(7)) };
        assert_eq!(zero, 0.0);
        assert_eq!(seven, 7.0 * 384.0);
    }
}
