//! The run configuration: one TOML file with every model, optimizer, schedule, data, logging and
//! checkpoint setting, overridable from the command line with `section.key=value`.

use crate::data::Sampling;
use anyhow::{bail, Context, Result};
use ferrolm_nn::optim::AdamWConfig;
use ferrolm_nn::{ModelConfig, Precision};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Everything a training run needs. `TrainConfig::default()` is what `--print-config` shows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    pub run: RunSection,
    pub model: ModelConfig,
    pub optimizer: OptimizerSection,
    pub schedule: ScheduleSection,
    pub data: DataSection,
    pub eval: EvalSection,
    pub logging: LoggingSection,
    pub checkpoint: CheckpointSection,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSection {
    /// Directory for checkpoints, metrics, the plot and the tokenizer copy.
    pub dir: PathBuf,
    /// Number of optimizer steps (set from `max_minutes` or `max_tokens` when one is given).
    pub max_steps: u64,
    /// Train for about this many minutes instead (0: off): the step count is estimated from the
    /// speed of the first steps, then fixed and recorded in `max_steps` (so a resume is exact).
    #[serde(default)]
    pub max_minutes: f64,
    /// Train on this many tokens instead (0: off): `max_steps` = tokens / tokens per step,
    /// rounded up.
    #[serde(default)]
    pub max_tokens: u64,
    /// Seed of the parameter initialization.
    pub seed: u64,
    /// Matmul precision: "f32", or "bf16" (bf16 operands with f32 sums; parameters, gradients,
    /// optimizer state, norms, softmax and attention stay f32). May change on resume (the run
    /// then continues, but not bit for bit).
    #[serde(default)]
    pub precision: Precision,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimizerSection {
    /// Peak learning rate (after warmup).
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// Exempt RMSNorm gains from weight decay (false: all parameters decay, as the reference does).
    pub no_decay_norms: bool,
    /// Gradient clipping: max global L2 norm (0 disables).
    pub grad_clip: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSection {
    /// Linear warmup steps.
    pub warmup_steps: u64,
    /// Step at which the cosine reaches min_lr (0: run.max_steps).
    pub cosine_steps: u64,
    /// Final learning rate.
    pub min_lr: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSection {
    /// Training tokens (.npy, <u2 or <u4).
    pub train: PathBuf,
    /// Validation tokens (.npy); empty: no validation.
    pub valid: PathBuf,
    /// Tokenizer directory, copied into every checkpoint so `ferrolm generate` needs nothing else;
    /// empty: none.
    pub tokenizer: PathBuf,
    /// Sequences per micro-batch.
    pub batch_size: usize,
    /// Micro-batches per optimizer step (effective batch = batch_size · grad_accum).
    pub grad_accum: usize,
    /// Window length; 0: model.context_length.
    pub seq_len: usize,
    /// random: uniform window starts; sequential: windows in order, wrapping.
    pub sampling: Sampling,
    /// Seed of the batch sampler.
    pub seed: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalSection {
    /// Evaluate every N steps; 0: about [`EVALS_PER_RUN`] times per run (see
    /// [`TrainConfig::eval_every`]). Always at the start of a fresh run and at its end.
    pub every: u64,
    /// Validation batches (of data.batch_size windows); 0: every window of the file.
    pub batches: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoggingSection {
    /// Write a metrics line every N steps (evaluations are always logged).
    pub every: u64,
    /// Progress bar on a terminal; plain progress lines when stderr is not one.
    pub progress: bool,
    /// Seconds between plain progress lines (0: one per metrics line).
    #[serde(default = "default_progress_seconds")]
    pub progress_seconds: f64,
    /// Draw loss.svg at the end.
    pub plot: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointSection {
    /// Save every M steps (0: only at the end).
    pub every: u64,
    /// Keep the last K checkpoints (plus the best by validation loss, and step 0 if saved).
    pub keep_last: usize,
    /// Also save the initialization as step 0.
    pub save_step0: bool,
}

fn default_progress_seconds() -> f64 {
    30.0
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            run: RunSection {
                dir: PathBuf::from("runs/run"),
                max_steps: 5000,
                max_minutes: 0.0,
                max_tokens: 0,
                seed: 0,
                precision: Precision::F32,
            },
            model: ModelConfig {
                vocab_size: 0,
                ..ModelConfig::tiny()
            },
            optimizer: OptimizerSection {
                lr: 1e-3,
                beta1: 0.9,
                beta2: 0.95,
                eps: 1e-8,
                weight_decay: 0.1,
                no_decay_norms: false,
                grad_clip: 1.0,
            },
            schedule: ScheduleSection {
                warmup_steps: 100,
                cosine_steps: 0,
                min_lr: 1e-4,
            },
            data: DataSection {
                train: PathBuf::from("data/train.npy"),
                valid: PathBuf::new(),
                tokenizer: PathBuf::new(),
                batch_size: 32,
                grad_accum: 1,
                seq_len: 0,
                sampling: Sampling::Random,
                seed: 1,
            },
            eval: EvalSection {
                every: 0,
                batches: 20,
            },
            logging: LoggingSection {
                every: 10,
                progress: true,
                progress_seconds: default_progress_seconds(),
                plot: true,
            },
            checkpoint: CheckpointSection {
                every: 1000,
                keep_last: 3,
                save_step0: false,
            },
        }
    }
}

/// How many evaluations a run gets when `eval.every` is 0.
pub const EVALS_PER_RUN: u64 = 20;

/// A model preset with `vocab_size` 0 (taken from the tokenizer unless set).
pub(crate) fn preset(name: &str) -> Result<ModelConfig> {
    let m =
        ModelConfig::preset(name).with_context(|| format!("unknown model preset {name:?} (tiny, small)"))?;
    Ok(ModelConfig { vocab_size: 0, ..m })
}

impl TrainConfig {
    /// The config as TOML, each key under a one-line comment saying what it means (what
    /// `--print-config` prints and the run directory's `config.toml` holds).
    pub fn to_toml(&self) -> String {
        crate::config_docs::commented(&toml::to_string(self).expect("the config serializes"))
    }

    /// Applies `section.key=value` overrides; the value is parsed as a TOML value (numbers, true,
    /// strings with or without quotes). `model.preset=tiny|small` replaces the whole model section.
    pub fn apply_overrides<S: AsRef<str>>(&mut self, sets: &[S]) -> Result<()> {
        for s in sets {
            self.set(s.as_ref())?;
        }
        Ok(())
    }

    /// One `section.key=value` override.
    pub fn set(&mut self, assignment: &str) -> Result<()> {
        let (key, value) = assignment
            .split_once('=')
            .with_context(|| format!("override {assignment:?} is not of the form section.key=value"))?;
        let (key, value) = (key.trim(), value.trim());
        if key == "model.preset" {
            self.model = preset(value.trim_matches('"'))?;
            return Ok(());
        }
        let (section, field) = key
            .split_once('.')
            .with_context(|| format!("override key {key:?} is not of the form section.key"))?;
        let mut table = toml::Table::try_from(&*self)?;
        let sec = table
            .get_mut(section)
            .and_then(|v| v.as_table_mut())
            .with_context(|| format!("unknown config section {section:?} in override {assignment:?}"))?;
        let old = sec
            .get(field)
            .with_context(|| format!("unknown config key {key:?} (see `ferrolm train --print-config`)"))?;
        let new = parse_value(value, old);
        sec.insert(field.to_string(), new);
        *self = toml::Value::Table(table)
            .try_into()
            .with_context(|| format!("bad value in override {assignment:?}"))?;
        Ok(())
    }

    /// The window length used for training and evaluation.
    pub fn seq_len(&self) -> usize {
        if self.data.seq_len == 0 {
            self.model.context_length
        } else {
            self.data.seq_len
        }
    }

    /// The step at which the cosine ends.
    pub fn cosine_steps(&self) -> u64 {
        if self.schedule.cosine_steps == 0 {
            self.run.max_steps
        } else {
            self.schedule.cosine_steps
        }
    }

    pub fn adamw(&self) -> AdamWConfig {
        AdamWConfig {
            lr: self.optimizer.lr as f32,
            beta1: self.optimizer.beta1 as f32,
            beta2: self.optimizer.beta2 as f32,
            eps: self.optimizer.eps as f32,
            weight_decay: self.optimizer.weight_decay as f32,
        }
    }

    /// The evaluation interval in steps: `eval.every`, or for 0 about [`EVALS_PER_RUN`]
    /// evaluations over `run.max_steps`.
    pub fn eval_every(&self) -> u64 {
        match self.eval.every {
            0 => self.run.max_steps.div_ceil(EVALS_PER_RUN).max(1),
            n => n,
        }
    }

    /// Fills in what the config leaves to be derived and says what it did, one line per note:
    /// `model.vocab_size` 0 becomes the tokenizer's vocabulary size (an error without a
    /// tokenizer); a set size smaller than the tokenizer's is an error, a larger one a warning;
    /// `run.max_tokens` sets `run.max_steps`; no `data.valid` means no validation. Idempotent.
    pub fn resolve(&mut self) -> Result<Vec<String>> {
        let mut notes = Vec::new();
        let tok_dir = &self.data.tokenizer;
        let tok_vocab = if tok_dir.as_os_str().is_empty() {
            None
        } else {
            let tok = ferrolm_tokenizer::Tokenizer::from_dir(tok_dir)
                .map_err(|e| anyhow::anyhow!("data.tokenizer: {e}"))?;
            Some(tok.vocab_size())
        };
        match (self.model.vocab_size, tok_vocab) {
            (0, Some(v)) => {
                self.model.vocab_size = v;
                notes.push(format!(
                    "model.vocab_size {v}: the tokenizer's ({})",
                    tok_dir.display()
                ));
            }
            (0, None) => bail!(
                "model.vocab_size is not set and there is no tokenizer to take it from: give --tokenizer DIR \
                 (data.tokenizer) or set model.vocab_size"
            ),
            (m, Some(v)) if m < v => bail!(
                "model.vocab_size {m} is smaller than the tokenizer's vocabulary ({v} tokens in {}): leave \
                 model.vocab_size unset to use {v}, or set it to at least {v}",
                tok_dir.display()
            ),
            (m, Some(v)) if m > v => notes.push(format!(
                "warning: model.vocab_size {m} is larger than the tokenizer's vocabulary ({v} in {}): {} \
                 embedding rows will never be used (leave model.vocab_size unset to use {v})",
                tok_dir.display(),
                m - v
            )),
            _ => {}
        }
        if self.run.max_tokens > 0 {
            let per_step = (self.data.batch_size * self.data.grad_accum * self.seq_len()).max(1) as u64;
            self.run.max_steps = self.run.max_tokens.div_ceil(per_step);
            notes.push(format!(
                "run.max_tokens {}: {} steps of {per_step} tokens",
                self.run.max_tokens, self.run.max_steps
            ));
        }
        if self.data.valid.as_os_str().is_empty() {
            notes.push(
                "no validation data (data.valid / --valid not given): training without validation".into(),
            );
        }
        Ok(notes)
    }

    /// The keys (as `section.key`) whose values differ between two configs, with both values.
    pub fn diff(&self, other: &TrainConfig) -> Vec<(String, String, String)> {
        let a = toml::Table::try_from(self).expect("serializes");
        let b = toml::Table::try_from(other).expect("serializes");
        let mut out = Vec::new();
        for (sec, av) in &a {
            let (Some(at), Some(bt)) = (av.as_table(), b.get(sec).and_then(|v| v.as_table())) else {
                continue;
            };
            let keys: std::collections::BTreeSet<&String> = at.keys().chain(bt.keys()).collect();
            for k in keys {
                let (x, y) = (at.get(k), bt.get(k));
                if x != y {
                    let show = |v: Option<&toml::Value>| v.map_or("(unset)".to_string(), |v| v.to_string());
                    out.push((format!("{sec}.{k}"), show(x), show(y)));
                }
            }
        }
        out
    }
}

/// Keys that fix the computation of a run: changing them on resume would not continue the same run.
pub fn is_fixed_on_resume(key: &str) -> bool {
    let (section, field) = key.split_once('.').unwrap_or((key, ""));
    match section {
        "model" | "optimizer" => true,
        "schedule" => true,
        "data" => matches!(
            field,
            "batch_size" | "grad_accum" | "seq_len" | "sampling" | "seed"
        ),
        "run" => field == "seed",
        _ => false,
    }
}

pub(crate) fn merge(base: &mut toml::Table, user: toml::Table) {
    for (k, v) in user {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(u)) => merge(b, u),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

/// Parses an override value: as TOML if it parses, else as a bare string. A number given for a
/// float key stays a float.
fn parse_value(text: &str, old: &toml::Value) -> toml::Value {
    let parsed = toml::from_str::<toml::Table>(&format!("v = {text}"))
        .ok()
        .and_then(|mut t| t.remove("v"));
    match (parsed, old) {
        (Some(toml::Value::Integer(i)), toml::Value::Float(_)) => toml::Value::Float(i as f64),
        (Some(v), _) => v,
        (None, _) => toml::Value::String(text.to_string()),
    }
}
