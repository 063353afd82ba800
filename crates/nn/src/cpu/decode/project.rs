//! Linear layers over the few rows of a decode call (one position per sequence), reading f32 or
//! bf16 weights: one matrix-vector pass per row (`gemm::gemv`), or the f32 GEMM for more rows.

use crate::config::Precision;
use crate::cpu::gemm::gemv::{self, DecodeWeights, Weights, GEMV_MAX_ROWS};
use crate::cpu::gemm::matmul::matmul_forward;
use std::ops::Range;

/// A bf16 copy of `src` (round-to-nearest-even), for decoding that reads half the bytes.
pub fn to_bf16(src: &[f32]) -> Vec<u16> {
    gemv::to_bf16(src)
}

/// Linear layers sharing their input: for each `(out, range)` job, `out (n, d_out) = inp (n, d_in)
/// · Wᵀ` with W (d_out, d_in) at `range` of the parameters `w` (of its bf16 snapshot when given,
/// for few rows).
/// Up to `GEMV_MAX_ROWS` rows: one parallel matrix-vector pass over all the jobs' weights per
/// row (the weights are streamed once per row); more: the f32 GEMM, which repacks the weights
/// but reuses them across rows.
pub fn project_rows(inp: &[f32], n: usize, jobs: &mut [(&mut [f32], Range<usize>)], w: DecodeWeights) {
    let d_in = inp.len() / n.max(1);
    if n > GEMV_MAX_ROWS || d_in == 0 {
        for (out, range) in jobs.iter_mut() {
            let d_out = out.len() / n.max(1);
            matmul_forward(Precision::F32, out, inp, &w.p[range.clone()], n, d_in, d_out);
        }
        return;
    }
    for (row, x) in inp.chunks_exact(d_in).enumerate() {
        let mut rows: Vec<(&mut [f32], Weights<'_>)> = jobs
            .iter_mut()
            .map(|(out, range)| {
                let d_out = out.len() / n;
                (&mut out[row * d_out..(row + 1) * d_out], w.at(range.clone()))
            })
            .collect();
        gemv::gemv_multi(x, &mut rows);
    }
}
