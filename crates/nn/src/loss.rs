//! Numerically stable softmax cross-entropy (the library API; the row kernels live in
//! `ops::cross_entropy_*`, implemented in `cpu::cross_entropy`).

use crate::ops::{cross_entropy_backward, cross_entropy_forward};
use crate::{NnError, Result};

/// Checks `logits.len() == N·vocab` and every target < vocab.
pub(crate) fn check_targets(logits_len: usize, targets: &[u32], vocab: usize) -> Result<()> {
    if vocab == 0 || logits_len != targets.len() * vocab {
        return Err(NnError::Shape(format!(
            "cross-entropy: logits has {logits_len} values, expected targets ({}) × vocab ({vocab})",
            targets.len()
        )));
    }
    if let Some((pos, &id)) = targets.iter().enumerate().find(|(_, &t)| t as usize >= vocab) {
        return Err(NnError::TargetOutOfRange { id, pos, vocab });
    }
    Ok(())
}

/// Mean over N = targets.len() positions of −log softmax(o)[target]; `logits` is (N, vocab)
/// row-major, i.e. any leading batch dims flattened. Stable for |logits| ≥ 1e4.
/// Errors on a target ≥ vocab or logits.len() != N·vocab. N = 0 gives 0.
pub fn cross_entropy(logits: &[f32], targets: &[u32], vocab: usize) -> Result<f32> {
    check_targets(logits.len(), targets, vocab)?;
    if targets.is_empty() {
        return Ok(0.0);
    }
    let mut losses = vec![0.0f32; targets.len()];
    cross_entropy_forward(&mut losses, logits, targets, vocab);
    Ok(mean(&losses))
}

/// The loss as `cross_entropy` and its gradient (softmax − onehot) / N written into `dlogits`.
pub fn cross_entropy_with_grad(
    logits: &[f32],
    targets: &[u32],
    vocab: usize,
    dlogits: &mut [f32],
) -> Result<f32> {
    check_targets(logits.len(), targets, vocab)?;
    if dlogits.len() != logits.len() {
        return Err(NnError::Shape(format!(
            "cross-entropy: dlogits has {} values, logits {}",
            dlogits.len(),
            logits.len()
        )));
    }
    if targets.is_empty() {
        return Ok(0.0);
    }
    let mut losses = vec![0.0f32; targets.len()];
    cross_entropy_forward(&mut losses, logits, targets, vocab);
    cross_entropy_backward(dlogits, logits, targets, vocab, 1.0 / targets.len() as f32);
    Ok(mean(&losses))
}

/// Mean of per-row losses, summed in f64.
pub(crate) fn mean(losses: &[f32]) -> f32 {
    (losses.iter().map(|&l| l as f64).sum::<f64>() / losses.len() as f64) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_logits_give_ln_vocab_and_extremes_stay_finite() {
        let l = cross_entropy(&[0.0; 8], &[1, 3], 4).unwrap();
        assert!((l - 4f32.ln()).abs() < 1e-6);
        let logits = [1e4f32, -1e4, 0.0, 3e4, -3e4, 1e4];
        let mut d = [0.0; 6];
        let l = cross_entropy_with_grad(&logits, &[1, 0], 3, &mut d).unwrap();
        // row 0: lse = 1e4, loss = 2e4; row 1: lse = 3e4 = its target's logit, loss 0; mean 1e4.
        assert!((l - 1e4).abs() < 1e-2, "{l}");
        assert_eq!(d, [0.5, -0.5, 0.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn bad_targets_and_shapes_are_errors() {
        assert!(matches!(
            cross_entropy(&[0.0; 6], &[0, 3], 3),
            Err(NnError::TargetOutOfRange {
                id: 3,
                pos: 1,
                vocab: 3
            })
        ));
        assert!(cross_entropy(&[0.0; 5], &[0, 1], 3).is_err());
        assert!(cross_entropy_with_grad(&[0.0; 6], &[0, 1], 3, &mut [0.0; 5]).is_err());
    }
}
