//! Linear layers over the positions of several independent sequences decoded together
//! (continuous batching): each weight matrix is read once per call for all rows.

use crate::cpu::gemm::gemv::Weights;
use crate::cpu::gemm::gemv_batch::gemv_batch;
use std::ops::Range;

/// Linear layers sharing their input: for each `(out, range)` job, `out (n, d_out) = inp (n, d_in)
/// · Wᵀ` with W (d_out, d_in) at `range` of the parameters `p` (of `bf16` when given). One pass over
/// each weight for all n rows; every row bitwise equal to `project_rows` on that row alone (and so
/// to the batch-1 decode step).
pub fn project_batch(
    inp: &[f32],
    n: usize,
    jobs: &mut [(&mut [f32], Range<usize>)],
    p: &[f32],
    bf16: Option<&[u16]>,
) {
    let mut rows: Vec<(&mut [f32], Weights<'_>)> = jobs
        .iter_mut()
        .map(|(out, range)| {
            let w = match bf16 {
                Some(b) => Weights::Bf16(&b[range.clone()]),
                None => Weights::F32(&p[range.clone()]),
            };
            (&mut **out, w)
        })
        .collect();
    gemv_batch(inp, n, &mut rows);
}
