//! The backend boundary: every computation the model does on its f32 buffers, each as a plain
//! `*_forward` / `*_backward` pair on row-major slices. The model calls only these, so another
//! backend (CUDA) can replace this module without touching model code.
//!
//! Conventions: shapes are given in the doc comments as (rows, cols), row-major, contiguous.
//! A backward says for each output whether it is OVERWRITTEN or ACCUMULATED (`+=`); parameter
//! gradients are always accumulated. Work is parallel over rows with rayon (matmuls through the
//! `gemm` crate, which dispatches to AVX-512 where the CPU has it; products whose reduction is
//! longer than their output is wide run as one single-threaded gemm per block of rows,
//! `matmul::gemm_row_blocks`, bitwise the same and faster there). The matmuls take a
//! `Precision`: with `Bf16` their operands are rounded to bf16 and multiplied on AMX tiles or with
//! AVX-512 BF16 (`gemm_bf16`), sums and everything else staying f32. CPU-specific code (AVX-512,
//! AMX) is chosen at run time and always has a portable fallback.

pub mod amx;
pub mod attention;
pub mod attention_rows;
pub mod attention_tiles;
pub mod cross_entropy;
pub mod dpbf16;
pub mod embedding;
pub mod fastmath;
pub mod gemm_bf16;
pub mod gemm_f32_amx;
pub mod gemv;
pub mod matmul;
pub mod pack_bf16;
pub mod peak;
pub mod residual;
pub mod rmsnorm;
pub mod rope;
pub mod swiglu;
pub mod transpose;

pub use attention::{
    attention_backward, attention_backward_recompute, attention_forward, attention_forward_cached,
    attention_forward_recompute,
};
pub use cross_entropy::{cross_entropy_backward, cross_entropy_forward, cross_entropy_fused};
pub use embedding::{embedding_backward, embedding_forward};
pub use gemm_bf16::{gemm_bf16, Precision};
pub use matmul::{
    matmul_backward, matmul_backward_input, matmul_backward_weight, matmul_backward_weight_shared,
    matmul_backward_weight_t, matmul_forward, matmul_forward_shared, WeightGrad,
};
pub use residual::{add_inplace, residual_forward};
pub use rmsnorm::{rmsnorm_backward, rmsnorm_forward, rmsnorm_row};
pub use rope::{rope_backward, rope_forward, rope_forward_span, RopeTable};
pub use swiglu::{silu_backward, silu_forward, swiglu_backward, swiglu_backward_t, swiglu_forward};

/// A raw pointer that rayon tasks may share: for kernels whose tasks write disjoint parts of one
/// exclusively borrowed buffer that are not contiguous slices (column blocks of SwiGLU's
/// transposed gradients, scattered embedding rows). Each use states in its SAFETY comment why the parts are
/// disjoint.
#[derive(Clone, Copy)]
pub(crate) struct SyncPtr(pub(crate) *mut f32);

impl SyncPtr {
    /// The pointer (a method, so closures capture the whole `Sync` wrapper, not the field).
    pub(crate) fn ptr(self) -> *mut f32 {
        self.0
    }
}
// SAFETY: SyncPtr only carries the address; every dereference is an `unsafe` block in a kernel
// whose tasks touch disjoint elements of a buffer borrowed exclusively for the whole call.
unsafe impl Send for SyncPtr {}
// SAFETY: as above; the pointer is only copied, never turned into overlapping slices.
unsafe impl Sync for SyncPtr {}

/// Rows per rayon task for row-parallel elementwise kernels: enough work per task that the
/// scheduling cost is negligible, small enough to balance over a few cores.
pub(crate) fn rows_per_task(n_rows: usize, row_len: usize) -> usize {
    let target = 16 * 1024; // elements per task
    (target / row_len.max(1)).clamp(1, n_rows.max(1))
}
