//! Helpers of the CLI tests: a tiny corpus with its tokenizer and token files, the flags of a
//! tiny model, and running the `ferrolm` binary.
#![allow(dead_code)]

use ferrolm_tokenizer::{Tokenizer, END_OF_TEXT};
use ferrolm_train::data::{write_npy, TokenDtype};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The binary under test.
pub fn ferrolm() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ferrolm"))
}

/// Runs `ferrolm args…` and returns its output.
pub fn run(args: &[&str]) -> Output {
    ferrolm().args(args).output().expect("runs ferrolm")
}

/// stdout and stderr of an output, as text.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A tokenizer in `dir/tok` and `dir/train.npy`, `dir/valid.npy` encoded with it.
pub fn corpus(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let story =
        format!("the cat sat on the mat. the dog ran to the cat. they were happy together.{END_OF_TEXT}");
    let text = story.repeat(80);
    let specials = vec![END_OF_TEXT.to_string()];
    let (v, m) = ferrolm_tokenizer::train_bpe_from_str(&text, 300, &specials).unwrap();
    let tok = Tokenizer::new(v, &m, &specials).unwrap();
    let tok_dir = dir.join("tok");
    tok.save(&tok_dir).unwrap();
    let ids = tok.encode(&text);
    let (train, valid) = (dir.join("train.npy"), dir.join("valid.npy"));
    write_npy(&train, &ids, TokenDtype::U16).unwrap();
    write_npy(&valid, &ids[..400], TokenDtype::U16).unwrap();
    (tok_dir, train, valid)
}

/// `train` flags for a tiny model on `corpus(dir)` (a step takes about a millisecond).
pub fn tiny_train_args(dir: &Path, run_dir: &Path, steps: u64) -> Vec<String> {
    let p = |x: &str| dir.join(x).display().to_string();
    let mut a: Vec<String> = [
        "train",
        "--no-progress",
        "--train",
        &p("train.npy"),
        "--valid",
        &p("valid.npy"),
        "--tokenizer",
        &p("tok"),
        "--run-dir",
        &run_dir.display().to_string(),
        "--steps",
        &steps.to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for s in [
        "model.vocab_size=300",
        "model.d_model=32",
        "model.n_layers=2",
        "model.n_heads=4",
        "model.d_ff=64",
        "model.context_length=16",
        "data.batch_size=4",
        "eval.every=0",
        "eval.batches=2",
        "logging.every=1",
        "logging.plot=false",
        "optimizer.lr=0.01",
        "schedule.warmup_steps=2",
    ] {
        a.push("--set".into());
        a.push(s.into());
    }
    a
}

/// Copies a directory tree.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), dst).unwrap();
        }
    }
}
