//! The `ferrolm` binary as a user meets it: argument parsing (negative numbers reach the range
//! checks), errors printed once without a backtrace, config errors with line numbers, the
//! commented `--print-config`, the vocabulary taken from the tokenizer, no validation without a
//! validation file, tokenizer input checks, long prompts, and `ferrolm runs`.

#[path = "../../train/tests/common/shared.rs"]
mod shared;

use shared::assert_mentions;
use std::path::Path;
use std::process::{Command, Output};

fn ferrolm(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferrolm"))
        .args(args)
        .current_dir(cwd)
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("the binary runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Fails with exit status 1 and a user error: one "error:" line first, no backtrace, no panic.
fn user_error(o: &Output) -> String {
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "stderr: {err}");
    assert!(err.starts_with("error: "), "{err}");
    for bad in [
        "stack backtrace",
        "Stack backtrace",
        "panicked",
        "Caused by",
        "\n   0: ",
    ] {
        assert!(!err.contains(bad), "{bad:?} in {err}");
    }
    err
}

const STORY: &str = "the cat sat on the mat. the dog ran to the cat. they were happy. a bird sang.\n";

/// A text, a tokenizer of about 300 tokens and train/valid token files in `dir`; returns the
/// tokenizer's vocabulary size.
fn data(dir: &Path) -> usize {
    std::fs::write(dir.join("train.txt"), STORY.repeat(200)).unwrap();
    std::fs::write(dir.join("valid.txt"), STORY.repeat(20)).unwrap();
    let o = ferrolm(
        &[
            "tokenizer",
            "train",
            "-i",
            "train.txt",
            "--vocab-size",
            "300",
            "-o",
            "tok",
        ],
        dir,
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    let vocab: usize = out
        .strip_prefix("trained ")
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    for s in ["train", "valid"] {
        let o = ferrolm(
            &[
                "tokenizer",
                "encode",
                "-t",
                "tok",
                "-i",
                &format!("{s}.txt"),
                "-o",
                &format!("{s}.npy"),
            ],
            dir,
        );
        assert!(o.status.success(), "{}", text(&o.stderr));
    }
    vocab
}

const TINY: &[&str] = &[
    "--set",
    "model.d_model=32",
    "--set",
    "model.n_heads=4",
    "--set",
    "model.d_ff=64",
    "--set",
    "model.n_layers=1",
    "--set",
    "model.context_length=16",
    "--batch-size",
    "4",
    "--set",
    "schedule.warmup_steps=2",
    "--no-progress",
];

fn train(dir: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["train", "--train", "train.npy", "--tokenizer", "tok"];
    args.extend_from_slice(TINY);
    args.extend_from_slice(extra);
    ferrolm(&args, dir)
}

#[test]
fn negative_numbers_reach_the_range_checks_before_anything_is_printed() {
    let d = tempfile::tempdir().unwrap();
    let o = ferrolm(
        &[
            "generate",
            "--checkpoint",
            "nowhere",
            "--prompt",
            "Hello",
            "--temperature",
            "-1",
        ],
        d.path(),
    );
    let err = user_error(&o);
    assert_mentions(&err, &["--temperature -1 is out of range", ">= 0"]);
    assert!(
        o.stdout.is_empty(),
        "printed before the check: {}",
        text(&o.stdout)
    );
    let o = ferrolm(
        &["generate", "--checkpoint", "nowhere", "--top-p", "1.5"],
        d.path(),
    );
    let err = user_error(&o);
    assert_mentions(&err, &["--top-p 1.5 is out of range", "(0, 1]"]);

    let o = ferrolm(&["train", "--lr", "-1", "--print-config"], d.path());
    let err = user_error(&o);
    assert_mentions(&err, &["optimizer.lr = -1", "[0, inf)"]);
    let o = ferrolm(
        &["train", "--set", "optimizer.beta1=1.5", "--print-config"],
        d.path(),
    );
    let err = user_error(&o);
    assert_mentions(&err, &["optimizer.beta1 = 1.5", "[0, 1)"]);
}

#[test]
fn errors_print_each_cause_once_without_a_backtrace() {
    let d = tempfile::tempdir().unwrap();
    let o = ferrolm(
        &["tokenizer", "encode", "-t", "missing-tok", "--text", "hi"],
        d.path(),
    );
    let err = user_error(&o);
    assert!(err.contains("missing-tok"), "{err}");
    assert!(err.matches("os error 2").count() <= 1, "cause repeated: {err}");
    let lines: Vec<&str> = err.lines().collect();
    let mut seen = std::collections::HashSet::new();
    for l in &lines {
        assert!(
            seen.insert(
                l.trim_start_matches("error: ")
                    .trim_start_matches("  caused by: ")
            ),
            "{err}"
        );
    }
}

#[test]
fn config_errors_name_the_line_and_print_config_is_commented() {
    let d = tempfile::tempdir().unwrap();
    let o = ferrolm(&["train", "--print-config"], d.path());
    assert!(o.status.success());
    let cfg = text(&o.stdout);
    assert_mentions(
        &cfg,
        &["# Step at which the cosine reaches min_lr", "0: run.max_steps"],
    );
    std::fs::write(d.path().join("run.toml"), &cfg).unwrap();
    let o = ferrolm(&["train", "--config", "run.toml", "--print-config"], d.path());
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), cfg);

    let bad = cfg.replace("beta1 = 0.9\n", "beta1 = 1.5\n");
    let line = bad.lines().position(|l| l == "beta1 = 1.5").unwrap() + 1;
    std::fs::write(d.path().join("bad.toml"), bad).unwrap();
    let o = ferrolm(&["train", "--config", "bad.toml"], d.path());
    let err = user_error(&o);
    assert!(
        err.contains("bad.toml")
            && err.contains(&format!("line {line}"))
            && err.contains("optimizer.beta1 = 1.5"),
        "{err}"
    );
}

#[test]
fn tokenizer_train_says_when_the_vocab_is_not_reached_and_names_a_directory() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("empty.txt"), "").unwrap();
    let o = ferrolm(
        &[
            "tokenizer",
            "train",
            "-i",
            "empty.txt",
            "--vocab-size",
            "500",
            "-o",
            "tok",
        ],
        d.path(),
    );
    let err = text(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert_mentions(&err, &["requested vocab size 500 was not reached", "empty"]);

    std::fs::create_dir(d.path().join("texts")).unwrap();
    let o = ferrolm(&["tokenizer", "train", "-i", "texts", "-o", "tok2"], d.path());
    let err = user_error(&o);
    assert!(err.contains("texts is a directory"), "{err}");
    assert!(!err.contains("No such device"), "{err}");
    let o = ferrolm(
        &["tokenizer", "encode", "-t", "tok", "-i", "texts", "-o", "x.npy"],
        d.path(),
    );
    assert!(user_error(&o).contains("texts is a directory"));
}

#[test]
fn vocab_from_the_tokenizer_no_validation_said_once_and_runs_listed() {
    let d = tempfile::tempdir().unwrap();
    let n = data(d.path());
    let o = train(d.path(), &["--steps", "4", "--run-dir", "runs/a"]);
    let err = text(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains(&format!("model.vocab_size {n}: the tokenizer's")),
        "{err}"
    );
    assert!(err.contains(&format!("vocab {n})")), "{err}");
    assert_eq!(err.matches("without validation").count(), 1, "{err}");

    // A set size below the tokenizer's is refused; above it, a warning.
    let set = |v: usize| format!("model.vocab_size={v}");
    let o = train(
        d.path(),
        &["--steps", "2", "--run-dir", "runs/small", "--set", &set(n - 10)],
    );
    let err = user_error(&o);
    assert!(
        err.contains(&format!("model.vocab_size {} is smaller", n - 10)) && err.contains(&n.to_string()),
        "{err}"
    );
    assert!(!d.path().join("runs/small/checkpoints").exists());
    let o = train(
        d.path(),
        &[
            "--steps",
            "2",
            "--run-dir",
            "runs/b",
            "--set",
            &set(n + 20),
            "--valid",
            "valid.npy",
        ],
    );
    let err = text(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains(&format!("warning: model.vocab_size {} is larger", n + 20)),
        "{err}"
    );
    assert!(!err.contains("without validation"), "{err}");

    // b interrupted (as if killed: a larger max_steps than it reached), c running (a live pid).
    let cfg_b = d.path().join("runs/b/config.toml");
    let t = std::fs::read_to_string(&cfg_b)
        .unwrap()
        .replace("max_steps = 2\n", "max_steps = 50\n");
    std::fs::write(&cfg_b, t).unwrap();
    let o = train(
        d.path(),
        &["--steps", "2", "--run-dir", "runs/c", "--valid", "valid.npy"],
    );
    assert!(o.status.success());
    std::fs::write(
        d.path().join("runs/c/RUNNING"),
        format!("{}\n", std::process::id()),
    )
    .unwrap();

    let o = ferrolm(&["runs"], d.path());
    let out = text(&o.stdout);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let row = |name: &str| {
        out.lines()
            .find(|l| l.contains(name))
            .unwrap_or_else(|| panic!("{name}: {out}"))
            .to_string()
    };
    assert!(out.lines().next().unwrap().contains("best val"), "{out}");
    assert!(
        row("runs/a").contains("finished") && row("runs/a").contains("4/4"),
        "{out}"
    );
    assert!(
        row("runs/b").contains("interrupted") && row("runs/b").contains("2/50"),
        "{out}"
    );
    assert!(row("runs/c").contains("running"), "{out}");
    assert!(row("runs/b").contains("f32"), "{out}");

    let o = ferrolm(
        &["runs", "--compare", "runs/b", "runs/c", "--out", "bc.svg"],
        d.path(),
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let svg = std::fs::read_to_string(d.path().join("bc.svg")).unwrap();
    assert!(
        svg.contains("runs/b") && svg.contains("runs/c"),
        "legend lacks the runs"
    );

    // A prompt longer than the context is announced.
    let long = "the cat sat on the mat. ".repeat(10);
    let o = ferrolm(
        &[
            "generate",
            "--checkpoint",
            "runs/a",
            "--prompt",
            &long,
            "--max-tokens",
            "2",
        ],
        d.path(),
    );
    let err = text(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("longer than the model's context of 16"), "{err}");
}

#[test]
fn progress_lines_without_a_terminal_and_runs_by_tokens_and_minutes() {
    let d = tempfile::tempdir().unwrap();
    data(d.path());
    // stderr is a pipe here: plain progress lines, one per metrics line with progress_seconds 0.
    let o = {
        // TINY has --no-progress; run without it.
        let mut args = vec!["train", "--train", "train.npy", "--tokenizer", "tok"];
        args.extend(TINY.iter().filter(|a| **a != "--no-progress"));
        args.extend([
            "--tokens",
            "200",
            "--run-dir",
            "runs/t2",
            "--set",
            "logging.progress_seconds=0",
            "--set",
            "logging.every=1",
        ]);
        ferrolm(&args, d.path())
    };
    let err = text(&o.stderr);
    assert!(o.status.success(), "{err}");
    // 200 tokens at 4 x 16 per step: 4 steps.
    assert!(err.contains("run.max_tokens 200: 4 steps of 64 tokens"), "{err}");
    for s in 1..=4 {
        let line = err
            .lines()
            .find(|l| l.starts_with(&format!("step {s}/4 (")))
            .unwrap_or_else(|| panic!("no progress line for step {s}: {err}"));
        for part in ["loss ", "lr ", "tok/s", "elapsed ", "ETA "] {
            assert!(line.contains(part), "{part:?} missing in {line}");
        }
    }
    // --no-progress: none.
    let o = train(d.path(), &["--steps", "2", "--run-dir", "runs/q"]);
    assert!(!text(&o.stderr).contains("tok/s"), "{}", text(&o.stderr));

    // --minutes with a fraction: the estimate is said, fixed and recorded.
    let o = train(d.path(), &["--minutes", "0.005", "--run-dir", "runs/m"]);
    let err = text(&o.stderr);
    assert!(o.status.success(), "{err}");
    let said: u64 = err
        .split("steps in all")
        .next()
        .and_then(|s| s.rsplit("so ").next())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| panic!("no estimate in {err}"));
    let cfg = std::fs::read_to_string(d.path().join("runs/m/config.toml")).unwrap();
    assert!(
        cfg.contains(&format!("max_steps = {said}\n")) && cfg.contains("max_minutes = 0.005"),
        "{cfg}"
    );
    let o = ferrolm(&["train", "--steps", "3", "--minutes", "1"], d.path());
    assert_eq!(o.status.code(), Some(2), "clap refuses --steps with --minutes");
}
