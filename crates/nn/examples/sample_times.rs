//! Time per token of `sample::sample` over a 10000-token vocabulary (the presets'), greedy,
//! temperature and top-p, on a flat and a more peaked distribution; the last number of each line
//! is a checksum of the drawn tokens (equal before and after a change that keeps the results).
//! `cargo run --release -p ferrolm-nn --example sample_times`
use ferrolm_nn::sample::{sample, SamplingConfig};
use ferrolm_nn::Rng;
use std::time::Instant;

fn main() {
    let flat: Vec<f32> = (0..10000).map(|i| ((i * 7919) % 1000) as f32 * 0.001).collect();
    let peaked: Vec<f32> = (0..10000).map(|i| ((i * 7919) % 1000) as f32 * 0.02).collect();
    let mut scratch = Vec::new();
    for (name, logits) in [("flat", &flat), ("peaked", &peaked)] {
        for (temperature, top_p) in [(0.0, 1.0), (0.8, 1.0), (0.8, 0.9)] {
            let cfg = SamplingConfig { temperature, top_p };
            let mut rng = Rng::new(1);
            let n = 1000;
            let t0 = Instant::now();
            let sum: u64 = (0..n)
                .map(|_| sample(logits, cfg, &mut rng, &mut scratch) as u64)
                .sum();
            println!(
                "{name:6} T {temperature} top_p {top_p}: {:.1} us per token (checksum {sum})",
                t0.elapsed().as_secs_f64() * 1e6 / n as f64
            );
        }
    }
}
