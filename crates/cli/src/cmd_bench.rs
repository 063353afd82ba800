//! `ferrolm bench`: throughput figures. `bench train` times the trainer's own training step
//! (forward, backward, gradient norm, AdamW) of a preset model on random tokens and prints tokens/s,
//! the median step time and the achieved GFLOP/s (FLOPs counted as issue 3 defines them);
//! `bench generate` times incremental generation with the KV cache. The measuring is in
//! `ferrolm_train::bench`; this file parses and prints.

use ferrolm_nn::ops::MatmulBackend;
use ferrolm_nn::Precision;
use ferrolm_train::bench::{self, probe::Lap, GenerateBenchOptions, TrainBench, TrainBenchOptions};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Time training steps (forward + backward + gradient norm + AdamW: the trainer's step) of a
    /// preset model on random tokens.
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
    let opts = GenerateBenchOptions {
        preset: a.preset,
        tokens: a.tokens,
        batch: a.batch,
        repeats: a.repeats,
        precision: a.precision,
    };
    let r = bench::bench_generate(&opts)?;
    println!(
        "bench generate: preset {}, batch {}, {} new tokens, {} weights, {} threads: {:.0} tokens/s ({:.3} ms per step)",
        opts.preset,
        opts.batch,
        opts.tokens,
        opts.precision.name(),
        rayon::current_num_threads(),
        r.tokens_per_s,
        r.median / opts.tokens as f64 * 1e3
    );
    println!("RESULT tokens_per_s={:.1}", r.tokens_per_s);
    Ok(())
}

fn bench_peak(a: PeakArgs) -> anyhow::Result<()> {
    let threads = rayon::current_num_threads();
    let r = bench::bench_peak(a.seconds)?;
    let f32_flops = r.f32_flops;
    println!(
        "bench peak: {threads} threads: f32 multiply-add {:.1} GFLOP/s ({:.1} per thread)",
        f32_flops / 1e9,
        f32_flops / 1e9 / threads as f64
    );
    match r.bf16 {
        Some((unit, flops)) => println!(
            "bench peak: {threads} threads: bf16 multiply-add, f32 sums, on {unit}: {:.1} GFLOP/s ({:.1}x f32)",
            flops / 1e9,
            flops / f32_flops
        ),
        None => println!("bench peak: no bf16 unit (neither AMX nor AVX-512 BF16) on this CPU"),
    }
    println!(
        "RESULT f32_gflops={:.1} bf16_gflops={:.1}",
        f32_flops / 1e9,
        r.bf16.map_or(0.0, |(_, f)| f / 1e9)
    );
    Ok(())
}

fn bench_train(a: TrainArgs) -> anyhow::Result<()> {
    let opts = TrainBenchOptions {
        preset: a.preset.clone(),
        batch: a.batch,
        seq: a.seq,
        steps: a.steps,
        warmup: a.warmup,
        no_optimizer: a.no_optimizer,
        precision: a.precision,
        breakdown: a.breakdown,
    };
    let b = TrainBench::new(opts)?;
    let threads = rayon::current_num_threads();
    println!(
        "bench train: preset {} ({:.2}M params), batch {}, seq {}, {} threads, {}, matmuls {}",
        a.preset,
        b.params() as f64 / 1e6,
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
    let r = b.run(|i, dt, loss| {
        if a.verbose {
            println!("  step {i:>3}: {:.1} ms, loss {loss:.4}", dt * 1e3);
        }
    })?;
    if let Some(laps) = &r.laps {
        print_breakdown(laps, r.wall, a.steps);
    }
    let times = &r.times;
    println!(
        "step median {:.1} ms (min {:.1}, max {:.1}), {:.0} tokens/s, {:.1} GFLOP/s = {:.0}% of the measured f32 peak ({:.1} GFLOP/s, `bench peak`), final loss {:.4}",
        r.median * 1e3,
        times[0] * 1e3,
        times[times.len() - 1] * 1e3,
        r.tokens_per_s,
        r.gflops,
        100.0 * r.gflops / r.peak_gflops,
        r.peak_gflops,
        r.final_loss
    );
    if r.f32_on_amx {
        println!(
            "(the f32 matmuls run on the AMX tiles, which the FMA peak does not bound; FERROLM_F32_GEMM=fma runs them on the FMA GEMM)"
        );
    }
    // How busy the worker threads were: process CPU time over wall time of the timed steps (below
    // the thread count: serial sections, waits between kernels, or other load on the machine).
    if let Some(busy) = r.cpu_busy {
        println!("CPU busy during the timed steps: {busy:.2} of {threads} threads");
    }
    // One machine-readable line for tools/bench_vs_torch.py.
    println!(
        "RESULT tokens_per_s={:.1} step_ms={:.2} gflops={:.2} f32_peak_gflops={:.1}",
        r.tokens_per_s,
        r.median * 1e3,
        r.gflops,
        r.peak_gflops
    );
    Ok(())
}

/// The `--breakdown` table: each label's wall time per step and share of the timed steps, the
/// largest first, and what no label covered (loss mean, checks, the step loop itself).
fn print_breakdown(laps: &[Lap], wall: f64, steps: usize) {
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
