//! Softmax cross-entropy over the vocabulary, stable for logits of any finite magnitude: the row
//! max is subtracted before exp, and log-sum-exp is used (never exp then log of a probability).

use super::transpose::transpose_to_ptr;
use super::{fastmath, rows_per_task, SyncPtr};
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

/// `cross_entropy_fused` that also writes the gradient transposed: `dlogits_t[v·ld_t + i]` =
/// the new `logits[i·vocab + v]` (n ≤ ld_t; dlogits_t holds vocab·ld_t floats), for the LM head's
/// weight gradient (`matmul_backward_weight_t`). Blocks of 32 rows, each transposed while still
/// in cache (non-temporal stores where the rows are 64-byte aligned, see `transpose_to_ptr`).
/// logits and losses end bitwise as with `cross_entropy_fused`.
pub fn cross_entropy_fused_t(
    logits: &mut [f32],
    losses: &mut [f32],
    targets: &[u32],
    vocab: usize,
    scale: f32,
    dlogits_t: &mut [f32],
    ld_t: usize,
) {
    let n = targets.len();
    assert_eq!(logits.len(), n * vocab, "cross_entropy_fused_t: logits");
    assert_eq!(losses.len(), n, "cross_entropy_fused_t: losses");
    assert!(
        n <= ld_t && dlogits_t.len() >= vocab * ld_t,
        "cross_entropy_fused_t: dlogits_t"
    );
    if n == 0 || vocab == 0 {
        return;
    }
    const BLOCK: usize = 32;
    let dt = SyncPtr(dlogits_t.as_mut_ptr());
    logits
        .par_chunks_mut(BLOCK * vocab)
        .zip(losses.par_chunks_mut(BLOCK))
        .zip(targets.par_chunks(BLOCK))
        .enumerate()
        .for_each(|(i, ((x, l), t))| {
            cross_entropy_fused(x, l, t, vocab, scale);
            // SAFETY: dlogits_t holds vocab·ld_t floats (asserted) and is exclusively borrowed for
            // this call; this task writes only its columns i·BLOCK..i·BLOCK + t.len() (≤ n ≤ ld_t)
            // of each of the vocab rows, disjoint from every other task's columns.
            unsafe { transpose_to_ptr(dt.ptr().add(i * BLOCK), ld_t, x, vocab, t.len(), vocab) };
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Logits and losses bitwise as `cross_entropy_fused`; dlogits_t the exact transpose with
    /// padding untouched, for row counts off the 32-row block and vocabularies off the 16-wide
    /// tile, aligned (streaming stores) and unaligned rows.
    #[test]
    fn transposed_gradient_is_the_exact_transpose() {
        for (n, vocab) in [(1, 3), (33, 50), (64, 16), (70, 129)] {
            let logits: Vec<f32> = (0..n * vocab)
                .map(|i| ((i * 7919) % 997) as f32 / 50.0 - 10.0)
                .collect();
            let targets: Vec<u32> = (0..n).map(|i| ((i * 31) % vocab) as u32).collect();
            let (mut want, mut want_l) = (logits.clone(), vec![0.0; n]);
            cross_entropy_fused(&mut want, &mut want_l, &targets, vocab, 0.25);
            for (ld, skew) in [(n.div_ceil(16) * 16 + 16, 0), (n + 1, 3)] {
                let (mut got, mut got_l) = (logits.clone(), vec![0.0; n]);
                let mut t = vec![-9.0f32; vocab * ld + 32];
                let off = t.as_ptr().align_offset(64) + skew;
                cross_entropy_fused_t(&mut got, &mut got_l, &targets, vocab, 0.25, &mut t[off..], ld);
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&got), bits(&want), "{n}x{vocab}");
                assert_eq!(bits(&got_l), bits(&want_l), "{n}x{vocab}");
                for v in 0..vocab {
                    for i in 0..ld {
                        let x = t[off + v * ld + i];
                        if i < n {
                            assert_eq!(x.to_bits(), want[i * vocab + v].to_bits(), "({v},{i}) ld {ld}");
                        } else {
                            assert_eq!(x, -9.0, "padding ({v},{i}) written");
                        }
                    }
                }
            }
        }
    }
}
