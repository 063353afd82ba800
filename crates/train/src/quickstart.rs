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
use crate::stories;
use anyhow::{bail, Context, Result};
use ferrolm_nn::ModelConfig;
use serde::Serialize;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Everything the quickstart does, with the defaults of [`Options::standard`] (a few minutes on 2
/// cores) and [`Options::quick`] (the CI version, well under a minute of training).
#[derive(Clone, Debug)]
pub struct Options {
    /// The user's text instead of the built-in stories (documents separated by `<|endoftext|>` lines
    /// if it has them; otherwise it is split by lines).
    pub input: Option<PathBuf>,
    /// The run directory.
    pub out: PathBuf,
    /// Seed of the corpus, the initialization, the batches and the samples.
    pub seed: u64,
    /// Size of the generated corpus, bytes.
    pub corpus_bytes: usize,
    /// Fraction of the documents (or lines) kept for validation.
    pub valid_fraction: f64,
    /// Tokenizer vocabulary size (bytes + merges + `<|endoftext|>`).
    pub vocab_size: usize,
    /// The model; `vocab_size` is set from the tokenizer.
    pub model: ModelConfig,
    pub steps: u64,
    /// Instead of `steps`: as many steps as fit in about this many minutes of training, measured on
    /// a few steps before the run (the schedule then decays over the whole budget).
    pub minutes: Option<f64>,
    pub batch_size: usize,
    pub lr: f64,
    pub min_lr: f64,
    pub warmup_steps: u64,
    /// Evaluate every N steps (and at the end).
    pub eval_every: u64,
    /// Validation batches per evaluation (0: the whole validation file).
    pub eval_batches: usize,
    /// Number of sample generations printed at the end.
    pub samples: usize,
    /// Maximum new tokens per sample.
    pub sample_tokens: usize,
    pub temperature: f32,
    pub top_p: f32,
    /// Progress bars on a terminal.
    pub progress: bool,
}

impl Options {
    /// The default run: the 4 MB story corpus, vocab up to 2048 (the stories need about 1500),
    /// a 4-layer d_model-192 model with context 256 (whole stories), 1000 steps of 8×256 tokens
    /// (2 M tokens, about two passes). A few minutes on 2 cores (7 CPU-minutes); validation loss
    /// 0.346 nats/token against a unigram entropy of 5.304.
    pub fn standard() -> Options {
        Options {
            input: None,
            out: PathBuf::from("runs/quickstart"),
            seed: 1,
            corpus_bytes: stories::DEFAULT_CORPUS_BYTES,
            valid_fraction: 0.05,
            vocab_size: 2048,
            model: ModelConfig {
                vocab_size: 2048,
                context_length: 256,
                d_model: 192,
                n_layers: 4,
                n_heads: 6,
                d_ff: 512,
                ..ModelConfig::tiny()
            },
            steps: 1000,
            minutes: None,
            batch_size: 8,
            lr: 3e-3,
            min_lr: 3e-4,
            warmup_steps: 50,
            eval_every: 200,
            eval_batches: 16,
            samples: 3,
            sample_tokens: 200,
            temperature: 0.8,
            top_p: 0.95,
            progress: true,
        }
    }

    /// The shortened run for CI: a 1 MB corpus, vocab 1024, a 2-layer d_model-128 model, 300 steps
    /// of 16×128 tokens. Under a minute on 2 cores; validation loss 0.69 against a unigram
    /// entropy of 5.47.
    pub fn quick() -> Options {
        let s = Options::standard();
        Options {
            corpus_bytes: 1_000_000,
            vocab_size: 1024,
            model: ModelConfig {
                vocab_size: 1024,
                context_length: 128,
                d_model: 128,
                n_layers: 2,
                n_heads: 4,
                d_ff: 384,
                ..s.model
            },
            steps: 300,
            batch_size: 16,
            warmup_steps: 30,
            eval_every: 100,
            eval_batches: 8,
            samples: 2,
            sample_tokens: 120,
            ..s
        }
    }
}

/// One sample generation.
#[derive(Clone, Debug, Serialize)]
pub struct Sample {
    pub prompt: String,
    pub text: String,
}

/// What the quickstart measured; `Display` prints the closing summary.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub run_dir: PathBuf,
    /// "built-in stories (seed N)" or the input file.
    pub corpus: String,
    pub train_bytes: usize,
    pub valid_bytes: usize,
    pub vocab_size: usize,
    pub train_tokens: usize,
    pub valid_tokens: usize,
    /// Entropy of the training split's token frequencies, nats/token.
    pub unigram_entropy: f64,
    /// Loss of the best context-free model (train frequencies, add-one smoothing) on the
    /// validation split, nats/token.
    pub unigram_valid_loss: f64,
    pub num_params: usize,
    pub steps: u64,
    /// Validation loss before training (the initialization), nats/token, if evaluated.
    pub initial_val_loss: Option<f64>,
    /// Validation loss at the end, nats/token.
    pub val_loss: f64,
    pub perplexity: f64,
    pub final_train_loss: Option<f64>,
    pub tokens_per_s: Option<f64>,
    /// Seconds per stage: corpus, tokenizer, encode, train, samples.
    pub seconds: Vec<(String, f64)>,
    pub checkpoint: PathBuf,
    pub samples: Vec<Sample>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "== quickstart summary ({})", self.run_dir.display())?;
        writeln!(
            f,
            "corpus       {}: {} train + {} valid bytes",
            self.corpus, self.train_bytes, self.valid_bytes
        )?;
        writeln!(
            f,
            "tokenizer    vocab {}: {} train + {} valid tokens ({:.2} bytes/token)",
            self.vocab_size,
            self.train_tokens,
            self.valid_tokens,
            self.train_bytes as f64 / self.train_tokens.max(1) as f64
        )?;
        writeln!(
            f,
            "model        {} parameters, {} steps",
            self.num_params, self.steps
        )?;
        writeln!(
            f,
            "baseline     unigram entropy {:.3} nats/token (a context-free model scores {:.3} on valid)",
            self.unigram_entropy, self.unigram_valid_loss
        )?;
        if let Some(l0) = self.initial_val_loss {
            writeln!(
                f,
                "val loss     {l0:.3} at step 0 (ln vocab = {:.3})",
                (self.vocab_size as f64).ln()
            )?;
        }
        writeln!(
            f,
            "val loss     {:.3} nats/token at the end, perplexity {:.2}: {:.3} nats ({:.0}%) below the \
             unigram entropy",
            self.val_loss,
            self.perplexity,
            self.unigram_entropy - self.val_loss,
            100.0 * (1.0 - self.val_loss / self.unigram_entropy)
        )?;
        let times: Vec<String> = self.seconds.iter().map(|(k, s)| format!("{k} {s:.2}s")).collect();
        write!(f, "time         {}", times.join(", "))?;
        if let Some(tps) = self.tokens_per_s {
            write!(f, " ({tps:.0} tokens/s training)")?;
        }
        writeln!(f)?;
        writeln!(f, "checkpoint   {}", self.checkpoint.display())?;
        for (i, s) in self.samples.iter().enumerate() {
            if s.prompt.is_empty() {
                writeln!(
                    f,
                    "\n-- sample {} (no prompt: from the start of a document)",
                    i + 1
                )?;
            } else {
                writeln!(f, "\n-- sample {} (prompt {:?})", i + 1, s.prompt)?;
            }
            // Without a prompt the text starts after the document separator's newline.
            let text = if s.prompt.is_empty() {
                s.text.trim_start()
            } else {
                &s.text
            };
            writeln!(f, "{}{}", s.prompt, text)?;
        }
        Ok(())
    }
}

/// Splits `text` into (train, valid). Text with `<|endoftext|>` separators is split by documents:
/// the last `valid_fraction` of them (at least one) go to valid, each split written back as
/// documents followed by a separator line. Other text is cut at the line boundary nearest to
/// `1 - valid_fraction` of its length. Errors when either part would be empty.
pub fn split_train_valid(text: &str, valid_fraction: f64) -> Result<(String, String)> {
    if !(0.0 < valid_fraction && valid_fraction < 1.0) {
        bail!("the validation fraction must be in (0, 1), got {valid_fraction}");
    }
    let docs = stories::documents(text);
    if text.contains(stories::END_OF_TEXT) && docs.len() >= 2 {
        let n_valid = ((docs.len() as f64 * valid_fraction).round() as usize).clamp(1, docs.len() - 1);
        let join = |ds: &[&str]| {
            let mut s = String::new();
            for d in ds {
                s.push_str(d);
                s.push('\n');
                s.push_str(stories::END_OF_TEXT);
                s.push('\n');
            }
            s
        };
        let cut = docs.len() - n_valid;
        return Ok((join(&docs[..cut]), join(&docs[cut..])));
    }
    let target = (text.len() as f64 * (1.0 - valid_fraction)) as usize;
    // The first line boundary at or after the target, else the last one before it.
    let cut = text[target..]
        .find('\n')
        .map(|i| target + i + 1)
        .filter(|&c| c < text.len())
        .or_else(|| text[..target].rfind('\n').map(|i| i + 1))
        .filter(|&c| c > 0);
    match cut {
        Some(c) => Ok((text[..c].to_string(), text[c..].to_string())),
        None => bail!(
            "cannot split the text into train and validation parts: it needs at least two lines or two \
             documents separated by {} lines",
            stories::END_OF_TEXT
        ),
    }
}

/// The text the quickstart trains on: the user's file or the built-in stories.
fn load_corpus(opts: &Options) -> Result<(String, String)> {
    match &opts.input {
        Some(path) => {
            let bytes =
                std::fs::read(path).with_context(|| format!("cannot read --input {}", path.display()))?;
            let text = String::from_utf8(bytes).map_err(|e| {
                anyhow::anyhow!(
                    "{} is not UTF-8 text (invalid byte at offset {}); convert it to UTF-8 first",
                    path.display(),
                    e.utf8_error().valid_up_to()
                )
            })?;
            Ok((text, path.display().to_string()))
        }
        None => Ok((
            stories::generate_corpus(opts.seed, opts.corpus_bytes),
            format!("built-in stories (seed {})", opts.seed),
        )),
    }
}

fn write(path: &Path, text: &str) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {} (is the disk full?)", path.display()))
}

/// The prompts of the sample generations: for the stories, an opening, an opening that fixes the
/// hero (the model should keep his name and pronoun), and none (a story from the document start).
fn prompts(opts: &Options, valid: &str) -> Vec<String> {
    let mut out: Vec<String> = if opts.input.is_none() {
        [
            "Once upon a time,",
            "Once upon a time, there was a little boy named Tom.",
            "",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    } else {
        // The user's text: its validation part's first six words verbatim, then nothing.
        let (start, end) = valid
            .split_whitespace()
            .take(6)
            .map(|w| {
                let at = w.as_ptr() as usize - valid.as_ptr() as usize;
                (at, at + w.len())
            })
            .fold((None, 0), |(s, _), (a, b)| (s.or(Some(a)), b));
        vec![valid[start.unwrap_or(0)..end].to_string(), String::new()]
    };
    out.truncate(opts.samples);
    out
}

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
    let unigram_entropy = stories::unigram_entropy(&train_ids);
    let unigram_valid_loss = stories::unigram_cross_entropy(&train_ids, &valid_ids, tok.vocab_size());
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
            summary.step,
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
        steps: summary.step,
        initial_val_loss: Some(initial.loss),
        val_loss: fin.loss,
        perplexity: fin.perplexity,
        final_train_loss: summary.train_loss.map(f64::from),
        tokens_per_s: Some(summary.tokens_seen as f64 / summary.wall_seconds.max(1e-9)),
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

    #[test]
    fn split_by_documents_keeps_every_document_once() {
        let text = stories::generate_corpus(5, 50_000);
        let (train, valid) = split_train_valid(&text, 0.1).unwrap();
        let all = stories::documents(&text);
        let (t, v) = (stories::documents(&train), stories::documents(&valid));
        assert_eq!(t.len() + v.len(), all.len());
        assert_eq!(v.len(), (all.len() as f64 * 0.1).round() as usize);
        assert_eq!([t, v].concat(), all);
        assert!(valid.ends_with("<|endoftext|>\n"));
    }

    #[test]
    fn split_plain_text_at_a_line_boundary() {
        let text: String = (0..100).map(|i| format!("line number {i}\n")).collect();
        let (train, valid) = split_train_valid(&text, 0.2).unwrap();
        assert_eq!(format!("{train}{valid}"), text);
        assert!(train.ends_with('\n') && valid.starts_with("line number"));
        let frac = valid.len() as f64 / text.len() as f64;
        assert!((0.15..0.25).contains(&frac), "{frac}");
        assert!(split_train_valid("one line only", 0.1).is_err());
        assert!(split_train_valid(&text, 0.0).is_err());
    }

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
        let (first, last) = (recs.first().unwrap(), recs.last().unwrap());
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
