//! Runs at a glance: finds the run directories under a directory, reads each one's state (running,
//! finished, interrupted), size and losses from its `config.toml`, `metrics.jsonl` and checkpoints,
//! and formats them as a table (`ferrolm runs`). Also the marker a training run keeps in its
//! directory while it runs.

use crate::checkpoint;
use crate::config::TrainConfig;
use crate::metrics::{self, MetricsRecord, RunProgress};
use crate::plot::count_label;
use anyhow::{bail, Context, Result};
use std::fmt;
use std::path::{Path, PathBuf};

/// The file a training process keeps in its run directory while it runs: its process id.
pub const RUNNING_FILE: &str = "RUNNING";

/// Creates `RUNNING` (the process id) in a run directory and removes it when dropped, whether
/// the run ends, fails or is interrupted. A kill -9 leaves it behind; [`inspect`] then sees that
/// the process is gone.
pub struct RunningMarker {
    path: PathBuf,
}

impl RunningMarker {
    pub fn create(run_dir: &Path) -> Result<RunningMarker> {
        let path = run_dir.join(RUNNING_FILE);
        std::fs::write(&path, format!("{}\n", std::process::id()))
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(RunningMarker { path })
    }
}

impl Drop for RunningMarker {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Where a run stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunState {
    /// A training process is working in it now.
    Running,
    /// It reached `run.max_steps`.
    Finished,
    /// It stopped before `run.max_steps` (Ctrl-C, a crash, a kill, an error); `--resume` continues it.
    Interrupted,
}

impl fmt::Display for RunState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RunState::Running => "running",
            RunState::Finished => "finished",
            RunState::Interrupted => "interrupted",
        })
    }
}

/// What `ferrolm runs` shows of one run.
#[derive(Clone, Debug)]
pub struct RunInfo {
    pub dir: PathBuf,
    pub state: RunState,
    /// Steps (the furthest of the metrics and the checkpoints), tokens and time there, and the
    /// losses logged.
    pub progress: RunProgress,
    /// `run.max_steps` of its config, when it has one.
    pub max_steps: Option<u64>,
    pub precision: Option<String>,
    /// Parameters of the model.
    pub params: Option<usize>,
    /// The metrics, for plots.
    pub records: Vec<MetricsRecord>,
}

/// Whether `dir` is a run directory (it has a config.toml, metrics.jsonl or checkpoints/).
pub fn is_run(dir: &Path) -> bool {
    dir.join("config.toml").is_file()
        || dir.join("metrics.jsonl").is_file()
        || dir.join("checkpoints").is_dir()
}

/// The run directories in `dir`: `dir` itself if it is one, else its subdirectories that are
/// (and theirs, two levels deep), sorted by path.
pub fn find_runs(dir: &Path) -> Result<Vec<PathBuf>> {
    if !dir.is_dir() {
        bail!("{} is not a directory", dir.display());
    }
    if is_run(dir) {
        return Ok(vec![dir.to_path_buf()]);
    }
    let mut out = Vec::new();
    collect(dir, 2, &mut out)?;
    out.sort();
    Ok(out)
}

fn collect(dir: &Path, depth: u32, out: &mut Vec<PathBuf>) -> Result<()> {
    let rd = std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?;
    for entry in rd.flatten() {
        let p = entry.path();
        if !p.is_dir() {
            continue;
        }
        if is_run(&p) {
            out.push(p);
        } else if depth > 1 {
            collect(&p, depth - 1, out)?;
        }
    }
    Ok(())
}

/// Whether the process that wrote `RUNNING` in `dir` is alive (Linux: its /proc entry exists;
/// elsewhere the marker alone counts).
fn marker_alive(dir: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(dir.join(RUNNING_FILE)) else {
        return false;
    };
    let Ok(pid) = text.trim().parse::<u32>() else {
        return false;
    };
    if !Path::new("/proc/self").exists() {
        return true;
    }
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Reads one run directory (see [`RunInfo`]).
pub fn inspect(dir: &Path) -> Result<RunInfo> {
    if !is_run(dir) {
        bail!(
            "{} is not a run directory (no config.toml, metrics.jsonl or checkpoints/)",
            dir.display()
        );
    }
    let config = TrainConfig::load(&dir.join("config.toml")).ok();
    let metrics_path = dir.join("metrics.jsonl");
    let records = if metrics_path.is_file() {
        metrics::read(&metrics_path)?
    } else {
        Vec::new()
    };
    let last = records.last();
    let latest = checkpoint::latest(&dir.join("checkpoints"))?.and_then(|d| checkpoint::read_state(&d).ok());
    let ck_step = latest.as_ref().map_or(0, |s| s.step);
    let step = last.map_or(0, |r| r.step).max(ck_step);
    let (mut tokens, mut wall) = last.map_or((0, 0.0), |r| (r.tokens, r.wall_s));
    if let Some(s) = latest.as_ref().filter(|s| s.step > last.map_or(0, |r| r.step)) {
        (tokens, wall) = (s.tokens_seen, s.wall_seconds);
    }
    let vals: Vec<f32> = records
        .iter()
        .filter_map(|r| r.val_loss)
        .filter(|v| v.is_finite())
        .collect();
    let max_steps = config.as_ref().map(|c| c.run.max_steps);
    let state = if marker_alive(dir) {
        RunState::Running
    } else if max_steps.is_some_and(|m| step >= m && step > 0) {
        RunState::Finished
    } else {
        RunState::Interrupted
    };
    Ok(RunInfo {
        dir: dir.to_path_buf(),
        state,
        progress: RunProgress {
            step,
            tokens,
            wall_seconds: wall,
            train_loss: records.iter().rev().find_map(|r| r.train_loss),
            val_loss: vals.last().copied(),
            best_val_loss: vals.iter().copied().min_by(f32::total_cmp),
        },
        max_steps,
        precision: config.as_ref().map(|c| c.run.precision.to_string()),
        params: config
            .as_ref()
            .filter(|c| c.model.vocab_size > 0)
            .map(|c| c.model.num_params()),
        records,
    })
}

/// Seconds as "12.3s", "4m05s" or "2h03m".
pub fn duration_label(s: f64) -> String {
    if s < 60.0 {
        format!("{s:.1}s")
    } else if s < 3600.0 {
        format!("{}m{:02}s", (s / 60.0) as u64, (s % 60.0) as u64)
    } else {
        format!("{}h{:02}m", (s / 3600.0) as u64, ((s % 3600.0) / 60.0) as u64)
    }
}

/// The runs as an aligned text table with a header line.
pub fn table(runs: &[RunInfo]) -> String {
    let loss = |v: Option<f32>| v.map_or("-".to_string(), |v| format!("{v:.4}"));
    let mut rows = vec![[
        "run",
        "state",
        "steps",
        "tokens",
        "wall",
        "val",
        "best val",
        "train",
        "precision",
        "params",
    ]
    .map(String::from)];
    for r in runs {
        let p = &r.progress;
        rows.push([
            r.dir.display().to_string(),
            r.state.to_string(),
            match r.max_steps {
                Some(m) => format!("{}/{m}", p.step),
                None => p.step.to_string(),
            },
            count_label(p.tokens as f64),
            duration_label(p.wall_seconds),
            loss(p.val_loss),
            loss(p.best_val_loss),
            loss(p.train_loss),
            r.precision.clone().unwrap_or_else(|| "-".into()),
            r.params.map_or("-".into(), |p| count_label(p as f64)),
        ]);
    }
    let widths: Vec<usize> = (0..10)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(c, (s, w))| {
                if c == 0 || c == 1 || c == 8 {
                    format!("{s:<w$}")
                } else {
                    format!("{s:>w$}")
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}
