//! Runs by time and by tokens, and the evaluation at the start: a `run.max_minutes` run fixes its
//! step count after the first steps and is then bit for bit the run of that many steps (so the
//! cosine spans the estimate), resumes exactly, and refuses a changed budget on resume.

mod common;

use common::shared::assert_mentions;
use ferrolm_train::budget::UNFIXED;
use ferrolm_train::{checkpoint, metrics, train, TrainConfig, TrainOptions};
use std::path::Path;

fn params(run_dir: &Path) -> (u64, Vec<u32>, Vec<u32>) {
    let dir = checkpoint::latest(&run_dir.join("checkpoints")).unwrap().unwrap();
    let ck = checkpoint::load(&dir, true).unwrap();
    let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<u32>>();
    (
        ck.state.step,
        bits(&ck.model.params),
        bits(&ck.optimizer.unwrap().m),
    )
}

fn timed(dir: &Path, minutes: f64) -> TrainConfig {
    let mut c = common::tiny_run(dir, 1);
    c.run.max_minutes = minutes;
    c.schedule.warmup_steps = 3;
    c.checkpoint.every = 0;
    c.eval.every = 0;
    c.logging.every = 10;
    c
}

/// The step count a run fixed, from its config.toml.
fn fixed_steps(run_dir: &Path) -> u64 {
    TrainConfig::load(&run_dir.join("config.toml"))
        .unwrap()
        .run
        .max_steps
}

#[test]
fn a_timed_run_is_the_run_of_its_estimated_steps_and_resumes_exactly() {
    let d = tempfile::tempdir().unwrap();
    let a = timed(&d.path().join("a"), 0.01);
    let sa = train(&a, &TrainOptions::default()).unwrap();
    let n = fixed_steps(&a.run.dir);
    assert!(n > 3 && n < UNFIXED, "{n}");
    assert_eq!(sa.progress.step, n);
    // (How close the run comes to its budget depends on the machine's load; not timed here.)
    assert_eq!(
        checkpoint::read_state(&sa.checkpoint.clone().unwrap())
            .unwrap()
            .config
            .run
            .max_steps,
        n
    );

    // The same config with max_steps = n from the start: the same parameters, bit for bit.
    let mut b = timed(&d.path().join("b"), 0.0);
    b.run.max_steps = n;
    train(&b, &TrainOptions::default()).unwrap();
    assert_eq!(params(&a.run.dir), params(&b.run.dir));

    // Stopped after the count is fixed and resumed with the same config: the fixed count
    // holds (not a new estimate) and the result is the run of that many steps.
    let c = timed(&d.path().join("c"), 0.01);
    let first = train(
        &c,
        &TrainOptions {
            stop_after: Some(4),
            ..TrainOptions::default()
        },
    )
    .unwrap();
    assert!(first.interrupted && first.progress.step == 4);
    let nc = fixed_steps(&c.run.dir);
    let resumed = common::resume_latest(&c).unwrap();
    assert_eq!(resumed.progress.step, nc);
    let mut e = timed(&d.path().join("e"), 0.0);
    e.run.max_steps = nc;
    train(&e, &TrainOptions::default()).unwrap();
    assert_eq!(params(&c.run.dir), params(&e.run.dir));

    // A different budget on resume would change the schedule: refused.
    let mut other = c.clone();
    other.run.max_minutes = 0.5;
    let err = format!("{:#}", common::resume_latest(&other).unwrap_err());
    assert_mentions(&err, &["run.max_minutes = 0.01", "run.max_minutes = 0.5"]);
}

#[test]
fn max_tokens_sets_the_steps_and_fresh_runs_evaluate_at_step_zero() {
    let (_d, mut c) = common::tiny_run_in_tempdir(1);
    let per_step = (c.data.batch_size * c.seq_len()) as u64;
    c.run.max_tokens = 5 * per_step + 1;
    let s = train(&c, &TrainOptions::default()).unwrap();
    assert_eq!(s.progress.step, 6);
    assert_eq!(s.progress.tokens, 6 * per_step);
    let recs = metrics::read(&s.metrics_path).unwrap();
    let first = &recs[0];
    assert_eq!((first.step, first.tokens, first.train_loss), (0, 0, None));
    let v0 = first.val_loss.expect("a validation loss at step 0");
    let last = recs.last().unwrap();
    assert_eq!(last.step, 6);
    let v_end = last.val_loss.expect("evaluated at the end");
    assert!(v0.is_finite() && v_end < v0, "step 0 {v0}, end {v_end}");
}
