//! Plain progress lines for runs whose stderr is not a terminal (nohup, Slurm, CI logs), where a
//! progress bar would print nothing readable: step, loss, learning rate, tokens/s, elapsed time and
//! ETA, every `logging.progress_seconds` seconds (0: at every metrics line).

use crate::runs::duration_label;
use std::time::Instant;

/// Decides when to print a progress line and formats it.
pub struct ProgressLines {
    /// Seconds between lines; 0: a line whenever `logged` is true.
    every_s: f64,
    started: Instant,
    /// The step the run (segment) started at, for the ETA.
    start_step: u64,
    /// When the last line was printed, and the tokens seen then.
    last: (Instant, u64),
}

/// What a progress line reports after a step.
pub struct StepProgress {
    /// Completed steps.
    pub step: u64,
    /// Planned steps; `None` while a time budget is still being measured.
    pub max_steps: Option<u64>,
    pub loss: f32,
    pub lr: f32,
    /// Training tokens seen in total.
    pub tokens: u64,
    /// Whether this step wrote a metrics line.
    pub logged: bool,
}

impl ProgressLines {
    /// Lines every `every_s` seconds for a run (segment) starting at `start_step` having seen
    /// `tokens` tokens.
    pub fn new(every_s: f64, start_step: u64, tokens: u64) -> ProgressLines {
        let now = Instant::now();
        ProgressLines {
            every_s,
            started: now,
            start_step,
            last: (now, tokens),
        }
    }

    /// The line to print after this step, if one is due: at the first step, at the last, and
    /// every `every_s` seconds in between (with `every_s` 0, at every metrics line).
    pub fn after_step(&mut self, p: &StepProgress) -> Option<String> {
        let now = Instant::now();
        let since = now.duration_since(self.last.0).as_secs_f64();
        let first = p.step == self.start_step + 1;
        let last = p.max_steps == Some(p.step);
        let due = if self.every_s > 0.0 {
            since >= self.every_s
        } else {
            p.logged
        };
        if !(first || last || due) {
            return None;
        }
        let tps = if since > 0.0 {
            (p.tokens - self.last.1) as f64 / since
        } else {
            0.0
        };
        self.last = (now, p.tokens);
        let elapsed = now.duration_since(self.started).as_secs_f64();
        Some(format_line(p, tps, elapsed, self.start_step))
    }
}

/// "step 120/1000 (12%)  loss 3.2145  lr 9.80e-4  4100 tok/s  elapsed 1m02s  ETA 7m30s".
pub fn format_line(p: &StepProgress, tokens_per_s: f64, elapsed_s: f64, start_step: u64) -> String {
    let done = p.step.saturating_sub(start_step);
    let (of, eta) = match p.max_steps {
        Some(m) if m > 0 => {
            let eta = if done > 0 {
                duration_label(elapsed_s / done as f64 * m.saturating_sub(p.step) as f64)
            } else {
                "?".into()
            };
            (format!("/{m} ({}%)", p.step * 100 / m), eta)
        }
        _ => (String::new(), "?".into()),
    };
    format!(
        "step {}{of}  loss {:.4}  lr {:.2e}  {tokens_per_s:.0} tok/s  elapsed {}  ETA {eta}",
        p.step,
        p.loss,
        p.lr,
        duration_label(elapsed_s)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(step: u64, logged: bool) -> StepProgress {
        StepProgress {
            step,
            max_steps: Some(10),
            loss: 2.5,
            lr: 1e-3,
            tokens: step * 64,
            logged,
        }
    }

    #[test]
    fn line_has_step_loss_lr_throughput_and_eta() {
        let l = format_line(&at(4, false), 1234.4, 8.0, 0);
        assert_eq!(
            l,
            "step 4/10 (40%)  loss 2.5000  lr 1.00e-3  1234 tok/s  elapsed 8.0s  ETA 12.0s"
        );
        let mut p = at(4, false);
        p.max_steps = None;
        assert!(format_line(&p, 1.0, 8.0, 0).ends_with("ETA ?"));
    }

    #[test]
    fn lines_at_the_first_and_last_step_and_when_due() {
        let mut lines = ProgressLines::new(3600.0, 0, 0);
        assert!(lines.after_step(&at(1, true)).is_some(), "first step");
        assert!(lines.after_step(&at(2, true)).is_none(), "not due for an hour");
        assert!(lines.after_step(&at(10, false)).is_some(), "last step");
        // every_s 0: at each metrics line.
        let mut lines = ProgressLines::new(0.0, 0, 0);
        lines.after_step(&at(1, true));
        assert!(lines.after_step(&at(2, false)).is_none());
        assert!(lines.after_step(&at(3, true)).is_some());
    }
}
