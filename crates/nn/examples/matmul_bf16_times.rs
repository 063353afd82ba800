//! Times the model's matmul shapes in f32 (gemm crate) and bf16 (AMX, or the emulated fallback),
//! forward / backward-input / backward-weight, medians of `reps`.
//! `cargo run --release -p ferrolm-nn --example matmul_bf16_times -- small 8 [threads]`

use ferrolm_nn::cpu::gemm::bf16::gemm_bf16;
use ferrolm_nn::cpu::gemm::f32::gemm_strided;
use ferrolm_nn::cpu::gemm::f32_amx::gemm_f32_amx;
use ferrolm_nn::ModelConfig;

mod common;
use common::median;

/// (A, row stride, column stride) of one operand.
type Operand<'a> = (&'a [f32], usize, usize);
/// A GEMM that overwrites or accumulates dst (m, n) with row stride dst_rs with A (m, k) · B (k, n).
type Gemm = fn(usize, usize, usize, &mut [f32], usize, bool, Operand, Operand);

/// The f32 FMA GEMM as a `Gemm` (alpha 1, parallel).
#[allow(clippy::too_many_arguments)]
fn f32_fma(m: usize, n: usize, k: usize, dst: &mut [f32], rs: usize, acc: bool, a: Operand, b: Operand) {
    gemm_strided(m, n, k, dst, rs, acc, a, b, 1.0, true)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let c = ModelConfig::preset(args.get(1).map_or("small", |s| s.as_str())).expect("small|tiny");
    let batch: usize = args.get(2).map_or(8, |s| s.parse().unwrap());
    let threads: usize = args.get(3).map_or(2, |s| s.parse().unwrap());
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
        .unwrap();
    let (d, f, v) = (c.d_model, c.d_ff, c.vocab_size);
    let n = batch * c.context_length;
    let x: Vec<f32> = (0..n * v.max(f))
        .map(|i| ((i % 97) as f32 - 48.0) * 1e-3)
        .collect();
    let w: Vec<f32> = (0..v * d.max(f))
        .map(|i| ((i % 89) as f32 - 44.0) * 1e-3)
        .collect();
    let mut y = vec![0.0f32; n * v.max(f)];
    let mut dw = vec![0.0f32; v * d.max(f)];
    let reps = 5;
    // SECOND=f32amx: the second column times the split f32 GEMM on the tiles instead of bf16.
    let second: Gemm = if std::env::var("SECOND").is_ok_and(|v| v == "f32amx") {
        gemm_f32_amx
    } else {
        gemm_bf16
    };
    let only_bf16 = args.get(4).is_some_and(|s| s == "bf16");
    println!(
        "{:<12}{:>10}{:>10}{:>10}{:>10}{:>8}",
        "shape", "op", "f32 ms", "bf16 ms", "bf16 GF/s", "ratio"
    );
    let mut tot = (0.0, 0.0);
    let reps32 = if only_bf16 { 0 } else { reps };
    let median = |r: usize, f: &mut dyn FnMut()| if r == 0 { f64::NAN } else { median(r, f) };
    for (name, din, dout) in [("d→d", d, d), ("d→f", d, f), ("f→d", f, d), ("head d→V", d, v)] {
        let flops = 2.0 * (n * din * dout) as f64;
        // (op, (m, n, k) of the product, accumulate, A (data, row stride, col stride), B):
        // forward y (n, dout) = x (n, din) · Wᵀ; backward input dx (n, din) = dy (n, dout) · W;
        // backward weight dW (dout, din) += dyᵀ (dout, n) · x (n, din).
        for (op, (mm, nn, kk), acc, a, b) in [
            ("fwd", (n, dout, din), false, (&x[..], din, 1), (&w[..], 1, din)),
            (
                "bwd-in",
                (n, din, dout),
                false,
                (&x[..], dout, 1),
                (&w[..], din, 1),
            ),
            (
                "bwd-w",
                (dout, din, n),
                true,
                (&x[..], 1, dout),
                (&w[..n * din], din, 1),
            ),
        ] {
            let dst: &mut [f32] = if acc { &mut dw } else { &mut y };
            let t32 = median(reps32, &mut || f32_fma(mm, nn, kk, dst, nn, acc, a, b));
            let t16 = median(reps, &mut || second(mm, nn, kk, dst, nn, acc, a, b));
            println!(
                "{name:<12}{op:>10}{:>10.2}{:>10.2}{:>10.0}{:>8.2}",
                t32 * 1e3,
                t16 * 1e3,
                flops / t16 / 1e9,
                t32 / t16
            );
            tot.0 += t32;
            tot.1 += t16;
        }
    }
    println!(
        "total f32 {:.1} ms, bf16 {:.1} ms, ratio {:.2}",
        tot.0 * 1e3,
        tot.1 * 1e3,
        tot.0 / tot.1
    );
}
