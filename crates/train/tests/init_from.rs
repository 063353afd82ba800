//! `init_from`: a new run that starts from another run's weights with a fresh optimizer, and
//! refuses a checkpoint whose model differs from the run's.

mod common;

use ferrolm_train::checkpoint;
use ferrolm_train::metrics;
use ferrolm_train::{train, Resume, TrainOptions};

#[test]
fn a_run_initialized_from_a_checkpoint_starts_from_its_weights_and_loss() {
    let d = tempfile::tempdir().unwrap();
    let a = common::tiny_run(&d.path().join("a"), 30);
    let sa = train(&a, &TrainOptions::default()).unwrap();
    let a_ck = checkpoint::load(&sa.checkpoint.clone().unwrap(), true).unwrap();

    let mut b = common::tiny_run(&d.path().join("b"), 2);
    b.checkpoint.save_step0 = true;
    b.logging.every = 1;
    let opts = TrainOptions {
        resume: Resume::InitFrom(a.run.dir.clone()),
        ..TrainOptions::default()
    };
    let sb = train(&b, &opts).unwrap();
    let b0 = checkpoint::load(&b.run.dir.join("checkpoints/step-000000000"), true).unwrap();
    assert_eq!(
        b0.model.params, a_ck.model.params,
        "step 0 holds the initializing weights"
    );
    let o = b0.optimizer.unwrap();
    assert_eq!(o.t, 0);
    assert!(o.m.iter().chain(&o.v).all(|&x| x == 0.0), "a fresh optimizer");
    // The first logged train loss (a run with validation logs a step-0 line without one).
    let first = |p| {
        let recs = metrics::read(p).unwrap();
        recs.iter().find_map(|r| r.train_loss).unwrap()
    };
    let (la, lb) = (first(&sa.metrics_path), first(&sb.metrics_path));
    assert!(
        lb < 0.7 * la,
        "fine-tuning starts near the trained loss ({lb}), not from scratch ({la})"
    );

    let mut c = common::tiny_run(&d.path().join("c"), 2);
    c.model.d_ff += 8;
    let e = train(&c, &opts).unwrap_err();
    assert!(format!("{e:#}").contains("differs from the run's"), "{e:#}");
}
