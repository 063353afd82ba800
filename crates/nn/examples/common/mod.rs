//! Helpers the timing examples share (each includes this file with `mod common;`).

use std::time::Instant;

/// The median wall time in seconds of `reps` calls of `f`, after one untimed warm-up call.
pub fn median(reps: usize, f: &mut dyn FnMut()) -> f64 {
    f();
    let mut ts: Vec<f64> = (0..reps)
        .map(|_| {
            let t0 = Instant::now();
            f();
            t0.elapsed().as_secs_f64()
        })
        .collect();
    ts.sort_by(f64::total_cmp);
    ts[reps / 2]
}
