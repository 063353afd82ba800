//! The trainer's parts on their own: `Trainer::step` and its gradient-reduction hook, a non-finite
//! step that changes nothing, and `after_step`'s schedule.

mod common;

use anyhow::Result;
use ferrolm_nn::clip::grad_norm;
use ferrolm_train::trainer::{GradReducer, StepOutcome, Trainer};
use ferrolm_train::{train, TrainOptions};
use std::sync::{Arc, Mutex};

/// Records each call (and the norm of the gradient it saw), then scales the gradient.
struct Spy {
    seen: Arc<Mutex<Vec<f64>>>,
    scale: f32,
}

impl GradReducer for Spy {
    fn reduce(&mut self, grads: &mut [f32]) -> Result<()> {
        self.seen.lock().unwrap().push(grad_norm(grads));
        grads.iter_mut().for_each(|g| *g *= self.scale);
        Ok(())
    }
}

fn bits(x: &[f32]) -> Vec<u32> {
    x.iter().map(|v| v.to_bits()).collect()
}

#[test]
fn reducer_runs_once_per_step_on_the_accumulated_gradient_before_the_norm() {
    let (_d, mut cfg) = common::tiny_run_in_tempdir(3);
    cfg.data.grad_accum = 3;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut t = Trainer::open(&cfg, &TrainOptions::default()).unwrap();
    t.stepper.set_reducer(Box::new(Spy {
        seen: seen.clone(),
        scale: 2.0,
    }));
    let mut norms = Vec::new();
    while !t.is_done() {
        match t.step().unwrap() {
            StepOutcome::Done(s) => norms.push(s.grad_norm),
            other => panic!("{other:?}"),
        }
    }
    let seen = seen.lock().unwrap().clone();
    // Once per optimizer step (not per micro-batch), and the norm is taken after the reduction.
    assert_eq!(seen.len(), 3);
    for (before, after) in seen.iter().zip(&norms) {
        assert_eq!((2.0 * before) as f32, *after, "{seen:?} {norms:?}");
    }
}

#[test]
fn the_trainers_parts_give_what_train_gives_bit_for_bit() {
    let d = tempfile::tempdir().unwrap();
    let mut cfg = common::tiny_run(&d.path().join("a"), 7);
    cfg.data.grad_accum = 2;
    let summary = train(&cfg, &TrainOptions::default()).unwrap();
    let from_train = ferrolm_train::checkpoint::load(summary.checkpoint.as_ref().unwrap(), true).unwrap();

    cfg.run.dir = d.path().join("b");
    let mut t = Trainer::open(&cfg, &TrainOptions::default()).unwrap();
    let mut checkpoints = Vec::new();
    while !t.is_done() {
        let StepOutcome::Done(stats) = t.step().unwrap() else {
            panic!("non-finite")
        };
        let after = t.after_step(&stats).unwrap();
        // eval.every = 5, checkpoint.every = 5, and both at the last step.
        assert_eq!(
            after.eval.is_some(),
            t.step == 5 || t.step == 7,
            "step {}",
            t.step
        );
        checkpoints.extend(after.checkpoint.map(|_| t.step));
        assert!(after.logged.is_some());
    }
    assert_eq!(checkpoints, [5, 7]);
    assert_eq!(bits(&t.stepper.model.params), bits(&from_train.model.params));
    assert_eq!(t.sampler, from_train.state.sampler);
    let s = t.finish(false).unwrap();
    assert_eq!(s.progress.step, 7);
    assert!(s.plot_path.unwrap().exists());
}

#[test]
fn a_non_finite_step_changes_nothing() {
    let (_d, cfg) = common::tiny_run_in_tempdir(5);
    let mut t = Trainer::open(&cfg, &TrainOptions::default()).unwrap();
    assert!(matches!(t.step().unwrap(), StepOutcome::Done(_)));
    let n = t.stepper.model.params.len();
    // An infinite weight in the last layer norm makes the loss NaN.
    t.stepper.model.params[n - 1] = f32::INFINITY;
    let (params, m, sampler, step, t_adam) = (
        bits(&t.stepper.model.params),
        bits(&t.stepper.optim.m),
        t.sampler.clone(),
        t.step,
        t.stepper.optim.t,
    );
    match t.step().unwrap() {
        StepOutcome::NonFinite { what } => assert!(what.contains("NaN") || what.contains("inf"), "{what}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(bits(&t.stepper.model.params), params);
    assert_eq!(bits(&t.stepper.optim.m), m);
    assert_eq!(
        (t.sampler.clone(), t.step, t.stepper.optim.t),
        (sampler, step, t_adam)
    );
    assert!(t.stepper.model.grads.iter().all(|&g| g == 0.0));
}
