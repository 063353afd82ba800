//! The backend boundary: every operation the model runs on its buffers, backend-neutral. `model/`
//! calls only these (no `unsafe`, raw pointers, thread teams or SIMD above this line); the CPU
//! backend (`crate::cpu`) implements them below it.
//!
//! Conventions: buffers are f32 (bf16 weight snapshots: u16 bit patterns), row-major,
//! contiguous; shapes are given as (rows, cols) in each function's doc. A backward says for each
//! output whether it is OVERWRITTEN or ACCUMULATED (`+=`); parameter gradients are always
//! accumulated. Every function is deterministic: the same inputs give bitwise the same outputs
//! whatever the thread count.
//!
//! # The contract for a second backend (CUDA)
//!
//! A backend implements each function below with the same signature and semantics, on buffers it
//! owns; model code does not change.
//!
//! Training (one `Model::forward_backward` step):
//! - linear layers in a `Precision`: `matmul_forward`, `matmul_forward_shared` (several weights of
//!   one input: q/k/v, W1/W3), `matmul_backward_input` + `matmul_backward_weight` (the
//!   backward), `matmul_backward_weight_t` (output gradient given transposed),
//!   `matmul_backward_weight_shared` (several weight gradients of one input);
//! - `embedding_forward` / `embedding_backward`, `rmsnorm_forward` / `rmsnorm_backward`,
//!   `rope_forward` / `rope_backward` (with a `RopeTable`), `attention_forward_recompute` /
//!   `attention_backward_recompute` (and the stored-probability pair `attention_forward` /
//!   `attention_backward`), `swiglu_forward` / `swiglu_backward` / `swiglu_backward_t`,
//!   `silu_forward` / `silu_backward`, `residual_forward` / `add_inplace`,
//!   `cross_entropy_forward` / `cross_entropy_backward` / `cross_entropy_fused`.
//!
//! Generation (`Model::forward_infer`):
//! - `to_bf16` (the bf16 weight snapshot), `project_rows` (linear layers over a few rows in f32
//!   or bf16, the GEMM for more), `store_keys_transposed` + `attention_decode` (one query per
//!   sequence over the KV cache), `attention_forward_cached` (a prompt over the cache),
//!   `rmsnorm_forward`, `rope_forward`, `swiglu_forward`, `silu_forward`, `add_inplace`;
//! - `project_batch`: linear layers over the positions of several sequences decoded together
//!   (continuous batching, `model::BatchDecoder`), one pass over each weight for all rows, every
//!   row bitwise `project_rows` of that row alone;
//! - the batch-1 decode step as one call: `DecodeState` (the backend's per-cache plan and
//!   scratch; on a GPU: its streams/graphs), `decode_step` (appends one token to the cache and
//!   writes the logits, returning their argmax: the LM head's argmax comes with the step),
//!   `decode_step_supported` (configs it handles; others take the general path);
//! - its batched form, `BatchDecodeState` + `decode_step_batch`: one token for each of several
//!   batch-1 caches at their own positions as one call, each sequence's logits bitwise
//!   `decode_step`'s for it alone (continuous batching, `model::BatchDecoder`).
//!
//! Buffers a backend would own (on the device): the flat parameter buffer and its gradients, the
//! AdamW moments (`optim`), the training activations (`model::Activations`), the KV cache's key,
//! value and transposed-key buffers (`model::KvCache`), the bf16 weight snapshot, and the decode
//! state. Host-side and backend-independent: the config and layout (`config`), token ids,
//! sampling (`sample`), the learning-rate schedule, and the loss/norm scalars read back per step.
//!
//! Observability: `laps::Laps` is the lap hook the training pass calls after each operation (a
//! no-op unless `bench::profile` turned it on); `MatmulBackend::backend` names what a precision's
//! products run on.

pub mod laps;

pub use crate::config::Precision;
pub use crate::cpu::attention::{
    attention_backward, attention_backward_recompute, attention_forward, attention_forward_cached,
    attention_forward_recompute, AttnShape, Qkv,
};
pub use crate::cpu::cross_entropy::{cross_entropy_backward, cross_entropy_forward, cross_entropy_fused};
pub use crate::cpu::decode::attention::{attention_decode, store_keys_transposed};
pub use crate::cpu::decode::batch_step::{decode_step_batch, BatchDecodeState};
pub use crate::cpu::decode::project::{project_rows, to_bf16, PROMPT_GEMV_MAX_ROWS};
pub use crate::cpu::decode::project_batch::project_batch;
pub use crate::cpu::decode::step::{decode_step, supported as decode_step_supported, CacheRefs, DecodeState};
pub use crate::cpu::embedding::{embedding_backward, embedding_forward};
pub use crate::cpu::gemm::gemv::DecodeWeights;
pub use crate::cpu::gemm::matmul::{
    matmul_backward_input, matmul_backward_weight, matmul_backward_weight_shared, matmul_backward_weight_t,
    matmul_forward, matmul_forward_shared, WeightGrad,
};
pub use crate::cpu::residual::{add_inplace, residual_forward};
pub use crate::cpu::rmsnorm::{rmsnorm_backward, rmsnorm_forward, rmsnorm_row};
pub use crate::cpu::rope::{rope_backward, rope_forward, rope_forward_span, RopeTable};
pub use crate::cpu::swiglu::{
    silu_backward, silu_forward, swiglu_backward, swiglu_backward_t, swiglu_forward,
};

/// The name of the unit a precision's products run on on this machine (for logs and benchmarks):
/// `precision.backend()`.
pub trait MatmulBackend {
    fn backend(self) -> &'static str;
}

impl MatmulBackend for Precision {
    fn backend(self) -> &'static str {
        crate::cpu::gemm::matmul::backend_name(self)
    }
}
