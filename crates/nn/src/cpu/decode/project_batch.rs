//! Linear layers over the positions of several independent sequences decoded together
//! (continuous batching): each weight matrix is read once per call for all rows.

use crate::cpu::gemm::gemv::{DecodeWeights, Weights};
use crate::cpu::gemm::gemv_batch::gemv_batch;
use std::ops::Range;

/// Linear layers sharing their input: for each `(out, range)` job, `out (n, d_out) = inp (n, d_in)
/// · Wᵀ` with W (d_out, d_in) at `range` of the parameters `w` (of its bf16 snapshot when
/// given). One pass over each weight for all n rows; every row bitwise equal to `project_rows` on that
/// row alone (and so to the batch-1 decode step).
pub fn project_batch(inp: &[f32], n: usize, jobs: &mut [(&mut [f32], Range<usize>)], w: DecodeWeights) {
    let mut rows: Vec<(&mut [f32], Weights<'_>)> = jobs
        .iter_mut()
        .map(|(out, range)| (&mut **out, w.at(range.clone())))
        .collect();
    gemv_batch(inp, n, &mut rows);
}
