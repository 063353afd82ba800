//! Throughput benchmarks behind `ferrolm bench`: training steps (the trainer's own
//! [`Stepper::step`] on random tokens), generation with the KV cache, and the machine's measured
//! arithmetic peak. Each returns its figures; the CLI prints them.

pub mod machine_peak;
pub mod probe;

use crate::trainer::step::{FixedBatch, StepOutcome, StepSettings, Stepper};
use anyhow::{bail, Context, Result};
use ferrolm_nn::model::{KvCache, Model};
use ferrolm_nn::optim::{AdamW, AdamWConfig};
use ferrolm_nn::{ModelConfig, Precision, Rng};
use machine_peak::{MachinePeak, ReferencePeak};
use probe::Lap;
use std::time::Instant;

/// What `bench train` runs.
#[derive(Clone, Debug)]
pub struct TrainBenchOptions {
    /// Model preset: small or tiny.
    pub preset: String,
    /// Sequences per step.
    pub batch: usize,
    /// Tokens per sequence (at most the preset's context length).
    pub seq: usize,
    /// Timed steps.
    pub steps: usize,
    /// Untimed steps first.
    pub warmup: usize,
    /// Time forward + backward only (no gradient norm, no AdamW).
    pub no_optimizer: bool,
    pub precision: Precision,
    /// Record where the timed steps' time went (per-kernel laps).
    pub breakdown: bool,
}

/// A prepared `bench train`: the preset model, its optimizer and one random batch.
pub struct TrainBench {
    opts: TrainBenchOptions,
    config: ModelConfig,
    stepper: Stepper,
    batch: FixedBatch,
}

/// The figures of a `bench train` run (times in seconds).
#[derive(Clone, Debug)]
pub struct TrainBenchReport {
    /// Timed step times, sorted ascending.
    pub times: Vec<f64>,
    pub median: f64,
    pub tokens_per_s: f64,
    /// Achieved GFLOP/s (FLOPs counted as `ModelConfig::train_flops_per_token`).
    pub gflops: f64,
    pub final_loss: f32,
    /// Whether the f32 matmuls ran on the AMX tiles (which the FMA peak does not bound).
    pub f32_on_amx: bool,
    /// Process CPU seconds over wall seconds of the timed steps (None where unknown).
    pub cpu_busy: Option<f64>,
    /// Wall seconds of the timed steps.
    pub wall: f64,
    /// Per-kernel laps of the timed steps, with `breakdown`.
    pub laps: Option<Vec<Lap>>,
}

impl TrainBench {
    /// Checks the options and builds the model (seed 1337) and a random batch (seed 7).
    pub fn new(opts: TrainBenchOptions) -> Result<TrainBench> {
        let Some(config) = ModelConfig::preset(&opts.preset) else {
            bail!("unknown preset {:?}: use small or tiny", opts.preset);
        };
        if opts.batch == 0 || opts.seq == 0 || opts.steps == 0 {
            bail!("--batch, --seq and --steps must be positive");
        }
        if opts.seq > config.context_length {
            bail!(
                "--seq {} is longer than the preset's context length {}",
                opts.seq,
                config.context_length
            );
        }
        let mut model = Model::new(config.clone(), 1337).context("building the model")?;
        model.precision = opts.precision;
        let optim = AdamW::new(AdamWConfig::default(), model.params.len());
        // A constant learning rate, no clipping, no accumulation.
        let settings = StepSettings {
            grad_accum: 1,
            grad_clip: 0.0,
            max_lr: 1e-4,
            min_lr: 1e-4,
            warmup_steps: 0,
            cosine_steps: 0,
        };
        let n = opts.batch * opts.seq;
        let mut rng = Rng::new(7);
        let v = config.vocab_size as u64;
        let inputs: Vec<u32> = (0..n).map(|_| rng.below(v) as u32).collect();
        let targets: Vec<u32> = (0..n).map(|_| rng.below(v) as u32).collect();
        Ok(TrainBench {
            stepper: Stepper::new(model, optim, settings, opts.batch, opts.seq),
            batch: FixedBatch { inputs, targets },
            config,
            opts,
        })
    }

    /// The peak this bench's step is judged against (its precision's unit; see
    /// [`machine_peak::reference`]).
    pub fn reference_peak(&self, peak: &MachinePeak) -> ReferencePeak {
        let on_amx = self.opts.precision == Precision::F32 && probe::f32_matmuls_on_amx();
        machine_peak::reference(peak, self.opts.precision, on_amx, probe::bf16_kernel())
    }

    /// Parameters of the model.
    pub fn params(&self) -> usize {
        self.stepper.model.params.len()
    }

    /// Runs the warm-up and timed steps; `on_step(i, seconds, loss)` is called after each timed step.
    pub fn run(mut self, mut on_step: impl FnMut(usize, f64, f32)) -> Result<TrainBenchReport> {
        let o = self.opts.clone();
        let mut times = Vec::with_capacity(o.steps);
        let mut loss = 0.0;
        let (mut cpu_timed, mut wall) = (0.0, 0.0);
        for i in 0..o.warmup + o.steps {
            if i == o.warmup && o.breakdown {
                probe::take_laps(); // drop the warm-up steps' laps
                probe::set_profiling(true);
            }
            let t0 = Instant::now();
            let cpu0 = process_cpu_seconds();
            loss = if o.no_optimizer {
                self.stepper.model.zero_grads();
                self.stepper.accumulate_gradients(i as u64, &mut self.batch)?
            } else {
                match self.stepper.step(i as u64, &mut self.batch)? {
                    StepOutcome::Done(s) => s.loss,
                    StepOutcome::NonFinite { what } => bail!("non-finite {what} at step {}", i + 1),
                }
            };
            let dt = t0.elapsed().as_secs_f64();
            if i >= o.warmup {
                times.push(dt);
                cpu_timed += process_cpu_seconds() - cpu0;
                wall += dt;
                on_step(i - o.warmup, dt, loss);
            }
        }
        probe::set_profiling(false);
        let laps = o.breakdown.then(probe::take_laps);
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        let tokens_per_s = (o.batch * o.seq) as f64 / median;
        let gflops = self.config.train_flops_per_token(o.seq) * tokens_per_s / 1e9;
        Ok(TrainBenchReport {
            times,
            median,
            tokens_per_s,
            gflops,
            final_loss: loss,
            f32_on_amx: o.precision == Precision::F32 && probe::f32_matmuls_on_amx(),
            cpu_busy: (wall > 0.0 && cpu_timed > 0.0).then(|| cpu_timed / wall),
            wall,
            laps,
        })
    }
}

/// What `bench generate` runs.
#[derive(Clone, Debug)]
pub struct GenerateBenchOptions {
    pub preset: String,
    /// New tokens per sequence (one forward pass each, the first on a 1-token prompt).
    pub tokens: usize,
    /// Sequences generated together.
    pub batch: usize,
    /// Timed repetitions (after one untimed).
    pub repeats: usize,
    /// Weight precision of the decoding products.
    pub precision: Precision,
}

/// The figures of a `bench generate` run.
#[derive(Clone, Copy, Debug)]
pub struct GenerateBenchReport {
    /// Median seconds of one repetition (all `tokens` steps).
    pub median: f64,
    pub tokens_per_s: f64,
}

/// Times greedy generation with the KV cache (see [`GenerateBenchOptions`]).
pub fn bench_generate(a: &GenerateBenchOptions) -> Result<GenerateBenchReport> {
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
                *t = ferrolm_nn::sample::argmax(row);
            }
        }
        times.push(t0.elapsed().as_secs_f64());
    }
    times.remove(0); // warm-up
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    Ok(GenerateBenchReport {
        median,
        tokens_per_s: (a.batch * a.tokens) as f64 / median,
    })
}

/// What `bench peak` measured, and the cache file it wrote for `bench train` (None where there is
/// no cache folder).
#[derive(Clone, Debug)]
pub struct PeakReport {
    pub peak: MachinePeak,
    pub saved: Option<std::path::PathBuf>,
}

/// Measures the f32 and bf16 multiply-add peaks on the current rayon pool, the best of `rounds`
/// rounds of about `seconds` each, and caches them for `bench train` (see [`machine_peak`]).
pub fn bench_peak(seconds: f64, rounds: usize) -> Result<PeakReport> {
    if !(seconds > 0.0 && seconds <= 60.0) {
        bail!("--seconds must be in (0, 60], got {seconds}");
    }
    if !(1..=100).contains(&rounds) {
        bail!("--rounds must be in 1..=100, got {rounds}");
    }
    let peak = machine_peak::measure(seconds, rounds);
    let saved = match machine_peak::cache_dir() {
        Some(dir) => Some(machine_peak::save(&dir, &peak)?),
        None => None,
    };
    Ok(PeakReport { peak, saved })
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
