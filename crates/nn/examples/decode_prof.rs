//! Profiles one decode step (batch 1) of the small preset: time per matrix-vector product, f32 and bf16
//! weights, and the weight-read bandwidth they reach. `cargo run --release -p ferrolm-nn --example decode_prof`
use ferrolm_nn::cpu::gemm::gemv::{self, Weights};
use std::time::Instant;

fn time<F: FnMut()>(mut f: F) -> f64 {
    for _ in 0..20 {
        f();
    }
    let mut v = vec![];
    for _ in 0..7 {
        let t = Instant::now();
        for _ in 0..50 {
            f();
        }
        v.push(t.elapsed().as_secs_f64() / 50.0);
    }
    v.sort_by(f64::total_cmp);
    v[0]
}

fn main() {
    let threads: usize = std::env::args().nth(1).map(|s| s.parse().unwrap()).unwrap_or(2);
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
        .unwrap();
    let d = 512;
    let f = 1344;
    let v = 10000;
    let x: Vec<f32> = (0..f).map(|i| (i % 7) as f32 * 0.1).collect();
    for (name, rows, k) in [
        ("qkv", 3 * d, d),
        ("w1w3", 2 * f, d),
        ("w2", d, f),
        ("head", v, d),
        ("all", 3 * v, d),
    ] {
        let w: Vec<f32> = (0..rows * k).map(|i| (i % 13) as f32 * 0.01).collect();
        let wb = gemv::to_bf16(&w);
        let mut out = vec![0.0f32; rows];
        let t32 = time(|| gemv::gemv_multi(&x[..k], &mut [(&mut out, Weights::F32(&w))]));
        let t16 = time(|| gemv::gemv_multi(&x[..k], &mut [(&mut out, Weights::Bf16(&wb))]));
        println!(
            "{name:5} {rows}x{k}: f32 {:.1} us ({:.1} GB/s), bf16 {:.1} us ({:.1} GB/s)",
            t32 * 1e6,
            (rows * k * 4) as f64 / t32 / 1e9,
            t16 * 1e6,
            (rows * k * 2) as f64 / t16 / 1e9
        );
    }
    {
        let n = 3 * v * d;
        let w: Vec<f32> = (0..n).map(|i| (i % 13) as f32 * 0.01).collect();
        let xs: Vec<f32> = (0..n).map(|i| (i % 7) as f32 * 0.01).collect();
        let mut o = [0.0f32; 1];
        let t = time(|| gemv::gemv_rows(&mut o, Weights::F32(&w), &xs));
        println!(
            "one row of {n} (2 streams): {:.1} GB/s",
            (2 * n * 4) as f64 / t / 1e9
        );
        let wb = gemv::to_bf16(&w);
        let mut out = vec![0.0f32; 3 * v];
        let t = time(|| gemv::gemv_rows(&mut out, Weights::Bf16(&wb), &x[..d]));
        println!("all bf16 on one thread: {:.1} GB/s", (n * 2) as f64 / t / 1e9);
        let t = time(|| gemv::gemv_rows(&mut out, Weights::F32(&w), &x[..d]));
        println!("all f32 on one thread: {:.1} GB/s", (n * 4) as f64 / t / 1e9);
    }
    let (h, dh, max_len) = (16, 32, 256);
    let kc: Vec<f32> = (0..max_len * d).map(|i| (i % 11) as f32 * 0.01).collect();
    let mut kt = vec![0.0; max_len * d];
    ferrolm_nn::ops::store_keys_transposed(&mut kt, &kc, 1, max_len, 0, max_len, d);
    let vc = kc.clone();
    let q = vec![0.1f32; d];
    let mut out = vec![0.0f32; d];
    for n in [64, 128, 256] {
        let t = time(|| ferrolm_nn::ops::attention_decode(&mut out, &q, &kt, &vc, 1, n, max_len, h, dh));
        println!("attention_decode n_keys {n}: {:.1} us", t * 1e6);
    }
    let t = time(|| {
        rayon::join(|| (), || ());
    });
    println!("rayon join: {:.2} us", t * 1e6);
}
