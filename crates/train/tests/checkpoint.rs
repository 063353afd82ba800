//! Checkpoints: exact round trip, the safetensors layout, every corrupt-input case, latest by
//! listing, retention, and a kill (SIGKILL) during a save leaving the previous checkpoints loadable.

mod common;

use common::shared::assert_mentions;
use ferrolm_nn::model::Model;
use ferrolm_nn::optim::AdamW;
use ferrolm_nn::Rng;
use ferrolm_train::checkpoint::{self, CheckpointState, ScheduleState};
use ferrolm_train::data::{BatchSampler, Sampling};
use ferrolm_train::TrainConfig;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

fn state(step: u64, val_loss: Option<f32>) -> CheckpointState {
    let config = TrainConfig {
        model: common::tiny_model(),
        ..TrainConfig::default()
    };
    CheckpointState {
        format_version: checkpoint::FORMAT_VERSION,
        step,
        tokens_seen: step * 64,
        wall_seconds: 1.5,
        model: config.model.clone(),
        optimizer: config.adamw(),
        optimizer_t: step,
        no_decay: vec![(3, 7), (9, 10)],
        schedule: ScheduleState {
            max_lr: 1e-3,
            min_lr: 1e-4,
            warmup_steps: 10,
            cosine_steps: 100,
        },
        sampler: BatchSampler::new(Sampling::Random, Rng::new(step)),
        tokenizer: None,
        val_loss,
        train_loss: Some(2.0),
        config,
    }
}

fn model_and_optim(seed: u64) -> (Model, AdamW) {
    let model = Model::new(common::tiny_model(), seed).unwrap();
    let mut opt = AdamW::new(Default::default(), model.params.len());
    let mut rng = Rng::new(seed + 100);
    opt.m.iter_mut().for_each(|x| *x = rng.normal() as f32);
    opt.v.iter_mut().for_each(|x| *x = rng.uniform() as f32);
    opt.no_decay = vec![3..7, 9..10];
    (model, opt)
}

fn save(parent: &Path, step: u64, val: Option<f32>) -> PathBuf {
    let (m, o) = model_and_optim(step);
    let mut o = o;
    o.t = step;
    checkpoint::save(parent, &state(step, val), &m, &o, None).unwrap()
}

fn load_err(dir: &Path) -> String {
    match checkpoint::load(dir, true) {
        Ok(_) => panic!("loading {} should fail", dir.display()),
        Err(e) => format!("{e:#}"),
    }
}

/// Rewrites a safetensors file through `edit` on its (name, dtype, shape, bytes) list.
fn rewrite(path: &Path, edit: impl FnOnce(&mut Vec<(String, Dtype, Vec<usize>, Vec<u8>)>)) {
    let buf = std::fs::read(path).unwrap();
    let st = SafeTensors::deserialize(&buf).unwrap();
    let mut ts: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(n, t)| (n, t.dtype(), t.shape().to_vec(), t.data().to_vec()))
        .collect();
    edit(&mut ts);
    let views: Vec<(String, TensorView<'_>)> = ts
        .iter()
        .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    std::fs::write(
        path,
        safetensors::tensor::serialize(views, &None::<HashMap<String, String>>).unwrap(),
    )
    .unwrap();
}

#[test]
fn round_trip_is_exact_and_uses_state_dict_names() {
    let d = tempfile::tempdir().unwrap();
    let (m, mut o) = model_and_optim(3);
    o.t = 42;
    let tok = d.path().join("tok");
    std::fs::create_dir(&tok).unwrap();
    std::fs::write(tok.join("vocab.json"), "{\"a\": 0}").unwrap();
    std::fs::write(tok.join("merges.txt"), "a b\n").unwrap();
    let mut st = state(42, Some(1.25));
    let (fp, files) = checkpoint::fingerprint_dir(&tok).unwrap();
    st.tokenizer = Some(checkpoint::TokenizerIdentity {
        fingerprint: fp,
        source: tok.clone(),
        files,
        bpe_fingerprint: None,
        vocab_size: None,
    });
    let dir = checkpoint::save(&d.path().join("ck"), &st, &m, &o, Some(&tok)).unwrap();
    assert_eq!(dir.file_name().unwrap(), "step-000000042");
    for f in [
        "model.safetensors",
        "optimizer.safetensors",
        "state.json",
        "tokenizer/vocab.json",
        "tokenizer/merges.txt",
    ] {
        assert!(dir.join(f).is_file(), "{f}");
    }
    let ck = checkpoint::load(&dir, true).unwrap();
    assert_eq!(ck.state, st);
    assert!(ck
        .model
        .params
        .iter()
        .zip(&m.params)
        .all(|(a, b)| a.to_bits() == b.to_bits()));
    let o2 = ck.optimizer.unwrap();
    assert!(o2.m.iter().zip(&o.m).all(|(a, b)| a.to_bits() == b.to_bits()));
    assert!(o2.v.iter().zip(&o.v).all(|(a, b)| a.to_bits() == b.to_bits()));
    assert_eq!(
        (o2.t, o2.no_decay.clone(), o2.config.clone()),
        (42, vec![3..7, 9..10], o.config.clone())
    );

    // The model file holds exactly the state-dict names with their shapes, as f32.
    let buf = std::fs::read(dir.join("model.safetensors")).unwrap();
    let sf = SafeTensors::deserialize(&buf).unwrap();
    assert_eq!(sf.len(), m.specs.len());
    for s in &m.specs {
        let t = sf.tensor(&s.name).unwrap();
        assert_eq!((t.dtype(), t.shape()), (Dtype::F32, s.shape.as_slice()));
    }
    let buf = std::fs::read(dir.join("optimizer.safetensors")).unwrap();
    let so = SafeTensors::deserialize(&buf).unwrap();
    assert!(so.tensor("m.lm_head.weight").is_ok() && so.tensor("v.layers.1.ffn.w2.weight").is_ok());

    // A tampered tokenizer copy is caught: by its checksum, and without checksums (an older
    // checkpoint) by the tokenizer fingerprint in state.json.
    std::fs::write(dir.join("tokenizer/merges.txt"), "b a\n").unwrap();
    let e = load_err(&dir);
    assert!(e.contains("tokenizer/merges.txt: damaged"), "{e}");
    std::fs::remove_file(dir.join("checksums.json")).unwrap();
    assert!(load_err(&dir).contains("fingerprint"));
}

#[test]
fn every_corrupt_input_is_a_clear_error() {
    let d = tempfile::tempdir().unwrap();
    let parent = d.path().join("ck");
    let fresh = || {
        let dir = save(&parent, 1, None);
        checkpoint::load(&dir, true).unwrap();
        dir
    };
    let model = |dir: &Path| dir.join("model.safetensors");
    type Corruption = Box<dyn Fn(&Path)>;
    let cases: Vec<(&str, Corruption, &str)> = vec![
        (
            "missing tensor",
            Box::new(move |dir: &Path| {
                rewrite(&model(dir), |ts| ts.retain(|t| t.0 != "layers.0.ln1.weight"))
            }),
            "missing [\"layers.0.ln1.weight\"]",
        ),
        (
            "extra tensor",
            Box::new(move |dir: &Path| {
                rewrite(&model(dir), |ts| {
                    ts.push(("layers.9.ln1.weight".into(), Dtype::F32, vec![1], vec![0; 4]))
                })
            }),
            "unexpected [\"layers.9.ln1.weight\"]",
        ),
        (
            "shape mismatch",
            Box::new(move |dir: &Path| {
                rewrite(&model(dir), |ts| {
                    let t = ts.iter_mut().find(|t| t.0 == "ln_final.weight").unwrap();
                    t.2 = vec![16, 2];
                })
            }),
            "ln_final.weight has shape [16, 2], the model config needs [32]",
        ),
        (
            "dtype mismatch",
            Box::new(move |dir: &Path| {
                rewrite(&model(dir), |ts| {
                    let t = ts.iter_mut().find(|t| t.0 == "ln_final.weight").unwrap();
                    t.1 = Dtype::F16;
                    t.3.truncate(t.3.len() / 2);
                })
            }),
            "dtype F16",
        ),
        (
            "truncated model file",
            Box::new(move |dir: &Path| {
                let b = std::fs::read(model(dir)).unwrap();
                std::fs::write(model(dir), &b[..b.len() - 100]).unwrap();
            }),
            "truncated or corrupt",
        ),
        (
            "truncated optimizer file",
            Box::new(|dir: &Path| {
                let p = dir.join("optimizer.safetensors");
                let b = std::fs::read(&p).unwrap();
                std::fs::write(&p, &b[..5]).unwrap();
            }),
            "optimizer.safetensors: not a valid safetensors file",
        ),
        (
            "missing model file",
            Box::new(move |dir: &Path| std::fs::remove_file(model(dir)).unwrap()),
            "cannot read",
        ),
        (
            "truncated state",
            Box::new(|dir: &Path| {
                let p = dir.join("state.json");
                let b = std::fs::read(&p).unwrap();
                std::fs::write(&p, &b[..b.len() / 2]).unwrap();
            }),
            "state.json: corrupt or truncated JSON",
        ),
        (
            "other format version",
            Box::new(|dir: &Path| {
                let p = dir.join("state.json");
                let s = std::fs::read_to_string(&p)
                    .unwrap()
                    .replace("\"format_version\": 1", "\"format_version\": 7");
                std::fs::write(&p, s).unwrap();
            }),
            "format version Some(7)",
        ),
        (
            "state config disagrees with the tensors",
            Box::new(|dir: &Path| set_model_field(dir, "d_ff", 96)),
            "has shape [64, 32], the model config needs [96, 32]",
        ),
        (
            "invalid model config",
            Box::new(|dir: &Path| set_model_field(dir, "n_heads", 5)),
            "not divisible by n_heads 5",
        ),
    ];
    for (what, corrupt, needle) in cases {
        let dir = fresh();
        corrupt(&dir);
        // The checksums catch each of these first (see checksums_name_each_damaged_file); without
        // them (a checkpoint saved before checksums existed) the readers' own checks still do.
        let _ = std::fs::remove_file(dir.join("checksums.json"));
        let e = load_err(&dir);
        assert!(e.contains(needle), "{what}: {e}");
        assert!(
            e.contains(dir.to_str().unwrap()),
            "{what}: error does not name the checkpoint: {e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
    assert!(load_err(&d.path().join("nothing")).contains("not a checkpoint"));
}

/// Sets `model.<field>` of the checkpoint's state.json to `value`.
fn set_model_field(dir: &Path, field: &str, value: u64) {
    let p = dir.join("state.json");
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    v["model"][field] = value.into();
    std::fs::write(&p, serde_json::to_vec(&v).unwrap()).unwrap();
}

#[test]
fn latest_is_found_by_listing_and_ignores_partial_saves() {
    let d = tempfile::tempdir().unwrap();
    let parent = d.path().join("checkpoints");
    assert_eq!(checkpoint::latest(&parent).unwrap(), None);
    save(&parent, 5, None);
    let s10 = save(&parent, 10, None);
    // Leftovers of a crashed save: a temp dir, and a step dir without state.json.
    std::fs::create_dir_all(parent.join(".tmp-step-000000020-999")).unwrap();
    std::fs::write(
        parent.join(".tmp-step-000000020-999/model.safetensors"),
        b"partial",
    )
    .unwrap();
    std::fs::create_dir_all(parent.join("step-000000030")).unwrap();
    assert_eq!(checkpoint::latest(&parent).unwrap(), Some(s10.clone()));
    assert_eq!(checkpoint::resolve(&parent).unwrap(), s10);
    assert_eq!(checkpoint::resolve(&s10).unwrap(), s10);
    assert_eq!(
        checkpoint::resolve(d.path()).unwrap(),
        s10,
        "a run directory resolves to checkpoints/latest"
    );
    // Saving the same step again replaces it.
    let again = save(&parent, 10, Some(0.5));
    assert_eq!(checkpoint::read_state(&again).unwrap().val_loss, Some(0.5));
}

#[test]
fn prune_keeps_last_k_best_and_step0() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("ck");
    save(&p, 0, None);
    save(&p, 10, Some(3.0));
    save(&p, 20, Some(1.0));
    save(&p, 30, Some(2.0));
    save(&p, 40, Some(2.5));
    save(&p, 50, None);
    std::fs::create_dir_all(p.join(".tmp-step-000000060-1")).unwrap();
    checkpoint::prune(&p, 2).unwrap();
    let steps: Vec<u64> = checkpoint::list(&p)
        .unwrap()
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(steps, vec![0, 20, 40, 50]);
    assert!(!p.join(".tmp-step-000000060-1").exists());
}

/// The child side of the kill test: saves checkpoints of a larger model in a loop until killed.
#[test]
#[ignore = "run by kill_during_save_leaves_previous_checkpoints_loadable in a child process"]
fn child_saves_forever() {
    let Ok(dir) = std::env::var("FERROLM_TEST_SAVE_DIR") else {
        return;
    };
    let mut cfg = common::tiny_model();
    cfg.d_model = 128;
    cfg.d_ff = 384;
    cfg.vocab_size = 2000;
    let model = Model::new(cfg.clone(), 1).unwrap();
    let opt = AdamW::new(Default::default(), model.params.len());
    let mut st = state(0, None);
    st.model = cfg.clone();
    st.config.model = cfg;
    for step in 1.. {
        st.step = step;
        checkpoint::save(Path::new(&dir), &st, &model, &opt, None).unwrap();
        std::fs::write(Path::new(&dir).join("saved"), step.to_string()).unwrap();
    }
}

#[test]
fn kill_during_save_leaves_previous_checkpoints_loadable() {
    let d = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut kills_mid_save = 0;
    for round in 0..6u64 {
        let dir = d.path().join(format!("r{round}"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut child = std::process::Command::new(&exe)
            .args(["--exact", "child_saves_forever", "--ignored", "--test-threads=1"])
            .env("FERROLM_TEST_SAVE_DIR", &dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Wait for at least one complete save, then kill at a varying moment.
        let t0 = std::time::Instant::now();
        while !dir.join("saved").exists() {
            assert!(t0.elapsed().as_secs() < 60, "child never saved");
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        std::thread::sleep(std::time::Duration::from_millis(3 + 7 * round));
        child.kill().unwrap(); // SIGKILL: no cleanup runs.
        child.wait().unwrap();
        if std::fs::read_dir(&dir)
            .unwrap()
            .any(|e| e.unwrap().file_name().to_string_lossy().starts_with(".tmp-"))
        {
            kills_mid_save += 1;
        }
        let all = checkpoint::list(&dir).unwrap();
        assert!(!all.is_empty());
        for (_, ck) in &all {
            checkpoint::load(ck, true).unwrap_or_else(|e| panic!("{}: {e:#}", ck.display()));
        }
        let latest = checkpoint::latest(&dir).unwrap().unwrap();
        checkpoint::load(&latest, true).unwrap();
    }
    // The model is ~1 MB and saves are fsync'ed, so most kills land inside a save.
    eprintln!("{kills_mid_save} of 6 kills interrupted a save in progress");
}

#[test]
fn a_failed_save_removes_its_partial_files_and_keeps_older_checkpoints() {
    // An I/O error after the tensors are written (here: the tokenizer copy fails, as a full disk
    // would fail a write) must leave no partial checkpoint behind and the older ones untouched.
    let d = tempfile::tempdir().unwrap();
    let parent = d.path().join("ck");
    let good = save(&parent, 5, None);
    let (m, o) = model_and_optim(9);
    let e = checkpoint::save(
        &parent,
        &state(10, None),
        &m,
        &o,
        Some(&d.path().join("missing-tok")),
    )
    .unwrap_err();
    let e = format!("{e:#}");
    assert_mentions(&e, &["saving checkpoint step-000000010 failed", "missing-tok"]);
    let left: Vec<String> = std::fs::read_dir(&parent)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, vec!["step-000000005".to_string()]);
    assert_eq!(checkpoint::latest(&parent).unwrap(), Some(good.clone()));
    checkpoint::load(&good, true).unwrap();
}

/// Flips one byte in the middle of `path`.
fn flip_byte(path: &Path) {
    let mut b = std::fs::read(path).unwrap();
    let i = b.len() / 2;
    b[i] ^= 0x20;
    std::fs::write(path, b).unwrap();
}

#[test]
fn checksums_name_each_damaged_file_and_old_checkpoints_load_unverified() {
    let d = tempfile::tempdir().unwrap();
    let parent = d.path().join("ck");
    let dir = save(&parent, 3, None);
    assert!(checkpoint::load(&dir, true).unwrap().verified);
    assert!(checkpoint::verify(&dir).unwrap());
    for file in [
        "model.safetensors",
        "optimizer.safetensors",
        "state.json",
        "checksums.json",
    ] {
        for (how, damage) in [
            ("flipped", flip_byte as fn(&Path)),
            ("truncated", |p: &Path| {
                let b = std::fs::read(p).unwrap();
                std::fs::write(p, &b[..b.len() - 3]).unwrap();
            }),
        ] {
            let dir = save(&parent, 3, None);
            damage(&dir.join(file));
            let e = load_err(&dir);
            let named = format!("{}: damaged", dir.join(file).display());
            assert!(
                e.contains(&named) && e.contains("is damaged"),
                "{file} {how}: {e}"
            );
            assert!(checkpoint::verify(&dir).is_err());
        }
    }
    // A bit flip inside a tensor's data (which parses fine) is caught too.
    let dir = save(&parent, 3, None);
    let p = dir.join("model.safetensors");
    let mut b = std::fs::read(&p).unwrap();
    let n = b.len();
    b[n - 5] ^= 0x01;
    std::fs::write(&p, b).unwrap();
    assert!(load_err(&dir).contains("model.safetensors: damaged"));
    // A checkpoint without checksums (saved before they existed) loads, marked unverified.
    let dir = save(&parent, 3, None);
    std::fs::remove_file(dir.join("checksums.json")).unwrap();
    let ck = checkpoint::load(&dir, true).unwrap();
    assert!(!ck.verified);
    assert!(!checkpoint::verify(&dir).unwrap());
}
