//! Data-parallel training over MPI (feature `mpi`): starting MPI under a launcher, the [`Ring`]
//! that sums the ranks' gradients in rank order (so the result does not depend on the number of
//! ranks, the MPI library's algorithms or timing) for the [`RingReducer`] (buckets overlapping the
//! backward, on a communication thread), and the start-up agreement.
//!
//! The reduction, an ordered ring: per micro-step each bucket of the gradient travels in chunks
//! along the chain 0 → 1 → … → N−1, each rank adding its own to the partial sum it received, so
//! every element is summed in rank order (after the running sum of the earlier micro-steps, which
//! rank N−1 keeps and sends ahead to rank 0). Chunks pipeline: each link carries the gradient once
//! per micro-step, as in a ring all-reduce. After the last micro-step rank N−1 broadcasts the sum.
//! Not MPI_Allreduce: its summation order is the library's.

use super::ring::{add_seq, Ring, RingReducer, Settings};
use anyhow::{anyhow, bail, Result};
use mpi::collective::SystemOperation;
use mpi::environment::Universe;
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;
use mpi::Threading;

/// MPI, started; dropping it finalizes MPI (keep it until the program ends).
pub struct MpiSession {
    _universe: Universe,
}

/// Starts MPI when a launcher started this process (see [`super::launched_by_mpi`]); None
/// otherwise. The calls come from one thread at a time, not always the main one (serialized): the
/// start-up here and the abort on the main thread, everything else on the reducer's
/// communication thread.
pub fn init() -> Result<Option<MpiSession>> {
    if !super::launched_by_mpi() {
        return Ok(None);
    }
    let (universe, provided) = mpi::initialize_with_threading(Threading::Serialized)
        .ok_or_else(|| anyhow!("MPI was already initialized"))?;
    if !matches!(provided, Threading::Serialized | Threading::Multiple) {
        bail!(
            "the MPI library offers threading level {provided:?}; ferrolm needs \
             MPI_THREAD_SERIALIZED (its gradient reduction runs on a communication thread): use an \
             MPI built with thread support (Open MPI and MPICH are by default)"
        );
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
const TAG_SUM: i32 = 4;

/// f32s per chunk of the ring (1 MiB): small enough to pipeline, large enough to stream.
/// `FERROLM_MPI_CHUNK` overrides it (tests use small odd sizes to exercise many chunks).
fn chunk_len() -> usize {
    std::env::var("FERROLM_MPI_CHUNK")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n: &usize| n > 0)
        .unwrap_or(1 << 18)
}

/// The rank-ordered gradient reducer over MPI_COMM_WORLD (MPI must be initialized): a
/// [`RingReducer`] over [`MpiRing`], with the overlap settings of the environment
/// (`FERROLM_MPI_OVERLAP`, `FERROLM_MPI_BUCKET_MB`; see [`Settings::from_env`]).
pub struct MpiReducer;

impl MpiReducer {
    #[allow(clippy::new_ret_no_self)]
    pub fn new() -> Result<RingReducer> {
        RingReducer::new(MpiRing::new(), Settings::from_env()?)
    }
}

/// The ordered ring over MPI point-to-point messages (see the module docs).
pub struct MpiRing {
    rank: usize,
    size: usize,
    /// The chunk being received and passed on, and its length in f32s.
    buf: Vec<f32>,
    chunk: usize,
}

impl Default for MpiRing {
    fn default() -> Self {
        Self::new()
    }
}

impl MpiRing {
    /// The ring over all ranks of the job.
    pub fn new() -> MpiRing {
        let (rank, size) = rank_and_size();
        MpiRing {
            rank,
            size,
            buf: Vec::new(),
            chunk: chunk_len(),
        }
    }
}

impl Ring for MpiRing {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.size
    }

    fn describe(&self) -> String {
        format!("an ordered ring over MPI in chunks of {} f32", self.chunk)
    }

    fn reduce(&mut self, first: bool, grads: &[f32], prev: &[f32], sum: &mut [f32]) -> Result<()> {
        let world = SimpleCommunicator::world();
        let (rank, last) = (self.rank, self.size - 1);
        let (len, chunk) = (grads.len(), self.chunk);
        let ranges: Vec<_> = (0..len).step_by(chunk).map(|a| a..(a + chunk).min(len)).collect();
        self.buf.resize(chunk.min(len), 0.0);
        let buf = &mut self.buf;
        let next = world.process_at_rank((rank + 1).min(last) as i32);
        let before = world.process_at_rank(rank.saturating_sub(1) as i32);
        if rank == 0 {
            let from_last = world.process_at_rank(last as i32);
            for r in ranges {
                if first {
                    next.send_with_tag(&grads[r], TAG_GRAD);
                } else {
                    let b = &mut buf[..r.len()];
                    from_last.receive_into_with_tag(b, TAG_SUM);
                    add_seq(b, &grads[r]);
                    next.send_with_tag(&b[..], TAG_GRAD);
                }
            }
        } else if rank < last {
            for r in ranges {
                let b = &mut buf[..r.len()];
                before.receive_into_with_tag(b, TAG_GRAD);
                add_seq(b, &grads[r]);
                next.send_with_tag(&b[..], TAG_GRAD);
            }
        } else {
            // Rank N−1: the running sum goes ahead to rank 0 (all chunks at once), the new sum
            // is built in `sum` as the partial sums arrive.
            let to_first = world.process_at_rank(0);
            mpi::request::multiple_scope(ranges.len(), |scope, sends| {
                if !first {
                    for r in &ranges {
                        sends.add(to_first.immediate_send_with_tag(scope, &prev[r.clone()], TAG_SUM));
                    }
                }
                for r in &ranges {
                    let b = &mut buf[..r.len()];
                    before.receive_into_with_tag(b, TAG_GRAD);
                    let s = &mut sum[r.clone()];
                    s.copy_from_slice(b);
                    add_seq(s, &grads[r.clone()]);
                }
                sends.wait_all(&mut Vec::new());
            });
        }
        Ok(())
    }

    fn losses(&mut self, loss: f64, loss_sum: &mut f64) -> Result<()> {
        // Added in rank order on rank N−1, like the gradients.
        let world = SimpleCommunicator::world();
        let last = self.size - 1;
        if self.rank == last {
            for q in 0..last {
                let (l, _) = world.process_at_rank(q as i32).receive_with_tag::<f64>(TAG_LOSS);
                *loss_sum += l;
            }
            *loss_sum += loss;
        } else {
            world.process_at_rank(last as i32).send_with_tag(&loss, TAG_LOSS);
        }
        Ok(())
    }

    fn broadcast(&mut self, sum: &mut [f32], loss_sum: &mut f64) -> Result<()> {
        let world = SimpleCommunicator::world();
        let root = world.process_at_rank(self.size as i32 - 1);
        root.broadcast_into(sum);
        root.broadcast_into(loss_sum);
        Ok(())
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
