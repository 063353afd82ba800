//! The [`Trainer`]'s parts for issue 18: the evaluation at the start of a fresh run (step 0 in
//! the metrics and the plot), and fixing the step count of a time-budgeted run (see
//! [`crate::budget`]).

use super::Trainer;
use crate::eval::EvalResult;
use crate::metrics::MetricsRecord;
use anyhow::{Context, Result};

impl Trainer {
    /// Evaluates the initialization of a fresh run and writes it as the metrics' step-0 line (no
    /// training loss yet). Nothing for a resumed run, one without validation data, or a rank
    /// other than 0.
    pub fn eval_at_start(&mut self) -> Result<Option<EvalResult>> {
        // Only rank 0 evaluates (several processes hold the same parameters).
        if self.rank != 0 || self.step != 0 || self.resumed_from.is_some() || self.evaluator.is_none() {
            return Ok(None);
        }
        let r = self.evaluate()?;
        let wall_s = self.wall();
        let Some(metrics) = self.metrics.as_mut() else {
            return Ok(Some(r));
        };
        metrics.write(&MetricsRecord {
            step: 0,
            tokens: 0,
            wall_s,
            train_loss: None,
            val_loss: Some(r.loss as f32),
            lr: None,
            grad_norm: None,
            tokens_per_s: None,
        })?;
        Ok(Some(r))
    }

    /// Fixes `run.max_steps` at `steps` (a time budget's estimate): the schedule's length follows
    /// when `schedule.cosine_steps` is 0, and the run directory's config.toml (and every later
    /// checkpoint's config) records it, so a resume continues the same schedule.
    pub fn fix_max_steps(&mut self, steps: u64) -> Result<()> {
        let steps = steps.max(self.step);
        self.cfg.run.max_steps = steps;
        self.stepper.settings.cosine_steps = self.cfg.cosine_steps();
        let path = self.cfg.run.dir.join("config.toml");
        std::fs::write(&path, self.cfg.to_toml()).with_context(|| format!("cannot write {}", path.display()))
    }
}
