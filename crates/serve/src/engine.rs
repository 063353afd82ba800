//! The scheduler: one thread owns the model and advances every active sequence by one token per
//! step (continuous batching). Sequences join between steps (their prompt is run then) and leave
//! when they finish or their client goes away; each has its own KV cache, RNG and stop check.
//! The per-step forward of all active sequences is one `BatchDecoder::step` (batched products).

use crate::sequence::{Advance, Choice, Sequence};
use ferrolm_nn::model::{BatchDecoder, KvCache, Model};
use ferrolm_tokenizer::Tokenizer;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;

/// What the scheduler sends back to a request's handler for one sequence.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// New text (complete UTF-8, never past a stop string).
    Text(String),
    /// The sequence ended.
    Done {
        /// "stop" (end-of-text token or a stop string) or "length" (max_tokens).
        finish_reason: &'static str,
        /// Tokens generated (the end-of-text token not counted).
        completion_tokens: usize,
    },
    /// The sequence failed (a model error); the text so far stands.
    Error(String),
}

/// One sequence to generate, as the HTTP layer hands it over.
pub struct Job {
    pub choice: Choice,
    pub events: tokio::sync::mpsc::UnboundedSender<Event>,
}

/// The queue is full: come back later.
#[derive(Debug)]
pub struct QueueFull;

/// The handle the HTTP layer holds: submits jobs, bounded by `capacity` sequences in flight
/// (active plus waiting).
#[derive(Clone)]
pub struct EngineHandle {
    tx: mpsc::Sender<Job>,
    outstanding: Arc<AtomicUsize>,
    peak_batch: Arc<AtomicUsize>,
    capacity: usize,
}

impl EngineHandle {
    /// Queues all `jobs` or none (QueueFull when they would exceed the capacity).
    pub fn submit(&self, jobs: Vec<Job>) -> Result<(), QueueFull> {
        let k = jobs.len();
        let mut cur = self.outstanding.load(Ordering::SeqCst);
        loop {
            if cur + k > self.capacity {
                return Err(QueueFull);
            }
            match self
                .outstanding
                .compare_exchange(cur, cur + k, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => break,
                Err(now) => cur = now,
            }
        }
        for job in jobs {
            if self.tx.send(job).is_err() {
                // The scheduler is gone (shutting down): its sequences will never be released.
                return Err(QueueFull);
            }
        }
        Ok(())
    }

    /// The most sequences one decode step has advanced together so far.
    pub fn peak_batch(&self) -> usize {
        self.peak_batch.load(Ordering::Relaxed)
    }

    /// Sequences active or waiting now.
    pub fn outstanding(&self) -> usize {
        self.outstanding.load(Ordering::SeqCst)
    }
}

/// The scheduler's side: run `Scheduler::run` on the thread that should do the math.
pub struct Scheduler {
    rx: mpsc::Receiver<Job>,
    outstanding: Arc<AtomicUsize>,
    peak_batch: Arc<AtomicUsize>,
    max_batch: usize,
}

/// A scheduler and its handle: at most `max_batch` sequences decode together, and up to
/// `max_queue` more wait (beyond that `submit` answers QueueFull).
pub fn engine(max_batch: usize, max_queue: usize) -> (EngineHandle, Scheduler) {
    let (tx, rx) = mpsc::channel();
    let outstanding = Arc::new(AtomicUsize::new(0));
    let peak_batch = Arc::new(AtomicUsize::new(0));
    let handle = EngineHandle {
        tx,
        outstanding: outstanding.clone(),
        peak_batch: peak_batch.clone(),
        capacity: max_batch.max(1) + max_queue,
    };
    let scheduler = Scheduler {
        rx,
        outstanding,
        peak_batch,
        max_batch: max_batch.max(1),
    };
    (handle, scheduler)
}

impl Scheduler {
    /// Runs until every handle is dropped and the last sequence has finished.
    pub fn run(self, model: &Model, tokenizer: &Tokenizer) {
        let mut waiting: VecDeque<Job> = VecDeque::new();
        let mut active: Vec<(Sequence, Job)> = Vec::new();
        // KV caches of finished sequences, for the next ones (at most max_batch kept).
        let mut free: Vec<KvCache> = Vec::new();
        let mut decoder = BatchDecoder::new(model);
        let mut open = true;
        loop {
            if active.is_empty() && waiting.is_empty() {
                if !open {
                    return;
                }
                match self.rx.recv() {
                    Ok(job) => waiting.push_back(job),
                    Err(_) => return,
                }
            }
            loop {
                match self.rx.try_recv() {
                    Ok(job) => waiting.push_back(job),
                    Err(mpsc::TryRecvError::Empty) => break,
                    Err(mpsc::TryRecvError::Disconnected) => {
                        open = false;
                        break;
                    }
                }
            }
            self.admit(model, &mut decoder, &mut waiting, &mut active, &mut free);
            self.step(model, tokenizer, &mut decoder, &mut active, &mut free);
        }
    }

    /// Starts waiting jobs while there are free slots: their prompts run through the model
    /// together (one pass over the weights for all of them).
    fn admit(
        &self,
        model: &Model,
        decoder: &mut BatchDecoder,
        waiting: &mut VecDeque<Job>,
        active: &mut Vec<(Sequence, Job)>,
        free: &mut Vec<KvCache>,
    ) {
        let mut joining: Vec<(Sequence, Job)> = Vec::new();
        while active.len() + joining.len() < self.max_batch {
            let Some(job) = waiting.pop_front() else { break };
            if job.events.is_closed() {
                self.release(1);
                continue;
            }
            match Sequence::new(model, &job.choice, free.pop()) {
                Ok(seq) => joining.push((seq, job)),
                Err(e) => {
                    let _ = job.events.send(Event::Error(e.to_string()));
                    self.release(1);
                }
            }
        }
        let mut seqs: Vec<&mut Sequence> = joining.iter_mut().map(|(s, _)| s).collect();
        if seqs.is_empty() || Sequence::prefill(model, decoder, &mut seqs).is_ok() {
            active.extend(joining);
            return;
        }
        // A prompt failed (and no sequence changed): one by one, so that only its request
        // gets the error.
        for (mut seq, job) in joining {
            match Sequence::prefill(model, decoder, &mut [&mut seq]) {
                Ok(()) => active.push((seq, job)),
                Err(e) => {
                    let _ = job.events.send(Event::Error(e.to_string()));
                    self.retire(seq, free);
                }
            }
        }
    }

    /// One decode step: every active sequence draws its next token from its logits and sends the
    /// text; finished ones (or ones whose client left) leave; the rest run their new token through
    /// the model together.
    fn step(
        &self,
        model: &Model,
        tokenizer: &Tokenizer,
        decoder: &mut BatchDecoder,
        active: &mut Vec<(Sequence, Job)>,
        free: &mut Vec<KvCache>,
    ) {
        // Sampling reads every logit (exp over the vocabulary, a sort for top-p): the sequences
        // draw in parallel on the decoder's thread team (awake from the step just run), each
        // from its own RNG, so the tokens are the same as one by one.
        let mut work: Vec<(&mut Sequence, &Job, Option<Advance>)> =
            active.iter_mut().map(|(s, j)| (s, &*j, None)).collect();
        decoder.for_each_mut(&mut work, |(seq, job, out)| {
            if !job.events.is_closed() {
                *out = Some(seq.advance(tokenizer));
            }
        });
        let outs: Vec<Option<Advance>> = work.into_iter().map(|(_, _, out)| out).collect();
        let mut kept = Vec::with_capacity(active.len());
        for ((seq, job), out) in active.drain(..).zip(outs) {
            let Some(out) = out else {
                self.retire(seq, free);
                continue;
            };
            let mut alive = true;
            if !out.text.is_empty() {
                alive = job.events.send(Event::Text(out.text)).is_ok();
            }
            if let Some(reason) = out.finished {
                let _ = job.events.send(Event::Done {
                    finish_reason: reason,
                    completion_tokens: seq.completion_tokens(),
                });
                alive = false;
            }
            if alive {
                kept.push((seq, job));
            } else {
                self.retire(seq, free);
            }
        }
        *active = kept;
        if active.is_empty() {
            return;
        }
        self.peak_batch.fetch_max(active.len(), Ordering::Relaxed);
        let mut seqs: Vec<&mut Sequence> = active.iter_mut().map(|(s, _)| s).collect();
        if let Err(e) = Sequence::forward_all(model, decoder, &mut seqs) {
            for (_, job) in active.drain(..) {
                let _ = job.events.send(Event::Error(e.to_string()));
                self.release(1);
            }
        }
    }

    /// A sequence leaves: its slot is freed and its cache kept for the next one.
    fn retire(&self, seq: Sequence, free: &mut Vec<KvCache>) {
        if free.len() < self.max_batch {
            free.push(seq.into_cache());
        }
        self.release(1);
    }

    fn release(&self, k: usize) {
        self.outstanding.fetch_sub(k, Ordering::SeqCst);
    }
}
