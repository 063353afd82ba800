//! The quickstart pipeline: the README's first command. On a fresh clone, with no downloads, it
//! makes the built-in story corpus (or takes the user's text), splits it into train/valid, trains a
//! byte-level BPE tokenizer, encodes both splits to `.npy`, trains a small model for a few minutes,
//! evaluates it against the corpus's unigram entropy, and prints sample generations. Everything it
//! makes stays in the run directory:
//!
//! ```text
//! runs/quickstart/
//!   corpus/train.txt, corpus/valid.txt   the split text
//!   tokenizer/                            vocab.json, merges.txt, tokenizer.json
//!   data/train.npy, data/valid.npy        token ids
//!   config.toml                           the training config (rerun with `ferrolm train --config`)
//!   metrics.jsonl, loss.svg               the training log and its plot
//!   checkpoints/step-…/                   checkpoints (`ferrolm generate --checkpoint …`)
//!   summary.json, samples.txt             what the run printed at the end
//! ```

use crate::config::TrainConfig;
use anyhow::{bail, Context, Result};
use ferrolm_nn::ModelConfig;
use std::path::Path;
use std::time::Instant;

mod corpus;
mod options;
pub mod stats;
pub mod stories;

pub use corpus::split_train_valid;
use corpus::{load_corpus, prompts, write};
pub use options::{Options, Report, Sample};

/// Elapsed seconds per stage, printed at the end.
struct Stages {
    started: Instant,
    seconds: Vec<(String, f64)>,
}

impl Stages {
    fn done(&mut self, name: &str) {
        self.seconds
            .push((name.to_string(), self.started.elapsed().as_secs_f64()));
        self.started = Instant::now();
    }
}

/// Everything a quickstart run directory holds.
const RUN_DIR_ENTRIES: &[&str] = &[
    "corpus",
    "tokenizer",
    "data",
    "checkpoints",
    "config.toml",
    "metrics.jsonl",
    "loss.svg",
    SUMMARY_FILE,
    "samples.txt",
    ".lock",
];

/// Refuses to overwrite a non-empty directory unless `force`, and even then only one that holds
/// nothing but what a quickstart makes: nothing the user made is ever deleted.
fn prepare_run_dir(dir: &Path, force: bool) -> Result<()> {
    if dir.exists() {
        let names: Vec<String> = std::fs::read_dir(dir)
            .with_context(|| format!("cannot read {}", dir.display()))?
            .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect::<std::io::Result<_>>()
            .with_context(|| format!("cannot read {}", dir.display()))?;
        if !names.is_empty() {
            if !force {
                bail!(
                    "the run directory {} already exists and is not empty (an earlier quickstart?); pass \
                     --force to replace it, or --out to choose another directory (nothing was changed)",
                    dir.display()
                );
            }
            if let Some(other) = names.iter().find(|n| !RUN_DIR_ENTRIES.contains(&n.as_str())) {
                bail!(
                    "--force replaces only an earlier quickstart run, and {} does not look like one (it holds \
                     {other:?}); choose another --out (nothing was changed)",
                    dir.display()
                );
            }
            // Never remove a run that a trainer is writing now.
            drop(crate::run_lock::lock(dir)?);
            std::fs::remove_dir_all(dir).with_context(|| format!("cannot remove {}", dir.display()))?;
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))
}

/// The summary file in the run directory.
pub const SUMMARY_FILE: &str = "summary.json";

/// Runs the whole pipeline (see the module docs); prints each stage on stderr as it goes and
/// returns the summary, also written to `summary.json` and `samples.txt` in the run directory.
/// Fails (after writing them) when the validation loss is not below the unigram entropy: the
/// quickstart's claim is that the model learns.
/// `force`: replace an earlier quickstart in `opts.out`.
pub fn run(opts: &Options, force: bool) -> Result<Report> {
    let dir = &opts.out;
    prepare_run_dir(dir, force)?;
    let mut stages = Stages {
        started: Instant::now(),
        seconds: Vec::new(),
    };
    let say = |msg: String| eprintln!("quickstart: {msg}");

    // 1. The corpus and its split.
    let (text, corpus_name) = load_corpus(opts)?;
    let (train_text, valid_text) =
        split_train_valid(&text, opts.valid_fraction).with_context(|| format!("splitting {corpus_name}"))?;
    drop(text);
    let (train_txt, valid_txt) = (dir.join("corpus/train.txt"), dir.join("corpus/valid.txt"));
    write(&train_txt, &train_text)?;
    write(&valid_txt, &valid_text)?;
    say(format!(
        "corpus: {corpus_name}, {} bytes train, {} bytes valid -> {}",
        train_text.len(),
        valid_text.len(),
        dir.join("corpus").display()
    ));
    stages.done("corpus");

    // 2. The tokenizer, trained on the training split only.
    let tok_dir = dir.join("tokenizer");
    let specials = vec![stories::END_OF_TEXT.to_string()];
    let tok = ferrolm_tokenizer::train_tokenizer(
        &[&train_txt],
        opts.vocab_size,
        &specials,
        &ferrolm_tokenizer::TrainOptions {
            progress: opts.progress,
        },
    )
    .with_context(|| format!("training the tokenizer on {}", train_txt.display()))?;
    tok.save(&tok_dir)
        .with_context(|| format!("saving the tokenizer to {}", tok_dir.display()))?;
    let eot = tok.token_to_id(stories::END_OF_TEXT);
    say(format!(
        "tokenizer: vocab {} ({} merges) -> {}",
        tok.vocab_size(),
        tok.num_merges(),
        tok_dir.display()
    ));
    stages.done("tokenizer");

    // 3. Both splits to token files.
    let (train_npy, valid_npy) = (dir.join("data/train.npy"), dir.join("data/valid.npy"));
    std::fs::create_dir_all(dir.join("data"))?;
    let ts = ferrolm_tokenizer::encode_file_to_npy(&tok, &train_txt, &train_npy)?;
    let vs = ferrolm_tokenizer::encode_file_to_npy(&tok, &valid_txt, &valid_npy)?;
    let train_ids = crate::data::TokenFile::open(&train_npy)?.to_vec();
    let valid_ids = crate::data::TokenFile::open(&valid_npy)?.to_vec();
    let unigram_entropy = stats::unigram_entropy(&train_ids);
    let unigram_valid_loss = stats::unigram_cross_entropy(&train_ids, &valid_ids, tok.vocab_size());
    drop((train_ids, valid_ids));
    say(format!(
        "encoded: {} train + {} valid tokens ({:.2} bytes/token); unigram entropy {:.3} nats/token",
        ts.tokens,
        vs.tokens,
        ts.compression(),
        unigram_entropy
    ));
    stages.done("encode");

    // 4. Training.
    let mut cfg = train_config(opts, tok.vocab_size(), &train_npy, &valid_npy, &tok_dir);
    let seq = cfg.seq_len();
    let min_tokens = (seq + 1) as u64;
    if vs.tokens < min_tokens || ts.tokens < min_tokens {
        bail!(
            "the corpus is too small: {} train and {} validation tokens, but one window of context {} \
             needs {} tokens in each; give a larger --input",
            ts.tokens,
            vs.tokens,
            seq,
            min_tokens
        );
    }
    if let Some(minutes) = opts.minutes {
        let per_step = seconds_per_step(&cfg)?;
        // Leave a tenth of the budget for the evaluations and checkpoints.
        let steps = ((0.9 * minutes * 60.0 / per_step) as u64).max(10);
        say(format!(
            "--minutes {minutes}: {per_step:.3} s/step measured, so {steps} steps (instead of {})",
            opts.steps
        ));
        let timed = Options {
            steps,
            eval_every: opts.eval_every.min(steps),
            ..opts.clone()
        };
        cfg = train_config(&timed, tok.vocab_size(), &train_npy, &valid_npy, &tok_dir);
    }
    let valid_file = crate::data::TokenFile::open(&valid_npy)?;
    let eval_windows = (opts.eval_batches > 0).then_some(opts.eval_batches * opts.batch_size);
    let init = ferrolm_nn::model::Model::new(cfg.model.clone(), cfg.run.seed)?;
    let initial = crate::eval::evaluate(&init, &valid_file, opts.batch_size, seq, eval_windows)?;
    let num_params = init.params.len();
    drop(init);
    say(format!(
        "training {} parameters for {} steps of {}x{} tokens (val loss at init {:.3})",
        num_params, cfg.run.max_steps, opts.batch_size, seq, initial.loss
    ));
    let summary = crate::trainer::train(
        &cfg,
        &crate::trainer::TrainOptions {
            progress: opts.progress,
            verbose: true,
            handle_sigint: true,
            ..Default::default()
        },
    )?;
    if summary.interrupted {
        bail!(
            "training was interrupted at step {}; the checkpoint is in {} (continue with `ferrolm train \
             --config {} --resume`)",
            summary.progress.step,
            crate::trainer::checkpoints_dir(dir).display(),
            dir.join("config.toml").display()
        );
    }
    stages.done("train");

    // 5. Evaluation on the whole validation split, and samples.
    let ckpt = summary
        .checkpoint
        .clone()
        .context("the training run wrote no checkpoint")?;
    let model = crate::checkpoint::load_model(&ckpt)?.model;
    let fin = crate::eval::evaluate(&model, &valid_file, opts.batch_size, seq, None)?;
    let mut samples = Vec::new();
    for (i, prompt) in prompts(opts, &valid_text).into_iter().enumerate() {
        let ids = tok.encode(&prompt);
        let gen = crate::generate::generate_tokens(
            &model,
            &ids,
            &crate::generate::GenerateConfig {
                max_tokens: opts.sample_tokens,
                temperature: opts.temperature,
                top_p: opts.top_p,
                seed: opts.seed + i as u64,
            },
            eot,
            &mut |_| Ok(()),
        )?;
        let text = tok.decode(&gen.tokens)?;
        samples.push(Sample { prompt, text });
    }
    stages.done("eval+samples");

    let report = Report {
        run_dir: dir.clone(),
        corpus: corpus_name,
        train_bytes: train_text.len(),
        valid_bytes: valid_text.len(),
        vocab_size: tok.vocab_size(),
        train_tokens: ts.tokens as usize,
        valid_tokens: vs.tokens as usize,
        unigram_entropy,
        unigram_valid_loss,
        num_params,
        steps: summary.progress.step,
        initial_val_loss: Some(initial.loss),
        val_loss: fin.loss,
        perplexity: fin.perplexity,
        final_train_loss: summary.progress.train_loss.map(f64::from),
        tokens_per_s: Some(summary.progress.tokens as f64 / summary.progress.wall_seconds.max(1e-9)),
        seconds: stages.seconds,
        checkpoint: ckpt,
        samples,
    };
    write(&dir.join(SUMMARY_FILE), &serde_json::to_string_pretty(&report)?)?;
    let samples_txt: String = report
        .samples
        .iter()
        .map(|s| format!("{}{}\n{}\n", s.prompt, s.text, stories::END_OF_TEXT))
        .collect();
    write(&dir.join("samples.txt"), &samples_txt)?;
    if report.val_loss >= report.unigram_entropy {
        bail!(
            "the model did not learn enough: validation loss {:.3} is not below the corpus's unigram entropy \
             {:.3} nats/token (train longer with --steps, or give more text); the run is in {}",
            report.val_loss,
            report.unigram_entropy,
            dir.display()
        );
    }
    Ok(report)
}

/// Wall-clock seconds of one training step of `cfg` (forward/backward on a batch of its training
/// data, clipping, AdamW), the median of three after one warm-up step.
pub fn seconds_per_step(cfg: &TrainConfig) -> Result<f64> {
    let tokens = crate::data::TokenFile::open(&cfg.data.train)?;
    let seq = cfg.seq_len();
    let n = cfg.data.batch_size * seq;
    let mut model = ferrolm_nn::model::Model::new(cfg.model.clone(), cfg.run.seed)?;
    let mut acts = ferrolm_nn::model::Activations::new(&cfg.model, cfg.data.batch_size, seq);
    let mut optim = ferrolm_nn::optim::AdamW::new(cfg.adamw(), model.params.len());
    let mut sampler = crate::data::BatchSampler::new(cfg.data.sampling, ferrolm_nn::Rng::new(cfg.data.seed));
    let (mut inputs, mut targets) = (vec![0u32; n], vec![0u32; n]);
    let mut times = Vec::new();
    model.zero_grads();
    for _ in 0..4 {
        let t = Instant::now();
        for _ in 0..cfg.data.grad_accum {
            sampler.fill(&tokens, seq, &mut inputs, &mut targets)?;
            model.forward_backward(&mut acts, &inputs, &targets)?;
        }
        let scale = ferrolm_nn::clip::clip_scale(ferrolm_nn::clip::grad_norm(&model.grads), 1.0);
        optim.step_scaled_and_zero_grads(&mut model.params, &mut model.grads, 1e-4, scale);
        times.push(t.elapsed().as_secs_f64());
    }
    let mut timed = times[1..].to_vec();
    timed.sort_by(f64::total_cmp);
    Ok(timed[1])
}

/// The training config of the quickstart (written to `config.toml` by the trainer).
pub fn train_config(
    opts: &Options,
    vocab_size: usize,
    train: &Path,
    valid: &Path,
    tokenizer: &Path,
) -> TrainConfig {
    let mut cfg = TrainConfig::default();
    cfg.run.dir = opts.out.clone();
    cfg.run.max_steps = opts.steps;
    cfg.run.seed = opts.seed;
    cfg.model = ModelConfig {
        vocab_size,
        ..opts.model.clone()
    };
    cfg.optimizer.lr = opts.lr;
    cfg.schedule.min_lr = opts.min_lr;
    cfg.schedule.warmup_steps = opts.warmup_steps.min(opts.steps);
    cfg.schedule.cosine_steps = 0;
    cfg.data.train = train.to_path_buf();
    cfg.data.valid = valid.to_path_buf();
    cfg.data.tokenizer = tokenizer.to_path_buf();
    cfg.data.batch_size = opts.batch_size;
    cfg.data.grad_accum = 1;
    cfg.data.seq_len = 0;
    cfg.data.seed = opts.seed;
    cfg.eval.every = opts.eval_every;
    cfg.eval.batches = opts.eval_batches;
    cfg.logging.every = 10;
    cfg.logging.progress = opts.progress;
    cfg.logging.plot = true;
    cfg.checkpoint.every = opts.steps.div_ceil(4).max(1);
    cfg.checkpoint.keep_last = 2;
    cfg
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A few-second version of the whole pipeline.
    fn tiny(out: &Path) -> Options {
        Options {
            out: out.to_path_buf(),
            corpus_bytes: 200_000,
            vocab_size: 400,
            model: ModelConfig {
                vocab_size: 400,
                context_length: 32,
                d_model: 48,
                n_layers: 1,
                n_heads: 2,
                d_ff: 96,
                ..ModelConfig::tiny()
            },
            steps: 60,
            batch_size: 8,
            lr: 1e-2,
            min_lr: 1e-3,
            warmup_steps: 5,
            eval_every: 20,
            eval_batches: 4,
            samples: 2,
            sample_tokens: 20,
            progress: false,
            ..Options::quick()
        }
    }

    #[test]
    fn end_to_end_run_leaves_a_complete_run_dir_and_learns() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("qs");
        let r = run(&tiny(&out), false).unwrap();
        for f in [
            "corpus/train.txt",
            "corpus/valid.txt",
            "data/train.npy",
            "data/valid.npy",
            "config.toml",
            "metrics.jsonl",
            "loss.svg",
            SUMMARY_FILE,
            "samples.txt",
        ] {
            assert!(out.join(f).is_file(), "missing {f}");
        }
        assert!(std::fs::read_dir(out.join("tokenizer")).unwrap().count() > 0);
        assert!(r.checkpoint.join(crate::checkpoint::MODEL_FILE).is_file());
        assert_eq!(crate::checkpoint::read_state(&r.checkpoint).unwrap().step, 60);
        // It learned: the loss fell from ~ln(vocab) at the initialization to below the unigram
        // entropy, and the logged training loss went down.
        let l0 = r.initial_val_loss.unwrap();
        assert!((l0 - (r.vocab_size as f64).ln()).abs() < 1.0, "init {l0}");
        assert!(
            r.val_loss < r.unigram_entropy,
            "{} vs unigram {}",
            r.val_loss,
            r.unigram_entropy
        );
        let recs = crate::metrics::read(&out.join("metrics.jsonl")).unwrap();
        // The first line is the evaluation at step 0 (no training loss yet).
        assert_eq!((recs[0].step, recs[0].train_loss), (0, None));
        let first = recs.iter().find(|r| r.train_loss.is_some()).unwrap();
        let last = recs.last().unwrap();
        assert_eq!(last.step, 60);
        assert!(
            last.train_loss.unwrap() < first.train_loss.unwrap() - 1.0,
            "{recs:?}"
        );
        assert!(recs.iter().any(|m| m.val_loss.is_some()));
        assert_eq!(r.samples.len(), 2);
        assert!(r.samples.iter().all(|s| !s.text.is_empty()));
        let summary: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join(SUMMARY_FILE)).unwrap()).unwrap();
        assert_eq!(summary["steps"], 60);
        let shown = r.to_string();
        assert!(
            shown.contains("unigram entropy") && shown.contains("perplexity"),
            "{shown}"
        );

        // Running again into the same directory is refused without --force, and changes nothing.
        let before = std::fs::read(out.join("metrics.jsonl")).unwrap();
        let err = run(&tiny(&out), false).unwrap_err().to_string();
        assert!(err.contains("--force"), "{err}");
        assert_eq!(std::fs::read(out.join("metrics.jsonl")).unwrap(), before);
        // With --force it replaces the earlier run, deterministically.
        let again = run(&tiny(&out), true).unwrap();
        assert_eq!(again.val_loss, r.val_loss);
    }

    #[test]
    fn minutes_budget_sets_the_step_count_from_a_measurement() {
        let tmp = tempfile::tempdir().unwrap();
        let mut o = tiny(&tmp.path().join("m"));
        o.minutes = Some(0.03);
        let r = run(&o, false).unwrap();
        // 0.9 · 1.8 s over a measured step time: at least the floor of 10, and it ran them all.
        assert!(r.steps >= 10, "{}", r.steps);
        let cfg = crate::config::TrainConfig::load(&tmp.path().join("m/config.toml")).unwrap();
        assert_eq!(cfg.run.max_steps, r.steps);
        assert!(seconds_per_step(&cfg).unwrap() > 0.0);
    }

    #[test]
    fn input_file_of_plain_text_is_split_by_lines_and_sampled_from_its_own_words() {
        let tmp = tempfile::tempdir().unwrap();
        // The user's text: stories without separators, so the split goes by lines.
        let text: String = stories::documents(&stories::generate_corpus(9, 200_000)).join("\n");
        let input = tmp.path().join("mine.txt");
        std::fs::write(&input, &text).unwrap();
        let mut o = tiny(&tmp.path().join("run"));
        o.input = Some(input.clone());
        let r = run(&o, false).unwrap();
        assert_eq!(r.corpus, input.display().to_string());
        assert_eq!(r.train_bytes + r.valid_bytes, text.len());
        assert!(r.val_loss < r.unigram_entropy);
        // Prompts: the first words of the validation text, then none.
        let valid = std::fs::read_to_string(tmp.path().join("run/corpus/valid.txt")).unwrap();
        let p = &r.samples[0].prompt;
        assert!(
            valid.trim_start().starts_with(p.as_str()) && p.split_whitespace().count() == 6,
            "{p:?}"
        );
        assert_eq!(r.samples[1].prompt, "");
    }

    #[test]
    fn force_never_deletes_a_directory_that_is_not_a_quickstart_run() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("precious.txt"), "keep me").unwrap();
        let err = run(&tiny(tmp.path()), true).unwrap_err().to_string();
        assert!(err.contains("does not look like"), "{err}");
        assert_eq!(
            std::fs::read_to_string(tmp.path().join("precious.txt")).unwrap(),
            "keep me"
        );
    }

    #[test]
    fn bad_input_files_are_clear_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let bin = tmp.path().join("bin.txt");
        std::fs::write(&bin, b"hello\nworld \xff\xfe\n").unwrap();
        let mut o = tiny(&tmp.path().join("a"));
        o.input = Some(bin);
        let err = format!("{:#}", run(&o, false).unwrap_err());
        assert!(err.contains("bin.txt") && err.contains("offset 12"), "{err}");
        let small = tmp.path().join("small.txt");
        std::fs::write(&small, "one line\nanother line\n").unwrap();
        let mut o = tiny(&tmp.path().join("b"));
        o.input = Some(small);
        let err = format!("{:#}", run(&o, false).unwrap_err());
        assert!(err.contains("too small"), "{err}");
        o.input = Some(tmp.path().join("missing.txt"));
        o.out = tmp.path().join("c");
        let err = format!("{:#}", run(&o, false).unwrap_err());
        assert!(err.contains("missing.txt"), "{err}");
    }
}
