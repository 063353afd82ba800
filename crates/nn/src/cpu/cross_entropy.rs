//! Softmax cross-entropy over the vocabulary, stable for logits of any finite magnitude: the row
//! max is subtracted before exp, and log-sum-exp is used (never exp then log of a probability).

use super::fastmath;
use super::par::rows_per_task;
use rayon::prelude::*;

/// `loss = ln Σ exp(row − max) − (row[target] − max)`: the difference row[target] − max is
/// exact for nearby values, so the loss keeps full precision even when |logits| ~ 1e4 ≫ loss.
fn row_loss(row: &[f32], target: usize) -> f32 {
    let max = fastmath::max(row);
    let sum = fastmath::sum_exp_shift(row, max);
    sum.ln() - (row[target] - max)
}

/// Per-row losses: `losses[i] = −log softmax(logits[i])[targets[i]]`; logits (n, vocab).
/// Overwrites losses. Targets must be < vocab (callers validate; out of range panics).
pub fn cross_entropy_forward(losses: &mut [f32], logits: &[f32], targets: &[u32], vocab: usize) {
    let n = targets.len();
    assert_eq!(logits.len(), n * vocab, "cross_entropy_forward: logits");
    assert_eq!(losses.len(), n, "cross_entropy_forward: losses");
    let rows = rows_per_task(n, vocab);
    losses
        .par_chunks_mut(rows)
        .zip(logits.par_chunks(rows * vocab))
        .zip(targets.par_chunks(rows))
        .for_each(|((l, x), t)| {
            for ((l, row), &t) in l.iter_mut().zip(x.chunks_exact(vocab)).zip(t) {
                *l = row_loss(row, t as usize);
            }
        });
}

/// `dlogits = scale · (softmax(logits) − onehot(targets))` (OVERWRITTEN); usually scale = 1/N for
/// the mean loss. Shapes as in the forward.
pub fn cross_entropy_backward(
    dlogits: &mut [f32],
    logits: &[f32],
    targets: &[u32],
    vocab: usize,
    scale: f32,
) {
    let n = targets.len();
    assert_eq!(logits.len(), n * vocab, "cross_entropy_backward: logits");
    assert_eq!(dlogits.len(), n * vocab, "cross_entropy_backward: dlogits");
    let rows = rows_per_task(n, vocab);
    dlogits
        .par_chunks_mut(rows * vocab)
        .zip(logits.par_chunks(rows * vocab))
        .zip(targets.par_chunks(rows))
        .for_each(|((dx, x), t)| {
            for ((dx, row), &t) in dx.chunks_exact_mut(vocab).zip(x.chunks_exact(vocab)).zip(t) {
                let max = fastmath::max(row);
                dx.copy_from_slice(row);
                let sum = fastmath::exp_shift_sum(dx, max);
                fastmath::scale(dx, scale / sum);
                dx[t as usize] -= scale;
            }
        });
}

/// Forward and backward in one pass, in place: `logits` (n, vocab) is replaced by
/// `scale · (softmax − onehot)`, and `losses[i]` gets row i's loss. Saves holding the logits and
/// their gradient at once.
pub fn cross_entropy_fused(
    logits: &mut [f32],
    losses: &mut [f32],
    targets: &[u32],
    vocab: usize,
    scale: f32,
) {
    let n = targets.len();
    assert_eq!(logits.len(), n * vocab, "cross_entropy_fused: logits");
    assert_eq!(losses.len(), n, "cross_entropy_fused: losses");
    let rows = rows_per_task(n, vocab);
    logits
        .par_chunks_mut(rows * vocab)
        .zip(losses.par_chunks_mut(rows))
        .zip(targets.par_chunks(rows))
        .for_each(|((x, l), t)| {
            for ((row, l), &t) in x.chunks_exact_mut(vocab).zip(l.iter_mut()).zip(t) {
                let t = t as usize;
                let max = fastmath::max(row);
                let xt = row[t] - max;
                let sum = fastmath::exp_shift_sum(row, max);
                // loss = lse − x_t = ln(sum) − (x_t − max); exact even where exp(x_t − max) underflows.
                *l = sum.ln() - xt;
                fastmath::scale(row, scale / sum);
                row[t] -= scale;
            }
        });
}
