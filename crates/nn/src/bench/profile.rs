//! Wall time per kernel inside real training steps (`ferrolm bench train --breakdown`).
//!
//! Isolated kernel timings (the `kernel_times` example) miss what a step does to caches and
//! threads; this measures the kernels where they run. The training forward/backward calls
//! `Laps::mark` (the hook `ops::laps`) after each kernel: when profiling is off (the default) that is one branch on a
//! flag read once per pass, when on it adds the time since the previous mark to the mark's label.
//! Labels are process-wide totals: profile one training loop at a time.

pub use crate::ops::laps::Laps;
use crate::ops::laps::{ENABLED, TOTALS};
use std::sync::atomic::Ordering;

/// Turns profiling on or off for passes started afterwards.
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// Whether passes started now record their laps.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// One label's totals since the last `take`.
#[derive(Clone, Debug, PartialEq)]
pub struct Lap {
    pub label: &'static str,
    pub seconds: f64,
    pub calls: u64,
}

/// The totals recorded so far (in the order the labels first appeared), and resets them.
pub fn take() -> Vec<Lap> {
    let mut t = TOTALS.lock().unwrap_or_else(|e| e.into_inner());
    std::mem::take(&mut *t)
        .into_iter()
        .map(|(label, d, calls)| Lap {
            label,
            seconds: d.as_secs_f64(),
            calls,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// One test owns the process-wide switch (tests run in parallel threads).
    #[test]
    fn laps_book_time_per_label_only_when_enabled() {
        let mut off = Laps::start();
        off.mark("never");
        set_enabled(true);
        let mut laps = Laps::start();
        std::thread::sleep(Duration::from_millis(3));
        laps.mark("a");
        laps.mark("b");
        std::thread::sleep(Duration::from_millis(2));
        laps.mark("a");
        off.mark("never");
        set_enabled(false);
        let got = take();
        let a = got.iter().find(|l| l.label == "a").expect("a recorded");
        assert_eq!(a.calls, 2);
        assert!(a.seconds >= 0.005, "{a:?}");
        assert_eq!(got.iter().find(|l| l.label == "b").map(|l| l.calls), Some(1));
        assert!(got.iter().all(|l| l.label != "never"), "{got:?}");
        assert_eq!(got[0].label, "a", "first-seen order");
        assert!(take().iter().all(|l| l.label != "a"), "take resets");
    }
}
