//! Export of a ferrolm checkpoint as a Hugging Face `LlamaForCausalLM` directory: `config.json`,
//! `generation_config.json`, `model.safetensors` (HF names, q/k rows permuted for `rotate_half`),
//! the tokenizer (`tokenizer.json`, `tokenizer_config.json`, `special_tokens_map.json`) and a
//! `README.md` model card.

use crate::dtype::DType;
use crate::llama::{check_expressible, permute_to_half, spec_of, tensor_names, Rows, RMS_NORM_EPS};
use anyhow::{bail, Context, Result};
use ferrolm_nn::model::Model;
use ferrolm_nn::ModelConfig;
use ferrolm_tokenizer::Tokenizer;
use ferrolm_train::checkpoint::{self, CheckpointState};
use rayon::prelude::*;
use safetensors::tensor::{Dtype, TensorView};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What an export did and how long its parts took.
#[derive(Clone, Debug)]
pub struct ExportReport {
    /// The checkpoint directory exported.
    pub checkpoint: PathBuf,
    /// Files written, with their sizes in bytes.
    pub files: Vec<(PathBuf, u64)>,
    /// Seconds to read the checkpoint.
    pub load_seconds: f64,
    /// Seconds to rename, permute and convert the tensors and build the metadata.
    pub convert_seconds: f64,
    /// Seconds to write the files.
    pub write_seconds: f64,
    /// Set when the checkpoint has no tokenizer copy (only the weights and config were written).
    pub warning: Option<String>,
}

/// A loaded checkpoint ready for export: its state, model and tokenizer (if it has one).
pub struct Source {
    pub dir: PathBuf,
    pub state: CheckpointState,
    pub model: Model,
    pub tokenizer: Option<Tokenizer>,
    /// Seconds that resolving and loading it took.
    pub load_seconds: f64,
}

impl Source {
    /// The run's name: the run directory's for `RUN/checkpoints/step-N`, else the checkpoint's.
    pub fn name(&self) -> String {
        let base = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned());
        let run = self
            .dir
            .parent()
            .filter(|p| p.file_name().is_some_and(|n| n == "checkpoints"))
            .and_then(|p| p.parent())
            .and_then(base);
        run.or_else(|| base(&self.dir))
            .unwrap_or_else(|| "ferrolm".into())
    }
}

/// Resolves and loads `path` (a checkpoint, a directory of checkpoints or a run directory) and
/// checks that its model is a Llama.
pub fn load_source(path: &Path) -> Result<Source> {
    let t0 = Instant::now();
    let dir = checkpoint::resolve(path)?;
    let ck = checkpoint::load_model(&dir)?;
    check_expressible(&ck.state.model).with_context(|| format!("checkpoint {}", dir.display()))?;
    let tokenizer = if dir.join(checkpoint::TOKENIZER_DIR).is_dir() {
        Some(ferrolm_train::generate::checkpoint_tokenizer(&dir)?)
    } else {
        None
    };
    Ok(Source {
        dir,
        state: ck.state,
        model: ck.model,
        tokenizer,
        load_seconds: t0.elapsed().as_secs_f64(),
    })
}

/// Errors if `out` exists and is not an empty directory (an export never overwrites).
pub(crate) fn check_fresh_dir(out: &Path) -> Result<()> {
    if out.exists() {
        let empty = out.is_dir() && fs::read_dir(out)?.next().is_none();
        if !empty {
            bail!(
                "{} already exists and is not empty; choose a new output directory (nothing was changed)",
                out.display()
            );
        }
    }
    Ok(())
}

/// Errors if the file `out` exists (an export never overwrites).
pub(crate) fn check_fresh_file(out: &Path) -> Result<()> {
    if out.exists() {
        bail!(
            "{} already exists; choose a new output file (nothing was changed)",
            out.display()
        );
    }
    Ok(())
}

/// `x` as a JSON number with its shortest f32 spelling (1e-5, not 9.99999974e-6).
pub(crate) fn f32_json(x: f32) -> Value {
    json!(x.to_string().parse::<f64>().expect("f32 prints as a number"))
}

/// The end-of-text token: `END_OF_TEXT` (`<|endoftext|>`) if the tokenizer has it, else its first special token.
pub(crate) fn eos_token(tok: &Tokenizer) -> Option<(String, u32)> {
    let specials = tok.special_tokens();
    specials
        .iter()
        .find(|(s, _)| s == ferrolm_tokenizer::END_OF_TEXT)
        .or(specials.first())
        .cloned()
}

fn torch_dtype(dtype: DType) -> &'static str {
    match dtype {
        DType::F32 => "float32",
        DType::F16 => "float16",
        DType::Bf16 => "bfloat16",
        DType::Q8_0 => unreachable!("refused before"),
    }
}

/// HF's `config.json` for `c` (a `LlamaConfig`).
pub fn config_json(c: &ModelConfig, dtype: DType, eos: Option<u32>) -> Value {
    json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": c.d_model,
        "intermediate_size": c.d_ff,
        "num_hidden_layers": c.n_layers,
        "num_attention_heads": c.n_heads,
        "num_key_value_heads": c.n_heads,
        "head_dim": c.d_head(),
        "vocab_size": c.vocab_size,
        "max_position_embeddings": c.context_length,
        "rms_norm_eps": f32_json(RMS_NORM_EPS),
        "rope_theta": f32_json(c.rope_theta),
        "rope_scaling": null,
        "rope_parameters": {"rope_type": "default", "rope_theta": f32_json(c.rope_theta)},
        "hidden_act": "silu",
        "attention_bias": false,
        "attention_dropout": 0.0,
        "mlp_bias": false,
        "pretraining_tp": 1,
        "initializer_range": 0.02,
        "tie_word_embeddings": false,
        "use_cache": true,
        "torch_dtype": torch_dtype(dtype),
        "bos_token_id": eos,
        "eos_token_id": eos,
    })
}

/// A named tensor's encoded bytes: (name, shape, little-endian bytes).
pub type EncodedTensor = (String, Vec<usize>, Vec<u8>);

/// The tensors in HF's names and layout, encoded as `dtype`.
pub fn hf_tensors(model: &Model, dtype: DType) -> Result<Vec<EncodedTensor>> {
    let c = &model.config;
    // One task per tensor: the conversion is memory-bound and the tensors independent.
    tensor_names(c)
        .into_par_iter()
        .map(|t| {
            let spec = spec_of(model, &t)?;
            let w = &model.params[spec.range()];
            let bytes = match t.rows {
                Rows::Same => dtype.encode(w)?,
                Rows::Rope => dtype.encode(&permute_to_half(w, c.n_heads, c.d_head(), c.d_model))?,
            };
            Ok((t.hf, spec.shape.clone(), bytes))
        })
        .collect()
}

/// Writes `tensors` in `dtype` as the safetensors file `path` (through `path.tmp` and a rename),
/// with PyTorch's `format: pt` metadata; returns its size in bytes.
pub(crate) fn write_safetensors(path: &Path, tensors: &[EncodedTensor], dtype: DType) -> Result<u64> {
    let st_dtype = match dtype {
        DType::F32 => Dtype::F32,
        DType::F16 => Dtype::F16,
        DType::Bf16 => Dtype::BF16,
        DType::Q8_0 => unreachable!("refused before"),
    };
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(n, shape, data)| Ok((n.clone(), TensorView::new(st_dtype, shape.clone(), data)?)))
        .collect::<Result<_>>()?;
    let meta = Some(HashMap::from([("format".to_string(), "pt".to_string())]));
    let tmp = tmp_path(path);
    safetensors::tensor::serialize_to_file(views, &meta, &tmp)
        .with_context(|| format!("cannot write {} (is the disk full?)", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("cannot rename {} into place", tmp.display()))?;
    Ok(fs::metadata(path)?.len())
}

/// `tokenizer_config.json` and `special_tokens_map.json` for `tok`: a `PreTrainedTokenizerFast`
/// over `tokenizer.json`, no BOS added, spaces kept as they are on decode.
pub fn tokenizer_configs(tok: &Tokenizer, context_length: usize) -> (Value, Value) {
    let eos = eos_token(tok).map(|(s, _)| s);
    let mut decoder = serde_json::Map::new();
    for (s, id) in tok.special_tokens() {
        decoder.insert(
            id.to_string(),
            json!({"content": s, "lstrip": false, "normalized": false, "rstrip": false,
                   "single_word": false, "special": true}),
        );
    }
    let others: Vec<&String> = tok
        .special_tokens()
        .iter()
        .map(|(s, _)| s)
        .filter(|s| Some(*s) != eos.as_ref())
        .collect();
    let config = json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": context_length,
        "bos_token": eos,
        "eos_token": eos,
        "unk_token": null,
        "pad_token": null,
        "add_bos_token": false,
        "add_eos_token": false,
        "add_prefix_space": false,
        "clean_up_tokenization_spaces": false,
        "added_tokens_decoder": decoder,
        "additional_special_tokens": others,
    });
    let mut map = serde_json::Map::new();
    if let Some(e) = &eos {
        map.insert("bos_token".into(), json!(e));
        map.insert("eos_token".into(), json!(e));
    }
    if !others.is_empty() {
        map.insert("additional_special_tokens".into(), json!(others));
    }
    (config, Value::Object(map))
}

/// The model card: what the model is, how big, how long it was trained, and how to load it.
pub fn model_card(src: &Source) -> String {
    let c = &src.state.model;
    let st = &src.state;
    let val = st
        .val_loss
        .map_or("not evaluated at this checkpoint".to_string(), |l| {
            format!("{l:.4} nats/token (perplexity {:.2})", (l as f64).exp())
        });
    let tok = match &src.tokenizer {
        Some(t) => format!(
            "byte-level BPE, {} tokens ({} special)",
            t.vocab_size(),
            t.special_tokens().len()
        ),
        None => "none included (the checkpoint had no tokenizer copy)".into(),
    };
    format!(
        "---\nlibrary_name: transformers\npipeline_tag: text-generation\ntags:\n- llama\n- ferrolm\n---\n\n\
# ferrolm model {name}\n\nA Llama-architecture language model trained from scratch with ferrolm {ver}.\n\n\
| | |\n|---|---|\n| architecture | LlamaForCausalLM: {l} layers, d_model {d}, {h} heads (d_head {dh}), \
SwiGLU d_ff {f}, RMSNorm (eps {eps}), RoPE (theta {theta}), untied embeddings |\n\
| parameters | {params} |\n| vocabulary | {vocab} ({tok}) |\n| context length | {ctx} |\n\
| training | {steps} steps, {tokens} tokens |\n| validation loss | {val} |\n\n\
```python\nfrom transformers import AutoModelForCausalLM, AutoTokenizer\n\
tok = AutoTokenizer.from_pretrained(\"path/to/this/dir\")\n\
model = AutoModelForCausalLM.from_pretrained(\"path/to/this/dir\")\n\
ids = tok(\"Once upon a time\", return_tensors=\"pt\").input_ids\n\
print(tok.decode(model.generate(ids, max_new_tokens=40, do_sample=False)[0]))\n```\n",
        name = src.name(),
        ver = env!("CARGO_PKG_VERSION"),
        l = c.n_layers,
        d = c.d_model,
        h = c.n_heads,
        dh = c.d_head(),
        f = c.d_ff,
        eps = RMS_NORM_EPS,
        theta = c.rope_theta,
        params = c.num_params(),
        vocab = c.vocab_size,
        ctx = c.context_length,
        steps = st.step,
        tokens = st.tokens_seen,
    )
}

/// Exports the checkpoint at `checkpoint` (checkpoint, checkpoints or run directory) into the new
/// directory `out` with matrices stored as `dtype` (f32, f16 or bf16).
pub fn export_hf(checkpoint: &Path, out: &Path, dtype: DType) -> Result<ExportReport> {
    if dtype == DType::Q8_0 {
        bail!("--dtype q8_0 is for GGUF only; a Hugging Face export is f32, f16 or bf16");
    }
    check_fresh_dir(out)?;
    let src = load_source(checkpoint)?;
    let t1 = Instant::now();
    let c = &src.state.model;
    let eos = src.tokenizer.as_ref().and_then(eos_token).map(|(_, id)| id);
    let mut files: Vec<(&str, Vec<u8>)> = Vec::new();
    let pretty = |v: &Value| serde_json::to_vec_pretty(v).expect("JSON value serializes");
    files.push(("config.json", pretty(&config_json(c, dtype, eos))));
    let generation = json!({"bos_token_id": eos, "eos_token_id": eos, "max_length": c.context_length});
    files.push(("generation_config.json", pretty(&generation)));
    let tensors = hf_tensors(&src.model, dtype)?;
    let mut warning = None;
    match &src.tokenizer {
        Some(tok) => {
            let (tc, sm) = tokenizer_configs(tok, c.context_length);
            files.push(("tokenizer.json", pretty(&tok.tokenizer_json())));
            files.push(("tokenizer_config.json", pretty(&tc)));
            files.push(("special_tokens_map.json", pretty(&sm)));
        }
        None => {
            warning = Some(format!(
                "checkpoint {} has no tokenizer copy: exported the model only (AutoTokenizer will not load)",
                src.dir.display()
            ))
        }
    }
    files.push(("README.md", model_card(&src).into_bytes()));
    let convert_seconds = t1.elapsed().as_secs_f64();

    let t2 = Instant::now();
    let mut written = write_files(out, &files)?;
    let st = out.join("model.safetensors");
    written.push((st.clone(), write_safetensors(&st, &tensors, dtype)?));
    Ok(ExportReport {
        checkpoint: src.dir,
        files: written,
        load_seconds: src.load_seconds,
        convert_seconds,
        write_seconds: t2.elapsed().as_secs_f64(),
        warning,
    })
}

/// Writes `files` into `out` (created), each via a temporary name and a rename.
pub(crate) fn write_files(out: &Path, files: &[(&str, Vec<u8>)]) -> Result<Vec<(PathBuf, u64)>> {
    fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut written = Vec::new();
    for (name, bytes) in files {
        let path = out.join(name);
        write_atomic(&path, bytes)?;
        written.push((path, bytes.len() as u64));
    }
    Ok(written)
}

/// Writes `bytes` to `path` through `path.tmp` and a rename.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = tmp_path(path);
    fs::write(&tmp, bytes).with_context(|| format!("cannot write {} (is the disk full?)", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("cannot rename {} into place", tmp.display()))
}

/// `path` with `.tmp` appended.
pub(crate) fn tmp_path(path: &Path) -> PathBuf {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    PathBuf::from(tmp)
}
