//! The metrics log: one JSON object per line (`metrics.jsonl` in the run directory); and
//! [`RunProgress`], where a run got to (its steps, tokens, time and last losses).

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

/// One line of `metrics.jsonl`. `train_loss`/`grad_norm`/`lr`/`tokens_per_s` describe the step just
/// taken; `val_loss` is present on lines where an evaluation ran.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetricsRecord {
    /// Optimizer steps taken.
    pub step: u64,
    /// Training tokens consumed so far.
    pub tokens: u64,
    /// Training wall-clock seconds so far (summed over resumed segments).
    pub wall_s: f64,
    pub train_loss: Option<f32>,
    pub val_loss: Option<f32>,
    pub lr: Option<f32>,
    pub grad_norm: Option<f32>,
    pub tokens_per_s: Option<f64>,
}

/// Where a run got to: what the end of a training run reports ([`crate::TrainSummary`]) and
/// `ferrolm runs` lists ([`crate::runs::RunInfo`]).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RunProgress {
    /// Optimizer steps taken (including those before a resume).
    pub step: u64,
    /// Training tokens consumed.
    pub tokens: u64,
    /// Training wall-clock seconds (summed over resumed segments).
    pub wall_seconds: f64,
    /// The last training loss (a step's mean over its micro-batches), nats/token.
    pub train_loss: Option<f32>,
    /// The last validation loss, and the lowest, nats/token.
    pub val_loss: Option<f32>,
    pub best_val_loss: Option<f32>,
}

/// Appends records to a JSONL file, flushing each line.
pub struct MetricsWriter {
    path: PathBuf,
    file: File,
}

impl MetricsWriter {
    /// Opens `path` for appending. When `truncate_after` is given (resuming at that step), lines of
    /// later steps (from the part of an interrupted run after its last checkpoint) are dropped first,
    /// so the file describes one consistent run.
    pub fn open(path: &Path, truncate_after: Option<u64>) -> Result<MetricsWriter> {
        match truncate_after {
            Some(step) if path.exists() => {
                let kept: Vec<MetricsRecord> = read(path)?.into_iter().filter(|r| r.step <= step).collect();
                let mut text = String::new();
                for r in &kept {
                    text.push_str(&serde_json::to_string(r)?);
                    text.push('\n');
                }
                std::fs::write(path, text).with_context(|| format!("cannot rewrite {}", path.display()))?;
            }
            None => {
                File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
            }
            _ => {}
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        Ok(MetricsWriter {
            path: path.to_path_buf(),
            file,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn write(&mut self, record: &MetricsRecord) -> Result<()> {
        let mut line = serde_json::to_string(record)?;
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .with_context(|| format!("cannot write {}", self.path.display()))
    }
}

/// Reads every record of a metrics file; a torn last line (a crash mid-write) is skipped.
pub fn read(path: &Path) -> Result<Vec<MetricsRecord>> {
    let f = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let lines: Vec<String> = BufReader::new(f).lines().collect::<std::io::Result<_>>()?;
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(line) {
            Ok(r) => out.push(r),
            Err(_) if i + 1 == lines.len() => {}
            Err(e) => return Err(e).with_context(|| format!("{}: line {}", path.display(), i + 1)),
        }
    }
    Ok(out)
}
