//! Crash safety end to end: `ferrolm train` with a checkpoint every step is SIGKILLed at random
//! moments (many of them during a save), resumed with `--resume` each time, and must end with
//! exactly the parameters and optimizer moments of an uninterrupted run.

mod common;

use common::{ferrolm, tiny_train_args};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

const STEPS: u64 = 120;

/// A small deterministic generator for the kill delays (xorshift64*).
struct Delays(u64);

impl Delays {
    fn next_ms(&mut self, lo: u64, hi: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        lo + self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % (hi - lo)
    }
}

fn train_args(dir: &Path, run: &Path, resume: bool) -> Vec<String> {
    let mut a = tiny_train_args(dir, run, STEPS);
    a.extend(["--checkpoint-every", "1", "--set", "checkpoint.keep_last=2"].map(String::from));
    if resume {
        a.push("--resume".into());
    }
    a
}

/// Whether process `pid` was writing a checkpoint (its `.tmp-step-N-<pid>` directory is there).
fn was_saving(run: &Path, pid: u32) -> bool {
    let suffix = format!("-{pid}");
    std::fs::read_dir(run.join("checkpoints")).is_ok_and(|rd| {
        rd.flatten().any(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with(".tmp-") && name.ends_with(&suffix)
        })
    })
}

#[test]
fn sigkill_at_random_moments_then_resume_equals_an_uninterrupted_run() {
    let d = tempfile::tempdir().unwrap();
    common::corpus(d.path());
    let reference = d.path().join("reference");
    let out = ferrolm()
        .args(train_args(d.path(), &reference, false))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", common::text(&out));

    let run = d.path().join("killed");
    let mut delays = Delays(0x9e37_79b9_7f4a_7c15);
    let (mut kills, mut during_save) = (0, 0);
    let started = Instant::now();
    while kills < 12 || (during_save < 2 && kills < 40) {
        // Before its config exists a run can only start afresh; after, it resumes.
        let resume = run.join("config.toml").exists();
        let mut child = ferrolm()
            .args(train_args(d.path(), &run, resume))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delays.next_ms(5, 120)));
        if child.try_wait().unwrap().is_some() {
            break; // finished before the kill
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills += 1;
        during_save += usize::from(was_saving(&run, child.id()));
        assert!(started.elapsed() < Duration::from_secs(120), "too slow");
    }
    assert!(kills >= 12, "only {kills} kills: the run finished too early");
    assert!(during_save >= 1, "no kill landed during a save in {kills} kills");
    let out = ferrolm().args(train_args(d.path(), &run, true)).output().unwrap();
    assert!(out.status.success(), "{}", common::text(&out));

    let last = format!("checkpoints/step-{STEPS:09}");
    for file in ["model.safetensors", "optimizer.safetensors"] {
        let a = std::fs::read(reference.join(&last).join(file)).unwrap();
        let b = std::fs::read(run.join(&last).join(file)).unwrap();
        assert!(
            a == b,
            "{file} differs from the uninterrupted run after {kills} kills"
        );
    }
    eprintln!(
        "{kills} kills ({during_save} during a save) in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
