//! `ferrolm export`: a checkpoint as a Hugging Face transformers directory or a GGUF file.

use anyhow::{bail, Result};
use ferrolm_interop::{export_gguf, export_hf, DType};
use std::path::PathBuf;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A directory for transformers' AutoModelForCausalLM / AutoTokenizer (LlamaForCausalLM).
    Hf,
    /// One GGUF file for llama.cpp (and Ollama, LM Studio, ...).
    Gguf,
}

/// Export a model for use outside ferrolm. `--format hf` writes a directory that
/// `transformers.AutoModelForCausalLM.from_pretrained(DIR)` and `AutoTokenizer.from_pretrained(DIR)`
/// load with no custom code (config.json, generation_config.json, model.safetensors, tokenizer.json,
/// tokenizer_config.json, special_tokens_map.json, README.md). `--format gguf` writes a GGUF v3 file
/// (llama architecture, tokenizer embedded) that llama.cpp runs. Only pre-norm RoPE SwiGLU models
/// (the defaults) are Llamas; other ablations are refused with the setting that blocks them.
#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  ferrolm export --checkpoint runs/a --format hf --out my-model\n  \
ferrolm export --checkpoint runs/a --format gguf --out my-model.gguf --dtype q8_0"
)]
pub struct Args {
    /// A checkpoint directory, or a run directory (its latest checkpoint).
    #[arg(long)]
    checkpoint: PathBuf,
    /// What to write.
    #[arg(long, value_enum)]
    format: Format,
    /// The output: a new (or empty) directory for hf, a new file for gguf.
    #[arg(long)]
    out: PathBuf,
    /// Storage type of the weight matrices: f32, f16, bf16, or (gguf only) q8_0. GGUF keeps the
    /// RMSNorm gains in f32.
    #[arg(long, default_value = "f32")]
    dtype: DType,
}

pub fn run(args: Args) -> Result<()> {
    let report = match args.format {
        Format::Hf => export_hf(&args.checkpoint, &args.out, args.dtype)?,
        Format::Gguf => {
            if args.out.extension().is_none_or(|e| e != "gguf") {
                bail!(
                    "--out {} should end in .gguf for --format gguf",
                    args.out.display()
                );
            }
            export_gguf(&args.checkpoint, &args.out, args.dtype)?
        }
    };
    if let Some(w) = &report.warning {
        eprintln!("warning: {w}");
    }
    let bytes: u64 = report.files.iter().map(|(_, n)| n).sum();
    eprintln!(
        "exported {} ({}) to {}: {} files, {:.1} MB; load {:.3} s, convert {:.3} s, write {:.3} s",
        report.checkpoint.display(),
        args.dtype,
        args.out.display(),
        report.files.len(),
        bytes as f64 / 1e6,
        report.load_seconds,
        report.convert_seconds,
        report.write_seconds
    );
    Ok(())
}
