//! The bf16 microkernel for CPUs with AVX-512 BF16 but no AMX (AMD Zen 4 and later, Intel Cooper
//! Lake): `vdpbf16ps` adds, in each of 16 f32 lanes, the two products of a bf16 pair. It reads
//! the same packed panels as the AMX kernel (`pack_bf16`), so the GEMM driver is shared.

use super::microkernel::{CBlock, Panels};
#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// `C (32×32 f32) = [C +] A · B` over the k-tiles of the panels, with the same operands as
/// `amx::TileGuard::kernel_32x32` (`Panels`, `CBlock`).
///
/// # Safety
/// `crate::cpu::simd::avx512_bf16()` must be true; each panel must hold `ktiles · 512` elements;
/// `c.ptr` must be valid for reads and writes of 32 rows × 32 f32 at stride `c.stride`.
pub unsafe fn kernel_32x32(p: Panels, c: CBlock) {
    let ([a0, a1], [b0, b1], ktiles) = (p.a, p.b, p.ktiles);
    let (c, c_stride, load_c) = (c.ptr, c.stride, c.load);
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
