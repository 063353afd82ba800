//! The TOML run config: defaults round-trip, partial files, presets, overrides and their errors.

use ferrolm_nn::ModelConfig;
use ferrolm_train::config::is_fixed_on_resume;
use ferrolm_train::data::Sampling;
use ferrolm_train::TrainConfig;

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
    assert_eq!(
        c.model,
        ModelConfig {
            n_layers: 2,
            ..ModelConfig::small()
        }
    );
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
    assert_eq!(
        c.model,
        ModelConfig {
            n_layers: 2,
            ..ModelConfig::small()
        }
    );
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
