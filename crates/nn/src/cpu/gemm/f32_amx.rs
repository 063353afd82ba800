//! f32 GEMM on the AMX tiles, as accurate as the f32 FMA GEMM: each operand is split into three
//! bf16 terms (x = h + m + l exactly, `pack_bf16::split_part`), and the six term products above
//! f32's rounding level (h·h, h·m, m·h, h·l, m·m, l·h) are summed in the tiles' f32
//! accumulators (`amx::TileGuard::kernel_32x32_split`). Every bf16 × bf16 product is exact in
//! f32; the three left out are below 2⁻²⁴ of |a|·|b|. The same idea as cuBLAS's FP32 emulation
//! on bf16 tensor cores. Six tile products cost less than one f32 FMA product here: the tiles
//! do 16·16·32 multiply-adds per instruction (issue 5: ~400 vs ~200 GFLOP/s per core).
//!
//! Differences from an FMA GEMM, all at f32 rounding level or in ranges a model never reaches:
//! each output takes six rounded additions per k instead of one; values below ~2⁻¹⁰⁰ in
//! magnitude lose their low terms (the tiles flush bf16 denormals); an infinite operand gives
//! NaN instead of ±infinity. Tests bound the error against an f64 reference next to the gemm
//! crate's.

use super::bf16::{gemm_bf16_packed, Terms};
use crate::cpu::simd::{self, Bf16Kernel};

/// `dst (m, n) = [dst +] A (m, k) · B (k, n)` in f32 on the tiles; arguments as in
/// `matmul::gemm_strided` (`a = (slice, row stride, col stride)`; `accumulate` false overwrites
/// dst without reading it). Panics unless `simd::amx()`.
#[allow(clippy::too_many_arguments)]
pub fn gemm_f32_amx(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    dst_rs: usize,
    accumulate: bool,
    a: (&[f32], usize, usize),
    b: (&[f32], usize, usize),
) {
    assert!(simd::amx(), "gemm_f32_amx: no AMX on this machine");
    gemm_bf16_packed(
        Bf16Kernel::Amx,
        Terms::Three,
        m,
        n,
        k,
        dst,
        dst_rs,
        accumulate,
        a,
        b,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::gemm::f32::gemm_strided;

    fn fill(len: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                // Full 24-bit significands over a few binades, both signs.
                ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 4.0
            })
            .collect()
    }

    /// Max over outputs of |got − exact| / Σ|a·b| (the scale of f32 rounding in a dot product).
    fn max_rel_error(
        got: &[f32],
        dst_rs: usize,
        (m, n, k): (usize, usize, usize),
        a: (&[f32], usize, usize),
        b: (&[f32], usize, usize),
        offset: f32,
    ) -> f64 {
        let mut worst = 0.0f64;
        for i in 0..m {
            for j in 0..n {
                let (mut exact, mut mag) = (offset as f64, offset.abs() as f64);
                for p in 0..k {
                    let t = a.0[i * a.1 + p * a.2] as f64 * b.0[p * b.1 + j * b.2] as f64;
                    exact += t;
                    mag += t.abs();
                }
                worst = worst.max((got[i * dst_rs + j] as f64 - exact).abs() / mag);
            }
        }
        worst
    }

    /// Against an f64 reference, at sizes off every tile and block (k past one k-block), all four
    /// operand layouts, overwrite and accumulate: the error is the f32 FMA GEMM's on the same
    /// product, within 2x (and far below bf16's), and the row gaps of dst are not written.
    #[test]
    fn matches_f64_reference_like_the_fma_gemm() {
        if !simd::runs_here(simd::amx(), "AMX") {
            return;
        }
        crate::cpu::gemm::bf16::tests::for_each_layout(
            &|len, seed| fill(len, seed as u64),
            |(m, n, k), operands| {
                let dst_rs = n + 3;
                for (a, b, layout) in crate::cpu::gemm::bf16::tests::layouts((m, n, k), operands) {
                    for accumulate in [false, true] {
                        let init = if accumulate { 0.75 } else { f32::NAN };
                        let mut got = vec![init; (m - 1) * dst_rs + n];
                        let mut fma = vec![init; (m - 1) * dst_rs + n];
                        gemm_f32_amx(m, n, k, &mut got, dst_rs, accumulate, a, b);
                        gemm_strided(m, n, k, &mut fma, dst_rs, accumulate, a, b, 1.0, true);
                        let offset = if accumulate { 0.75 } else { 0.0 };
                        let e_amx = max_rel_error(&got, dst_rs, (m, n, k), a, b, offset);
                        let e_fma = max_rel_error(&fma, dst_rs, (m, n, k), a, b, offset);
                        let what = format!("{layout} {m}x{n}x{k} accumulate {accumulate}");
                        // Measured: 0.45-1.1x the FMA GEMM's error (6·10⁻⁸ to 1.4·10⁻⁷ of Σ|a·b|;
                        // bf16 operands would give ~4·10⁻³). Allow 2x, plus one f32 rounding for the
                        // tiny products where both are a single rounding.
                        assert!(
                            e_amx <= 2.0 * e_fma + 2f64.powi(-24) && e_amx < 1e-6,
                            "{what}: error {e_amx:.3e} vs the FMA gemm's {e_fma:.3e}"
                        );
                        for i in 0..m.saturating_sub(1) {
                            let gap = &got[i * dst_rs + n..(i + 1) * dst_rs];
                            assert!(
                                gap.iter().all(|x| x.to_bits() == init.to_bits()),
                                "{what}: gap written"
                            );
                        }
                    }
                }
            },
        );
    }

    /// The split is what makes it f32: x = 1 + 2⁻¹⁰ + 2⁻²⁰ needs all three terms (bf16 keeps 1,
    /// two terms 1 + 2⁻¹⁰), and x·x needs the m·m product; both come out exact, as from the FMA
    /// GEMM.
    #[test]
    fn keeps_the_bits_bf16_drops() {
        if !simd::runs_here(simd::amx(), "AMX") {
            return;
        }
        let x = 1.0 + 2f32.powi(-10) + 2f32.powi(-20);
        let (m, n, k) = (2, 3, 4);
        let a = vec![x; m * k];
        let b: Vec<f32> = (0..k * n).map(|i| if i % n == 1 { x } else { 1.0 }).collect();
        let mut c = vec![0.0; m * n];
        gemm_f32_amx(m, n, k, &mut c, n, false, (&a, k, 1), (&b, n, 1));
        let mut fma = vec![0.0; m * n];
        gemm_strided(m, n, k, &mut fma, n, false, (&a, k, 1), (&b, n, 1), 1.0, true);
        // x² = 1 + 2⁻⁹ + 2⁻¹⁹ + 2⁻²⁰ + 2⁻²⁹ + 2⁻⁴⁰; the last two are below f32 precision at 1.
        let x2 = 1.0 + 2f32.powi(-9) + 2f32.powi(-19) + 2f32.powi(-20);
        for i in 0..m {
            assert_eq!(c[i * n], 4.0 * x, "row {i}");
            assert_eq!(c[i * n + 1], 4.0 * x2, "row {i}");
            assert_eq!(&c[i * n..][..n], &fma[i * n..][..n], "row {i}");
        }
    }

    /// The result does not depend on the thread count (row chunks change with it, the order of
    /// every output's sums does not), so a resumed run on another machine size trains the same.
    #[test]
    fn bitwise_the_same_for_any_thread_count() {
        if !simd::runs_here(simd::amx(), "AMX") {
            return;
        }
        for &(m, n, k) in &[(300, 70, 1100), (2048, 64, 96), (96, 40, 3000)] {
            let a = fill(m * k, 5);
            let b = fill(k * n, 6);
            let run = |threads: usize, a_layout: (usize, usize)| {
                let pool = crate::testing::pool(threads);
                let mut c = fill(m * n, 7);
                pool.install(|| {
                    gemm_f32_amx(m, n, k, &mut c, n, true, (&a, a_layout.0, a_layout.1), (&b, n, 1))
                });
                c
            };
            for layout in [(k, 1), (1, m)] {
                let want = run(1, layout);
                for threads in [2, 3, 4] {
                    assert!(
                        run(threads, layout) == want,
                        "{m}x{n}x{k} {layout:?}: {threads} threads differ"
                    );
                }
            }
        }
    }
}
