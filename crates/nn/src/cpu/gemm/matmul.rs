//! Linear layers `y = x Wᵀ` (W stored (d_out, d_in), no bias) forward and backward in a
//! `Precision`, alone or several sharing an operand: each product runs on the packed GEMM where
//! this machine has one (`bf16`; in f32 the split GEMM on the AMX tiles, `f32_amx`), else on the
//! FMA GEMM (`f32`); few rows as matrix-vector products (`gemv`).

use super::bf16::{gemm_bf16_emulated, gemm_bf16_packed, gemm_packed, Product, Shared, Terms};
use super::f32::gemm_fma;
#[cfg(test)]
use super::f32::{gemm_row_blocks, gemm_strided};
use super::gemv::{self, GEMV_MAX_ROWS};
use crate::config::Precision;
use crate::cpu::simd::{self, bf16_kernel, Bf16Kernel};

/// One model product in `prec`: on the packed GEMM where this machine has one
/// (`packed_kernel`: in f32 the split GEMM on the AMX tiles, `f32_amx`; a small-preset
/// step's products 211 -> 168 ms isolated, `matmul_bf16_times`), else the FMA GEMM (f32) or the
/// operands rounded into it (bf16).
#[allow(clippy::too_many_arguments)]
fn gemm_prec(
    prec: Precision,
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    dst_rs: usize,
    accumulate: bool,
    a: (&[f32], usize, usize),
    b: (&[f32], usize, usize),
) {
    match (packed_kernel(prec), prec) {
        (Some((kernel, terms)), _) => gemm_bf16_packed(kernel, terms, m, n, k, dst, dst_rs, accumulate, a, b),
        (None, Precision::F32) => gemm_fma(m, n, k, dst, dst_rs, accumulate, a, b),
        (None, Precision::Bf16) => gemm_bf16_emulated(m, n, k, dst, dst_rs, accumulate, a, b),
    }
}

/// `out (n, d_out) = inp (n, d_in) · weightᵀ`, weight (d_out, d_in). Overwrites out. With
/// `Precision::Bf16` the operands are rounded to bf16 and the sums kept in f32 (`gemm_bf16`).
pub fn matmul_forward(
    prec: Precision,
    out: &mut [f32],
    inp: &[f32],
    weight: &[f32],
    n: usize,
    d_in: usize,
    d_out: usize,
) {
    check_lens!("matmul_forward", out: n * d_out, inp: n * d_in, weight: d_out * d_in);
    if n <= GEMV_MAX_ROWS && d_in > 0 {
        for (out, x) in out.chunks_exact_mut(d_out).zip(inp.chunks_exact(d_in)) {
            gemv::gemv_multi(x, &mut [(out, gemv::Weights::F32(weight))]);
        }
        return;
    }
    let (a, b) = ((inp, d_in, 1), (weight, 1, d_in));
    gemm_prec(prec, n, d_out, d_in, out, d_out, false, a, b)
}

/// The packed GEMM (kernel and bf16 terms) this precision's products run on, where it has one:
/// f32 on the AMX tiles, or bf16 on AMX / AVX-512 BF16. None for the gemm crate.
fn packed_kernel(prec: Precision) -> Option<(Bf16Kernel, Terms)> {
    match prec {
        Precision::F32 => simd::f32_on_amx().then_some((Bf16Kernel::Amx, Terms::Three)),
        Precision::Bf16 => match bf16_kernel() {
            Bf16Kernel::Emulated => None,
            k => Some((k, Terms::One)),
        },
    }
}

/// What `prec`'s products run on on this machine, for logs and benchmarks.
pub fn backend_name(prec: Precision) -> &'static str {
    match prec {
        Precision::F32 if simd::f32_on_amx() => "f32 on AMX tiles (three-term bf16 split, f32-accurate)",
        Precision::F32 => "f32 gemm",
        Precision::Bf16 => match bf16_kernel() {
            Bf16Kernel::Amx => "bf16 on AMX tiles",
            Bf16Kernel::Avx512Bf16 => "bf16 with AVX-512 BF16 dot products",
            Bf16Kernel::Emulated => "bf16 emulated (operands rounded, f32 gemm: no speed-up)",
        },
    }
}

/// `matmul_forward` for several weights of one input (q/k/v, W1/W3): `outs[i] = (out_i, weight_i)`,
/// each out (n, d_out) and weight (d_out, d_in). The same results; the packed GEMMs pack the
/// input once for all of them.
pub fn matmul_forward_shared(
    prec: Precision,
    outs: &mut [(&mut [f32], &[f32])],
    inp: &[f32],
    n: usize,
    d_in: usize,
    d_out: usize,
) {
    match packed_kernel(prec).filter(|_| n > GEMV_MAX_ROWS) {
        Some((kernel, terms)) => {
            assert_eq!(inp.len(), n * d_in, "matmul_forward_shared: inp");
            let mut products: Vec<Product> = outs
                .iter_mut()
                .map(|(out, weight)| {
                    check_lens!("matmul_forward_shared", out: n * d_out, weight: d_out * d_in);
                    Product {
                        dst: out,
                        dst_rs: d_out,
                        operand: (*weight, 1, d_in),
                    }
                })
                .collect();
            let shared = Shared::A((inp, d_in, 1));
            gemm_packed(kernel, terms, (n, d_out, d_in), false, shared, &mut products);
        }
        None => {
            for (out, weight) in outs.iter_mut() {
                matmul_forward(prec, out, inp, weight, n, d_in, d_out);
            }
        }
    }
}

/// `dinp (n, d_in) (+)= dout (n, d_out) · weight (d_out, d_in)`: overwrites dinp unless
/// `accumulate`.
#[allow(clippy::too_many_arguments)]
pub fn matmul_backward_input(
    prec: Precision,
    dinp: &mut [f32],
    dout: &[f32],
    weight: &[f32],
    n: usize,
    d_in: usize,
    d_out: usize,
    accumulate: bool,
) {
    check_lens!("matmul_backward_input", dinp: n * d_in, dout: n * d_out, weight: d_out * d_in);
    let (a, b) = ((dout, d_out, 1), (weight, d_in, 1));
    gemm_prec(prec, n, d_in, d_out, dinp, d_in, accumulate, a, b)
}

/// `dweight (d_out, d_in) += doutᵀ (d_out, n) · inp (n, d_in)`. Accumulates.
pub fn matmul_backward_weight(
    prec: Precision,
    dweight: &mut [f32],
    dout: &[f32],
    inp: &[f32],
    n: usize,
    d_in: usize,
    d_out: usize,
) {
    check_lens!("matmul_backward_weight", dweight: d_out * d_in, dout: n * d_out, inp: n * d_in);
    weight_gradient(prec, dweight, (dout, 1, d_out), inp, n, d_in, d_out);
}

/// `dweight (d_out, d_in) += dout_t (d_out, n) · inp (n, d_in)`: the weight gradient from the
/// output gradient stored TRANSPOSED (dout_t = doutᵀ, rows `ld_t ≥ n` apart). Accumulates. The
/// faster form where dout_t comes for free: the `gemm` crate then reads the output gradient along
/// its reduction dimension instead of packing it from rows d_out floats apart.
#[allow(clippy::too_many_arguments)]
pub fn matmul_backward_weight_t(
    prec: Precision,
    dweight: &mut [f32],
    dout_t: &[f32],
    ld_t: usize,
    inp: &[f32],
    n: usize,
    d_in: usize,
    d_out: usize,
) {
    assert_eq!(dweight.len(), d_out * d_in, "matmul_backward_weight_t: dweight");
    assert!(
        ld_t >= n && (d_out == 0 || dout_t.len() >= (d_out - 1) * ld_t + n),
        "matmul_backward_weight_t: dout_t"
    );
    assert_eq!(inp.len(), n * d_in, "matmul_backward_weight_t: inp");
    weight_gradient(prec, dweight, (dout_t, ld_t, 1), inp, n, d_in, d_out);
}

/// One weight gradient of `matmul_backward_weight_shared` and its operand A = doutᵀ.
pub type WeightGrad<'a, 'b> = (&'a mut [f32], (&'b [f32], usize, usize));

/// The weight gradients of several weights fed by one input (q/k/v, W1/W3), accumulated:
/// `grads[i] = (dweight_i, A_i)` with dweight (d_out, d_in) += A_i (d_out, n) · inp (n, d_in),
/// A_i = dout_iᵀ given as `(dout, 1, d_out)` (dout (n, d_out)) or `(dout_t, ld_t, 1)` (as in
/// `matmul_backward_weight_t`). The same results as one call each; the packed GEMMs pack the
/// input once.
pub fn matmul_backward_weight_shared(
    prec: Precision,
    grads: &mut [WeightGrad],
    inp: &[f32],
    n: usize,
    d_in: usize,
    d_out: usize,
) {
    assert_eq!(inp.len(), n * d_in, "matmul_backward_weight_shared: inp");
    for (dweight, _) in grads.iter() {
        assert_eq!(
            dweight.len(),
            d_out * d_in,
            "matmul_backward_weight_shared: dweight"
        );
    }
    match packed_kernel(prec) {
        Some((kernel, terms)) => {
            let mut products: Vec<Product> = grads
                .iter_mut()
                .map(|(dweight, a)| Product {
                    dst: dweight,
                    dst_rs: d_in,
                    operand: *a,
                })
                .collect();
            let shared = Shared::B((inp, d_in, 1));
            gemm_packed(kernel, terms, (d_out, d_in, n), true, shared, &mut products);
        }
        None => {
            for (dweight, a) in grads.iter_mut() {
                weight_gradient(prec, dweight, *a, inp, n, d_in, d_out);
            }
        }
    }
}

/// `dweight (d_out, d_in) += A (d_out, n) · inp (n, d_in)` for both layouts of A = doutᵀ.
fn weight_gradient(
    prec: Precision,
    dweight: &mut [f32],
    a: (&[f32], usize, usize),
    inp: &[f32],
    n: usize,
    d_in: usize,
    d_out: usize,
) {
    let b = (inp, d_in, 1);
    gemm_prec(prec, d_out, d_in, n, dweight, d_in, true, a, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shared-operand forms give bitwise the per-weight calls' results, in both precisions
    /// (whatever kernels this machine runs them on), at sizes off every tile, with the gradients
    /// accumulated onto what they held, for both layouts of the output gradient.
    #[test]
    fn shared_operand_products_equal_one_call_each() {
        let fill = |len: usize, seed: usize| -> Vec<f32> {
            (0..len)
                .map(|i| (((i * 7919 + seed * 104729) % 1009) as f32 / 1009.0 - 0.5) * 1.7)
                .collect()
        };
        for prec in [Precision::F32, Precision::Bf16] {
            for &(n, d_in, d_out) in &[(70, 45, 33), (300, 64, 130), (5, 17, 40)] {
                let inp = fill(n * d_in, 1);
                let ws: Vec<Vec<f32>> = (0..3).map(|s| fill(d_out * d_in, 2 + s)).collect();
                let mut want: Vec<Vec<f32>> = vec![vec![f32::NAN; n * d_out]; 3];
                for (out, w) in want.iter_mut().zip(&ws) {
                    matmul_forward(prec, out, &inp, w, n, d_in, d_out);
                }
                let mut got: Vec<Vec<f32>> = vec![vec![f32::NAN; n * d_out]; 3];
                {
                    let mut outs: Vec<(&mut [f32], &[f32])> = got
                        .iter_mut()
                        .zip(&ws)
                        .map(|(o, w)| (&mut o[..], &w[..]))
                        .collect();
                    matmul_forward_shared(prec, &mut outs, &inp, n, d_in, d_out);
                }
                assert_eq!(got, want, "{prec} forward {n}x{d_in}x{d_out}");

                // Weight gradients from douts (n, d_out), one given transposed (ld n + 3).
                let douts: Vec<Vec<f32>> = (0..3).map(|s| fill(n * d_out, 7 + s)).collect();
                let ld = n + 3;
                let mut dout_t = vec![0.0; d_out * ld];
                for t in 0..n {
                    for o in 0..d_out {
                        dout_t[o * ld + t] = douts[2][t * d_out + o];
                    }
                }
                let init = fill(d_out * d_in, 11);
                let mut want: Vec<Vec<f32>> = vec![init.clone(); 3];
                for (g, dout) in want.iter_mut().zip(&douts) {
                    matmul_backward_weight(prec, g, dout, &inp, n, d_in, d_out);
                }
                let mut got: Vec<Vec<f32>> = vec![init.clone(); 3];
                {
                    let ops = [
                        (&douts[0][..], 1, d_out),
                        (&douts[1][..], 1, d_out),
                        (&dout_t[..], ld, 1),
                    ];
                    let mut grads: Vec<WeightGrad> =
                        got.iter_mut().zip(ops).map(|(g, a)| (&mut g[..], a)).collect();
                    matmul_backward_weight_shared(prec, &mut grads, &inp, n, d_in, d_out);
                }
                for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                    // The transposed layout packs differently in the gemm crate (sums in another
                    // order): bitwise only where the packed GEMMs run, else to rounding.
                    if i < 2 || packed_kernel(prec).is_some() {
                        assert_eq!(g, w, "{prec} weight gradient {i} {n}x{d_in}x{d_out}");
                    } else {
                        for (x, y) in g.iter().zip(w) {
                            assert!((x - y).abs() <= 1e-5 * (1.0 + y.abs()), "{prec} {x} {y}");
                        }
                    }
                }
            }
        }
    }

    /// `len` values `(i·mul mod modulo)/modulo − 0.5` in [−0.5, 0.5): test data without an RNG.
    fn pattern(len: usize, mul: usize, modulo: usize) -> Vec<f32> {
        (0..len)
            .map(|i| ((i * mul) % modulo) as f32 / modulo as f32 - 0.5)
            .collect()
    }

    fn naive(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k)
                    .map(|p| a[i * k + p] as f64 * b[p * n + j] as f64)
                    .sum::<f64>() as f32;
            }
        }
        c
    }

    #[test]
    fn strided_gemm_matches_naive_for_transposes_and_accumulation() {
        let (m, k, n) = (37, 70, 53);
        let a = pattern(m * k, 7919, 97);
        let b = pattern(k * n, 104729, 89);
        let want = naive(&a, &b, m, k, n);
        let mut c = vec![f32::NAN; m * n];
        gemm_strided(m, n, k, &mut c, n, false, (&a, k, 1), (&b, n, 1), 1.0, true);
        for (x, y) in c.iter().zip(&want) {
            assert!((x - y).abs() < 1e-4, "{x} {y}");
        }
        // B given transposed: bt (n, k), read with strides (1, k).
        let mut bt = vec![0.0; n * k];
        for p in 0..k {
            for j in 0..n {
                bt[j * k + p] = b[p * n + j];
            }
        }
        gemm_strided(m, n, k, &mut c, n, true, (&a, k, 1), (&bt, 1, k), 2.0, false);
        for (x, y) in c.iter().zip(&want) {
            assert!((x - 3.0 * y).abs() < 3e-4, "{x} {y}");
        }
    }

    /// Row blocks give bitwise the single call's result, for any thread count, at the model's
    /// weight-gradient layout (A transposed) and at odd sizes, with and without accumulation.
    #[test]
    fn row_blocks_are_bitwise_one_gemm_for_any_thread_count() {
        for &(m, n, k) in crate::testing::GEMM_SHAPES {
            let a = pattern(k * m, 7919, 1009);
            let b = pattern(k * n, 104729, 997);
            let init: Vec<f32> = (0..m * n).map(|i| (i % 13) as f32 * 0.1).collect();
            for accumulate in [false, true] {
                let mut want = init.clone();
                gemm_strided(
                    m,
                    n,
                    k,
                    &mut want,
                    n,
                    accumulate,
                    (&a, 1, m),
                    (&b, n, 1),
                    1.0,
                    false,
                );
                for threads in [1, 2, 3, 4] {
                    let pool = crate::testing::pool(threads);
                    let mut got = init.clone();
                    pool.install(|| {
                        gemm_row_blocks(m, n, k, &mut got, n, accumulate, (&a, 1, m), (&b, n, 1))
                    });
                    let differ = got
                        .iter()
                        .zip(&want)
                        .filter(|(x, y)| x.to_bits() != y.to_bits())
                        .count();
                    assert_eq!(
                        differ, 0,
                        "{m}x{n}x{k}, {threads} threads, accumulate {accumulate}"
                    );
                }
            }
        }
    }

    /// The weight gradient from a transposed output gradient (padded rows) equals the plain one.
    #[test]
    fn weight_gradient_from_transposed_output_gradient_matches() {
        let (n, d_in, d_out) = (300, 70, 130);
        let dout = pattern(n * d_out, 7919, 97);
        let inp = pattern(n * d_in, 31, 89);
        let ld = n + 5;
        let mut dout_t = vec![f32::NAN; d_out * ld];
        for t in 0..n {
            for o in 0..d_out {
                dout_t[o * ld + t] = dout[t * d_out + o];
            }
        }
        let init: Vec<f32> = (0..d_out * d_in).map(|i| (i % 7) as f32).collect();
        let (mut want, mut got) = (init.clone(), init);
        matmul_backward_weight(Precision::F32, &mut want, &dout, &inp, n, d_in, d_out);
        matmul_backward_weight_t(Precision::F32, &mut got, &dout_t, ld, &inp, n, d_in, d_out);
        for (a, b) in got.iter().zip(&want) {
            assert!((a - b).abs() < 1e-4, "{a} {b}");
        }
    }

    #[test]
    fn few_row_forward_matches_gemm_path() {
        let (d_in, d_out) = (70, 130);
        let w = pattern(d_in * d_out, 7919, 97);
        let x = pattern(5 * d_in, 31, 17);
        let mut all = vec![0.0; 5 * d_out];
        matmul_forward(Precision::F32, &mut all, &x, &w, 5, d_in, d_out); // gemm
        for n in 1..=GEMV_MAX_ROWS {
            let mut few = vec![f32::NAN; n * d_out];
            matmul_forward(Precision::F32, &mut few, &x[..n * d_in], &w, n, d_in, d_out);
            for (a, b) in few.iter().zip(&all) {
                assert!((a - b).abs() < 1e-5, "{a} {b}");
            }
        }
    }

    #[test]
    #[should_panic(expected = "lhs too short")]
    fn gemm_rejects_short_slices() {
        let mut c = vec![0.0; 4];
        gemm_strided(
            2,
            2,
            3,
            &mut c,
            2,
            false,
            (&[0.0; 5], 3, 1),
            (&[0.0; 6], 2, 1),
            1.0,
            false,
        );
    }
}
