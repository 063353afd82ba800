//! Gradient clipping by global L2 norm.

use rayon::prelude::*;

/// Number of partial sums the norm is split into. Fixed, so the f64 summation order (and so the
/// norm, to the last bit) does not depend on the number of threads or on work stealing: a
/// resumed run clips exactly as the original did. Partial sums live on the stack (no allocation).
const NORM_BLOCKS: usize = 64;

/// The L2 norm of `grads` as one vector, accumulated in f64 in a fixed (deterministic) order,
/// in parallel over blocks.
pub fn grad_norm(grads: &[f32]) -> f64 {
    if grads.is_empty() {
        return 0.0;
    }
    let block = grads.len().div_ceil(NORM_BLOCKS);
    let mut partial = [0.0f64; NORM_BLOCKS];
    partial
        .par_iter_mut()
        .zip(grads.par_chunks(block))
        .for_each(|(acc, chunk)| *acc = sum_of_squares(chunk));
    partial.iter().sum::<f64>().sqrt()
}

/// Σ x² in f64 with 8 independent accumulators (lets the compiler vectorize; order is fixed).
fn sum_of_squares(xs: &[f32]) -> f64 {
    let mut lanes = [0.0f64; 8];
    let mut it = xs.chunks_exact(8);
    for c in &mut it {
        for (l, &x) in lanes.iter_mut().zip(c) {
            *l += (x as f64) * (x as f64);
        }
    }
    let tail: f64 = it.remainder().iter().map(|&x| (x as f64) * (x as f64)).sum();
    lanes.iter().sum::<f64>() + tail
}

/// The factor `clip_grad_norm` multiplies the gradients by for a total norm `norm`:
/// max_norm / (norm + 1e-6) when the norm is finite and above max_norm, else exactly 1 (for
/// `AdamW::step_scaled_and_zero_grads`, which applies it during the update).
pub fn clip_scale(norm: f64, max_norm: f32) -> f32 {
    if norm.is_finite() && norm > max_norm as f64 {
        (max_norm as f64 / (norm + 1e-6)) as f32
    } else {
        1.0
    }
}

/// One L2 norm over all of `grads` (one flat buffer holding every parameter's gradient); if it is
/// above `max_norm`, scales all gradients by `max_norm / (norm + 1e-6)` (as `torch.nn.utils.
/// clip_grad_norm_` does). Returns the norm before clipping, for logging.
///
/// A non-finite norm (NaN or inf in the gradients) leaves the gradients untouched and is returned
/// as is, so the caller can detect it and stop instead of silently zeroing the update.
pub fn clip_grad_norm(grads: &mut [f32], max_norm: f32) -> f32 {
    let norm = grad_norm(grads);
    let scale = clip_scale(norm, max_norm);
    if scale != 1.0 {
        grads
            .par_chunks_mut(1 << 14)
            .for_each(|c| c.iter_mut().for_each(|g| *g *= scale));
    }
    norm as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_scale_is_the_factor_clip_grad_norm_applies() {
        assert_eq!(clip_scale(5.0, 5.5), 1.0);
        assert_eq!(clip_scale(f64::NAN, 1.0), 1.0);
        assert_eq!(clip_scale(f64::INFINITY, 1.0), 1.0);
        let s = clip_scale(5.0, 1.0);
        assert_eq!(s, (1.0 / (5.0 + 1e-6)) as f32);
        let mut g = vec![3.0f32, 4.0, 0.0];
        clip_grad_norm(&mut g, 1.0);
        assert_eq!(g, vec![3.0 * s, 4.0 * s, 0.0]);
    }

    #[test]
    fn below_max_leaves_gradients_untouched() {
        let mut g = vec![3.0f32, 4.0, 0.0];
        let n = clip_grad_norm(&mut g, 5.5);
        assert_eq!(n, 5.0);
        assert_eq!(g, vec![3.0, 4.0, 0.0]);
        // Exactly at max: not above, untouched.
        assert_eq!(clip_grad_norm(&mut g, 5.0), 5.0);
        assert_eq!(g, vec![3.0, 4.0, 0.0]);
    }

    #[test]
    fn above_max_scales_to_max_and_returns_the_old_norm() {
        let mut g = vec![3.0f32, 4.0, 0.0];
        let n = clip_grad_norm(&mut g, 1.0);
        assert_eq!(n, 5.0);
        let s = (1.0 / (5.0 + 1e-6)) as f32;
        assert_eq!(g, vec![3.0 * s, 4.0 * s, 0.0]);
        let after = grad_norm(&g);
        assert!((after - 1.0).abs() < 1e-6, "{after}");
    }

    #[test]
    fn large_buffers_are_exact_and_deterministic() {
        // 1e6 + 3 elements (odd sizes exercise the block and lane remainders).
        let n = 1_000_003;
        let mut g: Vec<f32> = (0..n).map(|i| ((i % 7) as f32 - 3.0) * 0.5).collect();
        let expect: f64 = g.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt();
        let a = grad_norm(&g);
        assert!((a - expect).abs() / expect < 1e-12, "{a} vs {expect}");
        for _ in 0..3 {
            assert_eq!(grad_norm(&g).to_bits(), a.to_bits());
        }
        let norm = clip_grad_norm(&mut g, 10.0);
        assert!((norm as f64 - expect).abs() / expect < 1e-6);
        assert!((grad_norm(&g) - 10.0).abs() < 1e-4);
    }

    #[test]
    fn empty_and_nonfinite() {
        assert_eq!(clip_grad_norm(&mut [], 1.0), 0.0);
        let mut g = vec![1.0f32, f32::NAN, 100.0];
        assert!(clip_grad_norm(&mut g, 1.0).is_nan());
        assert_eq!(g[2], 100.0);
        let mut g = vec![1.0f32, f32::INFINITY, 100.0];
        assert_eq!(clip_grad_norm(&mut g, 1.0), f32::INFINITY);
        assert_eq!(g[0], 1.0);
    }
}
