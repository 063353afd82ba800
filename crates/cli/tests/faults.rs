//! Damaged checkpoints and exit codes, through the binary: every kind of checkpoint file, flipped
//! or truncated, is named by each reader (`train --resume`, `eval`, `generate`) with a non-zero
//! exit, and `train --resume` falls back to the newest intact checkpoint; NaN losses, Ctrl-C,
//! `--steps 0` and failed starts exit as documented and leave no debris; `serve` without a model
//! or runs directory, or with a missing one, fails naming it; several launched processes without
//! MPI, and a second trainer on a busy run directory, are refused.

mod common;
#[path = "../../train/tests/common/shared.rs"]
mod shared;

use common::{copy_dir, ferrolm, run, text, tiny_train_args};
use shared::interrupt_after_lines;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// A run of 4 steps with checkpoints at steps 2 and 4, in `dir/base`.
fn base_run(dir: &Path) -> PathBuf {
    common::corpus(dir);
    let base = dir.join("base");
    let mut a = tiny_train_args(dir, &base, 4);
    a.extend(["--checkpoint-every", "2"].map(String::from));
    let o = ferrolm().args(&a).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    base
}

fn flip(p: &Path) {
    let mut b = std::fs::read(p).unwrap();
    let i = b.len() / 2;
    b[i] ^= 0x08;
    std::fs::write(p, b).unwrap();
}

fn truncate(p: &Path) {
    let b = std::fs::read(p).unwrap();
    std::fs::write(p, &b[..b.len() * 2 / 3]).unwrap();
}

#[test]
fn every_reader_names_a_damaged_file_and_resume_falls_back() {
    let d = tempfile::tempdir().unwrap();
    let base = base_run(d.path());
    let last = base.join("checkpoints/step-000000004");
    let mut files: Vec<String> = vec![
        "model.safetensors".into(),
        "optimizer.safetensors".into(),
        "state.json".into(),
        "checksums.json".into(),
    ];
    for e in std::fs::read_dir(last.join("tokenizer")).unwrap() {
        files.push(format!("tokenizer/{}", e.unwrap().file_name().to_string_lossy()));
    }
    let valid = d.path().join("valid.npy").display().to_string();
    for (i, file) in files.iter().enumerate() {
        for (how, damage) in [("flipped", flip as fn(&Path)), ("truncated", truncate)] {
            let case = d.path().join(format!("case-{i}-{how}"));
            copy_dir(&base, &case);
            let ck = case.join("checkpoints/step-000000004");
            damage(&ck.join(file));
            let ck_s = ck.display().to_string();
            let what = format!("{file} {how}");
            let readers: [(&str, Vec<&str>); 3] = [
                ("eval", vec!["eval", "--checkpoint", &ck_s, "--data", &valid]),
                (
                    "generate",
                    vec![
                        "generate",
                        "--checkpoint",
                        &ck_s,
                        "--prompt",
                        "the",
                        "--max-tokens",
                        "4",
                    ],
                ),
                (
                    "train --resume CHECKPOINT",
                    vec!["train", "--run-dir", case.to_str().unwrap(), "--resume", &ck_s],
                ),
            ];
            for (reader, args) in readers {
                let o = run(&args);
                let t = text(&o);
                assert!(!o.status.success(), "{reader} accepted {what}: {t}");
                assert!(
                    t.contains(file.as_str()) && t.contains("damaged"),
                    "{reader}, {what}: {t}"
                );
            }
            // The refusal of an explicit checkpoint names the command for the older one.
            let o = run(&["train", "--run-dir", case.to_str().unwrap(), "--resume", &ck_s]);
            assert!(
                text(&o).contains("--resume") && text(&o).contains("step-000000002"),
                "{}",
                text(&o)
            );
            // Plain --resume names it, moves it aside and continues from step 2 to the end.
            let o = run(&[
                "train",
                "--run-dir",
                case.to_str().unwrap(),
                "--resume",
                "--no-progress",
            ]);
            let t = text(&o);
            assert!(o.status.success(), "resume did not fall back ({what}): {t}");
            assert!(
                t.contains(file.as_str()) && t.contains("step-000000002"),
                "{what}: {t}"
            );
            assert!(case.join("checkpoints/damaged-step-000000004").is_dir(), "{what}");
            assert!(t.contains("done at step 4"), "{what}: {t}");
        }
    }
}

#[test]
fn eval_exits_non_zero_on_a_nan_loss() {
    let d = tempfile::tempdir().unwrap();
    let base = base_run(d.path());
    let dir = base.join("checkpoints/step-000000004");
    let mut ck = ferrolm_train::checkpoint::load(&dir, true).unwrap();
    ck.model.params.iter_mut().for_each(|p| *p = f32::NAN);
    let parent = d.path().join("nan");
    let opt = ck.optimizer.take().unwrap();
    let saved = ferrolm_train::checkpoint::save(&parent, &ck.state, &ck.model, &opt, None).unwrap();
    let o = run(&[
        "eval",
        "--checkpoint",
        saved.to_str().unwrap(),
        "--data",
        d.path().join("valid.npy").to_str().unwrap(),
    ]);
    let t = text(&o);
    assert!(!o.status.success() && t.contains("NaN"), "{t}");
}

/// A training of a million steps started in the background into `dir/r`, on a new corpus.
fn start_endless_run(dir: &Path) -> (PathBuf, std::process::Child) {
    common::corpus(dir);
    let run_dir = dir.join("r");
    let child = ferrolm()
        .args(tiny_train_args(dir, &run_dir, 1_000_000))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    (run_dir, child)
}

#[test]
fn ctrl_c_saves_and_exits_130() {
    let d = tempfile::tempdir().unwrap();
    let (run_dir, mut child) = start_endless_run(d.path());
    let status = interrupt_after_lines(&mut child, &run_dir.join("metrics.jsonl"), 3);
    assert_eq!(status.code(), Some(130), "{status:?}");
    let latest = ferrolm_train::checkpoint::latest(&run_dir.join("checkpoints")).unwrap();
    assert!(latest.is_some(), "no checkpoint saved on Ctrl-C");
}

#[test]
fn zero_steps_and_failed_starts_are_errors_that_leave_no_run_directory() {
    let d = tempfile::tempdir().unwrap();
    common::corpus(d.path());
    let r = d.path().join("r");
    let o = ferrolm().args(tiny_train_args(d.path(), &r, 0)).output().unwrap();
    assert!(
        !o.status.success() && text(&o).contains("at least 1"),
        "{}",
        text(&o)
    );
    assert!(!r.exists(), "--steps 0 left {}", r.display());
    let mut a = tiny_train_args(d.path(), &r, 3);
    let i = a.iter().position(|x| x == "--train").unwrap();
    a[i + 1] = d.path().join("nope.npy").display().to_string();
    let o = ferrolm().args(&a).output().unwrap();
    assert!(
        !o.status.success() && text(&o).contains("nope.npy"),
        "{}",
        text(&o)
    );
    assert!(!r.exists(), "a failed start left {}", r.display());
    let o = run(&["train", "--run-dir", r.to_str().unwrap(), "--no-such-flag"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(!r.exists());
    // --resume where there is nothing: a clear error.
    let o = run(&["train", "--run-dir", r.to_str().unwrap(), "--resume"]);
    assert!(
        !o.status.success() && text(&o).contains("nothing to resume"),
        "{}",
        text(&o)
    );
    assert!(!r.exists());
}

/// A second `train` on a run directory that another `train` is writing stops at once, naming the
/// holder's pid, and leaves the first run's files alone.
#[test]
fn a_second_trainer_on_a_busy_run_directory_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let (r, mut first) = start_endless_run(d.path());
    let t0 = Instant::now();
    while !r.join("metrics.jsonl").exists() && t0.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let config_before = std::fs::read(r.join("config.toml")).unwrap();
    let o = ferrolm().args(tiny_train_args(d.path(), &r, 2)).output().unwrap();
    let busy = first.try_wait().unwrap().is_none();
    first.kill().unwrap();
    first.wait().unwrap();
    assert!(busy, "the first trainer ended before the check");
    assert!(
        !o.status.success()
            && text(&o).contains("is being trained by another process (pid")
            && text(&o).contains(&first.id().to_string()),
        "{}",
        text(&o)
    );
    assert_eq!(std::fs::read(r.join("config.toml")).unwrap(), config_before);
}

/// A default build (no MPI) started by mpirun or by srun as one of several processes refuses to
/// train: each process would train alone into the same run directory.
#[test]
#[cfg(not(feature = "mpi"))]
fn several_launched_processes_without_mpi_are_refused() {
    let d = tempfile::tempdir().unwrap();
    common::corpus(d.path());
    let r = d.path().join("r");
    for (var, value) in [("OMPI_COMM_WORLD_SIZE", "2"), ("SLURM_STEP_NUM_TASKS", "3")] {
        let o = ferrolm()
            .args(tiny_train_args(d.path(), &r, 2))
            .env(var, value)
            .output()
            .unwrap();
        assert!(
            !o.status.success()
                && text(&o).contains(&format!("one of {value} processes"))
                && text(&o).contains("--features mpi"),
            "{var}={value}: {}",
            text(&o)
        );
        assert!(!r.exists(), "a refused start left {}", r.display());
    }
}

/// `serve` needs a model or a runs directory, and names a runs directory that is not one.
#[test]
fn serve_without_a_model_or_runs_and_with_a_missing_runs_dir_fails_clearly() {
    let o = run(&["serve"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("--checkpoint"), "{}", text(&o));
    let o = run(&["serve", "--runs", "/nonexistent/ferrolm-runs", "--port", "0"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("/nonexistent/ferrolm-runs"), "{}", text(&o));
}
