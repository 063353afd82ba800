//! Resuming without losing or silently changing work (issue 17): a start from the saved config
//! before the first checkpoint, refused schedule changes and `extend`, the config-change report,
//! falling back past a damaged checkpoint, and failed starts that leave nothing behind.

mod common;

use common::shared::assert_mentions;
use ferrolm_train::checkpoint;
use ferrolm_train::metrics;
use ferrolm_train::trainer::{setup, Trainer};
use ferrolm_train::{train, Resume, TrainConfig, TrainOptions, TrainSummary};
use std::path::Path;

fn opts(resume: Resume) -> TrainOptions {
    TrainOptions {
        resume,
        ..TrainOptions::default()
    }
}

fn final_params(s: &TrainSummary) -> Vec<u32> {
    let ck = checkpoint::load(s.checkpoint.as_ref().unwrap(), true).unwrap();
    ck.model.params.iter().map(|v| v.to_bits()).collect()
}

fn err(cfg: &TrainConfig, o: &TrainOptions) -> String {
    format!("{:#}", train(cfg, o).unwrap_err())
}

#[test]
fn resume_before_the_first_checkpoint_starts_from_the_saved_config() {
    let (d, c) = common::tiny_run_in_tempdir(6);
    let whole = train(&c, &opts(Resume::No)).unwrap();
    // A run killed before its first save: its directory holds config.toml and nothing else.
    let mut b = c.clone();
    b.run.dir = d.path().join("b");
    drop(Trainer::open(&b, &opts(Resume::No)).unwrap());
    assert!(b.run.dir.join("config.toml").is_file());
    assert!(checkpoint::latest(&b.run.dir.join("checkpoints"))
        .unwrap()
        .is_none());
    // The saved config is what a resume without a config file uses.
    let saved = setup::saved_config(&Resume::Latest, &b.run.dir).unwrap().unwrap();
    assert_eq!(saved.diff(&b), vec![]);
    let s = train(&saved, &opts(Resume::Latest)).unwrap();
    assert!(
        s.notes
            .iter()
            .any(|n| n.contains("no checkpoint yet, starting") && n.contains("saved config")),
        "{:?}",
        s.notes
    );
    assert_eq!(final_params(&s), final_params(&whole));
    // --resume where there is nothing to resume is an error, and creates nothing.
    let mut e = c.clone();
    e.run.dir = d.path().join("empty");
    let msg = err(&e, &opts(Resume::Latest));
    assert_mentions(&msg, &["nothing to resume", "config.toml"]);
    assert!(!e.run.dir.exists());
}

#[test]
fn a_fresh_start_never_replaces_a_different_saved_config_unless_asked() {
    let (_d, c) = common::tiny_run_in_tempdir(4);
    drop(Trainer::open(&c, &opts(Resume::No)).unwrap());
    let before = std::fs::read_to_string(c.run.dir.join("config.toml")).unwrap();
    let mut other = c.clone();
    other.optimizer.lr = 5e-3;
    let msg = err(&other, &opts(Resume::No));
    assert_mentions(&msg, &["optimizer.lr", "--overwrite-config"]);
    assert_eq!(
        std::fs::read_to_string(c.run.dir.join("config.toml")).unwrap(),
        before
    );
    // The same config again is fine; so is the new one when asked for.
    drop(Trainer::open(&c, &opts(Resume::No)).unwrap());
    let o = TrainOptions {
        overwrite_config: true,
        ..opts(Resume::No)
    };
    train(&other, &o).unwrap();
    let now = TrainConfig::load(&c.run.dir.join("config.toml")).unwrap();
    assert_eq!(now.optimizer.lr, 5e-3);
}

#[test]
fn a_schedule_change_on_resume_is_refused_and_extend_keeps_the_saved_schedule() {
    let d = tempfile::tempdir().unwrap();
    // 6 steps with schedule.cosine_steps = 0: the cosine spans the 6 steps.
    let a = common::tiny_run(&d.path().join("a"), 6);
    train(&a, &opts(Resume::No)).unwrap();
    let mut longer = a.clone();
    longer.run.max_steps = 9;
    let msg = err(&longer, &opts(Resume::Latest));
    assert!(
        msg.contains("learning-rate schedule")
            && msg.contains("--extend")
            && msg.contains("cosine to step 6 -> 9"),
        "{msg}"
    );
    // Other settings that fix the run are refused, naming each.
    let mut warm = longer.clone();
    warm.schedule.warmup_steps = 1;
    warm.data.batch_size = 2;
    let msg = err(&warm, &opts(Resume::Latest));
    assert!(msg.contains("data.batch_size: checkpoint 4, now 2"), "{msg}");
    // --extend: the steps past the cosine run at min_lr, exactly as a run planned that way.
    longer.eval.every = 3;
    let ext = TrainOptions {
        extend: true,
        ..opts(Resume::Latest)
    };
    let s = train(&longer, &ext).unwrap();
    assert_eq!(s.progress.step, 9);
    let changes = s.notes.join("\n");
    assert_mentions(&changes, &["run.max_steps: 6 -> 9", "eval.every: 5 -> 3"]);
    let mut planned = common::tiny_run(&d.path().join("b"), 9);
    planned.schedule.cosine_steps = 6;
    let p = train(&planned, &opts(Resume::No)).unwrap();
    assert_eq!(final_params(&s), final_params(&p));
    let lrs: Vec<f32> = metrics::read(&s.metrics_path)
        .unwrap()
        .iter()
        .filter(|r| r.step > 6)
        .map(|r| r.lr.unwrap())
        .collect();
    assert_eq!(lrs, vec![a.schedule.min_lr as f32; 3]);
    // The extended run's saved config pins the schedule, so a plain resume later is consistent.
    let saved = TrainConfig::load(&a.run.dir.join("config.toml")).unwrap();
    assert_eq!((saved.schedule.cosine_steps, saved.run.max_steps), (6, 9));
}

fn damage(path: &Path) {
    let mut b = std::fs::read(path).unwrap();
    let i = b.len() - 7;
    b[i] ^= 0x40;
    std::fs::write(path, b).unwrap();
}

#[test]
fn resume_falls_back_past_a_damaged_checkpoint_naming_it() {
    let d = tempfile::tempdir().unwrap();
    let mut c = common::tiny_run(&d.path().join("a"), 10);
    c.checkpoint.every = 5;
    c.checkpoint.keep_last = 1;
    let whole = train(&c, &opts(Resume::No)).unwrap();

    let mut r = c.clone();
    r.run.dir = d.path().join("r");
    train(
        &r,
        &TrainOptions {
            stop_after: Some(8),
            ..opts(Resume::No)
        },
    )
    .unwrap();
    let ck = r.run.dir.join("checkpoints");
    let (s5, s8) = (ck.join("step-000000005"), ck.join("step-000000008"));
    assert!(s5.is_dir() && s8.is_dir());
    damage(&s8.join("model.safetensors"));
    // An explicit damaged checkpoint is refused with the command that uses the older one.
    let msg = err(&r, &opts(Resume::From(s8.clone())));
    assert!(
        msg.contains("model.safetensors: damaged") && msg.contains(&format!("--resume {}", s5.display())),
        "{msg}"
    );
    // The latest: named, moved aside, and the run continues from step 5 to the same end.
    let s = train(&r, &opts(Resume::Latest)).unwrap();
    let notes = s.notes.join("\n");
    assert_mentions(
        &notes,
        &["step-000000008/model.safetensors: damaged", "step-000000005"],
    );
    assert!(ck.join("damaged-step-000000008").is_dir() && !s8.exists());
    assert_eq!(s.progress.step, 10);
    assert_eq!(final_params(&s), final_params(&whole));
    // Every checkpoint damaged: an error listing them.
    for (_, dir) in checkpoint::list(&ck).unwrap() {
        damage(&dir.join("optimizer.safetensors"));
    }
    let msg = err(&r, &opts(Resume::Latest));
    assert_mentions(&msg, &["no intact checkpoint", "optimizer.safetensors: damaged"]);
}

#[test]
fn zero_steps_and_failed_starts_leave_nothing_behind() {
    let (d, mut c) = common::tiny_run_in_tempdir(0);
    let msg = err(&c, &opts(Resume::No));
    assert_mentions(&msg, &["run.max_steps", "at least 1"]);
    assert!(!c.run.dir.exists());
    c.run.max_steps = 3;
    c.data.train = d.path().join("missing.npy");
    let msg = err(&c, &opts(Resume::No));
    assert!(msg.contains("missing.npy"), "{msg}");
    assert!(!c.run.dir.exists(), "a failed start left {}", c.run.dir.display());
}
