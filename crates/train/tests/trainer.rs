//! The training loop: bit-exact resume, metrics contents, checkpoints and retention, gradient
//! accumulation, non-finite loss, config disagreements on resume, and Ctrl-C in a child process.

mod common;

use common::shared::assert_mentions;
use ferrolm_nn::model::Model;
use ferrolm_nn::schedule::lr_cosine;
use ferrolm_train::checkpoint;
use ferrolm_train::data::Sampling;
use ferrolm_train::metrics;
use ferrolm_train::{train, Resume, TrainConfig, TrainOptions};
use std::path::Path;

fn quiet() -> TrainOptions {
    TrainOptions::default()
}

fn bits(x: &[f32]) -> Vec<u32> {
    x.iter().map(|v| v.to_bits()).collect()
}

fn final_state(run_dir: &Path) -> (u64, Vec<u32>, Vec<u32>, Vec<u32>) {
    let dir = checkpoint::latest(&run_dir.join("checkpoints")).unwrap().unwrap();
    let ck = checkpoint::load(&dir, true).unwrap();
    let o = ck.optimizer.unwrap();
    (ck.state.step, bits(&ck.model.params), bits(&o.m), bits(&o.v))
}

/// Train 2s steps straight; train s, stop, resume to 2s: identical parameters and optimizer state,
/// to the bit, and identical training losses in the metrics.
fn check_bit_exact_resume(tweak: impl Fn(&mut TrainConfig)) {
    let d = tempfile::tempdir().unwrap();
    let s = 7;
    let mut a = common::tiny_run(&d.path().join("a"), 2 * s);
    tweak(&mut a);
    let sa = train(&a, &quiet()).unwrap();
    assert!(!sa.interrupted && sa.progress.step == 2 * s);

    let mut b = common::tiny_run(&d.path().join("b"), 2 * s);
    tweak(&mut b);
    let first = train(
        &b,
        &TrainOptions {
            stop_after: Some(s),
            ..quiet()
        },
    )
    .unwrap();
    assert!(first.interrupted);
    assert_eq!(first.progress.step, s);
    assert_eq!(
        first.checkpoint.as_deref(),
        Some(b.run.dir.join("checkpoints/step-000000007").as_path())
    );
    let second = common::resume_latest(&b).unwrap();
    assert!(!second.interrupted && second.progress.step == 2 * s);

    let (step_a, pa, ma, va) = final_state(&a.run.dir);
    let (step_b, pb, mb, vb) = final_state(&b.run.dir);
    assert_eq!((step_a, step_b), (2 * s, 2 * s));
    assert!(pa == pb, "parameters differ after resume");
    assert!(ma == mb && va == vb, "optimizer moments differ after resume");
    assert_eq!(sa.progress.tokens, second.progress.tokens);

    let la: Vec<(u64, Option<f32>, Option<f32>)> = metrics::read(&sa.metrics_path)
        .unwrap()
        .iter()
        .map(|r| (r.step, r.train_loss, r.val_loss))
        .collect();
    let lb: Vec<(u64, Option<f32>, Option<f32>)> = metrics::read(&second.metrics_path)
        .unwrap()
        .iter()
        .map(|r| (r.step, r.train_loss, r.val_loss))
        .collect();
    assert_eq!(la, lb);
}

#[test]
fn resume_is_bit_exact_with_random_batches() {
    check_bit_exact_resume(|_| {});
}

#[test]
fn resume_is_bit_exact_with_sequential_batches_accumulation_and_no_decay_norms() {
    check_bit_exact_resume(|c| {
        c.data.sampling = Sampling::Sequential;
        c.data.grad_accum = 2;
        c.data.batch_size = 2;
        c.optimizer.no_decay_norms = true;
        c.checkpoint.every = 3;
    });
}

#[test]
fn metrics_file_has_every_field_and_the_run_learns() {
    let (_d, mut c) = common::tiny_run_in_tempdir(40);
    c.eval.every = 10;
    c.logging.every = 2;
    let s = train(&c, &quiet()).unwrap();
    let text = std::fs::read_to_string(&s.metrics_path).unwrap();
    // Line 1 is the evaluation at step 0 (validation loss only); line 2 the first step's.
    let first: serde_json::Value = serde_json::from_str(text.lines().nth(1).unwrap()).unwrap();
    for k in [
        "step",
        "tokens",
        "wall_s",
        "train_loss",
        "val_loss",
        "lr",
        "grad_norm",
        "tokens_per_s",
    ] {
        assert!(first.get(k).is_some(), "field {k} missing in {first}");
    }
    let all = metrics::read(&s.metrics_path).unwrap();
    assert_eq!((all[0].step, all[0].tokens, all[0].train_loss), (0, 0, None));
    let v0 = all[0].val_loss.unwrap();
    let recs = &all[1..];
    assert_eq!(
        recs.iter().map(|r| r.step).collect::<Vec<_>>(),
        (1..=20).map(|i| 2 * i).collect::<Vec<_>>()
    );
    let per_step = (c.data.batch_size * c.seq_len()) as u64;
    let mut last_wall = 0.0;
    for r in recs {
        assert_eq!(r.tokens, r.step * per_step);
        assert!(r.wall_s >= last_wall);
        last_wall = r.wall_s;
        let want_lr = lr_cosine(r.step - 1, 1e-2, 1e-3, 3, 40);
        assert_eq!(r.lr, Some(want_lr), "step {}", r.step);
        assert!(r.train_loss.unwrap().is_finite() && r.grad_norm.unwrap() > 0.0);
        assert!(r.tokens_per_s.unwrap() > 0.0);
        assert_eq!(r.val_loss.is_some(), r.step % 10 == 0, "step {}", r.step);
    }
    let vals: Vec<f32> = recs.iter().filter_map(|r| r.val_loss).collect();
    let uniform = (c.model.vocab_size as f32).ln();
    assert!(
        vals[3] < vals[0] && vals[0] < v0 && vals[3] < uniform - 0.5,
        "validation loss did not fall: {vals:?}"
    );
    assert_eq!(s.progress.val_loss, Some(vals[3]));
    // The plot, the config, the checkpoints.
    let svg = std::fs::read_to_string(s.plot_path.unwrap()).unwrap();
    assert!(svg.contains("<svg") && svg.contains("wall-clock seconds") && svg.contains("step"));
    // Integer step labels ("40", never "40.0") on a log-scale loss axis.
    let labels: Vec<&str> = svg
        .split("</text>")
        .filter_map(|t| t.rsplit('>').next())
        .map(str::trim)
        .collect();
    assert!(
        labels.contains(&"40") && !labels.contains(&"40.0"),
        "step labels {labels:?}"
    );
    assert!(svg.contains("log scale"));
    let back = TrainConfig::load(&c.run.dir.join("config.toml")).unwrap();
    assert_eq!(back, c);
    let steps: Vec<u64> = checkpoint::list(&c.run.dir.join("checkpoints"))
        .unwrap()
        .iter()
        .map(|x| x.0)
        .collect();
    // Every 5 steps, keep the last 2 plus the best by validation loss.
    assert!(steps.ends_with(&[35, 40]) && steps.len() <= 3, "{steps:?}");
}

#[test]
fn step0_checkpoint_holds_the_initialization() {
    let (_d, mut c) = common::tiny_run_in_tempdir(6);
    c.checkpoint.save_step0 = true;
    c.checkpoint.keep_last = 1;
    train(&c, &quiet()).unwrap();
    let ck = checkpoint::load(&c.run.dir.join("checkpoints/step-000000000"), true).unwrap();
    let init = Model::new(c.model.clone(), c.run.seed).unwrap();
    assert_eq!(bits(&ck.model.params), bits(&init.params));
    assert_eq!(ck.state.step, 0);
    assert!(c.run.dir.join("checkpoints/step-000000006").is_dir());
}

/// The trainer's fused step (clipping folded into the AdamW pass, which also zeroes the
/// gradients) gives bitwise the parameters of the plain loop: zero, forward/backward,
/// clip_grad_norm in place, AdamW::step. The clip is tight so that it triggers on every step.
#[test]
fn trainer_steps_equal_the_plain_zero_clip_step_loop() {
    use ferrolm_nn::clip::clip_grad_norm;
    use ferrolm_nn::model::Activations;
    use ferrolm_nn::optim::AdamW;
    use ferrolm_nn::Rng;
    use ferrolm_train::data::{BatchSampler, TokenFile};
    let d = tempfile::tempdir().unwrap();
    let steps = 5;
    let mut c = common::tiny_run(&d.path().join("a"), steps);
    c.optimizer.grad_clip = 0.05;
    c.data.valid = "".into();
    train(&c, &quiet()).unwrap();
    let (_, trained, m_trained, _) = final_state(&c.run.dir);

    let tokens = TokenFile::open(&c.data.train).unwrap();
    let (batch, seq) = (c.data.batch_size, c.seq_len());
    let mut model = Model::new(c.model.clone(), c.run.seed).unwrap();
    let mut acts = Activations::new(&c.model, batch, seq);
    let mut optim = AdamW::new(c.adamw(), model.params.len());
    let mut sampler = BatchSampler::new(c.data.sampling, Rng::new(c.data.seed));
    let (mut inputs, mut targets) = (vec![0u32; batch * seq], vec![0u32; batch * seq]);
    let mut clipped = 0;
    for step in 0..steps {
        model.zero_grads();
        sampler.fill(&tokens, seq, &mut inputs, &mut targets).unwrap();
        model.forward_backward(&mut acts, &inputs, &targets).unwrap();
        let norm = clip_grad_norm(&mut model.grads, c.optimizer.grad_clip as f32);
        clipped += (norm > c.optimizer.grad_clip as f32) as usize;
        let lr = lr_cosine(
            step,
            c.optimizer.lr as f32,
            c.schedule.min_lr as f32,
            c.schedule.warmup_steps,
            c.cosine_steps(),
        );
        optim.step(&mut model.params, &model.grads, lr);
    }
    assert_eq!(clipped, steps as usize, "the clip should trigger on every step");
    assert!(
        bits(&model.params) == trained,
        "parameters differ from the plain loop"
    );
    assert!(
        bits(&optim.m) == m_trained,
        "AdamW moments differ from the plain loop"
    );
}

#[test]
fn gradient_accumulation_matches_one_big_batch() {
    let d = tempfile::tempdir().unwrap();
    let run = |name: &str, batch: usize, accum: usize| {
        let mut c = common::tiny_run(&d.path().join(name), 4);
        c.data.sampling = Sampling::Sequential;
        c.data.batch_size = batch;
        c.data.grad_accum = accum;
        c.data.valid = "".into();
        train(&c, &quiet()).unwrap();
        let dir = checkpoint::latest(&c.run.dir.join("checkpoints"))
            .unwrap()
            .unwrap();
        checkpoint::load(&dir, false).unwrap().model.params
    };
    let big = run("big", 4, 1);
    let acc = run("acc", 2, 2);
    let init = Model::new(common::tiny_model(), 0).unwrap().params;
    let moved: f32 = big
        .iter()
        .zip(&init)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    let diff: f32 = big
        .iter()
        .zip(&acc)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(moved > 1e-3, "training did not move the parameters");
    // Same gradients up to f32 summation order: differences far below the update size.
    assert!(
        diff < 1e-4 * moved.max(1.0) + 1e-5,
        "max |Δ| {diff} (updates moved {moved})"
    );
}

#[test]
fn non_finite_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint() {
    let (_d, mut c) = common::tiny_run_in_tempdir(200);
    c.optimizer.lr = 1e12;
    c.schedule.min_lr = 1e12;
    c.schedule.warmup_steps = 0;
    c.optimizer.grad_clip = 0.0;
    c.checkpoint.every = 0;
    c.eval.every = 0;
    let e = format!("{:#}", train(&c, &quiet()).unwrap_err());
    assert!(e.contains("non-finite") && e.contains("at step"), "{e}");
    let failed: u64 = e
        .split("at step ")
        .nth(1)
        .unwrap()
        .split(|ch: char| !ch.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!((2..200).contains(&failed), "{e}");
    let kept = checkpoint::latest(&c.run.dir.join("checkpoints"))
        .unwrap()
        .unwrap();
    assert!(e.contains(kept.to_str().unwrap()), "{e}");
    let ck = checkpoint::load(&kept, true).unwrap();
    assert_eq!(ck.state.step, failed - 1);
    assert!(ck.model.params.iter().all(|p| p.is_finite()));
    // The metrics file stops at the last good step.
    let recs = metrics::read(&c.run.dir.join("metrics.jsonl")).unwrap();
    assert_eq!(recs.last().unwrap().step, failed - 1);
}

#[test]
fn resume_refuses_a_disagreeing_config_and_fresh_runs_refuse_a_used_directory() {
    let (d, c) = common::tiny_run_in_tempdir(5);
    train(&c, &quiet()).unwrap();

    let e = format!("{:#}", train(&c, &quiet()).unwrap_err());
    assert_mentions(&e, &["already has checkpoints", "--resume"]);

    let mut other = c.clone();
    other.model.d_ff = 96;
    other.optimizer.lr = 5e-3;
    other.run.max_steps = 8;
    let e = format!("{:#}", common::resume_latest(&other).unwrap_err());
    assert_mentions(&e, &["model.d_ff: checkpoint 64, now 96", "optimizer.lr"]);
    assert!(!e.contains("max_steps"), "{e}");

    // A longer max_steps that would stretch the cosine (schedule.cosine_steps = 0) is refused,
    // naming --extend; with it, fine; resuming from an explicit checkpoint directory too.
    let mut longer = c.clone();
    longer.run.max_steps = 8;
    let from = c.run.dir.join("checkpoints/step-000000005");
    let resume_from = |extend| TrainOptions {
        resume: Resume::From(from.clone()),
        extend,
        ..quiet()
    };
    let e = format!("{:#}", train(&longer, &resume_from(false)).unwrap_err());
    assert_mentions(&e, &["learning-rate schedule", "--extend"]);
    let s = train(&longer, &resume_from(true)).unwrap();
    assert_eq!(s.progress.step, 8);

    let e = format!(
        "{:#}",
        train(
            &c,
            &TrainOptions {
                resume: Resume::From(d.path().join("nope")),
                ..quiet()
            }
        )
        .unwrap_err()
    );
    assert!(e.contains("does not exist"), "{e}");
    // Data that does not fit the model's vocabulary is caught before training.
    let mut small_vocab = c.clone();
    small_vocab.run.dir = d.path().join("other");
    small_vocab.model.vocab_size = 10;
    let e = format!("{:#}", train(&small_vocab, &quiet()).unwrap_err());
    assert_mentions(&e, &["train.npy", "outside the vocabulary"]);
}

/// The child side of the Ctrl-C test: a long run with the SIGINT handler installed.
#[test]
#[ignore = "run by ctrl_c_saves_a_checkpoint_and_exits_cleanly in a child process"]
fn child_trains_until_interrupted() {
    let Ok(dir) = std::env::var("FERROLM_TEST_RUN_DIR") else {
        return;
    };
    let mut c = common::tiny_run(Path::new(&dir), 1_000_000);
    c.checkpoint.every = 0;
    c.eval.every = 0;
    let s = train(
        &c,
        &TrainOptions {
            handle_sigint: true,
            ..quiet()
        },
    )
    .unwrap();
    assert!(s.interrupted);
    std::fs::write(Path::new(&dir).join("summary"), format!("{}", s.progress.step)).unwrap();
}

#[test]
fn ctrl_c_saves_a_checkpoint_and_exits_cleanly() {
    let d = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut child = std::process::Command::new(exe)
        .args([
            "--exact",
            "child_trains_until_interrupted",
            "--ignored",
            "--test-threads=1",
        ])
        .env("FERROLM_TEST_RUN_DIR", d.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let metrics_path = d.path().join("run/metrics.jsonl");
    let status = common::shared::interrupt_after_lines(&mut child, &metrics_path, 5);
    assert!(status.success(), "the child did not exit cleanly: {status:?}");
    let step: u64 = std::fs::read_to_string(d.path().join("summary"))
        .unwrap()
        .parse()
        .unwrap();
    assert!(step >= 5);
    let latest = checkpoint::latest(&d.path().join("run/checkpoints"))
        .unwrap()
        .unwrap();
    let ck = checkpoint::load(&latest, true).unwrap();
    assert_eq!(ck.state.step, step);
    // And it resumes.
    let mut c = common::tiny_run(d.path(), step + 2);
    c.checkpoint.every = 0;
    c.eval.every = 0;
    let s = train(
        &c,
        &TrainOptions {
            resume: Resume::Latest,
            extend: true,
            ..quiet()
        },
    )
    .unwrap();
    assert_eq!(s.progress.step, step + 2);
}
