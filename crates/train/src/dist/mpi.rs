//! Data-parallel training over MPI (feature `mpi`): starting MPI under a launcher, the [`Ring`]
//! that sums the ranks' gradients in rank order (so the result does not depend on the number of
//! ranks, the MPI library's algorithms or timing) for the [`RingReducer`] (buckets overlapping the
//! backward, on a communication thread), and the start-up agreement.
//!
//! The reduction, an ordered ring: per micro-step each bucket of the gradient travels in chunks
//! along the chain 0 → 1 → … → N−1, each rank adding its own to the partial sum it received, so
//! every element is summed in rank order (after the running sum of the earlier micro-steps, which
//! rank N−1 keeps and sends ahead to rank 0). Chunks pipeline: each link carries the gradient once
//! per micro-step, as in a ring all-reduce. In the last micro-step rank N−1 broadcasts each
//! bucket's sum as soon as it is complete.
//! Not MPI_Allreduce: its summation order is the library's.

use super::ring::{add_seq, Ring, RingReducer, Settings, World};
use anyhow::{anyhow, bail, Result};
use mpi::environment::Universe;
use mpi::request::{scope, Request, Scope};
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;
use mpi::Threading;
use std::time::{Duration, Instant};

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
const TAG_STOP: i32 = 5;

/// f32s per chunk of the ring (1 MiB): small enough to pipeline, large enough to stream.
/// `FERROLM_MPI_CHUNK` overrides it (tests use small odd sizes to exercise many chunks).
fn chunk_len() -> usize {
    std::env::var("FERROLM_MPI_CHUNK")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n: &usize| n > 0)
        .unwrap_or(1 << 18)
}

/// How long a rank waits for another before it ends the job: `FERROLM_MPI_TIMEOUT` seconds
/// (default 300: longer than any step of a model this trainer can fit, short enough that a rank
/// that hangs without dying, e.g. on a stuck file system, does not hold the job for hours).
pub fn timeout() -> Result<Duration> {
    match std::env::var("FERROLM_MPI_TIMEOUT") {
        Err(_) => Ok(Duration::from_secs(300)),
        Ok(v) => v
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|s| *s > 0.0 && s.is_finite())
            .map(Duration::from_secs_f64)
            .ok_or_else(|| anyhow!("FERROLM_MPI_TIMEOUT={v}: expected a positive number of seconds")),
    }
}

/// Calls `done` (which tests MPI requests, making progress) until it returns true, yielding and
/// then sleeping a little longer each time (up to 1 ms), so that a waiting communication thread
/// leaves the core to the compute threads. After `limit` it ends the job, saying `what` (MPI_Abort).
fn poll(limit: Duration, what: impl Fn() -> String, mut done: impl FnMut() -> bool) {
    let (mut start, mut last) = (Instant::now(), Instant::now());
    let mut n = 0u32;
    while !done() {
        n += 1;
        if n < 64 {
            std::thread::yield_now();
        } else {
            let us = (50u64 << ((n - 64) / 32).min(5)).min(1000);
            std::thread::sleep(Duration::from_micros(us));
        }
        let now = Instant::now();
        // This process did not run for a second (it was stopped itself, e.g. SIGSTOP, or the
        // machine was suspended): the wait starts again rather than blaming the other rank.
        if now - last > Duration::from_secs(1) {
            start = now;
        }
        last = now;
        if now - start > limit {
            let (rank, size) = rank_and_size();
            eprintln!(
                "rank {rank} of {size}: {} after {:.0} s (FERROLM_MPI_TIMEOUT): that rank hangs or \
                 is far slower than this one; ending all ranks (MPI_Abort)",
                what(),
                limit.as_secs_f64()
            );
            abort(1);
        }
    }
}

/// Waits for `req` by polling (see [`poll`]).
fn complete<'a, D: ?Sized, S: Scope<'a>>(req: Request<'a, D, S>, limit: Duration, what: impl Fn() -> String) {
    let mut req = Some(req);
    poll(limit, what, || match req.take().map(|r| r.test()) {
        Some(Ok(_)) | None => true,
        Some(Err(r)) => {
            req = Some(r);
            false
        }
    });
}

/// The rank-ordered gradient reducer over MPI_COMM_WORLD (MPI must be initialized): a
/// [`RingReducer`] over [`MpiRing`], with the overlap settings of the environment
/// (`FERROLM_MPI_OVERLAP`, `FERROLM_MPI_BUCKET_MB`; see [`Settings::from_env`]).
pub struct MpiReducer;

impl MpiReducer {
    #[allow(clippy::new_ret_no_self)]
    pub fn new() -> Result<RingReducer> {
        RingReducer::new(MpiRing::new()?, Settings::from_env()?)
    }
}

/// The ordered ring over MPI point-to-point messages (see the module docs).
pub struct MpiRing {
    world: World,
    /// The chunk being received and passed on, and its length in f32s.
    buf: Vec<f32>,
    chunk: usize,
    /// See [`timeout`].
    timeout: Duration,
}

impl MpiRing {
    /// The ring over all ranks of the job.
    pub fn new() -> Result<MpiRing> {
        let (rank, size) = rank_and_size();
        Ok(MpiRing {
            world: World { rank, size },
            buf: Vec::new(),
            chunk: chunk_len(),
            timeout: timeout()?,
        })
    }
}

impl MpiRing {
    /// Broadcasts rank N−1's `buf` to every rank (`what` it holds: for the message if it times
    /// out).
    fn broadcast_from_last<B: BufferMut + ?Sized>(&self, buf: &mut B, what: &str) {
        let world = SimpleCommunicator::world();
        let last = self.world.last();
        let root = world.process_at_rank(last as i32);
        let what = || format!("the broadcast of {what} from rank {last} has not completed");
        scope(|sc| complete(root.immediate_broadcast_into(sc, buf), self.timeout, what));
    }
}

impl Ring for MpiRing {
    fn world(&self) -> World {
        self.world
    }

    fn describe(&self) -> String {
        format!("an ordered ring over MPI in chunks of {} f32", self.chunk)
    }

    fn reduce(&mut self, first: bool, grads: &[f32], prev: &[f32], sum: &mut [f32]) -> Result<()> {
        let world = SimpleCommunicator::world();
        let (rank, last, limit) = (self.world.rank, self.world.last(), self.timeout);
        let (len, chunk) = (grads.len(), self.chunk);
        let ranges: Vec<_> = (0..len).step_by(chunk).map(|a| a..(a + chunk).min(len)).collect();
        self.buf.resize(chunk.min(len), 0.0);
        let buf = &mut self.buf;
        let next = world.process_at_rank((rank + 1).min(last) as i32);
        let send = |data: &[f32]| {
            let to = rank + 1;
            scope(|sc| {
                let req = next.immediate_send_with_tag(sc, data, TAG_GRAD);
                complete(req, limit, || {
                    format!("rank {to} has not taken the partial sum sent to it")
                })
            })
        };
        let receive = |from: usize, b: &mut [f32], tag: i32| {
            let p = world.process_at_rank(from as i32);
            scope(|sc| {
                let req = p.immediate_receive_into_with_tag(sc, b, tag);
                complete(req, limit, || format!("no gradient from rank {from}"))
            })
        };
        if rank == 0 {
            for r in ranges {
                if first {
                    send(&grads[r]);
                } else {
                    let b = &mut buf[..r.len()];
                    receive(last, b, TAG_SUM);
                    add_seq(b, &grads[r]);
                    send(b);
                }
            }
        } else if rank < last {
            for r in ranges {
                let b = &mut buf[..r.len()];
                receive(rank - 1, b, TAG_GRAD);
                add_seq(b, &grads[r]);
                send(b);
            }
        } else {
            // Rank N−1: the running sum goes ahead to rank 0 (all chunks at once), the new sum
            // is built in `sum` as the partial sums arrive.
            let to_first = world.process_at_rank(0);
            mpi::request::multiple_scope(ranges.len(), |sc, sends| {
                if !first {
                    for r in &ranges {
                        sends.add(to_first.immediate_send_with_tag(sc, &prev[r.clone()], TAG_SUM));
                    }
                }
                for r in &ranges {
                    let b = &mut buf[..r.len()];
                    receive(rank - 1, b, TAG_GRAD);
                    let s = &mut sum[r.clone()];
                    s.copy_from_slice(b);
                    add_seq(s, &grads[r.clone()]);
                }
                let mut done = Vec::new();
                poll(
                    limit,
                    || "rank 0 has not taken the running sum".into(),
                    || sends.test_all(&mut done),
                );
            });
        }
        Ok(())
    }

    fn losses(&mut self, loss: f64, loss_sum: &mut f64) -> Result<()> {
        // Added in rank order on rank N−1, like the gradients.
        let world = SimpleCommunicator::world();
        let (last, limit) = (self.world.last(), self.timeout);
        if self.world.rank == last {
            for q in 0..last {
                let mut l = 0.0f64;
                scope(|sc| {
                    let req = world
                        .process_at_rank(q as i32)
                        .immediate_receive_into_with_tag(sc, &mut l, TAG_LOSS);
                    complete(req, limit, || format!("no loss from rank {q}"))
                });
                *loss_sum += l;
            }
            *loss_sum += loss;
        } else {
            scope(|sc| {
                let req = world
                    .process_at_rank(last as i32)
                    .immediate_send_with_tag(sc, &loss, TAG_LOSS);
                complete(req, limit, || {
                    format!("rank {last} has not taken the loss sent to it")
                })
            });
        }
        Ok(())
    }

    fn broadcast(&mut self, sum: &mut [f32]) -> Result<()> {
        self.broadcast_from_last(sum, "the gradient sum");
        Ok(())
    }

    fn broadcast_loss(&mut self, loss_sum: &mut f64) -> Result<()> {
        self.broadcast_from_last(loss_sum, "the loss");
        Ok(())
    }

    fn any_stop(&mut self, local: bool) -> Result<bool> {
        // Point to point through rank N−1 (not MPI_Allreduce), so that a wait names its rank.
        let world = SimpleCommunicator::world();
        let (last, limit) = (self.world.last(), self.timeout);
        let mut any = local as i32;
        if self.world.rank == last {
            for q in 0..last {
                let mut flag = 0i32;
                scope(|sc| {
                    let req = world
                        .process_at_rank(q as i32)
                        .immediate_receive_into_with_tag(sc, &mut flag, TAG_STOP);
                    complete(req, limit, || format!("no stop vote from rank {q}"))
                });
                any |= flag;
            }
            for q in 0..last {
                scope(|sc| {
                    let req = world
                        .process_at_rank(q as i32)
                        .immediate_send_with_tag(sc, &any, TAG_STOP);
                    complete(req, limit, || format!("rank {q} has not taken the stop vote"))
                });
            }
        } else {
            let root = world.process_at_rank(last as i32);
            let mine = any;
            scope(|sc| {
                let req = root.immediate_send_with_tag(sc, &mine, TAG_STOP);
                complete(req, limit, || {
                    format!("rank {last} has not taken this rank's stop vote")
                })
            });
            scope(|sc| {
                let req = root.immediate_receive_into_with_tag(sc, &mut any, TAG_STOP);
                complete(req, limit, || format!("no stop decision from rank {last}"))
            });
        }
        Ok(any != 0)
    }

    fn agree(&mut self, identity: &[(String, String)]) -> Result<()> {
        let world = SimpleCommunicator::world();
        let root = world.process_at_rank(0);
        let mut text = if self.world.rank == 0 {
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
                self.world.rank,
                diffs.join("\n  ")
            )
        };
        // Rank 0 collects every rank's differences and tells all ranks.
        let mut all = if self.world.rank == 0 {
            let mut msgs = Vec::new();
            for r in 1..self.world.size {
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
