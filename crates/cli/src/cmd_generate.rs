//! `ferrolm generate`: stream text from a checkpoint.

use anyhow::{Context, Result};
use ferrolm_nn::Precision;
use ferrolm_train::generate::{checkpoint_tokenizer, generate_text, prompt_tokens_kept, GenerateConfig};
use std::io::Write;
use std::path::PathBuf;

/// Generate text from a checkpoint, streaming it as it is produced (KV cache; stops at
/// <|endoftext|>). The checkpoint's own tokenizer copy is used unless --tokenizer is given.
#[derive(clap::Args)]
#[command(
    allow_negative_numbers = true,
    after_help = "Example:\n  ferrolm generate --checkpoint runs/a --prompt \"Once upon a time\" \
--max-tokens 256 --temperature 0.8 --top-p 0.9 --seed 1"
)]
pub struct Args {
    /// A checkpoint directory, or a run directory (its latest checkpoint).
    #[arg(long)]
    checkpoint: PathBuf,
    /// The text to continue (empty: start a new document).
    #[arg(long, default_value = "")]
    prompt: String,
    /// Maximum number of new tokens.
    #[arg(long, default_value_t = 256)]
    max_tokens: usize,
    /// Sampling temperature; 0 is greedy.
    #[arg(long, default_value_t = 0.8)]
    temperature: f32,
    /// Nucleus sampling mass in (0, 1]; 1 disables it.
    #[arg(long, default_value_t = 0.9)]
    top_p: f32,
    /// Random seed (the same seed, prompt and checkpoint give the same text).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Tokenizer directory (default: the checkpoint's tokenizer/ copy).
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Print only the generated text, not the prompt.
    #[arg(long)]
    no_echo: bool,
    /// Weight precision: f32, or bf16 (the model's precision, as in training: a bf16 copy of the weights
    /// made when generation starts and when the context slides, f32 accumulation: half the bytes read per token, so faster decoding; logits within ~1%).
    #[arg(long, default_value = "f32")]
    precision: Precision,
}

pub fn run(args: Args) -> Result<()> {
    let cfg = GenerateConfig {
        max_tokens: args.max_tokens,
        temperature: args.temperature,
        top_p: args.top_p,
        seed: args.seed,
    };
    // Bad flags fail before anything is loaded or printed.
    cfg.validate().map_err(|e| anyhow::anyhow!("--{e}"))?;
    let (dir, ck) = crate::cmd_eval::load_checkpoint(&args.checkpoint)?;
    let tok = match &args.tokenizer {
        Some(t) => {
            ferrolm_tokenizer::Tokenizer::from_dir(t).map_err(|e| anyhow::anyhow!("{}: {e}", t.display()))?
        }
        None => checkpoint_tokenizer(&dir)?,
    };
    let n = tok.encode(&args.prompt).len();
    let ctx = ck.model.config.context_length;
    let kept = prompt_tokens_kept(n, ctx);
    if kept < n {
        eprintln!(
            "note: the prompt is {n} tokens, longer than the model's context of {ctx}: the model reads only \
             its last {kept} tokens (the whole prompt is still echoed)"
        );
    }
    let mut out = std::io::stdout().lock();
    if !args.no_echo {
        write!(out, "{}", args.prompt)?;
    }
    let mut model = ck.model;
    model.precision = args.precision;
    let g = generate_text(&model, &tok, &args.prompt, &cfg, &mut |piece| {
        out.write_all(piece.as_bytes())?;
        out.flush().context("writing to stdout")
    })?;
    writeln!(out)?;
    eprintln!(
        "[{} tokens{}; checkpoint {} at step {}]",
        g.tokens.len(),
        if g.stopped_at_eot {
            ", stopped at <|endoftext|>"
        } else {
            ""
        },
        dir.display(),
        ck.state.step
    );
    Ok(())
}
