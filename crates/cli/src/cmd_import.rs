//! `ferrolm import`: a Hugging Face Llama directory as a ferrolm checkpoint.

use anyhow::Result;
use ferrolm_interop::import_hf;
use std::path::PathBuf;

/// Import a Hugging Face Llama model (config.json, model.safetensors or sharded
/// model-*.safetensors with model.safetensors.index.json; f32, bf16 or f16; tied or untied
/// embeddings; a byte-level BPE tokenizer.json) as a ferrolm checkpoint in OUT/step-000000000.
/// `generate`, `eval`, `export` and `train --init-from OUT` (fine-tuning) take it. What ferrolm's
/// model cannot compute (biases, grouped-query attention, rope_scaling, other activations or
/// tokenizer types) is an error naming the field.
#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  ferrolm import --from my-model --out runs/imported\n  \
ferrolm generate --checkpoint runs/imported --prompt \"Once upon a time\""
)]
pub struct Args {
    /// The Hugging Face model directory.
    #[arg(long)]
    from: PathBuf,
    /// A new (or empty) directory for the checkpoint.
    #[arg(long)]
    out: PathBuf,
}

pub fn run(args: Args) -> Result<()> {
    let r = import_hf(&args.from, &args.out)?;
    if let Some(w) = &r.warning {
        eprintln!("warning: {w}");
    }
    let c = &r.config;
    eprintln!(
        "imported {} ({} parameters: {} layers, d_model {}, {} heads, vocab {}{}) as {}",
        args.from.display(),
        c.num_params(),
        c.n_layers,
        c.d_model,
        c.n_heads,
        c.vocab_size,
        if r.tied {
            "; tied embeddings copied into lm_head"
        } else {
            ""
        },
        r.checkpoint.display()
    );
    Ok(())
}
