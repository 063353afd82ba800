//! Training by time (`run.max_minutes`): the step count is estimated from the speed of the first
//! steps, then fixed and recorded in `run.max_steps`, so the cosine schedule spans the run and a
//! resume continues the same schedule exactly. (`run.max_tokens` needs no measurement: see
//! [`crate::TrainConfig::resolve`].)
//!
//! Exactness: until the count is fixed, `run.max_steps` is [`UNFIXED`], and only steps whose
//! learning rate does not depend on the schedule's length are taken: those up to the end of the
//! warmup (`lr_cosine(t)` for `t <= warmup_steps` is the same for every cosine length), at least
//! one. The run is then step for step the run of a config with `max_steps` set to the estimate
//! from the start.

use crate::checkpoint;
use crate::config::{TrainConfig, EVALS_PER_RUN};
use crate::trainer::setup::Resume;
use crate::trainer::setup::{self, Plan};
use anyhow::{bail, Result};

/// `run.max_steps` of a time-budgeted run whose step count is not fixed yet.
pub const UNFIXED: u64 = u64::MAX / 4;

/// Steps measured at most before the count is fixed (fewer when the warmup is shorter).
pub const MEASURE_STEPS: u64 = 5;

/// The config to open a run with: with `run.max_minutes` set, `run.max_steps` is the step count
/// of the run being continued (its checkpoint's config, or its saved config.toml before the first
/// checkpoint), or [`UNFIXED`] for a fresh run (then [`Budget`] fixes it). Continuing with a
/// different `run.max_minutes` is refused: the schedule would change.
pub fn prepare(config: &TrainConfig, resume: &Resume) -> Result<TrainConfig> {
    let mut cfg = config.clone();
    if cfg.run.max_minutes <= 0.0 {
        return Ok(cfg);
    }
    let saved = match setup::plan(resume, &cfg.run.dir)? {
        Plan::Fresh => None,
        Plan::SavedConfig(path) => Some(TrainConfig::load(&path)?),
        Plan::Checkpoint { dir, .. } => Some(checkpoint::read_state(&dir)?.config),
    };
    cfg.run.max_steps = match saved {
        None => UNFIXED,
        Some(s) if s.run.max_minutes != cfg.run.max_minutes => bail!(
            "cannot resume {} with run.max_minutes = {}: the run was planned with run.max_minutes = {} \
             ({} steps); resume without --minutes (or with the same value)",
            cfg.run.dir.display(),
            cfg.run.max_minutes,
            s.run.max_minutes,
            s.run.max_steps
        ),
        Some(s) => s.run.max_steps,
    };
    Ok(cfg)
}

/// Measures the first steps of a time-budgeted run and says when and at what to fix the count.
pub struct Budget {
    seconds: f64,
    /// Fix the count after this many steps of the run.
    fix_at: u64,
    step_seconds: Vec<f64>,
    /// Seconds of one evaluation (the one at the start), 0 without validation.
    eval_seconds: f64,
    /// Evaluations the run will do (estimated).
    evals: u64,
}

impl Budget {
    /// A budget to fix for `cfg` (whose max_steps is [`UNFIXED`]) at step `step`, or `None` when
    /// there is nothing to fix.
    pub fn new(cfg: &TrainConfig, step: u64, eval_seconds: f64) -> Option<Budget> {
        if cfg.run.max_minutes <= 0.0 || cfg.run.max_steps != UNFIXED {
            return None;
        }
        let w = cfg.schedule.warmup_steps;
        Some(Budget {
            seconds: cfg.run.max_minutes * 60.0,
            fix_at: step.max(w.clamp(1, MEASURE_STEPS)).max(step + 1),
            step_seconds: Vec::new(),
            eval_seconds,
            evals: match cfg.eval.every {
                0 => EVALS_PER_RUN,
                _ => 0,
            },
        })
    }

    /// After a completed step (`step` steps done, `wall` training seconds so far, the step took
    /// `step_seconds`): the step count to fix now, if it is time. It is time at `fix_at`, or
    /// earlier when the measured steps have used a quarter of the budget (slow steps).
    pub fn after_step(&mut self, step: u64, step_seconds: f64, wall: f64, eval_every: u64) -> Option<u64> {
        self.step_seconds.push(step_seconds);
        if step < self.fix_at && wall < 0.25 * self.seconds {
            return None;
        }
        let per_step = self.measured_step_seconds().max(1e-9);
        let left = self.seconds - wall;
        let evals = if self.evals > 0 {
            self.evals
        } else {
            ((left / per_step) as u64 / eval_every.max(1)).max(1)
        };
        // The start evaluation ran cold (first touch of the activations, like the first step):
        // take the first step's extra time off it for the later, warm ones.
        let cold = (self.step_seconds[0] - per_step).max(0.0);
        let eval_seconds = (self.eval_seconds - cold).max(0.25 * self.eval_seconds);
        let for_steps = 0.97 * (left - evals as f64 * eval_seconds);
        Some(step + (for_steps.max(0.0) / per_step) as u64)
    }

    /// Seconds per step measured so far: the median, without the first step when there are
    /// others (it pays for cold caches and page faults).
    pub fn measured_step_seconds(&self) -> f64 {
        let mut t: Vec<f64> = self
            .step_seconds
            .iter()
            .skip(usize::from(self.step_seconds.len() > 1))
            .copied()
            .collect();
        t.sort_by(f64::total_cmp);
        t.get(t.len() / 2).copied().unwrap_or(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(minutes: f64, warmup: u64) -> TrainConfig {
        let mut c = TrainConfig::default();
        c.run.max_minutes = minutes;
        c.run.max_steps = UNFIXED;
        c.schedule.warmup_steps = warmup;
        c
    }

    #[test]
    fn fixes_within_the_warmup_from_the_median_step_time() {
        // 1 minute, warmup 100: measure 5 steps of 0.1 s (the first 0.5 s), no evaluation time.
        let mut b = Budget::new(&cfg(1.0, 100), 0, 0.0).unwrap();
        assert_eq!(b.fix_at, 5);
        for s in 1..5 {
            assert_eq!(
                b.after_step(s, if s == 1 { 0.5 } else { 0.1 }, 0.4 + 0.1 * s as f64, 0),
                None
            );
        }
        let n = b.after_step(5, 0.1, 1.0, 0).unwrap();
        // 59 s left, 97% of it at 0.1 s per step: 572 more.
        assert_eq!(n, 5 + 572);
        // Warmup 0: fix after the first step; warmup 2: after the second.
        assert_eq!(Budget::new(&cfg(1.0, 0), 0, 0.0).unwrap().fix_at, 1);
        assert_eq!(Budget::new(&cfg(1.0, 2), 0, 0.0).unwrap().fix_at, 2);
        // Evaluation time is set aside: 20 evaluations of 1 s.
        let mut b = Budget::new(&cfg(1.0, 0), 0, 1.0).unwrap();
        assert_eq!(
            b.after_step(1, 0.1, 1.0, 0).unwrap(),
            1 + (0.97f64 * 39.0 / 0.1) as u64
        );
    }

    #[test]
    fn slow_steps_fix_early_and_fixed_runs_need_nothing() {
        let mut b = Budget::new(&cfg(0.1, 100), 0, 0.0).unwrap();
        assert_eq!(
            b.after_step(1, 2.0, 2.0, 0),
            Some(1 + (0.97f64 * 4.0 / 2.0) as u64)
        );
        let mut c = cfg(1.0, 0);
        c.run.max_steps = 300;
        assert!(Budget::new(&c, 0, 0.0).is_none());
        c.run.max_minutes = 0.0;
        assert!(Budget::new(&c, 0, 0.0).is_none());
    }
}
