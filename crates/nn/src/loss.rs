//! Numerically stable softmax cross-entropy.
//!
//! API CONTRACT (stub).

use crate::Result;

/// Mean over N = targets.len() positions of −log softmax(o)[target]; `logits` is (N, vocab)
/// row-major, i.e. any leading batch dims flattened. Stable for |logits| ≥ 1e4.
/// Errors on a target ≥ vocab or logits.len() != N·vocab.
pub fn cross_entropy(logits: &[f32], targets: &[u32], vocab: usize) -> Result<f32> {
    let _ = (logits, targets, vocab);
    todo!()
}

/// The loss as `cross_entropy` and its gradient (softmax − onehot) / N written into `dlogits`.
pub fn cross_entropy_with_grad(
    logits: &[f32],
    targets: &[u32],
    vocab: usize,
    dlogits: &mut [f32],
) -> Result<f32> {
    let _ = (logits, targets, vocab, dlogits);
    todo!()
}
