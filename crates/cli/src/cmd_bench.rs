//! `ferrolm bench`: throughput figures. `bench train` times full training steps (zero grads,
//! forward, backward, AdamW) of a preset model on random tokens and prints tokens/s, the median
//! step time and the achieved GFLOP/s (FLOPs counted as issue 3 defines them).

use anyhow::{bail, Context};
use ferrolm_nn::model::{Activations, Model};
use ferrolm_nn::optim::{AdamW, AdamWConfig};
use ferrolm_nn::{ModelConfig, Rng};
use std::time::Instant;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Time training steps (forward + backward + AdamW) of a preset model on random tokens.
    Train(TrainArgs),
}

#[derive(clap::Args)]
pub struct TrainArgs {
    /// Model preset: small (d_model 512, 4 layers, 16 heads) or tiny (d_model 256, 8 heads).
    #[arg(long, default_value = "small")]
    preset: String,
    /// Sequences per step.
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Tokens per sequence (at most the preset's context length, 256).
    #[arg(long, default_value_t = 256)]
    seq: usize,
    /// Timed steps (the median is reported).
    #[arg(long, default_value_t = 10)]
    steps: usize,
    /// Untimed steps first (page faults, caches, thread start-up).
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Time forward + backward only, without the optimizer step.
    #[arg(long)]
    no_optimizer: bool,
    /// Print one line per timed step.
    #[arg(long)]
    verbose: bool,
}

pub fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Train(args) => bench_train(args),
    }
}

fn bench_train(a: TrainArgs) -> anyhow::Result<()> {
    let Some(config) = ModelConfig::preset(&a.preset) else {
        bail!("unknown preset {:?}: use small or tiny", a.preset);
    };
    if a.batch == 0 || a.seq == 0 || a.steps == 0 {
        bail!("--batch, --seq and --steps must be positive");
    }
    if a.seq > config.context_length {
        bail!(
            "--seq {} is longer than the preset's context length {}",
            a.seq,
            config.context_length
        );
    }
    let mut model = Model::new(config.clone(), 1337).context("building the model")?;
    let mut acts = Activations::new(&config, a.batch, a.seq);
    let mut opt = AdamW::new(AdamWConfig::default(), model.params.len());
    let n = a.batch * a.seq;
    let mut rng = Rng::new(7);
    let v = config.vocab_size as u64;
    let inputs: Vec<u32> = (0..n).map(|_| rng.below(v) as u32).collect();
    let targets: Vec<u32> = (0..n).map(|_| rng.below(v) as u32).collect();
    let threads = rayon::current_num_threads();
    println!(
        "bench train: preset {} ({:.2}M params), batch {}, seq {}, {} threads, {}",
        a.preset,
        model.params.len() as f64 / 1e6,
        a.batch,
        a.seq,
        threads,
        if a.no_optimizer {
            "forward+backward"
        } else {
            "forward+backward+AdamW"
        }
    );
    let mut times = Vec::with_capacity(a.steps);
    let mut loss = 0.0;
    for i in 0..a.warmup + a.steps {
        let t0 = Instant::now();
        model.zero_grads();
        loss = model.forward_backward(&mut acts, &inputs, &targets)?;
        if !a.no_optimizer {
            opt.step(&mut model.params, &model.grads, 1e-4);
        }
        let dt = t0.elapsed().as_secs_f64();
        if i >= a.warmup {
            times.push(dt);
            if a.verbose {
                println!("  step {:>3}: {:.1} ms, loss {loss:.4}", i - a.warmup, dt * 1e3);
            }
        }
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let tok_s = n as f64 / median;
    let gflops = config.train_flops_per_token(a.seq) * tok_s / 1e9;
    println!(
        "step median {:.1} ms (min {:.1}, max {:.1}), {:.0} tokens/s, {:.1} GFLOP/s, final loss {loss:.4}",
        median * 1e3,
        times[0] * 1e3,
        times[times.len() - 1] * 1e3,
        tok_s,
        gflops
    );
    // One machine-readable line for tools/bench_vs_torch.py.
    println!(
        "RESULT tokens_per_s={tok_s:.1} step_ms={:.2} gflops={gflops:.2}",
        median * 1e3
    );
    Ok(())
}
