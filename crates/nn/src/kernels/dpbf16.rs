//! The bf16 microkernel for CPUs with AVX-512 BF16 but no AMX (AMD Zen 4 and later, Intel Cooper
//! Lake): `vdpbf16ps` adds, in each of 16 f32 lanes, the two products of a bf16 pair. It reads
//! the same packed panels as the AMX kernel (`pack_bf16.rs`), so the GEMM driver is shared.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// Whether this CPU can run `kernel_32x32`.
pub fn available() -> bool {
    super::pack_bf16::simd_available()
}

/// Whether this kernel should beat the f32 gemm here: on AMD Zen 4 `vdpbf16ps` runs at twice the
/// f32 FMA rate (issue 5 measured 467 vs 233 GFLOP/s). On Intel it does not (measured here on
/// Sapphire Rapids: ~0.5x the f32 gemm), and Intel CPUs with AMX use the tiles anyway.
pub fn preferred() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        let v = std::arch::x86_64::__cpuid_count(0, 0);
        let vendor: Vec<u8> = [v.ebx, v.edx, v.ecx]
            .iter()
            .flat_map(|r| r.to_le_bytes())
            .collect();
        available() && vendor == b"AuthenticAMD"
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// `C (32×32 f32) = [C +] A · B` over `ktiles` k-tiles of 32, with the same panel layout and
/// arguments as `amx::TileGuard::kernel_32x32`: A is two 16-row packed panels (`a0` rows 0..16,
/// `a1` rows 16..32), B two 16-column VNNI panels (`b0`, `b1`), k-tile `t` of each at
/// `t · 512` elements; C at `c` with row stride `c_stride` f32, read first when `load_c`.
///
/// # Safety
/// `available()` must be true; each panel must hold `ktiles · 512` elements; `c` must be valid
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

    /// The same exact small-integer product as the AMX kernel's test.
    #[test]
    fn kernel_32x32_matches_loops() {
        if !available() {
            eprintln!("skipped: no AVX-512 BF16 on this machine");
            return;
        }
        let k = 64;
        let bf = |x: f32| (x.to_bits() >> 16) as u16;
        let a: Vec<f32> = (0..32 * k).map(|i| ((i * 7) % 11) as f32 - 5.0).collect();
        let b: Vec<f32> = (0..k * 32).map(|i| ((i * 5) % 13) as f32 - 6.0).collect();
        let mut pa = [vec![0u16; 1024], vec![0u16; 1024]];
        let mut pb = [vec![0u16; 1024], vec![0u16; 1024]];
        for i in 0..32 {
            for p in 0..k {
                pa[i / 16][(p / 32) * 512 + (i % 16) * 32 + p % 32] = bf(a[i * k + p]);
            }
        }
        for p in 0..k {
            for j in 0..32 {
                pb[j / 16][(p / 2) * 32 + (j % 16) * 2 + p % 2] = bf(b[p * 32 + j]);
            }
        }
        let stride = 40;
        let mut c = vec![1.0f32; 32 * stride];
        for load_c in [false, true] {
            // SAFETY: available() checked; panels hold 2 tiles (k = 64); c holds 32 rows of 40.
            unsafe {
                kernel_32x32(
                    pa[0].as_ptr(),
                    pa[1].as_ptr(),
                    pb[0].as_ptr(),
                    pb[1].as_ptr(),
                    2,
                    c.as_mut_ptr(),
                    stride,
                    load_c,
                )
            };
            for i in 0..32 {
                for j in 0..32 {
                    let want: f32 = (0..k).map(|p| a[i * k + p] * b[p * 32 + j]).sum();
                    let want = if load_c { 2.0 * want } else { want };
                    assert_eq!(c[i * stride + j], want, "load_c {load_c} ({i}, {j})");
                }
                assert!(c[i * stride + 32..(i + 1) * stride].iter().all(|&x| x == 1.0));
            }
        }
    }
}
