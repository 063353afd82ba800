//! Linear layers over the few rows of a decode call or a short prompt, reading f32 or bf16
//! weights: one matrix-vector pass per row (`gemm::gemv`), one pass per four rows
//! (`gemm::gemv_batch`) for a short prompt, or the f32 GEMM for a long one.

use super::project_batch::project_batch;
use crate::config::Precision;
use crate::cpu::gemm::gemv::{self, DecodeWeights, Weights, GEMV_MAX_ROWS};
use crate::cpu::gemm::matmul::matmul_forward;
use std::ops::Range;

/// The most rows (prompt positions) `project_rows` multiplies with `gemv_batch` rather than the
/// f32 GEMM. The GEMM repacks every weight matrix per call: for the small preset's layer
/// (`cargo run --release -p ferrolm-nn --example prefill_times`, Zen 4, 2 threads) it took
/// 4.5 ms at 5 rows against 0.46 ms, 7.5 ms at 64 rows against 3.4 ms, 8.6 ms at 128 against
/// 5.8 ms; the two meet near 300 rows. 64 keeps a margin for machines with a faster GEMM.
pub const PROMPT_GEMV_MAX_ROWS: usize = 64;

/// A bf16 copy of `src` (round-to-nearest-even), for decoding that reads half the bytes.
pub fn to_bf16(src: &[f32]) -> Vec<u16> {
    gemv::to_bf16(src)
}

/// Linear layers sharing their input: for each `(out, range)` job, `out (n, d_out) = inp (n, d_in)
/// · Wᵀ` with W (d_out, d_in) at `range` of the parameters `w` (of its bf16 snapshot when given,
/// for few rows).
/// Up to `GEMV_MAX_ROWS` rows: one parallel matrix-vector pass over all the jobs' weights per
/// row (the weights are streamed once per row); up to `PROMPT_GEMV_MAX_ROWS`: `gemv_batch`
/// (streamed once per four rows, each row bitwise its single-row product); more: the f32 GEMM,
/// which repacks the weights but reuses them across all rows.
pub fn project_rows(inp: &[f32], n: usize, jobs: &mut [(&mut [f32], Range<usize>)], w: DecodeWeights) {
    let d_in = inp.len() / n.max(1);
    if d_in > 0 && n > GEMV_MAX_ROWS && n <= PROMPT_GEMV_MAX_ROWS {
        project_batch(inp, n, jobs, w);
        return;
    }
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
