//! The lap hook of the training forward/backward: `Laps::mark(label)` after each operation books
//! the time since the previous mark under `label` when profiling is on (`bench::profile`), and
//! is one branch on a flag read once per pass when it is off (the default). Labels are
//! process-wide totals: profile one training loop at a time.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Whether passes started now record their laps (set by `bench::profile::set_enabled`).
pub(crate) static ENABLED: AtomicBool = AtomicBool::new(false);
/// (label, total time, calls), in first-seen order.
pub(crate) static TOTALS: Mutex<Vec<(&'static str, Duration, u64)>> = Mutex::new(Vec::new());

fn record(label: &'static str, d: Duration) {
    let mut t = TOTALS.lock().unwrap_or_else(|e| e.into_inner());
    match t.iter_mut().find(|(l, _, _)| *l == label) {
        Some(e) => {
            e.1 += d;
            e.2 += 1;
        }
        None => t.push((label, d, 1)),
    }
}

/// A stopwatch over consecutive kernels: `mark(label)` books the time since the previous mark
/// (or `start`) under `label`.
pub struct Laps {
    last: Option<Instant>,
}

impl Laps {
    /// Starts timing if profiling is enabled (else every mark is a no-op).
    pub fn start() -> Laps {
        Laps {
            last: ENABLED.load(Ordering::Relaxed).then(Instant::now),
        }
    }

    #[inline]
    pub fn mark(&mut self, label: &'static str) {
        if let Some(t0) = self.last {
            let now = Instant::now();
            record(label, now - t0);
            self.last = Some(now);
        }
    }
}
