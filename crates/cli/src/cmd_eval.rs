//! `ferrolm eval`: loss and perplexity of a checkpoint on a token file.

use anyhow::Result;
use ferrolm_train::checkpoint;
use ferrolm_train::data::TokenFile;
use ferrolm_train::evaluate;
use std::path::{Path, PathBuf};

/// Mean cross-entropy loss (nats per token) and perplexity of a checkpoint on a .npy token file,
/// over non-overlapping windows of the model's context length.
#[derive(clap::Args)]
#[command(after_help = "Example:\n  ferrolm eval --checkpoint runs/a --data data/valid.npy")]
pub struct Args {
    /// A checkpoint directory, or a run directory (its latest checkpoint).
    #[arg(long)]
    checkpoint: PathBuf,
    /// Token file (.npy, <u2 or <u4), encoded with the checkpoint's tokenizer.
    #[arg(long)]
    data: PathBuf,
    /// Windows per batch.
    #[arg(long, default_value_t = 8)]
    batch_size: usize,
    /// Evaluate at most this many windows, spread evenly over the file (default: all).
    #[arg(long)]
    max_windows: Option<usize>,
    /// Window length (default: the model's context length).
    #[arg(long)]
    seq_len: Option<usize>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> Result<()> {
    let (dir, ck) = load_checkpoint(&args.checkpoint)?;
    let tokens = TokenFile::open(&args.data)?;
    let seq = args.seq_len.unwrap_or(ck.model.config.context_length);
    let r = evaluate(&ck.model, &tokens, args.batch_size.max(1), seq, args.max_windows)?;
    if args.json {
        println!("{}", r.to_json());
    } else {
        println!(
            "loss {:.4} nats/token, perplexity {:.3} ({} windows of {}, {} tokens; checkpoint {} at step {})",
            r.loss,
            r.perplexity,
            r.windows,
            seq,
            r.tokens,
            dir.display(),
            ck.state.step
        );
    }
    if !r.loss.is_finite() {
        anyhow::bail!(
            "the loss is {}: the model in {} produces non-finite values (damaged or diverged weights)",
            r.loss,
            dir.display()
        );
    }
    Ok(())
}

/// The checkpoint `arg` names (a checkpoint directory, or a run directory: its latest one) and
/// its directory, the model loaded; a note on stderr when it has no checksums to verify.
pub fn load_checkpoint(arg: &Path) -> Result<(PathBuf, checkpoint::Checkpoint)> {
    let dir = checkpoint::resolve(arg)?;
    let ck = checkpoint::load_model(&dir)?;
    if !ck.verified {
        eprintln!(
            "note: checkpoint {} has no checksums (saved by an older ferrolm): loaded without verifying its files",
            dir.display()
        );
    }
    Ok((dir, ck))
}
