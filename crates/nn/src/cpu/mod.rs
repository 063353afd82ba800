//! The CPU backend: every operation of `crate::ops` implemented on this machine's cores.
//!
//! Three levels, imports pointing down only:
//! - the model's operations, one file each: `rmsnorm`, `rope`, `swiglu`, `residual`,
//!   `embedding`, `cross_entropy`, `attention/` (softmax rows in `attention::rows`,
//!   register-blocked tiles in `attention::tiles`);
//! - engines: `gemm/` (every matrix product: `matmul` the model's linear layers in a
//!   `Precision`, `f32` the FMA GEMM, `bf16` the packed bf16 driver, `f32_amx` the f32-accurate
//!   split GEMM on AMX, `pack_bf16` / `amx` / `dpbf16` its packers and microkernels (operands in
//!   `microkernel`), `gemv` the
//!   matrix-vector products of decoding, `transpose`) and `decode/` (the batch-1 decode step as
//!   one phased parallel job: `step`, its thread team `phased`, attention over the KV cache
//!   `attention`);
//! - machine support: `simd` (feature detection, environment overrides, the `dispatch!` macro,
//!   bf16 conversions), `fastmath` (vectorized exp and row reductions), `par` (`SyncPtr`,
//!   `rows_per_task`, the elementwise `zip3_chunks`); the `check_lens!` macro (below) for the
//!   kernels' length asserts.
//!
//! Conventions: shapes are given in the doc comments as (rows, cols), row-major, contiguous.
//! A backward says for each output whether it is OVERWRITTEN or ACCUMULATED (`+=`); parameter
//! gradients are always accumulated. Work is parallel over rows with rayon. CPU-specific code
//! (AVX-512, AVX-512 BF16, AMX) is chosen at run time (`simd`) and always has a portable fallback.

/// Asserts each buffer's length at the top of a kernel: `check_lens!("op", out: n * d, inp: n * d)`
/// panics with "op: out" (and both lengths) unless `out.len() == n * d`, and so on in order.
macro_rules! check_lens {
    ($op:literal, $($buf:ident: $len:expr),+ $(,)?) => {
        $(assert_eq!($buf.len(), $len, concat!($op, ": ", stringify!($buf)));)+
    };
}

pub mod attention;
pub mod cross_entropy;
pub mod decode;
pub mod embedding;
pub mod fastmath;
pub mod gemm;
pub mod par;
pub mod residual;
pub mod rmsnorm;
pub mod rope;
pub mod simd;
pub mod swiglu;
