//! The CPU matrix-product engine: the model's linear layers in a `Precision` (`matmul`), the f32
//! FMA GEMM on the `gemm` crate (`f32`), the packed bf16 GEMM driver (`bf16`) with its packers
//! (`pack_bf16`) and microkernels (AMX tiles `amx`, AVX-512 BF16 `dpbf16`, their operands
//! `microkernel`), the f32-accurate
//! split GEMM on the AMX tiles (`f32_amx`), matrix-vector products for few rows (`gemv`) and
//! blocked transposes (`transpose`).
//!
//! Imports inside: matmul → {f32, bf16, f32_amx, gemv}; f32_amx → bf16 → {f32, pack_bf16, amx,
//! dpbf16} → microkernel; all → `cpu::simd` for detection and bf16 conversions.

pub mod amx;
pub mod bf16;
pub mod dpbf16;
pub mod f32;
pub mod f32_amx;
pub mod gemv;
pub mod gemv_batch;
pub mod matmul;
pub mod microkernel;
pub mod pack_bf16;
pub mod transpose;
