//! The run configuration: one TOML file with every model, optimizer, schedule, data, logging and
//! checkpoint setting, overridable from the command line with `section.key=value`.

use crate::data::Sampling;
use anyhow::{bail, Context, Result};
use ferrolm_nn::optim::AdamWConfig;
use ferrolm_nn::{ModelConfig, Precision};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

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
    /// Number of optimizer steps.
    pub max_steps: u64,
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
    /// Evaluate every N steps (0: only at the end).
    pub every: u64,
    /// Validation batches (of data.batch_size windows); 0: every window of the file.
    pub batches: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoggingSection {
    /// Write a metrics line every N steps (evaluations are always logged).
    pub every: u64,
    /// Progress bar on a terminal.
    pub progress: bool,
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

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            run: RunSection {
                dir: PathBuf::from("runs/run"),
                max_steps: 5000,
                seed: 0,
                precision: Precision::F32,
            },
            model: ModelConfig::tiny(),
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
                valid: PathBuf::from("data/valid.npy"),
                tokenizer: PathBuf::new(),
                batch_size: 32,
                grad_accum: 1,
                seq_len: 0,
                sampling: Sampling::Random,
                seed: 1,
            },
            eval: EvalSection {
                every: 500,
                batches: 20,
            },
            logging: LoggingSection {
                every: 10,
                progress: true,
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

impl TrainConfig {
    /// Parses a TOML config. Keys it leaves out take the defaults; unknown keys are errors.
    /// `[model] preset = "small"` starts the model section from a preset.
    pub fn from_toml(text: &str) -> Result<TrainConfig> {
        let mut user: toml::Table = toml::from_str(text).context("invalid TOML")?;
        let mut base = TrainConfig::default();
        if let Some(toml::Value::Table(m)) = user.get_mut("model") {
            if let Some(p) = m.remove("preset") {
                let name = p.as_str().unwrap_or_default();
                base.model = ModelConfig::preset(name)
                    .with_context(|| format!("unknown model preset {p} (tiny, small)"))?;
            }
        }
        let mut table = toml::Table::try_from(base)?;
        merge(&mut table, user);
        let cfg: TrainConfig = toml::Value::Table(table).try_into().context("invalid config")?;
        Ok(cfg)
    }

    /// Reads a TOML config file (see `from_toml`).
    pub fn load(path: &Path) -> Result<TrainConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config {}", path.display()))?;
        TrainConfig::from_toml(&text).with_context(|| format!("config file {}", path.display()))
    }

    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("the config serializes")
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
            self.model = ModelConfig::preset(value)
                .with_context(|| format!("unknown model preset {value:?} (tiny, small)"))?;
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

    /// Checks the settings fit together; says which key is wrong.
    pub fn validate(&self) -> Result<()> {
        self.model.validate().context("config section [model]")?;
        if self.seq_len() > self.model.context_length {
            bail!(
                "data.seq_len {} exceeds model.context_length {}",
                self.data.seq_len,
                self.model.context_length
            );
        }
        if self.run.max_steps == 0 {
            bail!("run.max_steps (--steps) must be at least 1");
        }
        if self.data.batch_size == 0 || self.data.grad_accum == 0 {
            bail!("data.batch_size and data.grad_accum must be at least 1");
        }
        if !(self.optimizer.lr >= 0.0 && self.schedule.min_lr >= 0.0) {
            bail!("optimizer.lr and schedule.min_lr must be non-negative");
        }
        if self.checkpoint.keep_last == 0 {
            bail!("checkpoint.keep_last must be at least 1");
        }
        Ok(())
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

fn merge(base: &mut toml::Table, user: toml::Table) {
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
