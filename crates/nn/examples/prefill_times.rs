//! Time of a prompt's linear layers (one layer of the small preset: Wq, Wk, Wv, Wo, W1, W3, W2)
//! for n prompt rows through the f32 GEMM (`matmul_forward`, which repacks the weights) and
//! through `gemv_batch` (one pass over the weights per 4 rows), to place the crossover between
//! them; medians of 9 runs.
//! `cargo run --release -p ferrolm-nn --example prefill_times [rows,..]`
use ferrolm_nn::cpu::gemm::gemv::Weights;
use ferrolm_nn::cpu::gemm::gemv_batch::gemv_batch;
use ferrolm_nn::cpu::gemm::matmul::matmul_forward;
use ferrolm_nn::{ModelConfig, Precision};
use std::time::Instant;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let rows: Vec<usize> = std::env::args()
        .nth(1)
        .map(|s| s.split(',').map(|x| x.parse().unwrap()).collect())
        .unwrap_or(vec![5, 8, 12, 16, 24, 32, 48, 64, 96, 128]);
    let c = ModelConfig::small();
    let (d, f) = (c.d_model, c.d_ff);
    // (d_out, d_in) of the layer's matrices.
    let shapes = [(d, d), (d, d), (d, d), (d, d), (f, d), (f, d), (d, f)];
    let weights: Vec<Vec<f32>> = shapes
        .iter()
        .enumerate()
        .map(|(i, &(o, k))| {
            (0..o * k)
                .map(|j| ((j * 7 + i) % 13) as f32 * 0.01 - 0.06)
                .collect()
        })
        .collect();
    println!("rows  gemm ms  gemv_batch ms  gemm/gemv_batch");
    for &n in &rows {
        let x: Vec<f32> = (0..n * f).map(|j| (j % 11) as f32 * 0.1 - 0.5).collect();
        let mut outs: Vec<Vec<f32>> = shapes.iter().map(|&(o, _)| vec![0.0; n * o]).collect();
        let mut tg = Vec::new();
        let mut tb = Vec::new();
        for _ in 0..9 {
            let t = Instant::now();
            for ((w, &(o, k)), out) in weights.iter().zip(&shapes).zip(outs.iter_mut()) {
                matmul_forward(Precision::F32, out, &x[..n * k], w, n, k, o);
            }
            tg.push(t.elapsed().as_secs_f64());
            let t = Instant::now();
            for ((w, &(_, k)), out) in weights.iter().zip(&shapes).zip(outs.iter_mut()) {
                gemv_batch(&x[..n * k], n, &mut [(&mut out[..], Weights::F32(w))]);
            }
            tb.push(t.elapsed().as_secs_f64());
        }
        let (g, b) = (median(tg), median(tb));
        println!("{n:>4}  {:>7.3}  {:>13.3}  {:>15.2}", g * 1e3, b * 1e3, g / b);
    }
}
