//! Import of a Hugging Face Llama directory (`config.json`, `model.safetensors` or shards with
//! `model.safetensors.index.json`, f32/bf16/f16, tied or untied embeddings, a byte-level BPE
//! `tokenizer.json`) as a ferrolm checkpoint. Anything ferrolm's model cannot compute exactly is
//! an error naming the field or tensor, never a silently different model.

use crate::dtype::{bf16_to_f32, f16_to_f32, f32_from_le};
use crate::llama::{permute_to_interleaved, tensor_names, Rows, RMS_NORM_EPS};
use anyhow::{anyhow, bail, Context, Result};
use ferrolm_nn::model::Model;
use ferrolm_nn::optim::AdamW;
use ferrolm_nn::{Ffn, ModelConfig, Norm, Position, Rng};
use ferrolm_tokenizer::Tokenizer;
use ferrolm_train::checkpoint::{self, CheckpointState, ScheduleState, TokenizerIdentity};
use ferrolm_train::data::{BatchSampler, Sampling};
use ferrolm_train::TrainConfig;
use safetensors::tensor::{Dtype, SafeTensors};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// What an import produced.
#[derive(Clone, Debug)]
pub struct ImportReport {
    /// The checkpoint directory written (`OUT/step-000000000`).
    pub checkpoint: PathBuf,
    pub config: ModelConfig,
    /// The weight files read.
    pub weight_files: Vec<PathBuf>,
    /// Whether lm_head was copied from the tied embedding.
    pub tied: bool,
    /// Set when the directory had no tokenizer.json.
    pub warning: Option<String>,
}

fn field<'a>(cfg: &'a Value, name: &str) -> Option<&'a Value> {
    cfg.get(name).filter(|v| !v.is_null())
}

fn usize_field(cfg: &Value, path: &Path, name: &str) -> Result<usize> {
    field(cfg, name)
        .and_then(Value::as_u64)
        .map(|v| v as usize)
        .with_context(|| {
            format!(
                "{}: \"{name}\" is missing or not a positive integer",
                path.display()
            )
        })
}

/// ferrolm's model config for an HF `LlamaConfig` (`config.json` parsed), and whether its
/// embeddings are tied; errors name the field ferrolm cannot represent.
pub fn model_config_from_hf(cfg: &Value, path: &Path) -> Result<(ModelConfig, bool)> {
    let unsupported = |name: &str, v: &Value, why: &str| {
        anyhow!("{}: \"{name}\": {v} is not supported: {why}", path.display())
    };
    let model_type = field(cfg, "model_type").and_then(Value::as_str).unwrap_or("");
    if model_type != "llama" {
        bail!(
            "{}: \"model_type\": {model_type:?} is not supported: ferrolm imports Llama models (\"llama\") only",
            path.display()
        );
    }
    let d_model = usize_field(cfg, path, "hidden_size")?;
    let n_heads = usize_field(cfg, path, "num_attention_heads")?;
    if let Some(v) = field(cfg, "num_key_value_heads") {
        if v.as_u64() != Some(n_heads as u64) {
            return Err(unsupported(
                "num_key_value_heads",
                v,
                &format!("grouped-query attention (ferrolm has num_key_value_heads = num_attention_heads = {n_heads})"),
            ));
        }
    }
    if let Some(v) = field(cfg, "head_dim") {
        if n_heads == 0 || v.as_u64() != Some((d_model / n_heads) as u64) {
            return Err(unsupported(
                "head_dim",
                v,
                "ferrolm's head size is hidden_size / num_attention_heads",
            ));
        }
    }
    for name in ["hidden_act", "hidden_activation"] {
        if let Some(v) = field(cfg, name) {
            if v.as_str() != Some("silu") {
                return Err(unsupported(name, v, "ferrolm's MLP is SwiGLU with SiLU"));
            }
        }
    }
    for name in ["attention_bias", "mlp_bias"] {
        if let Some(v) = field(cfg, name) {
            if v.as_bool() != Some(false) {
                return Err(unsupported(name, v, "ferrolm's linear layers have no biases"));
            }
        }
    }
    if let Some(v) = field(cfg, "rope_scaling") {
        return Err(unsupported(
            "rope_scaling",
            v,
            "ferrolm implements plain RoPE only",
        ));
    }
    let mut theta = field(cfg, "rope_theta").and_then(Value::as_f64);
    if let Some(rp) = field(cfg, "rope_parameters") {
        let kind = rp.get("rope_type").and_then(Value::as_str).unwrap_or("default");
        if kind != "default" {
            return Err(unsupported(
                "rope_parameters.rope_type",
                &rp["rope_type"],
                "ferrolm implements plain RoPE only",
            ));
        }
        theta = theta.or(rp.get("rope_theta").and_then(Value::as_f64));
    }
    let eps = field(cfg, "rms_norm_eps").and_then(Value::as_f64).unwrap_or(1e-6);
    if eps as f32 != RMS_NORM_EPS {
        return Err(unsupported(
            "rms_norm_eps",
            &serde_json::json!(eps),
            &format!("ferrolm's RMSNorm epsilon is fixed at {RMS_NORM_EPS}"),
        ));
    }
    let tied = field(cfg, "tie_word_embeddings")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let config = ModelConfig {
        vocab_size: usize_field(cfg, path, "vocab_size")?,
        context_length: usize_field(cfg, path, "max_position_embeddings")?,
        d_model,
        n_layers: usize_field(cfg, path, "num_hidden_layers")?,
        n_heads,
        d_ff: usize_field(cfg, path, "intermediate_size")?,
        rope_theta: theta.unwrap_or(10000.0) as f32,
        norm: Norm::Pre,
        position: Position::Rope,
        ffn: Ffn::Swiglu,
    };
    config
        .validate()
        .map_err(|e| anyhow!("{}: the config gives an invalid model: {e}", path.display()))?;
    Ok((config, tied))
}

/// The safetensors files of an HF directory: `model.safetensors`, or the shards named by
/// `model.safetensors.index.json`'s `weight_map`.
fn weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index = dir.join("model.safetensors.index.json");
    if index.is_file() {
        let text = fs::read(&index).with_context(|| format!("cannot read {}", index.display()))?;
        let v: Value =
            serde_json::from_slice(&text).with_context(|| format!("{}: invalid JSON", index.display()))?;
        let map = v
            .get("weight_map")
            .and_then(Value::as_object)
            .with_context(|| format!("{}: no \"weight_map\" object", index.display()))?;
        let files: BTreeSet<&str> = map.values().filter_map(Value::as_str).collect();
        return Ok(files.into_iter().map(|f| dir.join(f)).collect());
    }
    if dir.join("pytorch_model.bin").exists() {
        bail!(
            "{}: has pytorch_model.bin only; ferrolm reads safetensors (convert with \
             `model.save_pretrained(dir, safe_serialization=True)` in transformers)",
            dir.display()
        );
    }
    bail!(
        "{}: no model.safetensors or model.safetensors.index.json",
        dir.display()
    )
}

/// Tensors by name: (shape, values as f32).
pub type Weights = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

/// Every tensor of the files as f32 with its shape, by name.
fn read_weights(files: &[PathBuf]) -> Result<Weights> {
    let mut out = BTreeMap::new();
    for path in files {
        let map = fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let st = SafeTensors::deserialize(&map)
            .map_err(|e| anyhow!("{}: not a valid safetensors file ({e:?})", path.display()))?;
        for (name, t) in st.tensors() {
            let data = match t.dtype() {
                Dtype::F32 => f32_from_le(t.data()),
                Dtype::BF16 => bf16_to_f32(t.data()),
                Dtype::F16 => f16_to_f32(t.data()),
                other => bail!(
                    "{}: tensor {name} has dtype {other:?}; ferrolm imports f32, bf16 and f16 weights",
                    path.display()
                ),
            };
            out.insert(name, (t.shape().to_vec(), data));
        }
    }
    Ok(out)
}

/// Builds the ferrolm model from HF `weights` (consumed), checking names and shapes.
pub fn model_from_hf_weights(config: ModelConfig, tied: bool, mut weights: Weights) -> Result<Model> {
    if let Some(b) = weights.keys().find(|k| k.ends_with(".bias")) {
        bail!("tensor {b}: biases are not supported (ferrolm's linear layers have none)");
    }
    // Older checkpoints store RoPE's inverse frequencies; they follow from rope_theta.
    weights.retain(|k, _| !k.ends_with("rotary_emb.inv_freq"));
    let mut model = Model::zeros(config.clone())?;
    let (nh, dh, d) = (config.n_heads, config.d_head(), config.d_model);
    for t in tensor_names(&config) {
        let spec = model
            .specs
            .iter()
            .find(|s| s.name == t.ferrolm)
            .expect("Llama layout")
            .clone();
        let (shape, data) = match weights.remove(&t.hf) {
            Some(w) => w,
            None if t.hf == "lm_head.weight" && tied => {
                let emb = model
                    .param("token_embeddings.weight")
                    .expect("embedding")
                    .to_vec();
                (spec.shape.clone(), emb)
            }
            None if t.hf == "lm_head.weight" => {
                bail!("tensor lm_head.weight is missing and tie_word_embeddings is false in config.json")
            }
            None => bail!("tensor {} is missing", t.hf),
        };
        if shape != spec.shape {
            bail!(
                "tensor {} has shape {shape:?}; config.json implies {:?}",
                t.hf,
                spec.shape
            );
        }
        let data = match t.rows {
            Rows::Same => data,
            Rows::Rope => permute_to_interleaved(&data, nh, dh, d),
        };
        model.params[spec.range()].copy_from_slice(&data);
    }
    if !weights.is_empty() {
        let extra: Vec<&String> = weights.keys().take(8).collect();
        bail!(
            "tensors a Llama of this config does not have: {extra:?} ({} in all)",
            weights.len()
        );
    }
    Ok(model)
}

/// Imports the HF Llama directory `from` as a new ferrolm checkpoint `out/step-000000000`
/// (usable by generate, eval, export and `train --init-from out`).
pub fn import_hf(from: &Path, out: &Path) -> Result<ImportReport> {
    crate::hf_export::check_fresh_dir(out)?;
    let cfg_path = from.join("config.json");
    let text = fs::read(&cfg_path).with_context(|| {
        format!(
            "{} is not a Hugging Face model directory (cannot read config.json)",
            from.display()
        )
    })?;
    let cfg: Value =
        serde_json::from_slice(&text).with_context(|| format!("{}: invalid JSON", cfg_path.display()))?;
    let (config, tied) = model_config_from_hf(&cfg, &cfg_path)?;
    let tok_path = from.join("tokenizer.json");
    let tokenizer = if tok_path.is_file() {
        let tok = Tokenizer::from_tokenizer_json(&tok_path).map_err(|e| anyhow!("{e}"))?;
        if tok.vocab_size() > config.vocab_size {
            bail!(
                "{}: {} tokens, more than config.json's vocab_size {}",
                tok_path.display(),
                tok.vocab_size(),
                config.vocab_size
            );
        }
        Some(tok)
    } else {
        None
    };
    let files = weight_files(from)?;
    let model = model_from_hf_weights(config.clone(), tied, read_weights(&files)?)
        .with_context(|| format!("importing the weights of {}", from.display()))?;

    let dir = write_checkpoint(out, &model, tokenizer.as_ref(), from)?;
    Ok(ImportReport {
        checkpoint: dir,
        config,
        weight_files: files,
        tied,
        warning: tokenizer.is_none().then(|| {
            format!(
                "{} has no tokenizer.json: imported without a tokenizer (pass --tokenizer to generate)",
                from.display()
            )
        }),
    })
}

/// Writes `model` (and `tokenizer`, copied in as `tokenizer/`) as the step-0 checkpoint of a new
/// run under `out`, with a fresh optimizer state and the default training settings; `source` is
/// recorded as where the tokenizer came from. Returns the checkpoint directory.
pub fn write_checkpoint(
    out: &Path,
    model: &Model,
    tokenizer: Option<&Tokenizer>,
    source: &Path,
) -> Result<PathBuf> {
    fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let tok_tmp = out.join(".import-tokenizer");
    let identity = match tokenizer {
        Some(tok) => {
            tok.save(&tok_tmp).map_err(|e| anyhow!("{e}"))?;
            let (fingerprint, names) = checkpoint::fingerprint_dir(&tok_tmp)?;
            Some(TokenizerIdentity {
                fingerprint,
                source: source.to_path_buf(),
                files: names,
                bpe_fingerprint: Some(tok.fingerprint()),
                vocab_size: Some(tok.vocab_size()),
            })
        }
        None => None,
    };
    let mut train_cfg = TrainConfig {
        model: model.config.clone(),
        ..TrainConfig::default()
    };
    train_cfg.run.dir = out.to_path_buf();
    let optim = AdamW::new(train_cfg.adamw(), model.params.len());
    let state = CheckpointState {
        format_version: checkpoint::FORMAT_VERSION,
        step: 0,
        tokens_seen: 0,
        wall_seconds: 0.0,
        model: model.config.clone(),
        optimizer: optim.config.clone(),
        optimizer_t: 0,
        no_decay: Vec::new(),
        schedule: ScheduleState {
            max_lr: train_cfg.optimizer.lr,
            min_lr: train_cfg.schedule.min_lr,
            warmup_steps: train_cfg.schedule.warmup_steps,
            cosine_steps: train_cfg.cosine_steps(),
        },
        sampler: BatchSampler::new(Sampling::Random, Rng::new(train_cfg.data.seed)),
        tokenizer: identity,
        val_loss: None,
        train_loss: None,
        config: train_cfg,
    };
    let saved = checkpoint::save(out, &state, model, &optim, tokenizer.map(|_| tok_tmp.as_path()));
    if tok_tmp.exists() {
        let _ = fs::remove_dir_all(&tok_tmp);
    }
    saved
}
