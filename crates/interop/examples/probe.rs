//! A development probe for tools/check_interop.py (not part of the product): ferrolm's own f32
//! logits and greedy continuation of a checkpoint, for comparison with other runtimes.
//!
//! `probe logits CKPT IDS OUT`: the logits (len(IDS), vocab) of the comma-separated ids IDS as one
//! sequence, written to OUT as raw little-endian f32.
//! `probe greedy CKPT IDS K`: the K ids that greedy decoding appends to IDS, comma-separated on
//! stdout (full forward per step, no stop at end-of-text).

use anyhow::{bail, Context, Result};
use ferrolm_nn::model::{Activations, Model};
use ferrolm_train::checkpoint;
use std::path::Path;

fn logits(model: &Model, ids: &[u32]) -> Result<Vec<f32>> {
    let mut acts = Activations::new(&model.config, 1, ids.len());
    Ok(model.forward_logits(&mut acts, ids)?.to_vec())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 5 {
        bail!("usage: probe logits CKPT IDS OUT | probe greedy CKPT IDS K");
    }
    let dir = checkpoint::resolve(Path::new(&args[2]))?;
    let model = checkpoint::load_model(&dir)?.model;
    let mut ids: Vec<u32> = args[3]
        .split(',')
        .map(|s| s.trim().parse().context("IDS: comma-separated token ids"))
        .collect::<Result<_>>()?;
    let v = model.config.vocab_size;
    match args[1].as_str() {
        "logits" => {
            let l = logits(&model, &ids)?;
            let bytes: Vec<u8> = l.iter().flat_map(|x| x.to_le_bytes()).collect();
            std::fs::write(&args[4], bytes)?;
        }
        "greedy" => {
            let k: usize = args[4].parse()?;
            let mut out = Vec::new();
            for _ in 0..k {
                let l = logits(&model, &ids)?;
                let last = &l[l.len() - v..];
                let mut best = 0;
                for (i, &x) in last.iter().enumerate() {
                    if x > last[best] {
                        best = i;
                    }
                }
                ids.push(best as u32);
                out.push(best.to_string());
            }
            println!("{}", out.join(","));
        }
        other => bail!("unknown probe {other:?}"),
    }
    Ok(())
}
