//! `ferrolm bench`: throughput figures. `bench train` times full training steps (zero grads,
//! forward, backward, AdamW) of a preset model on random tokens and prints tokens/s, the median
//! step time and the achieved GFLOP/s (FLOPs counted as issue 3 defines them); `bench generate`
//! times incremental generation with the KV cache.

use anyhow::{bail, Context};
use ferrolm_nn::bench::peak;
use ferrolm_nn::bench::profile;
use ferrolm_nn::model::{Activations, KvCache, Model};
use ferrolm_nn::ops::MatmulBackend;
use ferrolm_nn::optim::{AdamW, AdamWConfig};
use ferrolm_nn::{ModelConfig, Precision, Rng};
use std::time::Instant;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Time training steps (forward + backward + AdamW) of a preset model on random tokens.
    Train(TrainArgs),
    /// Time generation with the KV cache: a 1-token prompt, then one token per step (greedy).
    /// Batch 1 decoding is bound by reading the weights once per token.
    Generate(GenerateArgs),
    /// Measure this machine's arithmetic peak (f32 FMA, and bf16 on AMX or AVX-512 BF16) on the
    /// worker threads: the ceiling that `bench train`'s "% of peak" refers to.
    Peak(PeakArgs),
}

#[derive(clap::Args)]
pub struct PeakArgs {
    /// Seconds per measurement (the best of three runs of at least this long is kept).
    #[arg(long, default_value_t = 0.2)]
    seconds: f64,
}

#[derive(clap::Args)]
pub struct GenerateArgs {
    /// Model preset: small or tiny.
    #[arg(long, default_value = "small")]
    preset: String,
    /// New tokens per sequence (at most the context length): one forward pass each, the first on
    /// the 1-token prompt.
    #[arg(long, default_value_t = 256)]
    tokens: usize,
    /// Sequences generated together.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Timed repetitions (the median is reported).
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Weight precision of the decoding matrix-vector products: f32, or bf16 (a bf16 copy of the
    /// weights made once at load, f32 accumulation: half the bytes read per token).
    #[arg(long, default_value = "f32")]
    precision: Precision,
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
    /// Matmul precision: f32, or bf16 (bf16 operands, f32 sums; AMX tiles where the CPU has them).
    #[arg(long, default_value = "f32")]
    precision: Precision,
    /// Print one line per timed step.
    #[arg(long)]
    verbose: bool,
    /// Also print where the timed steps' time went: wall time per kernel (each matmul by layer
    /// and role, attention, norms, ...), measured inside the steps.
    #[arg(long)]
    breakdown: bool,
}

pub fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Train(args) => bench_train(args),
        Command::Generate(args) => bench_generate(args),
        Command::Peak(args) => bench_peak(args),
    }
}

fn bench_generate(a: GenerateArgs) -> anyhow::Result<()> {
    let Some(config) = ModelConfig::preset(&a.preset) else {
        bail!("unknown preset {:?}: use small or tiny", a.preset);
    };
    if a.batch == 0 || a.tokens == 0 || a.repeats == 0 || a.tokens > config.context_length {
        bail!(
            "--batch, --repeats must be positive and --tokens in 1..={}",
            config.context_length
        );
    }
    let model = Model::new(config.clone(), 1337).context("building the model")?;
    let bf16 = (a.precision == Precision::Bf16).then(|| model.bf16_weights());
    let mut cache = KvCache::new(&config, a.batch, a.tokens);
    let v = config.vocab_size;
    let mut logits = vec![0.0f32; a.batch * v];
    let mut times = Vec::with_capacity(a.repeats);
    for _ in 0..a.repeats + 1 {
        cache.reset();
        let mut tokens = vec![0u32; a.batch];
        let t0 = Instant::now();
        for _ in 0..a.tokens {
            match &bf16 {
                Some(w) => model.forward_infer_bf16(w, &mut cache, &tokens, &mut logits)?,
                None => model.forward_infer(&mut cache, &tokens, &mut logits)?,
            }
            // Batch 1: the argmax the decode step found with the LM head.
            if let Some(t) = cache.last_argmax() {
                tokens[0] = t;
                continue;
            }
            for (t, row) in tokens.iter_mut().zip(logits.chunks(v)) {
                *t = row
                    .iter()
                    .enumerate()
                    .fold(
                        (0, f32::NEG_INFINITY),
                        |m, (i, &x)| if x > m.1 { (i, x) } else { m },
                    )
                    .0 as u32;
            }
        }
        times.push(t0.elapsed().as_secs_f64());
    }
    times.remove(0); // warm-up
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let tok_s = (a.batch * a.tokens) as f64 / median;
    println!(
        "bench generate: preset {}, batch {}, {} new tokens, {} weights, {} threads: {:.0} tokens/s ({:.3} ms per step)",
        a.preset,
        a.batch,
        a.tokens,
        a.precision.name(),
        rayon::current_num_threads(),
        tok_s,
        median / a.tokens as f64 * 1e3
    );
    println!("RESULT tokens_per_s={tok_s:.1}");
    Ok(())
}

fn bench_peak(a: PeakArgs) -> anyhow::Result<()> {
    if !(a.seconds > 0.0 && a.seconds <= 60.0) {
        bail!("--seconds must be in (0, 60], got {}", a.seconds);
    }
    let threads = rayon::current_num_threads();
    let f32_flops = peak::f32_peak(a.seconds);
    println!(
        "bench peak: {threads} threads: f32 multiply-add {:.1} GFLOP/s ({:.1} per thread)",
        f32_flops / 1e9,
        f32_flops / 1e9 / threads as f64
    );
    let bf16 = peak::bf16_peak(a.seconds);
    match bf16 {
        Some((unit, flops)) => println!(
            "bench peak: {threads} threads: bf16 multiply-add, f32 sums, on {}: {:.1} GFLOP/s ({:.1}x f32)",
            unit_name(unit),
            flops / 1e9,
            flops / f32_flops
        ),
        None => println!("bench peak: no bf16 unit (neither AMX nor AVX-512 BF16) on this CPU"),
    }
    println!(
        "RESULT f32_gflops={:.1} bf16_gflops={:.1}",
        f32_flops / 1e9,
        bf16.map_or(0.0, |(_, f)| f / 1e9)
    );
    Ok(())
}

fn unit_name(unit: peak::Bf16Unit) -> &'static str {
    match unit {
        peak::Bf16Unit::Amx => "AMX tiles",
        peak::Bf16Unit::Avx512Bf16 => "AVX-512 BF16",
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
    model.precision = a.precision;
    let mut acts = Activations::new(&config, a.batch, a.seq);
    let mut opt = AdamW::new(AdamWConfig::default(), model.params.len());
    let n = a.batch * a.seq;
    let mut rng = Rng::new(7);
    let v = config.vocab_size as u64;
    let inputs: Vec<u32> = (0..n).map(|_| rng.below(v) as u32).collect();
    let targets: Vec<u32> = (0..n).map(|_| rng.below(v) as u32).collect();
    let threads = rayon::current_num_threads();
    println!(
        "bench train: preset {} ({:.2}M params), batch {}, seq {}, {} threads, {}, matmuls {}",
        a.preset,
        model.params.len() as f64 / 1e6,
        a.batch,
        a.seq,
        threads,
        if a.no_optimizer {
            "forward+backward"
        } else {
            "forward+backward+AdamW"
        },
        a.precision.backend()
    );
    let mut times = Vec::with_capacity(a.steps);
    let mut loss = 0.0;
    // As in the trainer: the fused AdamW step leaves the gradients zeroed for the next step.
    model.zero_grads();
    let (mut cpu_timed, mut wall_timed) = (0.0, 0.0);
    for i in 0..a.warmup + a.steps {
        if i == a.warmup && a.breakdown {
            profile::take(); // drop the warm-up steps' laps
            profile::set_enabled(true);
        }
        let t0 = Instant::now();
        let cpu0 = process_cpu_seconds();
        if a.no_optimizer {
            model.zero_grads();
        }
        loss = model.forward_backward(&mut acts, &inputs, &targets)?;
        if !a.no_optimizer {
            let mut laps = profile::Laps::start();
            opt.step_scaled_and_zero_grads(&mut model.params, &mut model.grads, 1e-4, 1.0);
            laps.mark("AdamW (+ zeroing the gradients)");
        }
        let dt = t0.elapsed().as_secs_f64();
        if i >= a.warmup {
            times.push(dt);
            cpu_timed += process_cpu_seconds() - cpu0;
            wall_timed += dt;
            if a.verbose {
                println!("  step {:>3}: {:.1} ms, loss {loss:.4}", i - a.warmup, dt * 1e3);
            }
        }
    }
    profile::set_enabled(false);
    if a.breakdown {
        print_breakdown(&profile::take(), wall_timed, a.steps);
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let tok_s = n as f64 / median;
    let gflops = config.train_flops_per_token(a.seq) * tok_s / 1e9;
    // The f32 peak of these threads, measured right after the steps (same clocks, same load).
    let peak_gflops = peak::f32_peak(0.05) / 1e9;
    println!(
        "step median {:.1} ms (min {:.1}, max {:.1}), {:.0} tokens/s, {:.1} GFLOP/s = {:.0}% of the measured f32 peak ({:.1} GFLOP/s, `bench peak`), final loss {loss:.4}",
        median * 1e3,
        times[0] * 1e3,
        times[times.len() - 1] * 1e3,
        tok_s,
        gflops,
        100.0 * gflops / peak_gflops,
        peak_gflops
    );
    if a.precision == Precision::F32 && ferrolm_nn::cpu::simd::f32_on_amx() {
        println!(
            "(the f32 matmuls run on the AMX tiles, which the FMA peak does not bound; FERROLM_F32_GEMM=fma runs them on the FMA GEMM)"
        );
    }
    // How busy the worker threads were: process CPU time over wall time of the timed steps (below
    // the thread count: serial sections, waits between kernels, or other load on the machine).
    if wall_timed > 0.0 && cpu_timed > 0.0 {
        println!(
            "CPU busy during the timed steps: {:.2} of {threads} threads",
            cpu_timed / wall_timed
        );
    }
    // One machine-readable line for tools/bench_vs_torch.py.
    println!(
        "RESULT tokens_per_s={tok_s:.1} step_ms={:.2} gflops={gflops:.2} f32_peak_gflops={peak_gflops:.1}",
        median * 1e3
    );
    Ok(())
}

/// The `--breakdown` table: each label's wall time per step and share of the timed steps, the
/// largest first, and what no label covered (loss mean, checks, the step loop itself).
fn print_breakdown(laps: &[profile::Lap], wall: f64, steps: usize) {
    let mut laps = laps.to_vec();
    laps.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
    let per_step = |s: f64| s / steps as f64 * 1e3;
    println!("where the {steps} timed steps went (wall time inside the steps, per step):");
    println!(
        "  {:<36} {:>9} {:>7} {:>11}",
        "kernel", "ms/step", "share", "calls/step"
    );
    let mut covered = 0.0;
    for l in &laps {
        covered += l.seconds;
        println!(
            "  {:<36} {:>9.2} {:>6.1}% {:>11}",
            l.label,
            per_step(l.seconds),
            100.0 * l.seconds / wall,
            l.calls / steps as u64
        );
    }
    println!(
        "  {:<36} {:>9.2} {:>6.1}%",
        "(not in any kernel above)",
        per_step(wall - covered),
        100.0 * (wall - covered) / wall
    );
}

/// CPU seconds used by this process so far (all threads, user + system), from /proc/self/stat
/// (Linux; 10 ms resolution); 0 elsewhere.
fn process_cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the parenthesized command name: state is field 3, utime 14 and stime 15, in
    // clock ticks of 1/100 s (USER_HZ, fixed at 100 for /proc on Linux).
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}
