//! Crash-safe checkpoints: one directory per checkpoint, `step-NNNNNNNNN/`, holding
//!
//! - `model.safetensors`: the parameters under their state-dict names (f32), readable by PyTorch's
//!   `safetensors.torch.load_file`;
//! - `optimizer.safetensors`: AdamW's first and second moments as `m.<name>` and `v.<name>`;
//! - `state.json`: step, tokens seen, model/optimizer/schedule config, the batch sampler (its RNG
//!   and cursor), the tokenizer's identity, the run config and the format version;
//! - `tokenizer/`: a copy of the tokenizer files, so the checkpoint is usable on its own;
//! - `checksums.json`: every file's length and CRC-32C ([`manifest`]), verified by every load.
//!
//! A checkpoint is written into a temporary sibling directory (`.tmp-step-…`), every file and the
//! directory fsync'ed, then renamed into place and the parent fsync'ed: a kill at any moment leaves
//! either the complete new checkpoint or none, and never touches the older ones. The latest
//! checkpoint is found by listing the directory.

use crate::data::BatchSampler;
use crate::TrainConfig;
use anyhow::{bail, Context, Result};
use ferrolm_nn::model::Model;
use ferrolm_nn::optim::{AdamW, AdamWConfig};
use ferrolm_nn::{ModelConfig, ParamSpec};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

pub mod manifest;
pub use manifest::{Manifest, MANIFEST_FILE};

/// Version of the checkpoint layout; loading refuses other versions.
pub const FORMAT_VERSION: u32 = 1;
pub const MODEL_FILE: &str = "model.safetensors";
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
pub const STATE_FILE: &str = "state.json";
pub const TOKENIZER_DIR: &str = "tokenizer";

/// The learning-rate schedule a run follows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScheduleState {
    pub max_lr: f64,
    pub min_lr: f64,
    pub warmup_steps: u64,
    pub cosine_steps: u64,
}

/// Which tokenizer the model's ids belong to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenizerIdentity {
    /// FNV-1a 64 over the sorted file names and contents of the tokenizer directory, hex.
    pub fingerprint: String,
    /// The directory the files were copied from when the run started.
    pub source: PathBuf,
    pub files: Vec<String>,
    /// The tokenizer's own identity (`Tokenizer::fingerprint`: vocab, merges, special tokens).
    #[serde(default)]
    pub bpe_fingerprint: Option<String>,
    #[serde(default)]
    pub vocab_size: Option<usize>,
}

/// Everything in `state.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointState {
    pub format_version: u32,
    /// Optimizer steps taken.
    pub step: u64,
    pub tokens_seen: u64,
    /// Training wall-clock seconds so far (over all resumed segments).
    pub wall_seconds: f64,
    pub model: ModelConfig,
    pub optimizer: AdamWConfig,
    /// AdamW's step count t.
    pub optimizer_t: u64,
    /// Element ranges exempt from weight decay.
    pub no_decay: Vec<(usize, usize)>,
    pub schedule: ScheduleState,
    /// The data sampling state (mode, RNG, sequential cursor) for the next batch.
    pub sampler: BatchSampler,
    pub tokenizer: Option<TokenizerIdentity>,
    /// Validation loss at this step, if evaluated here.
    pub val_loss: Option<f32>,
    /// Mean training loss of the last step.
    pub train_loss: Option<f32>,
    /// The run's whole config.
    pub config: TrainConfig,
}

/// A loaded checkpoint.
pub struct Checkpoint {
    pub dir: PathBuf,
    pub state: CheckpointState,
    pub model: Model,
    /// None when loaded with `load_model`.
    pub optimizer: Option<AdamW>,
    /// Whether the files were verified against their checksums (false: an older checkpoint
    /// without `checksums.json`, loaded unverified).
    pub verified: bool,
}

/// The directory name of the checkpoint at `step`.
pub fn dir_name(step: u64) -> String {
    format!("step-{step:09}")
}

fn parse_dir_name(name: &str) -> Option<u64> {
    name.strip_prefix("step-")?.parse().ok()
}

fn f32_bytes(x: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(x.len() * 4);
    for v in x {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// Writes `bytes` to `dir/rel`, fsync'ed, and records its checksum in `sums`.
fn write_summed(dir: &Path, rel: &str, bytes: &[u8], sums: &mut Manifest) -> Result<()> {
    write_synced(&dir.join(rel), bytes)?;
    sums.add(rel, bytes);
    Ok(())
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(bytes)
        .with_context(|| format!("cannot write {} (is the disk full?)", path.display()))?;
    f.sync_all()
        .with_context(|| format!("cannot fsync {}", path.display()))?;
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot fsync directory {}", dir.display()))
}

/// Serializes named f32 tensors to safetensors bytes.
fn safetensors_bytes(tensors: Vec<(String, Vec<usize>, Vec<u8>)>) -> Result<Vec<u8>> {
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(n, shape, data)| Ok((n.clone(), TensorView::new(Dtype::F32, shape.clone(), data)?)))
        .collect::<Result<_>>()?;
    let meta = Some(HashMap::from([("format".to_string(), "pt".to_string())]));
    Ok(safetensors::tensor::serialize(views, &meta)?)
}

/// FNV-1a 64 over the sorted file names and contents of a directory's regular files.
pub fn fingerprint_dir(dir: &Path) -> Result<(String, Vec<String>)> {
    let mut names: Vec<String> = Vec::new();
    for e in
        fs::read_dir(dir).with_context(|| format!("cannot read tokenizer directory {}", dir.display()))?
    {
        let e = e?;
        if e.file_type()?.is_file() {
            names.push(e.file_name().to_string_lossy().into_owned());
        }
    }
    names.sort();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for &b in bytes {
            h ^= b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    for n in &names {
        feed(n.as_bytes());
        feed(&[0]);
        let data = fs::read(dir.join(n)).with_context(|| format!("cannot read {}", dir.join(n).display()))?;
        feed(&(data.len() as u64).to_le_bytes());
        feed(&data);
    }
    Ok((format!("{h:016x}"), names))
}

/// Writes a checkpoint of `model`, `optim` and `state` under `parent` (crash-safe; see the module
/// docs), copying the tokenizer files from `tokenizer_dir` if given. Replaces an existing
/// checkpoint of the same step. Returns the checkpoint's directory.
pub fn save(
    parent: &Path,
    state: &CheckpointState,
    model: &Model,
    optim: &AdamW,
    tokenizer_dir: Option<&Path>,
) -> Result<PathBuf> {
    fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    let name = dir_name(state.step);
    let tmp = parent.join(format!(".tmp-{name}-{}", std::process::id()));
    if tmp.exists() {
        fs::remove_dir_all(&tmp)?;
    }
    let result = write_contents(&tmp, state, model, optim, tokenizer_dir);
    if let Err(e) = result {
        let _ = fs::remove_dir_all(&tmp);
        return Err(e.context(format!(
            "saving checkpoint {} failed; older checkpoints are intact",
            name
        )));
    }
    let dst = parent.join(&name);
    if dst.exists() {
        // Move the old one aside first (a rename cannot replace a non-empty directory).
        let old = parent.join(format!(".old-{name}-{}", std::process::id()));
        fs::rename(&dst, &old)?;
        fs::rename(&tmp, &dst)?;
        sync_dir(parent)?;
        fs::remove_dir_all(&old)?;
    } else {
        fs::rename(&tmp, &dst).with_context(|| format!("cannot rename {} into place", tmp.display()))?;
    }
    sync_dir(parent)?;
    Ok(dst)
}

fn write_contents(
    tmp: &Path,
    state: &CheckpointState,
    model: &Model,
    optim: &AdamW,
    tokenizer_dir: Option<&Path>,
) -> Result<()> {
    fs::create_dir_all(tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let specs = &model.specs;
    let model_tensors = specs
        .iter()
        .map(|s| {
            (
                s.name.clone(),
                s.shape.clone(),
                f32_bytes(&model.params[s.range()]),
            )
        })
        .collect();
    let mut sums = Manifest::default();
    write_summed(tmp, MODEL_FILE, &safetensors_bytes(model_tensors)?, &mut sums)?;
    let mut opt_tensors = Vec::with_capacity(2 * specs.len());
    for s in specs {
        opt_tensors.push((
            format!("m.{}", s.name),
            s.shape.clone(),
            f32_bytes(&optim.m[s.range()]),
        ));
        opt_tensors.push((
            format!("v.{}", s.name),
            s.shape.clone(),
            f32_bytes(&optim.v[s.range()]),
        ));
    }
    write_summed(tmp, OPTIMIZER_FILE, &safetensors_bytes(opt_tensors)?, &mut sums)?;
    if let Some(src) = tokenizer_dir {
        let dst = tmp.join(TOKENIZER_DIR);
        fs::create_dir_all(&dst)?;
        for e in
            fs::read_dir(src).with_context(|| format!("cannot read tokenizer directory {}", src.display()))?
        {
            let e = e?;
            if e.file_type()?.is_file() {
                let data =
                    fs::read(e.path()).with_context(|| format!("cannot read {}", e.path().display()))?;
                let rel = format!("{TOKENIZER_DIR}/{}", e.file_name().to_string_lossy());
                write_summed(tmp, &rel, &data, &mut sums)?;
            }
        }
        sync_dir(&dst)?;
    }
    // state.json, then the checksums, last: a directory with them is complete (the rename makes
    // that atomic anyway).
    let json = serde_json::to_vec_pretty(state)?;
    write_summed(tmp, STATE_FILE, &json, &mut sums)?;
    write_synced(&tmp.join(MANIFEST_FILE), &sums.to_json())?;
    sync_dir(tmp)?;
    Ok(())
}

/// Reads named f32 tensors from a safetensors file and checks they are exactly `specs` (with the
/// name prefix), with the right shapes and dtype, into `out` (laid out by the specs' offsets).
fn read_tensors(path: &Path, specs: &[ParamSpec], prefixes: &[&str], outs: &mut [&mut [f32]]) -> Result<()> {
    let buf = fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let st = SafeTensors::deserialize(&buf).map_err(|e| {
        anyhow::anyhow!(
            "{}: not a valid safetensors file ({e:?}); the file is {} bytes, truncated or corrupt?",
            path.display(),
            buf.len()
        )
    })?;
    let have: BTreeSet<String> = st.names().into_iter().cloned().collect();
    let want: BTreeSet<String> = prefixes
        .iter()
        .flat_map(|p| specs.iter().map(move |s| format!("{p}{}", s.name)))
        .collect();
    let missing: Vec<&String> = want.difference(&have).collect();
    let extra: Vec<&String> = have.difference(&want).collect();
    if !missing.is_empty() || !extra.is_empty() {
        bail!(
            "{}: tensors do not match the model config: missing {:?}, unexpected {:?}",
            path.display(),
            missing,
            extra
        );
    }
    for (p, out) in prefixes.iter().zip(outs.iter_mut()) {
        for s in specs {
            let name = format!("{p}{}", s.name);
            let t = st
                .tensor(&name)
                .map_err(|e| anyhow::anyhow!("{}: {name}: {e:?}", path.display()))?;
            if t.dtype() != Dtype::F32 {
                bail!(
                    "{}: tensor {name} has dtype {:?}, expected F32",
                    path.display(),
                    t.dtype()
                );
            }
            if t.shape() != s.shape.as_slice() {
                bail!(
                    "{}: tensor {name} has shape {:?}, the model config needs {:?}",
                    path.display(),
                    t.shape(),
                    s.shape
                );
            }
            let dst = &mut out[s.range()];
            for (d, c) in dst.iter_mut().zip(t.data().chunks_exact(4)) {
                *d = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
        }
    }
    Ok(())
}

/// Reads and checks `state.json` of the checkpoint in `dir`.
pub fn read_state(dir: &Path) -> Result<CheckpointState> {
    let path = dir.join(STATE_FILE);
    let text = fs::read(&path)
        .with_context(|| format!("{} is not a checkpoint (cannot read {STATE_FILE})", dir.display()))?;
    let v: serde_json::Value = serde_json::from_slice(&text)
        .with_context(|| format!("{}: corrupt or truncated JSON", path.display()))?;
    let version = v.get("format_version").and_then(|x| x.as_u64());
    if version != Some(FORMAT_VERSION as u64) {
        bail!(
            "{}: checkpoint format version {:?}, this ferrolm reads version {FORMAT_VERSION}",
            path.display(),
            version
        );
    }
    let state: CheckpointState =
        serde_json::from_value(v).with_context(|| format!("{}: invalid checkpoint state", path.display()))?;
    state
        .model
        .validate()
        .with_context(|| format!("{}: invalid model config", path.display()))?;
    Ok(state)
}

/// Verifies the files of the checkpoint in `dir` against its `checksums.json`: Ok(true) when they
/// match, Ok(false) for an older checkpoint without checksums, an error naming the damaged file.
pub fn verify(dir: &Path) -> Result<bool> {
    let damaged = || format!("checkpoint {} is damaged", dir.display());
    match Manifest::read(dir).with_context(damaged)? {
        Some(m) => {
            m.verify(dir).with_context(damaged)?;
            Ok(true)
        }
        None => Ok(false),
    }
}

/// Loads the model (and, if `with_optimizer`, the optimizer) of the checkpoint in `dir`, after
/// verifying every file's checksum ([`verify`]), checking every tensor against the config in its
/// `state.json`.
pub fn load(dir: &Path, with_optimizer: bool) -> Result<Checkpoint> {
    let verified = verify(dir)?;
    let state = read_state(dir)?;
    let mut model = Model::zeros(state.model.clone())
        .with_context(|| format!("{}: cannot build the model", dir.display()))?;
    let specs = model.specs.clone();
    read_tensors(&dir.join(MODEL_FILE), &specs, &[""], &mut [&mut model.params])?;
    let optimizer = if with_optimizer {
        let mut opt = AdamW::new(state.optimizer.clone(), model.params.len());
        let (m, v) = (&mut opt.m, &mut opt.v);
        read_tensors(&dir.join(OPTIMIZER_FILE), &specs, &["m.", "v."], &mut [m, v])?;
        opt.t = state.optimizer_t;
        opt.no_decay = state.no_decay.iter().map(|&(a, b)| a..b).collect();
        Some(opt)
    } else {
        None
    };
    if let Some(tok) = &state.tokenizer {
        let tdir = dir.join(TOKENIZER_DIR);
        if tdir.is_dir() {
            let (fp, _) = fingerprint_dir(&tdir)?;
            if fp != tok.fingerprint {
                bail!(
                    "{}: the tokenizer files do not match the fingerprint in {STATE_FILE} ({} vs {})",
                    tdir.display(),
                    fp,
                    tok.fingerprint
                );
            }
        }
    }
    Ok(Checkpoint {
        dir: dir.to_path_buf(),
        state,
        model,
        optimizer,
        verified,
    })
}

/// Loads only the model (for generation and evaluation).
pub fn load_model(dir: &Path) -> Result<Checkpoint> {
    load(dir, false)
}

/// The complete checkpoints under `parent`, sorted by step (temporary and partial ones skipped).
pub fn list(parent: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    let rd = match fs::read_dir(parent) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e).with_context(|| format!("cannot list {}", parent.display())),
    };
    for e in rd {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(step) = parse_dir_name(&name) {
            if e.path().join(STATE_FILE).is_file() {
                out.push((step, e.path()));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The checkpoint with the highest step under `parent`, found by listing the directory.
pub fn latest(parent: &Path) -> Result<Option<PathBuf>> {
    Ok(list(parent)?.pop().map(|(_, p)| p))
}

/// Resolves what a user names as a checkpoint: a checkpoint directory itself, a directory of
/// checkpoints (its latest), or a run directory (the latest in its `checkpoints/`).
pub fn resolve(path: &Path) -> Result<PathBuf> {
    if path.join(STATE_FILE).is_file() {
        return Ok(path.to_path_buf());
    }
    if !path.exists() {
        bail!("checkpoint path {} does not exist", path.display());
    }
    for p in [path.join("checkpoints"), path.to_path_buf()] {
        if let Some(c) = latest(&p)? {
            return Ok(c);
        }
    }
    bail!(
        "{} holds no checkpoint (expected {STATE_FILE}, step-* directories or checkpoints/step-*)",
        path.display()
    )
}

/// Deletes checkpoints beyond the last `keep_last`, except the best by validation loss and step 0,
/// and leftovers of interrupted saves. Returns the removed directories.
pub fn prune(parent: &Path, keep_last: usize) -> Result<Vec<PathBuf>> {
    let all = list(parent)?;
    let mut keep: BTreeSet<u64> = all.iter().rev().take(keep_last).map(|(s, _)| *s).collect();
    keep.insert(0);
    let mut best: Option<(f32, u64)> = None;
    for (step, dir) in &all {
        if let Ok(st) = read_state(dir) {
            if let Some(l) = st.val_loss.filter(|l| l.is_finite()) {
                if best.is_none_or(|(b, _)| l < b) {
                    best = Some((l, *step));
                }
            }
        }
    }
    if let Some((_, s)) = best {
        keep.insert(s);
    }
    let mut removed = Vec::new();
    for (step, dir) in all {
        if !keep.contains(&step) {
            fs::remove_dir_all(&dir)
                .with_context(|| format!("cannot remove old checkpoint {}", dir.display()))?;
            removed.push(dir);
        }
    }
    for e in fs::read_dir(parent)? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        if (name.starts_with(".tmp-") || name.starts_with(".old-")) && e.file_type()?.is_dir() {
            fs::remove_dir_all(e.path())?;
            removed.push(e.path());
        }
    }
    Ok(removed)
}
