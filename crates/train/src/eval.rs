//! Evaluation: mean cross-entropy loss and perplexity of a model over a fixed set of windows of a
//! token file.

use crate::data::{fill_from_starts, validation_starts, TokenFile};
use anyhow::{Context, Result};
use ferrolm_nn::model::{Activations, Model};
use serde::Serialize;

/// The result of an evaluation.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EvalResult {
    /// Mean loss per predicted token, in nats.
    pub loss: f64,
    /// exp(loss).
    pub perplexity: f64,
    /// Windows evaluated.
    pub windows: usize,
    /// Tokens predicted (windows · seq).
    pub tokens: u64,
}

impl EvalResult {
    /// One JSON object: `{"loss":…,"perplexity":…,"windows":…,"tokens":…}`.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("serializes")
    }
}

/// A fixed validation set: the same windows every time, evaluated in batches of `batch`.
pub struct Evaluator {
    starts: Vec<usize>,
    batch: usize,
    seq: usize,
    inputs: Vec<u32>,
    targets: Vec<u32>,
}

impl Evaluator {
    /// Non-overlapping windows of `seq` of `tokens` (at most `max_windows`, spread evenly). Full
    /// batches only: the windows are cut to a multiple of `batch`, unless there are fewer than
    /// one batch, in which case the batch shrinks to fit them all.
    pub fn new(
        tokens: &TokenFile,
        batch: usize,
        seq: usize,
        max_windows: Option<usize>,
    ) -> Result<Evaluator> {
        let mut starts = validation_starts(tokens, seq, max_windows)?;
        let batch = batch.min(starts.len()).max(1);
        starts.truncate(starts.len() / batch * batch);
        Ok(Evaluator {
            starts,
            batch,
            seq,
            inputs: vec![0; batch * seq],
            targets: vec![0; batch * seq],
        })
    }

    /// The batch size the evaluation runs at (activations must be sized for it).
    pub fn batch(&self) -> usize {
        self.batch
    }
    pub fn windows(&self) -> usize {
        self.starts.len()
    }

    /// Runs the evaluation with `acts` sized (self.batch(), seq).
    pub fn run(&mut self, model: &Model, tokens: &TokenFile, acts: &mut Activations) -> Result<EvalResult> {
        let mut sum = 0.0f64;
        let n_batches = self.starts.len() / self.batch;
        for b in 0..n_batches {
            let starts = &self.starts[b * self.batch..(b + 1) * self.batch];
            fill_from_starts(tokens, starts, self.seq, &mut self.inputs, &mut self.targets);
            let loss = model
                .forward_loss(acts, &self.inputs, &self.targets)
                .with_context(|| format!("evaluating on {}", tokens.path().display()))?;
            sum += loss as f64;
        }
        let loss = sum / n_batches as f64;
        Ok(EvalResult {
            loss,
            perplexity: loss.exp(),
            windows: self.starts.len(),
            tokens: (self.starts.len() * self.seq) as u64,
        })
    }
}

/// Loss and perplexity of `model` on `tokens`: windows of `seq` (≤ context_length), in batches of
/// `batch`, at most `max_windows` of them (None: all). Checks every id against the vocabulary.
pub fn evaluate(
    model: &Model,
    tokens: &TokenFile,
    batch: usize,
    seq: usize,
    max_windows: Option<usize>,
) -> Result<EvalResult> {
    anyhow::ensure!(
        seq >= 1 && seq <= model.config.context_length,
        "sequence length {seq} must be in 1..={} (the model's context length)",
        model.config.context_length
    );
    tokens.check_ids(model.config.vocab_size)?;
    let mut ev = Evaluator::new(tokens, batch, seq, max_windows)?;
    let mut acts = Activations::new(&model.config, ev.batch(), seq);
    ev.run(model, tokens, &mut acts)
}
