//! Data-parallel training without MPI: ranks as threads joined by channels, with a reducer that
//! computes the same left fold as the MPI ring (here rank 0 adds the ranks' micro-step gradients
//! in rank order, then sends the sum to all). N such ranks must give bitwise the parameters of one process with
//! N times the accumulation, and only rank 0 may write. (tools/mpi_check.sh runs the same over
//! real MPI processes.)

mod common;

use anyhow::Result;
use ferrolm_train::checkpoint;
use ferrolm_train::data::Sampling;
use ferrolm_train::trainer::step::{add_into, fold_local};
use ferrolm_train::trainer::{GradReducer, StepOutcome, Trainer};
use ferrolm_train::{train, TrainConfig, TrainOptions};
use std::sync::mpsc::{channel, Receiver, Sender};

type Msg = (Vec<f32>, f64);

/// One rank's end of the channels.
struct ChannelReducer {
    rank: usize,
    size: usize,
    /// Rank 0: from each other rank; the others: to rank 0.
    from: Vec<Receiver<Msg>>,
    to_root: Option<Sender<Msg>>,
    /// Rank 0: to each other rank (the sum); the others: from rank 0.
    to: Vec<Sender<Msg>>,
    from_root: Option<Receiver<Msg>>,
}

impl GradReducer for ChannelReducer {
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
        if self.rank == 0 {
            fold_local(first, grads, sum);
            *loss_sum += loss;
            for rx in &self.from {
                let (g, l) = rx.recv()?;
                add_into(sum, &g);
                *loss_sum += l;
            }
        } else {
            self.to_root.as_ref().unwrap().send((grads.clone(), loss))?;
            grads.fill(0.0);
        }
        Ok(())
    }

    fn finish(&mut self, sum: &mut [f32], loss_sum: &mut f64) -> Result<()> {
        if self.rank == 0 {
            for tx in &self.to {
                tx.send((sum.to_vec(), *loss_sum))?;
            }
        } else {
            let (s, l) = self.from_root.as_ref().unwrap().recv()?;
            sum.copy_from_slice(&s);
            *loss_sum = l;
        }
        Ok(())
    }
}

fn reducers(size: usize) -> Vec<ChannelReducer> {
    let (mut up_tx, mut up_rx, mut down_tx, mut down_rx) = (vec![], vec![], vec![], vec![]);
    for _ in 1..size {
        let (a, b) = channel();
        up_tx.push(a);
        up_rx.push(b);
        let (c, d) = channel();
        down_tx.push(c);
        down_rx.push(d);
    }
    let mut out = vec![ChannelReducer {
        rank: 0,
        size,
        from: up_rx,
        to_root: None,
        to: down_tx,
        from_root: None,
    }];
    for (r, (tx, rx)) in up_tx.into_iter().zip(down_rx).enumerate() {
        out.push(ChannelReducer {
            rank: r + 1,
            size,
            from: vec![],
            to_root: Some(tx),
            to: vec![],
            from_root: Some(rx),
        });
    }
    out
}

/// Trains `cfg` (per-rank grad_accum) as `size` ranks in threads; returns rank 0's last checkpoint.
fn train_ranks(cfg: &TrainConfig, size: usize) -> std::path::PathBuf {
    let handles: Vec<_> = reducers(size)
        .into_iter()
        .map(|red| {
            let cfg = cfg.clone();
            std::thread::spawn(move || {
                let rank = red.rank;
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
            cfg.run.dir = d.path().join(format!("ranks-{name}"));
            cfg.data.grad_accum = accum;
            let many = train_ranks(&cfg, ranks);
            assert!(
                model_bytes(&one) == model_bytes(&many),
                "{name}: parameters differ"
            );
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
