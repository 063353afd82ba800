//! Test helpers of both the train and the cli crates (one file: the train tests use it as
//! `common::shared`, the cli tests through `#[path]`): Ctrl-C for a training child process, and
//! the check that an error message names what it should.

#![allow(dead_code)] // each test file uses some of them

use std::path::Path;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

/// Waits (at most 60 s) until the file at `metrics` has `lines` lines (the child is training),
/// then sends the child SIGINT, as Ctrl-C does, and returns its exit status.
pub fn interrupt_after_lines(child: &mut Child, metrics: &Path, lines: usize) -> ExitStatus {
    let t0 = Instant::now();
    while std::fs::read_to_string(metrics).map_or(0, |t| t.lines().count()) < lines {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the child made no progress"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let ok = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    child.wait().unwrap()
}

/// Asserts that `text` (an error message, a log) contains each of `parts`, printing it when not.
pub fn assert_mentions(text: &str, parts: &[&str]) {
    for part in parts {
        assert!(text.contains(part), "{part:?} missing from: {text}");
    }
}
