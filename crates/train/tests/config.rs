//! The TOML run config: defaults round-trip, partial files, presets, overrides and their errors,
//! the commented TOML, range checks naming key and range, error lines, and what `resolve` derives.

use ferrolm_nn::ModelConfig;
use ferrolm_train::config::is_fixed_on_resume;
use ferrolm_train::data::Sampling;
use ferrolm_train::TrainConfig;

/// What `preset = "small"` with `n_layers = 2` gives (vocab_size 0: taken from the tokenizer).
fn small_with_2_layers() -> ModelConfig {
    ModelConfig {
        n_layers: 2,
        vocab_size: 0,
        ..ModelConfig::small()
    }
}

#[test]
fn printed_defaults_parse_back_to_the_defaults() {
    let text = TrainConfig::default().to_toml();
    for section in [
        "[run]",
        "[model]",
        "[optimizer]",
        "[schedule]",
        "[data]",
        "[eval]",
        "[logging]",
        "[checkpoint]",
    ] {
        assert!(text.contains(section), "{section} missing from\n{text}");
    }
    // Human-readable numbers (no f32 → f64 noise like 0.0010000000474974513).
    assert!(text.contains("lr = 0.001\n"), "{text}");
    assert_eq!(TrainConfig::from_toml(&text).unwrap(), TrainConfig::default());
    TrainConfig::default().validate().unwrap();
}

#[test]
fn partial_files_take_defaults_and_presets_and_unknown_keys_are_errors() {
    let c = TrainConfig::from_toml("[model]\npreset = \"small\"\nn_layers = 2\n[optimizer]\nlr = 3e-4\n")
        .unwrap();
    assert_eq!(c.model, small_with_2_layers());
    assert_eq!(c.optimizer.lr, 3e-4);
    assert_eq!(c.data, TrainConfig::default().data);

    let e = format!(
        "{:#}",
        TrainConfig::from_toml("[optimizer]\nlearning_rate = 1\n").unwrap_err()
    );
    assert!(e.contains("learning_rate"), "{e}");
    let e = format!(
        "{:#}",
        TrainConfig::from_toml("[model]\npreset = \"huge\"\n").unwrap_err()
    );
    assert!(e.contains("huge"), "{e}");
    let e = format!(
        "{:#}",
        TrainConfig::from_toml("[data]\nbatch_size = \"many\"\n").unwrap_err()
    );
    assert!(e.contains("batch_size") || e.contains("invalid type"), "{e}");
    assert!(TrainConfig::from_toml("this is not toml").is_err());

    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("c.toml");
    std::fs::write(&p, "[run]\nmax_steps = 7\n").unwrap();
    assert_eq!(TrainConfig::load(&p).unwrap().run.max_steps, 7);
    std::fs::write(&p, "[run]\nmax_step = 7\n").unwrap();
    let e = format!("{:#}", TrainConfig::load(&p).unwrap_err());
    assert!(e.contains("c.toml") && e.contains("max_step"), "{e}");
}

#[test]
fn set_overrides_typed_values_and_rejects_unknown_keys() {
    let mut c = TrainConfig::default();
    c.apply_overrides(&[
        "optimizer.lr=3e-4",
        "optimizer.weight_decay=0",
        "data.batch_size=8",
        "data.sampling=sequential",
        "data.train=/tmp/x.npy",
        "run.dir=\"runs/a b\"",
        "model.preset=small",
        "model.n_layers=2",
        "logging.progress=false",
    ])
    .unwrap();
    assert_eq!(c.optimizer.lr, 3e-4);
    assert_eq!(c.optimizer.weight_decay, 0.0);
    assert_eq!(c.data.batch_size, 8);
    assert_eq!(c.data.sampling, Sampling::Sequential);
    assert_eq!(c.data.train.to_str(), Some("/tmp/x.npy"));
    assert_eq!(c.run.dir.to_str(), Some("runs/a b"));
    assert_eq!(c.model, small_with_2_layers());
    assert!(!c.logging.progress);

    for (bad, needle) in [
        ("optimizer.lrr=1", "optimizer.lrr"),
        ("optim.lr=1", "optim"),
        ("lr=1", "section.key"),
        ("optimizer.lr", "section.key=value"),
        ("data.batch_size=-3", "data.batch_size"),
        ("data.sampling=shuffled", "data.sampling"),
    ] {
        let e = format!("{:#}", c.clone().set(bad).unwrap_err());
        assert!(e.contains(needle), "{bad}: {e}");
    }
    c.data.batch_size = 0;
    assert!(c.validate().is_err());
}

#[test]
fn diff_lists_changed_keys_and_which_fix_a_run() {
    let a = TrainConfig::default();
    let mut b = a.clone();
    b.run.max_steps = 10;
    b.model.d_model = 128;
    let d = a.diff(&b);
    let keys: Vec<&str> = d.iter().map(|(k, _, _)| k.as_str()).collect();
    assert_eq!(keys, vec!["model.d_model", "run.max_steps"]);
    assert!(is_fixed_on_resume("model.d_model"));
    assert!(is_fixed_on_resume("optimizer.lr"));
    assert!(is_fixed_on_resume("data.batch_size"));
    assert!(!is_fixed_on_resume("run.max_steps"));
    assert!(!is_fixed_on_resume("data.train"));
    assert!(!is_fixed_on_resume("checkpoint.every"));
}

#[test]
fn printed_config_explains_every_key_including_what_zero_means() {
    let text = TrainConfig::default().to_toml();
    let lines: Vec<&str> = text.lines().collect();
    let mut keys = 0;
    for (i, line) in lines.iter().enumerate() {
        if line.contains(" = ") && !line.starts_with('#') {
            keys += 1;
            assert!(
                i > 0 && lines[i - 1].starts_with("# ") && lines[i - 1].len() > 10,
                "no explanation above {line:?}"
            );
        }
        if line.starts_with('[') {
            assert!(lines[i - 1].starts_with("# "), "no explanation above {line:?}");
        }
    }
    assert!(keys >= 40, "{keys} keys");
    let above = |key: &str| {
        let i = lines
            .iter()
            .position(|l| l.starts_with(&format!("{key} = ")))
            .unwrap();
        lines[i - 1].to_string()
    };
    assert!(
        above("cosine_steps").contains("0: run.max_steps"),
        "{}",
        above("cosine_steps")
    );
    assert!(
        above("seq_len").contains("0: model.context_length"),
        "{}",
        above("seq_len")
    );
    assert!(
        above("vocab_size").contains("0: the tokenizer's"),
        "{}",
        above("vocab_size")
    );
    assert_eq!(TrainConfig::from_toml(&text).unwrap(), TrainConfig::default());
}

#[test]
fn every_optimizer_and_schedule_field_is_range_checked_naming_field_and_range() {
    type Tweak = fn(&mut TrainConfig);
    let cases: [(Tweak, &str, &str); 10] = [
        (|c| c.optimizer.lr = -1.0, "optimizer.lr = -1", "[0, inf)"),
        (|c| c.optimizer.lr = f64::NAN, "optimizer.lr = NaN", "[0, inf)"),
        (|c| c.optimizer.beta1 = 1.5, "optimizer.beta1 = 1.5", "[0, 1)"),
        (|c| c.optimizer.beta1 = -0.1, "optimizer.beta1 = -0.1", "[0, 1)"),
        (|c| c.optimizer.beta2 = 1.0, "optimizer.beta2 = 1", "[0, 1)"),
        (
            |c| c.optimizer.eps = -1e-8,
            "optimizer.eps = -0.00000001",
            "(0, inf)",
        ),
        (
            |c| c.optimizer.weight_decay = -0.1,
            "optimizer.weight_decay = -0.1",
            "[0, inf)",
        ),
        (
            |c| c.optimizer.grad_clip = -1.0,
            "optimizer.grad_clip = -1",
            "[0, inf)",
        ),
        (
            |c| c.schedule.min_lr = -1e-4,
            "schedule.min_lr = -0.0001",
            "[0, optimizer.lr = 0.001]",
        ),
        (
            |c| c.schedule.min_lr = 0.01,
            "schedule.min_lr = 0.01",
            "[0, optimizer.lr = 0.001]",
        ),
    ];
    for (tweak, key, range) in cases {
        let mut c = TrainConfig::default();
        tweak(&mut c);
        let e = format!("{:#}", c.validate().unwrap_err());
        assert!(e.contains(key) && e.contains(range), "{key}: {e}");
    }
    let mut c = TrainConfig::default();
    c.optimizer.beta1 = 0.0;
    c.optimizer.grad_clip = 0.0;
    c.optimizer.weight_decay = 0.0;
    c.schedule.min_lr = c.optimizer.lr;
    c.validate().unwrap();
}

#[test]
fn config_file_errors_name_the_line_and_key() {
    let cases = [
        (
            "[run]\nmax_steps = 7\n\n[optimizer]\nbeta1 = 1.5\n",
            "line 5",
            "optimizer.beta1 = 1.5",
        ),
        ("[optimizer]\nlr = 1e-3\neps = -1e-8\n", "line 3", "optimizer.eps"),
        (
            "[optimizer]\nlr = 1e-3\nlearning_rate = 1\n",
            "line 3",
            "unknown key optimizer.learning_rate",
        ),
        ("[data]\nbatch_size = \"many\"\n", "line 2", "data.batch_size"),
        ("[run]\nprecision = \"fp8\"\n", "line 2", "run.precision"),
        ("[optimiser]\nlr = 1\n", "line 1", "unknown section [optimiser]"),
        ("[model]\nn_heads = 7\n", "line 2", "n_heads"),
        ("[run]\nmax_steps = = 7\n", "line 2", "TOML"),
    ];
    for (text, line, needle) in cases {
        let e = format!("{:#}", TrainConfig::from_toml(text).unwrap_err());
        assert!(e.contains(line) && e.contains(needle), "{text:?}: {e}");
    }
}

#[test]
fn eval_every_zero_gives_about_twenty_evaluations() {
    let mut c = TrainConfig::default();
    c.run.max_steps = 1000;
    assert_eq!(c.eval_every(), 50);
    c.run.max_steps = 7;
    assert_eq!(c.eval_every(), 1);
    c.eval.every = 300;
    assert_eq!(c.eval_every(), 300);
}

fn save_tokenizer(dir: &std::path::Path, vocab: usize) -> usize {
    let specials = vec!["<|endoftext|>".to_string()];
    let text = "the cat sat on the mat. the dog ran to the cat. they were happy. ".repeat(50);
    let (v, m) = ferrolm_tokenizer::train_bpe_from_str(&text, vocab, &specials).unwrap();
    let tok = ferrolm_tokenizer::Tokenizer::new(v, &m, &specials).unwrap();
    tok.save(dir).unwrap();
    tok.vocab_size()
}

#[test]
fn vocab_size_comes_from_the_tokenizer_unless_set_and_a_smaller_one_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let n = save_tokenizer(&d.path().join("tok"), 290);
    let mut c = TrainConfig::default();
    assert_eq!(c.model.vocab_size, 0, "unset by default");
    // No tokenizer, no size: an error that says what to give.
    let e = format!("{:#}", c.clone().resolve().unwrap_err());
    assert!(e.contains("model.vocab_size") && e.contains("--tokenizer"), "{e}");

    c.data.tokenizer = d.path().join("tok");
    let notes = c.resolve().unwrap();
    assert_eq!(c.model.vocab_size, n);
    assert!(notes.iter().any(|n| n.contains("the tokenizer's")), "{notes:?}");
    // No validation file: said once, among the notes.
    assert_eq!(
        notes.iter().filter(|n| n.contains("without validation")).count(),
        1,
        "{notes:?}"
    );
    // Idempotent: a resolved config resolves to itself.
    let again = c.clone();
    c.resolve().unwrap();
    assert_eq!(c, again);

    let mut small = c.clone();
    small.model.vocab_size = n - 1;
    let e = format!("{:#}", small.resolve().unwrap_err());
    assert!(
        e.contains(&format!("model.vocab_size {}", n - 1)) && e.contains(&n.to_string()),
        "{e}"
    );

    let mut large = c.clone();
    large.model.vocab_size = n + 100;
    let notes = large.resolve().unwrap();
    assert_eq!(large.model.vocab_size, n + 100);
    assert!(
        notes
            .iter()
            .any(|m| m.starts_with("warning:") && m.contains("100 embedding rows")),
        "{notes:?}"
    );

    // A preset leaves the size to the tokenizer too.
    let mut p = TrainConfig::default();
    p.set("model.preset=small").unwrap();
    assert_eq!(p.model.vocab_size, 0);
}
