//! One optimizer step, independent of where its batches come from: micro-batches →
//! forward/backward → gradients summed over micro-batches and processes in a fixed order (the
//! [`GradReducer`] hook for training on several processes) → scaling → clip → learning rate → AdamW → non-finite check. The trainer and
//! `ferrolm bench train` both run exactly this code.

use crate::bench::probe::Laps;
use crate::data::{BatchSampler, TokenFile};
use anyhow::{Context, Result};
use ferrolm_nn::clip::{clip_scale, grad_norm};
use ferrolm_nn::model::{Activations, Model};
use ferrolm_nn::optim::AdamW;
use ferrolm_nn::schedule::lr_cosine;
use rayon::prelude::*;
use std::ops::Range;

/// Where a step's micro-batches come from.
pub trait BatchSource {
    /// Fills `inputs` and `targets` (each batch·seq ids, row-major (batch, seq); targets are the
    /// next token at each position) with the next micro-batch.
    fn next_batch(&mut self, inputs: &mut [u32], targets: &mut [u32]) -> Result<()>;
}

/// Micro-batches drawn by a [`BatchSampler`] from a token file (what training uses). With
/// several processes each draw takes `world` micro-batches in order and keeps number `rank`, so
/// every process's sampler stays in the state of one process that drew them all.
pub struct SampledBatches<'a> {
    pub sampler: &'a mut BatchSampler,
    pub tokens: &'a TokenFile,
    /// Tokens per sequence.
    pub seq: usize,
    /// This process's rank and the number of processes (0 and 1 for one process).
    pub rank: usize,
    pub world: usize,
}

impl BatchSource for SampledBatches<'_> {
    fn next_batch(&mut self, inputs: &mut [u32], targets: &mut [u32]) -> Result<()> {
        let (mut skip_in, mut skip_tg) = (Vec::new(), Vec::new());
        for r in 0..self.world.max(1) {
            if r == self.rank {
                self.sampler.fill(self.tokens, self.seq, inputs, targets)?;
            } else {
                skip_in.resize(inputs.len(), 0);
                skip_tg.resize(targets.len(), 0);
                self.sampler
                    .fill(self.tokens, self.seq, &mut skip_in, &mut skip_tg)?;
            }
        }
        Ok(())
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
/// THIS IS THE HOOK FOR MULTI-PROCESS (DATA-PARALLEL) TRAINING. A step of `grad_accum` global
/// micro-batches on `world_size()` processes runs `grad_accum / world_size()` micro-steps; in
/// micro-step s process r computes the gradient of global micro-batch `s·world_size() + r` into a
/// zeroed buffer, and [`GradReducer::fold`] adds the micro-step's gradients of all processes to the
/// running sum in rank order. So the step's gradient is always the left fold
/// `((g_0 + g_1) + g_2) + …` over the global micro-batches in index order, whatever the number of
/// processes: N processes give bitwise what one process with N times the accumulation gives.
/// [`GradReducer::finish`] then gives every process the sum, which is scaled by 1/grad_accum, and
/// [`GradReducer::reduce`] is called once on that mean, before the norm is taken for clipping.
pub trait GradReducer: Send {
    /// Processes training together (1: this one alone).
    fn world_size(&self) -> usize {
        1
    }

    /// Adds one micro-step's gradients of every process to the running sum `sum.grads`, in rank
    /// order, and leaves `grads` (this process's micro-batch gradient, one f32 per parameter)
    /// zeroed. `first`: the step's first micro-step (`sum.grads` is zero and becomes exactly g_0).
    /// `loss`: this process's micro-batch loss; the micro-step's losses are added to `sum.loss` in
    /// rank order. `sum` need only be right on one rank (the one [`GradReducer::finish`]
    /// broadcasts from).
    fn fold(&mut self, first: bool, grads: &mut Vec<f32>, loss: f64, sum: &mut StepSum) -> Result<()> {
        fold_local(first, grads, &mut sum.grads);
        sum.loss += loss;
        Ok(())
    }

    /// After the last micro-step: gives every process the complete `sum` (it may replace the
    /// `sum.grads` buffer by another of the same length).
    fn finish(&mut self, _sum: &mut StepSum) -> Result<()> {
        Ok(())
    }

    /// Called before each micro-step's backward (`first`, `last`: the step's first, its last).
    /// Returns whether
    /// this reducer takes the micro-batch's gradient in pieces while the backward runs, through
    /// [`GradReducer::ready`], in the order `order` ([`Model::grad_ready_order`]), to overlap
    /// communication with the backward. [`GradReducer::fold`] follows as usual (`grads` then
    /// holds the whole micro-batch gradient). Default: no.
    fn before_backward(&mut self, _first: bool, _last: bool, _order: &[Range<usize>]) -> bool {
        false
    }

    /// During an overlapped backward: parameters `range` (offsets in the gradient) have their
    /// final micro-batch gradient `g`. Must not block on the backward; errors are kept for
    /// [`GradReducer::fold`].
    fn ready(&mut self, _range: Range<usize>, _g: &[f32]) {}

    /// Called once per step on the mean gradient (`Model::grads`, in `Model::params` order) before
    /// its norm is taken: a last chance to change it (the processes must stay identical).
    fn reduce(&mut self, _grads: &mut [f32]) -> Result<()> {
        Ok(())
    }

    /// Checks at the start that every process's run is rank 0's: `identity` names what fixes the
    /// run here (config, data files and lengths, tokenizer, starting checkpoint) as (name, value)
    /// pairs; a process that differs must make every process fail, naming the difference.
    fn agree(&mut self, _identity: &[(String, String)]) -> Result<()> {
        Ok(())
    }

    /// A line on what the reduction cost (bytes, time, share of the step), for the end of a run.
    fn report(&self) -> Option<String> {
        None
    }

    /// Whether any process wants to stop before the next step (all processes must agree, or
    /// some would wait for the others' gradients forever). One process: `local`.
    fn any_stop(&mut self, local: bool) -> Result<bool> {
        Ok(local)
    }
}

/// A step's running sums over its micro-batches (of all processes).
#[derive(Debug, Default)]
pub struct StepSum {
    /// The gradient, one f32 per parameter (empty until a step has several micro-batches; zero
    /// between steps).
    pub grads: Vec<f32>,
    /// The micro-batches' losses, nats/token.
    pub loss: f64,
}

/// `sum += grads; grads = 0` (or, for the first micro-step, `sum = grads` exactly, by swapping
/// the buffers: `sum` must be zero then).
pub fn fold_local(first: bool, grads: &mut Vec<f32>, sum: &mut Vec<f32>) {
    if first {
        std::mem::swap(grads, sum);
        return;
    }
    add_into(sum, grads);
    grads.par_chunks_mut(1 << 16).for_each(|c| c.fill(0.0));
}

/// `sum[i] += g[i]` (in parallel chunks; each element's addition is the same whatever the split).
pub fn add_into(sum: &mut [f32], g: &[f32]) {
    sum.par_chunks_mut(1 << 16)
        .zip(g.par_chunks(1 << 16))
        .for_each(|(s, g)| s.iter_mut().zip(g).for_each(|(s, g)| *s += *g));
}

/// One process: nothing to combine.
#[derive(Clone, Copy, Debug, Default)]
pub struct LocalReducer;

impl GradReducer for LocalReducer {}

/// The settings of a step: accumulation, clipping and the learning-rate schedule.
#[derive(Clone, Debug, PartialEq)]
pub struct StepSettings {
    /// Micro-batches per optimizer step over all processes (their gradients are averaged); each
    /// of the `world_size` processes runs `grad_accum / world_size` of them.
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
    /// The running sums of a step with several micro-batches.
    sum: StepSum,
    /// The order in which the backward finishes the parameters' gradients (for overlapping).
    ready_order: Vec<Range<usize>>,
}

impl Stepper {
    /// A stepper for micro-batches of `batch` sequences of `seq` tokens. Zeroes the gradients once:
    /// each step leaves them zeroed for the next.
    pub fn new(mut model: Model, optim: AdamW, settings: StepSettings, batch: usize, seq: usize) -> Stepper {
        let acts = Activations::new(&model.config, batch, seq);
        model.zero_grads();
        let ready_order = model.grad_ready_order();
        Stepper {
            model,
            optim,
            settings,
            acts,
            inputs: vec![0; batch * seq],
            targets: vec![0; batch * seq],
            reducer: Box::new(LocalReducer),
            sum: StepSum::default(),
            ready_order,
        }
    }

    /// Replaces the gradient reducer (default: [`LocalReducer`]).
    pub fn set_reducer(&mut self, reducer: Box<dyn GradReducer>) {
        self.reducer = reducer;
    }

    /// The gradient reducer (its world size, the stop agreement).
    pub fn reducer(&mut self) -> &mut dyn GradReducer {
        self.reducer.as_mut()
    }

    /// The activation buffers (batch × seq of the micro-batches), for evaluation between steps.
    pub fn activations(&mut self) -> (&Model, &mut Activations) {
        (&self.model, &mut self.acts)
    }

    /// Micro-batches → forward/backward → sum over micro-batches and processes (see
    /// [`GradReducer`]) → scaling by 1/grad_accum: leaves the mean gradient in `model.grads`
    /// (which must be zero on entry) and returns the mean loss. `step` (completed steps) only names
    /// the step in errors.
    pub fn accumulate_gradients(&mut self, step: u64, batches: &mut dyn BatchSource) -> Result<f32> {
        let accum = self.settings.grad_accum;
        let world = self.reducer.world_size();
        anyhow::ensure!(
            accum.is_multiple_of(world),
            "grad_accum {accum} is not a multiple of the {world} processes"
        );
        let micro_steps = accum / world;
        if accum == 1 {
            // One micro-batch on one process: its gradient as it is.
            batches.next_batch(&mut self.inputs, &mut self.targets)?;
            let l = self
                .model
                .forward_backward(&mut self.acts, &self.inputs, &self.targets)
                .with_context(|| format!("step {}", step + 1))?;
            return Ok(l);
        }
        if self.sum.grads.len() != self.model.grads.len() {
            self.sum.grads = vec![0.0; self.model.grads.len()];
        }
        self.sum.loss = 0.0;
        for s in 0..micro_steps {
            batches.next_batch(&mut self.inputs, &mut self.targets)?;
            let (model, acts, red) = (&mut self.model, &mut self.acts, &mut self.reducer);
            let l = if red.before_backward(s == 0, s + 1 == micro_steps, &self.ready_order) {
                let mut on_ready = |r: Range<usize>, g: &[f32]| red.ready(r, g);
                model.forward_backward_with(acts, &self.inputs, &self.targets, &mut on_ready)
            } else {
                model.forward_backward(acts, &self.inputs, &self.targets)
            }
            .with_context(|| format!("step {}", step + 1))?;
            let (grads, sum) = (&mut self.model.grads, &mut self.sum);
            self.reducer.fold(s == 0, grads, l as f64, sum)?;
        }
        self.reducer.finish(&mut self.sum)?;
        // The sum becomes the gradient; the zeroed micro-batch buffer the next step's sum.
        std::mem::swap(&mut self.model.grads, &mut self.sum.grads);
        let scale = 1.0 / accum as f32;
        self.model
            .grads
            .par_chunks_mut(1 << 16)
            .for_each(|c| c.iter_mut().for_each(|g| *g *= scale));
        Ok((self.sum.loss / accum as f64) as f32)
    }

    /// One optimizer step after `step` completed ones (see the module docs for the order).
    pub fn step(&mut self, step: u64, batches: &mut dyn BatchSource) -> Result<StepOutcome> {
        let loss = self.accumulate_gradients(step, batches)?;
        // The last look at the mean gradient before the norm (a no-op by default).
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
