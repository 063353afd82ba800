//! What summing fresh per-micro-batch gradients costs (the step's `fold_local`: `sum += g; g = 0`,
//! once per micro-batch after the first), for the tiny and small presets' gradient sizes; the
//! price of gradient accumulation that N ranks can reproduce bitwise. Prints the median of 21.
//! Run: cargo run --release -p ferrolm-train --example fold_cost

use ferrolm_nn::ModelConfig;
use ferrolm_train::trainer::step::fold_local;
use std::time::Instant;

fn main() {
    for (name, cfg) in [("tiny", ModelConfig::tiny()), ("small", ModelConfig::small())] {
        let p = cfg.num_params();
        let mut sum = vec![1.0f32; p];
        let mut g = vec![0.5f32; p];
        let mut times: Vec<f64> = (0..21)
            .map(|_| {
                let t = Instant::now();
                fold_local(false, &mut g, &mut sum);
                let dt = t.elapsed().as_secs_f64();
                g.iter_mut().for_each(|x| *x = 0.5);
                dt
            })
            .collect();
        times.sort_by(f64::total_cmp);
        let ms = times[10] * 1e3;
        println!(
            "{name}: {:.2} M parameters, {:.1} MB gradient: {ms:.2} ms per extra micro-batch ({:.1} GB/s of the 16 bytes/parameter moved), {} threads",
            p as f64 / 1e6,
            p as f64 * 4e-6,
            16.0 * p as f64 / times[10] / 1e9,
            rayon::current_num_threads()
        );
    }
}
