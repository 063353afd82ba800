//! `train --init-from`: a new run that starts from another checkpoint's weights (fine-tuning),
//! with a fresh optimizer, schedule and data order.

use crate::checkpoint::{self, TokenizerIdentity};
use crate::TrainConfig;
use anyhow::{bail, Result};
use ferrolm_nn::model::Model;
use std::path::Path;

/// The model of the checkpoint at `path` (checkpoint, checkpoints or run directory), checked
/// against the run: the same model config, and the same tokenizer when both name one.
pub fn load_init_model(
    path: &Path,
    cfg: &TrainConfig,
    tokenizer: Option<&TokenizerIdentity>,
) -> Result<Model> {
    let dir = checkpoint::resolve(path)?;
    let ck = checkpoint::load_model(&dir)?;
    if ck.state.model != cfg.model {
        bail!(
            "--init-from {}: its model config {:?} differs from the run's {:?}; leave the model settings \
             out (the CLI then takes the checkpoint's)",
            dir.display(),
            ck.state.model,
            cfg.model
        );
    }
    if let (Some(a), Some(b)) = (&ck.state.tokenizer, tokenizer) {
        if a.bpe_fingerprint.is_some() && a.bpe_fingerprint != b.bpe_fingerprint {
            bail!(
                "--init-from {}: the model was trained with another tokenizer than data.tokenizer {} \
                 (fingerprints {:?} and {:?}); encode the data with the checkpoint's tokenizer ({}/{})",
                dir.display(),
                cfg.data.tokenizer.display(),
                a.bpe_fingerprint,
                b.bpe_fingerprint,
                dir.display(),
                checkpoint::TOKENIZER_DIR
            );
        }
    }
    Ok(ck.model)
}
