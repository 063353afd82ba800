//! The quickstart's options (the standard and quick presets) and its report (what it measured,
//! printed as the closing summary).

use super::stories;
use ferrolm_nn::ModelConfig;
use serde::Serialize;
use std::fmt;
use std::path::PathBuf;

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
