//! The CPU decode engine (generation, one position per sequence): linear layers over a few rows
//! in f32 or bf16 (`project`), attention of one query over the KV cache (`attention`), and the whole batch-1 decode step as one phased parallel job
//! (`step`) on a thread team that stays awake between tokens (`phased`), and its batched form for
//! several sequences decoded together (`batch_step`); both store into and attend over a
//! sequence's cache through `seq`.

pub mod attention;
pub mod batch_step;
pub mod phased;
pub mod project;
pub mod project_batch;
mod seq;
pub mod step;
