//! Data-parallel training over MPI (feature `mpi`): starting MPI under a launcher, the reducer
//! that sums the ranks' gradients in rank order (so the result does not depend on the number of
//! ranks, the MPI library's algorithms or timing), and the start-up agreement.
//!
//! The reduction: in each micro-step every rank sends its gradient to rank 0, which adds them in
//! rank order to the running sum (receiving rank r+1's while adding rank r's); after the last
//! micro-step rank 0 broadcasts the sum. Not MPI_Allreduce: its summation order is the library's.

use crate::trainer::step::{add_into, fold_local, GradReducer};
use anyhow::{anyhow, bail, Result};
use mpi::collective::SystemOperation;
use mpi::environment::Universe;
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;
use mpi::Threading;
use std::time::Instant;

/// MPI, started; dropping it finalizes MPI (keep it until the program ends).
pub struct MpiSession {
    _universe: Universe,
}

/// Starts MPI when a launcher started this process (see [`super::launched_by_mpi`]); None
/// otherwise. The calls come from one thread at a time, not always the main one (serialized).
pub fn init() -> Result<Option<MpiSession>> {
    if !super::launched_by_mpi() {
        return Ok(None);
    }
    let (universe, provided) = mpi::initialize_with_threading(Threading::Serialized)
        .ok_or_else(|| anyhow!("MPI was already initialized"))?;
    if !matches!(provided, Threading::Serialized | Threading::Multiple) {
        bail!("the MPI library offers threading level {provided:?}; ferrolm needs Serialized");
    }
    Ok(Some(MpiSession { _universe: universe }))
}

/// Whether MPI is running (started and not finalized).
pub fn is_initialized() -> bool {
    mpi::is_initialized() && !mpi::is_finalized()
}

/// This process's rank and the number of ranks.
pub fn rank_and_size() -> (usize, usize) {
    let w = SimpleCommunicator::world();
    (w.rank() as usize, w.size() as usize)
}

/// Ends every rank of the job at once (MPI_Abort) with exit code `code`.
pub fn abort(code: i32) -> ! {
    SimpleCommunicator::world().abort(code)
}

const TAG_GRAD: i32 = 1;
const TAG_LOSS: i32 = 2;
const TAG_TEXT: i32 = 3;

/// The rank-ordered gradient reducer over MPI_COMM_WORLD (see the module docs).
pub struct MpiReducer {
    rank: usize,
    size: usize,
    /// Rank 0: the receive buffers (two, so one receives while the other is added).
    bufs: [Vec<f32>; 2],
    /// Per step: seconds in the reduction (waiting, transfers, the ordered sum, the broadcast).
    reduce_s: Vec<f64>,
    /// Per step: seconds from the previous step's end (the first step is not counted).
    step_s: Vec<f64>,
    /// The reduction time of the step in progress, and the end of the last step.
    current: f64,
    last_end: Option<Instant>,
    /// Gradient bytes (4 per parameter) and micro-steps per step.
    grad_bytes: usize,
    micro_steps: usize,
}

impl Default for MpiReducer {
    fn default() -> Self {
        Self::new()
    }
}

impl MpiReducer {
    /// A reducer over all ranks of the job (MPI must be initialized).
    pub fn new() -> MpiReducer {
        let (rank, size) = rank_and_size();
        MpiReducer {
            rank,
            size,
            bufs: [Vec::new(), Vec::new()],
            reduce_s: Vec::new(),
            step_s: Vec::new(),
            current: 0.0,
            last_end: None,
            grad_bytes: 0,
            micro_steps: 0,
        }
    }

    pub fn rank(&self) -> usize {
        self.rank
    }

    /// Rank 0: receives the other ranks' gradients of this micro-step and adds them to `sum` in
    /// rank order, receiving the next rank's while adding the current one's.
    fn gather_in_order(&mut self, sum: &mut [f32], loss_sum: &mut f64) {
        let world = SimpleCommunicator::world();
        for b in &mut self.bufs {
            b.resize(sum.len(), 0.0);
        }
        let [a, b] = &mut self.bufs;
        let (mut cur, mut next) = (a, b);
        world
            .process_at_rank(1)
            .receive_into_with_tag(&mut cur[..], TAG_GRAD);
        for r in 1..self.size {
            let (l, _) = world.process_at_rank(r as i32).receive_with_tag::<f64>(TAG_LOSS);
            mpi::request::scope(|scope| {
                let pending = (r + 1 < self.size).then(|| {
                    world
                        .process_at_rank(r as i32 + 1)
                        .immediate_receive_into_with_tag(scope, &mut next[..], TAG_GRAD)
                });
                add_into(sum, cur);
                if let Some(p) = pending {
                    p.wait();
                }
            });
            *loss_sum += l;
            std::mem::swap(&mut cur, &mut next);
        }
    }
}

impl GradReducer for MpiReducer {
    fn world_size(&self) -> usize {
        self.size
    }

    fn fold(
        &mut self,
        first: bool,
        grads: &mut Vec<f32>,
        sum: &mut Vec<f32>,
        loss: f64,
        loss_sum: &mut f64,
    ) -> Result<()> {
        let t0 = Instant::now();
        if first {
            self.micro_steps = 0;
        }
        self.micro_steps += 1;
        self.grad_bytes = grads.len() * 4;
        if self.rank == 0 {
            fold_local(first, grads, sum);
            *loss_sum += loss;
            if self.size > 1 {
                self.gather_in_order(sum, loss_sum);
            }
        } else {
            let world = SimpleCommunicator::world();
            let root = world.process_at_rank(0);
            root.send_with_tag(&grads[..], TAG_GRAD);
            root.send_with_tag(&loss, TAG_LOSS);
            grads.fill(0.0);
        }
        self.current += t0.elapsed().as_secs_f64();
        Ok(())
    }

    fn finish(&mut self, sum: &mut [f32], loss_sum: &mut f64) -> Result<()> {
        let t0 = Instant::now();
        let world = SimpleCommunicator::world();
        let root = world.process_at_rank(0);
        root.broadcast_into(sum);
        root.broadcast_into(loss_sum);
        let end = Instant::now();
        self.reduce_s
            .push(std::mem::take(&mut self.current) + (end - t0).as_secs_f64());
        if let Some(prev) = self.last_end.replace(end) {
            self.step_s.push((end - prev).as_secs_f64());
        } else {
            self.reduce_s.clear(); // the first step (start-up) is not counted
        }
        Ok(())
    }

    fn report(&self) -> Option<String> {
        if self.step_s.is_empty() {
            return None;
        }
        let median = |v: &[f64]| {
            let mut v = v.to_vec();
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let (r, s) = (median(&self.reduce_s), median(&self.step_s));
        let mb = self.grad_bytes as f64 / 1e6;
        Some(format!(
            "data-parallel on {} ranks: gradients of {mb:.2} MB; per step each rank sent {} × {mb:.2} MB \
             to rank 0, which broadcast the {mb:.2} MB sum; reduction (waits, transfers, ordered sums, \
             broadcast) median {:.2} ms of a median {:.2} ms step ({:.1}%), rank {}, {} steps",
            self.size,
            self.micro_steps,
            r * 1e3,
            s * 1e3,
            100.0 * r / s,
            self.rank,
            self.step_s.len()
        ))
    }

    fn any_stop(&mut self, local: bool) -> Result<bool> {
        let mut any = 0i32;
        SimpleCommunicator::world().all_reduce_into(&(local as i32), &mut any, SystemOperation::max());
        Ok(any != 0)
    }

    fn agree(&mut self, identity: &[(String, String)]) -> Result<()> {
        let world = SimpleCommunicator::world();
        let root = world.process_at_rank(0);
        let mut text = if self.rank == 0 {
            serde_json::to_vec(identity)?
        } else {
            Vec::new()
        };
        broadcast_bytes(&world, &mut text);
        let root_id: Vec<(String, String)> = serde_json::from_slice(&text)?;
        let diffs = super::differences(identity, &root_id);
        let mine = if diffs.is_empty() {
            String::new()
        } else {
            format!(
                "rank {} differs from rank 0:\n  {}",
                self.rank,
                diffs.join("\n  ")
            )
        };
        // Rank 0 collects every rank's differences and tells all ranks.
        let mut all = if self.rank == 0 {
            let mut msgs = Vec::new();
            for r in 1..self.size {
                let (m, _) = world
                    .process_at_rank(r as i32)
                    .receive_vec_with_tag::<u8>(TAG_TEXT);
                if !m.is_empty() {
                    msgs.push(String::from_utf8_lossy(&m).into_owned());
                }
            }
            msgs.join("\n").into_bytes()
        } else {
            root.send_with_tag(mine.as_bytes(), TAG_TEXT);
            Vec::new()
        };
        broadcast_bytes(&world, &mut all);
        if !all.is_empty() {
            bail!(
                "the ranks do not run the same training (every rank must have the same config, \
                 command-line overrides, data files, tokenizer and checkpoint):\n{}",
                String::from_utf8_lossy(&all)
            );
        }
        Ok(())
    }
}

/// Broadcasts rank 0's `bytes` (any length) to every rank.
fn broadcast_bytes(world: &SimpleCommunicator, bytes: &mut Vec<u8>) {
    let root = world.process_at_rank(0);
    let mut len = bytes.len() as u64;
    root.broadcast_into(&mut len);
    bytes.resize(len as usize, 0);
    if len > 0 {
        root.broadcast_into(&mut bytes[..]);
    }
}
