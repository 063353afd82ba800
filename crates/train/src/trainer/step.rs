//! One optimizer step, independent of where its batches come from: micro-batches →
//! forward/backward → gradient-accumulation scaling → gradient reduction (the hook for training on
//! several processes) → clip → learning rate → AdamW → non-finite check. The trainer and
//! `ferrolm bench train` both run exactly this code.

use crate::bench::probe::Laps;
use crate::data::{BatchSampler, TokenFile};
use anyhow::{Context, Result};
use ferrolm_nn::clip::{clip_scale, grad_norm};
use ferrolm_nn::model::{Activations, Model};
use ferrolm_nn::optim::AdamW;
use ferrolm_nn::schedule::lr_cosine;
use rayon::prelude::*;

/// Where a step's micro-batches come from.
pub trait BatchSource {
    /// Fills `inputs` and `targets` (each batch·seq ids, row-major (batch, seq); targets are the
    /// next token at each position) with the next micro-batch.
    fn next_batch(&mut self, inputs: &mut [u32], targets: &mut [u32]) -> Result<()>;
}

/// Micro-batches drawn by a [`BatchSampler`] from a token file (what training uses).
pub struct SampledBatches<'a> {
    pub sampler: &'a mut BatchSampler,
    pub tokens: &'a TokenFile,
    /// Tokens per sequence.
    pub seq: usize,
}

impl BatchSource for SampledBatches<'_> {
    fn next_batch(&mut self, inputs: &mut [u32], targets: &mut [u32]) -> Result<()> {
        self.sampler.fill(self.tokens, self.seq, inputs, targets)
    }
}

/// The same micro-batch every time (benchmarks).
pub struct FixedBatch {
    pub inputs: Vec<u32>,
    pub targets: Vec<u32>,
}

impl BatchSource for FixedBatch {
    fn next_batch(&mut self, inputs: &mut [u32], targets: &mut [u32]) -> Result<()> {
        inputs.copy_from_slice(&self.inputs);
        targets.copy_from_slice(&self.targets);
        Ok(())
    }
}

/// Combines the gradients of all processes that train one model together.
///
/// THIS IS THE HOOK FOR MULTI-PROCESS (DATA-PARALLEL) TRAINING. [`Stepper::step`] calls
/// [`GradReducer::reduce`] exactly once per optimizer step, on the full flat gradient buffer
/// (`Model::grads`, one f32 per parameter, in `Model::params` order), after the local micro-batches'
/// gradients were summed and scaled by 1/grad_accum and before the norm is taken for clipping and
/// the non-finite check. An implementation must leave every process with the same buffer: the mean
/// over processes of their buffers (an all-reduce sum divided by the number of processes), so that
/// clipping, AdamW and the parameters stay identical everywhere. The loss each process reports
/// stays its local mean.
pub trait GradReducer: Send {
    /// Replaces `grads` with the mean over all processes of their `grads`.
    fn reduce(&mut self, grads: &mut [f32]) -> Result<()>;
}

/// One process: nothing to combine (the gradients are left untouched, bit for bit).
#[derive(Clone, Copy, Debug, Default)]
pub struct LocalReducer;

impl GradReducer for LocalReducer {
    fn reduce(&mut self, _grads: &mut [f32]) -> Result<()> {
        Ok(())
    }
}

/// The settings of a step: accumulation, clipping and the learning-rate schedule.
#[derive(Clone, Debug, PartialEq)]
pub struct StepSettings {
    /// Micro-batches per optimizer step (their gradients are averaged).
    pub grad_accum: usize,
    /// Clip the global gradient norm to this (0: no clipping).
    pub grad_clip: f32,
    /// Peak learning rate, reached at the end of the warmup.
    pub max_lr: f32,
    /// Learning rate at and after the end of the cosine.
    pub min_lr: f32,
    /// Linear warmup steps.
    pub warmup_steps: u64,
    /// Step at which the cosine reaches `min_lr`.
    pub cosine_steps: u64,
}

impl StepSettings {
    /// The learning rate of the step that follows `step` completed steps.
    pub fn lr(&self, step: u64) -> f32 {
        lr_cosine(
            step,
            self.max_lr,
            self.min_lr,
            self.warmup_steps,
            self.cosine_steps,
        )
    }
}

/// What a completed step computed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepStats {
    /// Mean training loss over the step's micro-batches (nats per token).
    pub loss: f32,
    /// Global L2 norm of the (reduced, unclipped) gradient.
    pub grad_norm: f32,
    /// The learning rate the step used.
    pub lr: f32,
}

/// How a step ended.
#[derive(Clone, Debug, PartialEq)]
pub enum StepOutcome {
    /// The parameters and optimizer moments were updated.
    Done(StepStats),
    /// The loss or gradient norm was NaN or infinite: nothing was updated (the parameters and
    /// moments are still those before the step, the gradients are zeroed). `what` says which
    /// value, e.g. "loss NaN".
    NonFinite { what: String },
}

/// The model, its optimizer, and the buffers of a training step.
pub struct Stepper {
    pub model: Model,
    pub optim: AdamW,
    pub settings: StepSettings,
    acts: Activations,
    inputs: Vec<u32>,
    targets: Vec<u32>,
    reducer: Box<dyn GradReducer>,
}

impl Stepper {
    /// A stepper for micro-batches of `batch` sequences of `seq` tokens. Zeroes the gradients once:
    /// each step leaves them zeroed for the next.
    pub fn new(mut model: Model, optim: AdamW, settings: StepSettings, batch: usize, seq: usize) -> Stepper {
        let acts = Activations::new(&model.config, batch, seq);
        model.zero_grads();
        Stepper {
            model,
            optim,
            settings,
            acts,
            inputs: vec![0; batch * seq],
            targets: vec![0; batch * seq],
            reducer: Box::new(LocalReducer),
        }
    }

    /// Replaces the gradient reducer (default: [`LocalReducer`]).
    pub fn set_reducer(&mut self, reducer: Box<dyn GradReducer>) {
        self.reducer = reducer;
    }

    /// The activation buffers (batch × seq of the micro-batches), for evaluation between steps.
    pub fn activations(&mut self) -> (&Model, &mut Activations) {
        (&self.model, &mut self.acts)
    }

    /// Micro-batches → forward/backward → gradient-accumulation scaling: leaves the mean gradient
    /// over `grad_accum` micro-batches in `model.grads` (which must be zero on entry) and returns
    /// the mean loss. `step` (completed steps) only names the step in errors.
    pub fn accumulate_gradients(&mut self, step: u64, batches: &mut dyn BatchSource) -> Result<f32> {
        let accum = self.settings.grad_accum;
        let mut loss_sum = 0.0f64;
        for _ in 0..accum {
            batches.next_batch(&mut self.inputs, &mut self.targets)?;
            let l = self
                .model
                .forward_backward(&mut self.acts, &self.inputs, &self.targets)
                .with_context(|| format!("step {}", step + 1))?;
            loss_sum += l as f64;
        }
        if accum > 1 {
            let scale = 1.0 / accum as f32;
            self.model
                .grads
                .par_chunks_mut(1 << 16)
                .for_each(|c| c.iter_mut().for_each(|g| *g *= scale));
        }
        Ok((loss_sum / accum as f64) as f32)
    }

    /// One optimizer step after `step` completed ones (see the module docs for the order).
    pub fn step(&mut self, step: u64, batches: &mut dyn BatchSource) -> Result<StepOutcome> {
        let loss = self.accumulate_gradients(step, batches)?;
        // The multi-process hook: a no-op for one process.
        self.reducer.reduce(&mut self.model.grads)?;
        let mut laps = Laps::start();
        // Clipping is applied inside the AdamW pass (clip_scale), bitwise as clip_grad_norm would.
        let norm64 = grad_norm(&self.model.grads);
        laps.mark("gradient norm");
        let norm = norm64 as f32;
        if !loss.is_finite() || !norm.is_finite() {
            let what = if !loss.is_finite() {
                format!("loss {loss}")
            } else {
                format!("gradient norm {norm}")
            };
            self.model.zero_grads();
            return Ok(StepOutcome::NonFinite { what });
        }
        let grad_scale = if self.settings.grad_clip > 0.0 {
            clip_scale(norm64, self.settings.grad_clip)
        } else {
            1.0
        };
        let lr = self.settings.lr(step);
        self.optim
            .step_scaled_and_zero_grads(&mut self.model.params, &mut self.model.grads, lr, grad_scale);
        laps.mark("AdamW (+ zeroing the gradients)");
        Ok(StepOutcome::Done(StepStats {
            loss,
            grad_norm: norm,
            lr,
        }))
    }
}
