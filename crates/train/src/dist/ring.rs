//! The rank-ordered gradient reduction over any transport ([`Ring`]: MPI in `dist::mpi`,
//! channels in the tests), run by a communication thread so that it can overlap the backward.
//!
//! With overlap on, the backward reports each layer's gradient as soon as it is final
//! (`Model::forward_backward_with`, from the LM head down to the embedding); [`RingReducer`]
//! copies it into a bucket (contiguous parameters, about `bucket_bytes`, the same on every
//! rank), and a full bucket goes to the communication thread, which reduces it while the compute
//! threads continue the backward, as PyTorch DDP's 25 MB buckets do. With overlap off the whole
//! gradient goes over after the backward, as one bucket. In the step's last micro-step each
//! bucket's sum is broadcast from the last rank as soon as it is complete. Either way every
//! element is summed in rank order after the running sum of the step's earlier micro-steps, so
//! the result is bitwise the same, whatever the buckets and timing. The communication thread makes all of the
//! transport's calls (one thread at a time, as MPI's `MPI_THREAD_SERIALIZED` asks).

use super::buckets::Plan;
pub use super::buckets::{Overlap, Settings};
use crate::trainer::step::{fold_local, GradReducer, StepSum};
use anyhow::{anyhow, bail, Result};
use rayon::prelude::*;
use std::ops::Range;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::thread::JoinHandle;
use std::time::Instant;

/// The collective operations of the ordered reduction. Every rank makes the same calls with the
/// same lengths in the same order.
pub trait Ring: Send + 'static {
    /// This process's rank and the number of ranks.
    fn world(&self) -> World;
    /// One bucket of one micro-step: `prev + mine_0 + mine_1 + … + mine_{N−1}`, added left to
    /// right in rank order, into `out` on rank N−1 (`prev`, the running sum of the step's earlier
    /// micro-steps, is only read there and not at all when `first`: then the sum starts with
    /// rank 0's `mine` exactly). On the other ranks `prev` and `out` are empty.
    fn reduce(&mut self, first: bool, mine: &[f32], prev: &[f32], out: &mut [f32]) -> Result<()>;
    /// Adds every rank's `loss` to `sum` in rank order, on rank N−1.
    fn losses(&mut self, loss: f64, sum: &mut f64) -> Result<()>;
    /// Rank N−1's `sum` (a bucket of the step's sum) to every rank.
    fn broadcast(&mut self, sum: &mut [f32]) -> Result<()>;
    /// Rank N−1's `loss` (the step's loss sum) to every rank.
    fn broadcast_loss(&mut self, loss: &mut f64) -> Result<()>;
    /// Whether any rank's `local` is true.
    fn any_stop(&mut self, local: bool) -> Result<bool>;
    /// See [`GradReducer::agree`].
    fn agree(&mut self, identity: &[(String, String)]) -> Result<()>;
    /// What the transport is, for the report (e.g. "an ordered ring over MPI in 1 MiB chunks").
    fn describe(&self) -> String;
}

/// A process's place in the job: its rank and the number of ranks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct World {
    pub rank: usize,
    pub size: usize,
}

impl World {
    /// Rank N−1, which holds the running sums and broadcasts the step's.
    pub fn last(&self) -> usize {
        self.size - 1
    }

    /// Whether this process is rank N−1.
    pub fn is_last(&self) -> bool {
        self.rank == self.last()
    }
}

/// `s[i] += g[i]`, on the calling thread (the communication thread must not wait for the compute
/// threads' pool). The same additions as `step::add_into`.
pub fn add_seq(s: &mut [f32], g: &[f32]) {
    s.iter_mut().zip(g).for_each(|(s, g)| *s += *g);
}

enum Job {
    /// A micro-step starts (`first`, `last`: the step's first, its last); the gradient has `len`
    /// parameters.
    Begin {
        first: bool,
        last: bool,
        len: usize,
    },
    /// Parameters `start..start + data.len()` of this rank's micro-batch gradient.
    Bucket {
        index: usize,
        start: usize,
        data: Vec<f32>,
    },
    Loss(f64),
    /// The step's sum to every rank, returned in place of `spare`.
    Finish {
        spare: Vec<f32>,
    },
    Stop(bool),
    Agree(Vec<(String, String)>),
}

enum Reply {
    Bucket { index: usize, data: Vec<f32> },
    Finished { sum: Vec<f32>, loss: f64, busy_s: f64 },
    Stop(bool),
    Agreed,
}

/// The bucket index of the whole gradient (overlap off).
const WHOLE: usize = usize::MAX;

/// The communication thread: runs the jobs in order until the reducer is dropped; stops at the
/// first error (after sending it).
fn serve<R: Ring>(mut ring: R, jobs: Receiver<Job>, replies: Sender<Result<Reply, String>>) {
    let last = ring.world().is_last();
    let (mut sum, mut prev) = (Vec::<f32>::new(), Vec::<f32>::new());
    let (mut first, mut final_micro_step) = (true, true);
    let (mut loss_sum, mut busy) = (0.0f64, 0.0f64);
    for job in jobs {
        let t0 = Instant::now();
        let reply: Result<Option<Reply>> = match job {
            Job::Begin {
                first: f,
                last: l,
                len,
            } => {
                (first, final_micro_step) = (f, l);
                sum.resize(len, 0.0);
                if last && !first {
                    std::mem::swap(&mut sum, &mut prev);
                    sum.resize(len, 0.0);
                }
                if first {
                    loss_sum = 0.0;
                }
                Ok(None)
            }
            Job::Bucket { index, start, data } => {
                let r = start..start + data.len();
                let mut result = if last {
                    let p = if first { &[][..] } else { &prev[r.clone()] };
                    ring.reduce(first, &data, p, &mut sum[r.clone()])
                } else {
                    ring.reduce(first, &data, &[], &mut [])
                };
                // The step's last micro-step: this bucket's sum is complete; it goes to every
                // rank now, while the backward may still run.
                if final_micro_step && result.is_ok() {
                    result = ring.broadcast(&mut sum[r]);
                }
                result.map(|()| Some(Reply::Bucket { index, data }))
            }
            Job::Loss(l) => ring.losses(l, &mut loss_sum).map(|()| None),
            Job::Finish { mut spare } => ring.broadcast_loss(&mut loss_sum).map(|()| {
                std::mem::swap(&mut sum, &mut spare);
                busy += t0.elapsed().as_secs_f64();
                Some(Reply::Finished {
                    sum: spare,
                    loss: loss_sum,
                    busy_s: std::mem::take(&mut busy),
                })
            }),
            Job::Stop(local) => ring.any_stop(local).map(|b| Some(Reply::Stop(b))),
            Job::Agree(id) => ring.agree(&id).map(|()| Some(Reply::Agreed)),
        };
        if !matches!(reply, Ok(Some(Reply::Finished { .. }))) {
            busy += t0.elapsed().as_secs_f64();
        }
        match reply {
            Ok(None) => {}
            Ok(Some(r)) => {
                if replies.send(Ok(r)).is_err() {
                    return;
                }
            }
            Err(e) => {
                let _ = replies.send(Err(format!("{e:#}")));
                return;
            }
        }
    }
}

/// Per-step timings of one mode (seconds).
#[derive(Default)]
struct Timings {
    /// The compute thread's time in the reduction: copies into buckets, waits for the
    /// communication thread, the hand-over and zeroing (what the step pays).
    exposed: Vec<f64>,
    /// The communication thread's busy time (transfers, waits for other ranks, sums, broadcast).
    comm: Vec<f64>,
    /// From the previous step's end to this one's.
    step: Vec<f64>,
}

/// The [`GradReducer`] over a [`Ring`] on a communication thread (see the module docs).
pub struct RingReducer {
    world: World,
    settings: Settings,
    what: String,
    jobs: Option<Sender<Job>>,
    replies: Receiver<Result<Reply, String>>,
    thread: Option<JoinHandle<()>>,
    /// Replies still to come (0: the thread is idle and can be joined).
    outstanding: usize,
    plan: Option<Plan>,
    /// Each bucket's buffer while this thread has it (None while the communication thread has).
    free: Vec<Option<Vec<f32>>>,
    /// Overlap off: the zeroed buffer the next micro-batch's gradient goes into.
    spare: Vec<f32>,
    /// This step overlaps; the next piece the backward should report.
    overlapping: bool,
    next_piece: usize,
    /// An error in `ready`, reported by the next `fold`.
    error: Option<anyhow::Error>,
    steps: u64,
    micro_steps: usize,
    grad_len: usize,
    exposed: f64,
    last_end: Option<Instant>,
    /// Timings of the steps without and with overlap.
    off: Timings,
    on: Timings,
}

impl RingReducer {
    /// Starts the communication thread with `ring`.
    pub fn new<R: Ring>(ring: R, settings: Settings) -> Result<RingReducer> {
        let (world, what) = (ring.world(), ring.describe());
        let (jobs, job_rx) = channel();
        let (reply_tx, replies) = channel();
        let thread = std::thread::Builder::new()
            .name("gradient-reduction".into())
            .spawn(move || serve(ring, job_rx, reply_tx))?;
        Ok(RingReducer {
            world,
            settings,
            what,
            jobs: Some(jobs),
            replies,
            thread: Some(thread),
            outstanding: 0,
            plan: None,
            free: Vec::new(),
            spare: Vec::new(),
            overlapping: false,
            next_piece: 0,
            error: None,
            steps: 0,
            micro_steps: 0,
            grad_len: 0,
            exposed: 0.0,
            last_end: None,
            off: Timings::default(),
            on: Timings::default(),
        })
    }

    pub fn rank(&self) -> usize {
        self.world.rank
    }

    fn send(&mut self, job: Job, replies: usize) -> Result<()> {
        self.outstanding += replies;
        self.jobs
            .as_ref()
            .and_then(|j| j.send(job).ok())
            .ok_or_else(|| self.stopped())
    }

    fn stopped(&self) -> anyhow::Error {
        anyhow!("the gradient reduction's communication thread has stopped")
    }

    /// The next reply; returned buckets go back to `free` (and are returned too).
    fn reply(&mut self) -> Result<Reply> {
        let r = match self.replies.recv() {
            Ok(Ok(r)) => r,
            Ok(Err(msg)) => bail!("gradient reduction: {msg}"),
            Err(_) => return Err(self.stopped()),
        };
        self.outstanding -= 1;
        match r {
            Reply::Bucket { index, data } if index != WHOLE => {
                self.free[index] = Some(data);
                Ok(Reply::Bucket {
                    index,
                    data: Vec::new(),
                })
            }
            r => Ok(r),
        }
    }

    /// Waits for the reply `want` picks, keeping returned buckets.
    fn wait_for(&mut self, want: impl Fn(&Reply) -> bool) -> Result<Reply> {
        loop {
            let r = self.reply()?;
            if want(&r) {
                return Ok(r);
            }
        }
    }

    /// Copies a ready piece into its bucket; sends the bucket when it is complete.
    fn take_piece(&mut self, range: Range<usize>, g: &[f32]) -> Result<()> {
        let plan = self.plan.as_ref().ok_or_else(|| anyhow!("no bucket plan"))?;
        let piece = self.next_piece;
        if plan.order.get(piece) != Some(&range) {
            bail!(
                "the backward reported parameters {range:?} where {:?} was expected",
                plan.order.get(piece)
            );
        }
        let b = plan.bucket_of[piece];
        let (bucket, last_piece) = plan.buckets[b].clone();
        while self.free[b].is_none() {
            self.reply()?;
        }
        let buf = self.free[b].get_or_insert_with(Vec::new);
        buf.resize(bucket.len(), 0.0);
        buf[range.start - bucket.start..range.end - bucket.start].copy_from_slice(g);
        self.next_piece += 1;
        if piece == last_piece {
            let data = self.free[b].take().expect("bucket buffer");
            self.send(
                Job::Bucket {
                    index: b,
                    start: bucket.start,
                    data,
                },
                1,
            )?;
        }
        Ok(())
    }
}

impl GradReducer for RingReducer {
    fn world_size(&self) -> usize {
        self.world.size
    }

    fn before_backward(&mut self, first: bool, last: bool, order: &[Range<usize>]) -> bool {
        if self.world.size == 1 {
            return false;
        }
        let len = order.first().map_or(0, |r| r.end);
        if first {
            self.micro_steps = 0;
            self.overlapping = match self.settings.overlap {
                Overlap::Off => false,
                Overlap::On => true,
                Overlap::Alternate => self.steps % 2 == 1,
            };
        }
        self.micro_steps += 1;
        if self.plan.as_ref().is_none_or(|p| p.order != order) {
            self.plan = Plan::new(order, self.settings.bucket_bytes);
            self.free = (0..self.plan.as_ref().map_or(0, |p| p.buckets.len()))
                .map(|_| Some(Vec::new()))
                .collect();
        }
        self.overlapping &= self.plan.is_some();
        self.next_piece = 0;
        if let Err(e) = self.send(Job::Begin { first, last, len }, 0) {
            self.error.get_or_insert(e);
        }
        self.overlapping
    }

    fn ready(&mut self, range: Range<usize>, g: &[f32]) {
        if self.error.is_some() {
            return;
        }
        let t0 = Instant::now();
        if let Err(e) = self.take_piece(range, g) {
            self.error = Some(e);
        }
        self.exposed += t0.elapsed().as_secs_f64();
    }

    fn fold(&mut self, first: bool, grads: &mut Vec<f32>, loss: f64, sum: &mut StepSum) -> Result<()> {
        if self.world.size == 1 {
            fold_local(first, grads, &mut sum.grads);
            sum.loss += loss;
            return Ok(());
        }
        let t0 = Instant::now();
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        self.grad_len = grads.len();
        if self.overlapping {
            let n = self.plan.as_ref().map_or(0, |p| p.order.len());
            if self.next_piece != n {
                bail!(
                    "the backward reported {} of its {n} gradient pieces",
                    self.next_piece
                );
            }
            grads.par_chunks_mut(1 << 16).for_each(|c| c.fill(0.0));
        } else {
            // The whole gradient as one bucket; this thread goes on with the zeroed spare.
            self.spare.resize(grads.len(), 0.0);
            let data = std::mem::replace(grads, std::mem::take(&mut self.spare));
            self.send(
                Job::Bucket {
                    index: WHOLE,
                    start: 0,
                    data,
                },
                1,
            )?;
            let r = self.wait_for(|r| matches!(r, Reply::Bucket { index: WHOLE, .. }))?;
            let Reply::Bucket { mut data, .. } = r else {
                unreachable!()
            };
            data.par_chunks_mut(1 << 16).for_each(|c| c.fill(0.0));
            self.spare = data;
        }
        self.send(Job::Loss(loss), 0)?;
        self.exposed += t0.elapsed().as_secs_f64();
        Ok(())
    }

    fn finish(&mut self, sum: &mut StepSum) -> Result<()> {
        if self.world.size == 1 {
            return Ok(());
        }
        let t0 = Instant::now();
        let spare = std::mem::take(&mut sum.grads);
        self.send(Job::Finish { spare }, 1)?;
        let r = self.wait_for(|r| matches!(r, Reply::Finished { .. }))?;
        let Reply::Finished { sum: s, loss, busy_s } = r else {
            unreachable!()
        };
        sum.grads = s;
        sum.loss = loss;
        let end = Instant::now();
        let exposed = std::mem::take(&mut self.exposed) + (end - t0).as_secs_f64();
        let t = if self.overlapping {
            &mut self.on
        } else {
            &mut self.off
        };
        // The first step (start-up) is not counted.
        if let Some(prev) = self.last_end.replace(end) {
            t.exposed.push(exposed);
            t.comm.push(busy_s);
            t.step.push((end - prev).as_secs_f64());
        }
        self.steps += 1;
        Ok(())
    }

    fn any_stop(&mut self, local: bool) -> Result<bool> {
        if self.world.size == 1 {
            return Ok(local);
        }
        self.send(Job::Stop(local), 1)?;
        match self.wait_for(|r| matches!(r, Reply::Stop(_)))? {
            Reply::Stop(b) => Ok(b),
            _ => unreachable!(),
        }
    }

    fn agree(&mut self, identity: &[(String, String)]) -> Result<()> {
        let mut id = identity.to_vec();
        // Bucket boundaries decide the messages' lengths: they must be the same everywhere.
        id.push((
            "gradient reduction".to_string(),
            format!("{}; {}", self.settings.describe(), self.what),
        ));
        self.send(Job::Agree(id), 1)?;
        self.wait_for(|r| matches!(r, Reply::Agreed))?;
        Ok(())
    }

    fn report(&self) -> Option<String> {
        let median = |v: &[f64]| {
            let mut v = v.to_vec();
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let mb = self.grad_len as f64 * 4.0 / 1e6;
        let mut out = format!(
            "data-parallel on {} ranks: gradients of {mb:.2} MB; per step {} micro-step(s) of {} \
             (each rank sends {mb:.2} MB per micro-step), the last one's buckets broadcast from \
             the last rank as they complete; {}",
            self.world.size,
            self.micro_steps,
            self.what,
            self.settings.describe(),
        );
        if let Some(p) = &self.plan {
            out += &format!(" ({} buckets)", p.buckets.len());
        }
        for (name, t) in [("overlap off", &self.off), ("overlap on", &self.on)] {
            if t.step.is_empty() {
                continue;
            }
            let (e, c, s) = (median(&t.exposed), median(&t.comm), median(&t.step));
            out += &format!(
                "\n  {name}: reduction exposed to the step (copies, waits, zeroing) median {:.2} ms, \
                 communication thread busy median {:.2} ms, of a median {:.2} ms step ({:.1}% \
                 exposed), rank {}, {} steps",
                e * 1e3,
                c * 1e3,
                s * 1e3,
                100.0 * e / s,
                self.world.rank,
                t.step.len()
            );
        }
        (!self.off.step.is_empty() || !self.on.step.is_empty()).then_some(out)
    }
}

impl Drop for RingReducer {
    fn drop(&mut self) {
        // Closing the channel ends the thread. Only joined when idle: after an error it may wait
        // on another rank forever (the job then ends by MPI_Abort).
        self.jobs = None;
        if self.outstanding == 0 {
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }
}
