//! Tests of the packed bf16 GEMM driver against an f64 reference of the rounded operands, for
//! every kernel this machine has (`for_each_layout` is shared with `f32_amx`'s tests).

use super::*;

fn fill(len: usize, seed: usize) -> Vec<f32> {
    (0..len)
        .map(|i| (((i * 7919 + seed * 104729) % 1009) as f32 / 1009.0 - 0.5) * 3.0)
        .collect()
}

/// f64 reference of the product of the bf16-rounded operands, with the sum of |terms| (the
/// scale of the f32 rounding error).
fn reference(
    m: usize,
    n: usize,
    k: usize,
    (a, ars, acs): (&[f32], usize, usize),
    (b, brs, bcs): (&[f32], usize, usize),
) -> (Vec<f64>, Vec<f64>) {
    let mut c = vec![0.0; m * n];
    let mut mag = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            for p in 0..k {
                let t = round_bf16(a[i * ars + p * acs]) as f64 * round_bf16(b[p * brs + j * bcs]) as f64;
                c[i * n + j] += t;
                mag[i * n + j] += t.abs();
            }
        }
    }
    (c, mag)
}

fn check(
    gemm: impl Fn(usize, usize, usize, &mut [f32], usize, bool, (&[f32], usize, usize), (&[f32], usize, usize)),
    name: &str,
) {
    for_each_layout(&fill, |(m, n, k), [a_rm, a_t, b_rm, b_t]| {
        let (want, mag) = reference(m, n, k, (a_rm, k, 1), (b_rm, n, 1));
        let dst_rs = n + 3;
        for (a, b, layout) in layouts((m, n, k), [a_rm, a_t, b_rm, b_t]) {
            let mut c = vec![f32::NAN; (m - 1) * dst_rs + n];
            gemm(m, n, k, &mut c, dst_rs, false, a, b);
            for i in 0..m {
                for j in 0..n {
                    let (got, w) = (c[i * dst_rs + j] as f64, want[i * n + j]);
                    let tol = 4e-7 * (k as f64).sqrt() * mag[i * n + j] + 1e-30;
                    assert!(
                        (got - w).abs() <= tol,
                        "{name} {layout} {m}x{n}x{k} ({i},{j}): {got} vs {w}"
                    );
                    c[i * dst_rs + j] = 1.0;
                }
            }
            gemm(m, n, k, &mut c, dst_rs, true, a, b);
            for i in 0..m {
                for j in 0..n {
                    let (got, w) = (c[i * dst_rs + j] as f64, 1.0 + want[i * n + j]);
                    let tol = 4e-7 * (k as f64).sqrt() * (mag[i * n + j] + 1.0);
                    assert!(
                        (got - w).abs() <= tol,
                        "{name} acc {layout} {m}x{n}x{k} ({i},{j})"
                    );
                }
                if i + 1 < m {
                    assert!(
                        c[i * dst_rs + n..(i + 1) * dst_rs].iter().all(|x| x.is_nan()),
                        "gap written"
                    );
                }
            }
        }
    });
}

/// A matrix operand as the GEMMs take it: (storage, row stride, column stride).
pub(crate) type Operand<'a> = (&'a [f32], usize, usize);

/// The four operand layouts of A (m, k) · B (k, n) from `for_each_layout`'s storages: A and B
/// each read row-major or from their transposed storage, with a name for failure messages.
pub(crate) fn layouts<'a>(
    (m, n, k): (usize, usize, usize),
    [a_rm, a_t, b_rm, b_t]: [&'a [f32]; 4],
) -> [(Operand<'a>, Operand<'a>, &'static str); 4] {
    [
        ((a_rm, k, 1), (b_rm, n, 1), "A, B"),
        ((a_t, 1, m), (b_rm, n, 1), "Aᵀ, B"),
        ((a_rm, k, 1), (b_t, 1, k), "A, Bᵀ"),
        ((a_t, 1, m), (b_t, 1, k), "Aᵀ, Bᵀ"),
    ]
}

/// The test shapes (`testing::GEMM_SHAPES`) with A (m, k) and B (k, n) from `fill(len, seed)`,
/// each stored row-major and transposed (read with swapped strides): `f((m, n, k), [A, Aᵀ
/// storage, B, Bᵀ storage])`.
pub(crate) fn for_each_layout(
    fill: &dyn Fn(usize, usize) -> Vec<f32>,
    mut f: impl FnMut((usize, usize, usize), [&[f32]; 4]),
) {
    for &(m, n, k) in crate::testing::GEMM_SHAPES {
        let a_rm = fill(m * k, 1);
        let b_rm = fill(k * n, 2);
        let mut a_t = vec![0.0; m * k];
        let mut b_t = vec![0.0; k * n];
        for i in 0..m {
            for p in 0..k {
                a_t[p * m + i] = a_rm[i * k + p];
            }
        }
        for p in 0..k {
            for j in 0..n {
                b_t[j * k + p] = b_rm[p * n + j];
            }
        }
        f((m, n, k), [&a_rm, &a_t, &b_rm, &b_t]);
    }
}

#[test]
fn emulated_gemm_matches_f64_reference_of_rounded_operands() {
    check(gemm_bf16_emulated, "emulated");
}

fn check_kernel(kernel: Bf16Kernel) {
    if !crate::cpu::simd::runs_here(kernel.available(), &format!("{kernel:?}")) {
        return;
    }
    let name = format!("{kernel:?}");
    check(
        move |m, n, k, d, rs, acc, a, b| gemm_bf16_with(kernel, m, n, k, d, rs, acc, a, b),
        &name,
    );
}

#[test]
fn amx_gemm_matches_f64_reference_of_rounded_operands() {
    check_kernel(Bf16Kernel::Amx);
}

#[test]
fn avx512_bf16_gemm_matches_f64_reference_of_rounded_operands() {
    check_kernel(Bf16Kernel::Avx512Bf16);
}

/// Matmuls started from inside rayon tasks (nested parallelism, buffers re-entered on one
/// thread) give the same result as one at a time.
#[test]
fn nested_calls_from_rayon_tasks_agree() {
    let (m, n, k) = (70, 90, 300);
    let a = fill(m * k, 3);
    let b = fill(k * n, 4);
    let mut want = vec![0.0; m * n];
    gemm_bf16(m, n, k, &mut want, n, false, (&a, k, 1), (&b, n, 1));
    let outs: Vec<Vec<f32>> = (0..8)
        .into_par_iter()
        .map(|_| {
            let mut c = vec![0.0; m * n];
            gemm_bf16(m, n, k, &mut c, n, false, (&a, k, 1), (&b, n, 1));
            c
        })
        .collect();
    for c in outs {
        assert_eq!(c, want);
    }
}

/// A test shared by the microkernels (`amx`, `dpbf16`): one 32×32×64 product of small integers
/// (exact in bf16 and in f32 sums), packed by hand in the panel layout, against plain loops, with
/// and without reading C, and the columns past 32 of a stride-40 C untouched. `run(panels, c)`
/// calls the kernel.
fn check_microkernel_32x32(mut run: impl FnMut(Panels, CBlock)) {
    let k = 64;
    let bf = |x: f32| (x.to_bits() >> 16) as u16; // exact for these small integers
    let a: Vec<f32> = (0..32 * k).map(|i| ((i * 7) % 11) as f32 - 5.0).collect(); // (32, k)
    let b: Vec<f32> = (0..k * 32).map(|i| ((i * 5) % 13) as f32 - 6.0).collect(); // (k, 32)
                                                                                  // A panels [tile][16 rows][32 k]; B panels [tile][16 pairs][16 cols][2].
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
        let panels = Panels {
            a: [pa[0].as_ptr(), pa[1].as_ptr()],
            b: [pb[0].as_ptr(), pb[1].as_ptr()],
            ktiles: 2,
        };
        let block = CBlock {
            ptr: c.as_mut_ptr(),
            stride,
            load: load_c,
        };
        run(panels, block);
        for i in 0..32 {
            for j in 0..32 {
                let want: f32 = (0..k).map(|p| a[i * k + p] * b[p * 32 + j]).sum();
                let want = if load_c { 2.0 * want } else { want };
                assert_eq!(c[i * stride + j], want, "load_c {load_c} ({i}, {j})");
            }
            assert!(
                c[i * stride + 32..(i + 1) * stride].iter().all(|&x| x == 1.0),
                "padding written"
            );
        }
    }
}

/// `check_microkernel_32x32` on each 32×32 microkernel this CPU has.
#[test]
fn microkernels_match_loops() {
    if crate::cpu::simd::runs_here(crate::cpu::simd::avx512_bf16(), "AVX-512 BF16") {
        // SAFETY: AVX-512 BF16 checked; the checker's panels hold `ktiles` tiles each and C 32
        // rows of stride ≥ 32.
        check_microkernel_32x32(|p, c| unsafe { dpbf16::kernel_32x32(p, c) });
    }
    if crate::cpu::simd::runs_here(crate::cpu::simd::amx(), "AMX") {
        let tiles = TileGuard::new();
        // SAFETY: as above, on the tiles (AMX checked).
        check_microkernel_32x32(|p, c| unsafe { tiles.kernel_32x32(p, c) });
    }
}
