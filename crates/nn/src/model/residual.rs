//! A block's residual connection and the RMSNorm a post-norm block puts after it: the forward
//! (`residual`, the norm given as `PostNorm`) and the norm's backward (`post_norm_backward`).

use crate::config::RMSNORM_EPS;
use crate::ops::{self, laps::Laps};

/// Backward of a post-norm block's RMSNorm (gain at `gain` of the parameters, input `x` (N, d)
/// with its `rstd`): `dx` OVERWRITTEN with the input gradient of `dy`, the gain's gradient
/// ACCUMULATED into `g`.
#[allow(clippy::too_many_arguments)]
pub(super) fn post_norm_backward(
    dx: &mut [f32],
    g: &mut [f32],
    p: &[f32],
    gain: std::ops::Range<usize>,
    dy: &[f32],
    x: &[f32],
    rstd: &[f32],
    d: usize,
    laps: &mut Laps,
) {
    dx.fill(0.0);
    let n = rstd.len();
    ops::rmsnorm_backward(dx, &mut g[gain.clone()], dy, x, &p[gain], rstd, n, d);
    laps.mark("bwd rmsnorm");
}

/// The norm after a post-norm block's residual add: the sum it normalizes (n, d), kept for the
/// backward with the per-row `rstd` (n), and the gain (d).
pub(super) struct PostNorm<'a> {
    sum: &'a mut [f32],
    rstd: &'a mut [f32],
    gain: &'a [f32],
}

impl<'a> PostNorm<'a> {
    /// The norm when the block is post-norm (`post`), else None.
    pub(super) fn when(post: bool, sum: &'a mut [f32], rstd: &'a mut [f32], gain: &'a [f32]) -> Option<Self> {
        post.then_some(PostNorm { sum, rstd, gain })
    }
}

/// A block's residual connection: `out = x + y`, or with `norm` (post-norm) `sum = x + y` and
/// `out = RMSNorm(sum)`; n rows of d.
pub(super) fn residual(out: &mut [f32], x: &[f32], y: &[f32], norm: Option<PostNorm>) {
    match norm {
        Some(PostNorm { sum, rstd, gain }) => {
            ops::residual_forward(sum, x, y);
            ops::rmsnorm_forward(out, rstd, sum, gain, rstd.len(), gain.len(), RMSNORM_EPS);
        }
        None => ops::residual_forward(out, x, y),
    }
}
