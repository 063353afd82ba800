//! Data-parallel training without MPI: ranks as threads, each with the trainer's own
//! [`RingReducer`] (buckets, communication thread, overlap with the backward) over a [`Ring`] of
//! channels that computes the same ordered sum as the MPI ring. N such ranks must give bitwise the
//! parameters of one process with N times the accumulation, with overlap off, on (with buckets of
//! a few layers or a few kB) and alternating, and only rank 0 may write. (tools/mpi_check.sh runs
//! the same over real MPI processes.)

mod common;

use anyhow::Result;
use ferrolm_train::checkpoint;
use ferrolm_train::data::Sampling;
use ferrolm_train::dist::ring::{add_seq, Overlap, Ring, RingReducer, Settings, World};
use ferrolm_train::trainer::{StepOutcome, Trainer};
use ferrolm_train::{train, TrainConfig, TrainOptions};
use std::sync::mpsc::{channel, Receiver, Sender};

/// Messages to rank N−1 and back (losses, stop flags, the broadcast sum).
enum Side {
    Loss(f64),
    Stop(bool),
    Sum(Vec<f32>),
    LossSum(f64),
}

/// One rank's channels: a ring r → r+1 (N−1 → 0 carries the running sum ahead), and side
/// channels between rank N−1 and each other rank.
struct ChannelRing {
    world: World,
    from_before: Receiver<Vec<f32>>,
    to_next: Sender<Vec<f32>>,
    /// Rank N−1: from and to each other rank; the others: to and from rank N−1.
    side_in: Vec<Receiver<Side>>,
    side_out: Vec<Sender<Side>>,
}

impl Ring for ChannelRing {
    fn world(&self) -> World {
        self.world
    }

    fn describe(&self) -> String {
        "a ring of channels".into()
    }

    fn reduce(&mut self, first: bool, mine: &[f32], prev: &[f32], out: &mut [f32]) -> Result<()> {
        if self.world.is_last() {
            if !first {
                self.to_next.send(prev.to_vec())?;
            }
            let partial = self.from_before.recv()?;
            assert_eq!(partial.len(), mine.len(), "ranks' buckets differ");
            out.copy_from_slice(&partial);
            add_seq(out, mine);
        } else {
            let partial = if self.world.rank == 0 && first {
                mine.to_vec()
            } else {
                let mut p = self.from_before.recv()?;
                assert_eq!(p.len(), mine.len(), "ranks' buckets differ");
                add_seq(&mut p, mine);
                p
            };
            self.to_next.send(partial)?;
        }
        Ok(())
    }

    fn losses(&mut self, loss: f64, sum: &mut f64) -> Result<()> {
        if self.world.is_last() {
            for rx in &self.side_in {
                let Side::Loss(l) = rx.recv()? else {
                    panic!("expected a loss")
                };
                *sum += l;
            }
            *sum += loss;
        } else {
            self.side_out[0].send(Side::Loss(loss))?;
        }
        Ok(())
    }

    fn broadcast(&mut self, sum: &mut [f32]) -> Result<()> {
        if self.world.is_last() {
            for tx in &self.side_out {
                tx.send(Side::Sum(sum.to_vec()))?;
            }
        } else {
            let Side::Sum(s) = self.side_in[0].recv()? else {
                panic!("expected the sum")
            };
            sum.copy_from_slice(&s);
        }
        Ok(())
    }

    fn broadcast_loss(&mut self, loss: &mut f64) -> Result<()> {
        if self.world.is_last() {
            for tx in &self.side_out {
                tx.send(Side::LossSum(*loss))?;
            }
        } else {
            let Side::LossSum(l) = self.side_in[0].recv()? else {
                panic!("expected the loss")
            };
            *loss = l;
        }
        Ok(())
    }

    fn any_stop(&mut self, local: bool) -> Result<bool> {
        if self.world.is_last() {
            let mut any = local;
            for rx in &self.side_in {
                let Side::Stop(b) = rx.recv()? else {
                    panic!("expected a stop flag")
                };
                any |= b;
            }
            for tx in &self.side_out {
                tx.send(Side::Stop(any))?;
            }
            Ok(any)
        } else {
            self.side_out[0].send(Side::Stop(local))?;
            let Side::Stop(b) = self.side_in[0].recv()? else {
                panic!("expected a stop flag")
            };
            Ok(b)
        }
    }

    fn agree(&mut self, _identity: &[(String, String)]) -> Result<()> {
        Ok(())
    }
}

fn rings(size: usize) -> Vec<ChannelRing> {
    let (tx, mut rx): (Vec<_>, Vec<_>) = (0..size).map(|_| channel()).unzip();
    // Ring channel r carries r → r+1; rank r receives on channel r−1.
    rx.rotate_right(1);
    let (mut to_last, mut at_last): (Vec<_>, Vec<_>) = (1..size).map(|_| channel()).unzip();
    let (mut from_last, mut at_rank): (Vec<_>, Vec<_>) = (1..size).map(|_| channel()).unzip();
    let mut out = Vec::new();
    for (rank, (to_next, from_before)) in tx.into_iter().zip(rx).enumerate().rev() {
        let (side_in, side_out) = if rank + 1 == size {
            (std::mem::take(&mut at_last), std::mem::take(&mut from_last))
        } else {
            (vec![at_rank.remove(rank)], vec![to_last.remove(rank)])
        };
        out.push(ChannelRing {
            world: World { rank, size },
            from_before,
            to_next,
            side_in,
            side_out,
        });
    }
    out.reverse();
    out
}

/// Trains `cfg` (per-rank grad_accum) as `size` ranks in threads; returns rank 0's last checkpoint.
fn train_ranks(cfg: &TrainConfig, size: usize, settings: Settings) -> std::path::PathBuf {
    let handles: Vec<_> = rings(size)
        .into_iter()
        .map(|ring| {
            let cfg = cfg.clone();
            std::thread::spawn(move || {
                let red = RingReducer::new(ring, settings).unwrap();
                let rank = red.rank();
                let mut t = Trainer::open_with(&cfg, &TrainOptions::default(), Box::new(red), rank).unwrap();
                while !t.is_done() {
                    let StepOutcome::Done(stats) = t.step().unwrap() else {
                        panic!("non-finite")
                    };
                    t.after_step(&stats).unwrap();
                }
                t.finish(false).unwrap().checkpoint
            })
        })
        .collect();
    let dirs: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    // Only rank 0 saves.
    assert!(
        dirs[1..].iter().all(|d| d.is_none()),
        "a rank other than 0 saved: {dirs:?}"
    );
    dirs[0].clone().expect("rank 0 saved")
}

fn model_bytes(dir: &std::path::Path) -> Vec<u8> {
    std::fs::read(dir.join("model.safetensors")).unwrap()
}

#[test]
fn n_ranks_give_bitwise_one_process_with_n_times_the_accumulation() {
    let d = tempfile::tempdir().unwrap();
    for sampling in [Sampling::Random, Sampling::Sequential] {
        for (ranks, accum) in [(2, 1), (3, 1), (2, 2)] {
            let name = format!("{sampling:?}-{ranks}x{accum}");
            let mut cfg = common::tiny_run(&d.path().join(format!("one-{name}")), 4);
            cfg.data.sampling = sampling;
            cfg.data.grad_accum = ranks * accum;
            let one = train(&cfg, &TrainOptions::default()).unwrap().checkpoint.unwrap();
            cfg.data.grad_accum = accum;
            // Overlap off; on with a bucket per layer (tiny buckets: each closes at its first
            // piece) and with one bucket for everything; alternating with buckets of 2 layers.
            let (dm, ff) = (cfg.model.d_model, cfg.model.d_ff);
            let layer = 4 * (4 * dm * dm + 3 * dm * ff);
            let settings = [
                (Overlap::Off, 1 << 20),
                (Overlap::On, 4),
                (Overlap::On, 25 << 20),
                (Overlap::Alternate, 2 * layer),
            ];
            let mut many = None;
            for (k, (overlap, bucket_bytes)) in settings.into_iter().enumerate() {
                cfg.run.dir = d.path().join(format!("ranks-{name}-{k}"));
                let s = Settings {
                    overlap,
                    bucket_bytes,
                };
                let dir = train_ranks(&cfg, ranks, s);
                assert!(
                    model_bytes(&one) == model_bytes(&dir),
                    "{name}, {s:?}: parameters differ"
                );
                many = Some(dir);
            }
            let many = many.unwrap();
            // The checkpoint records the one-process config, so either resumes the other.
            let saved = checkpoint::read_state(&many).unwrap();
            assert_eq!(saved.config.data.grad_accum, ranks * accum);
            assert_eq!(
                saved.tokens_seen,
                checkpoint::read_state(&one).unwrap().tokens_seen
            );
        }
    }
}
