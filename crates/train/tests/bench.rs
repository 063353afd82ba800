//! `bench train` runs the trainer's own step (its own test binary: the per-kernel laps it turns on
//! are process-wide).

use ferrolm_nn::Precision;
use ferrolm_train::bench::{TrainBench, TrainBenchOptions};

#[test]
fn bench_train_runs_the_trainers_step_and_reports_its_parts() {
    let opts = TrainBenchOptions {
        preset: "tiny".into(),
        batch: 1,
        seq: 8,
        steps: 2,
        warmup: 1,
        no_optimizer: false,
        precision: Precision::F32,
        breakdown: true,
    };
    let b = TrainBench::new(opts.clone()).unwrap();
    assert!(b.params() > 0);
    let mut calls = 0;
    let r = b.run(|_, _, _| calls += 1).unwrap();
    assert_eq!((calls, r.times.len()), (2, 2));
    assert!(r.final_loss.is_finite() && r.tokens_per_s > 0.0 && r.median > 0.0);
    let laps = r.laps.unwrap();
    for label in [
        "gradient norm",
        "AdamW (+ zeroing the gradients)",
        "fwd matmul head",
    ] {
        assert!(laps.iter().any(|l| l.label == label), "no {label} in {laps:?}");
    }
    // Without the optimizer: no norm, no AdamW.
    let r = TrainBench::new(TrainBenchOptions {
        no_optimizer: true,
        ..opts.clone()
    })
    .unwrap()
    .run(|_, _, _| {})
    .unwrap();
    assert!(!r.laps.unwrap().iter().any(|l| l.label.starts_with("AdamW")));
    for bad in [
        TrainBenchOptions {
            preset: "huge".into(),
            ..opts.clone()
        },
        TrainBenchOptions {
            steps: 0,
            ..opts.clone()
        },
        TrainBenchOptions { seq: 100_000, ..opts },
    ] {
        assert!(TrainBench::new(bad).is_err());
    }
}
