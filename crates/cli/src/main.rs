//! The `ferrolm` binary: parse the command line, call the library, print. Each subcommand lives
//! in its own module with its `Args` and `run`.

use clap::{Parser, Subcommand};

mod cmd_bench;
mod cmd_eval;
mod cmd_export;
mod cmd_generate;
mod cmd_import;
mod cmd_quickstart;
mod cmd_runs;
mod cmd_serve;
mod cmd_tokenizer;
mod cmd_train;
mod errors;

/// Train Transformer language models from scratch and use them: a byte-level BPE tokenizer,
/// a Llama-style model, and the training loop, in one binary.
#[derive(Parser)]
#[command(name = "ferrolm", version, about, long_about = None)]
struct Cli {
    /// Worker threads for the math (default: all cores; under mpirun/srun the cores divided by the
    /// ranks on the node, or SLURM_CPUS_PER_TASK).
    #[arg(long, global = true)]
    threads: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the whole pipeline on a built-in corpus (or --input FILE): tokenizer, data, training,
    /// evaluation, samples.
    Quickstart(cmd_quickstart::Args),
    /// Train, inspect and use byte-level BPE tokenizers.
    #[command(subcommand)]
    Tokenizer(cmd_tokenizer::Command),
    /// Train a model from a TOML config and command-line overrides.
    Train(Box<cmd_train::Args>),
    /// Generate text from a checkpoint.
    Generate(cmd_generate::Args),
    /// Loss and perplexity of a checkpoint on a token file.
    Eval(cmd_eval::Args),
    /// Export a checkpoint to Hugging Face transformers (--format hf) or GGUF for llama.cpp.
    Export(cmd_export::Args),
    /// Import a Hugging Face Llama directory as a checkpoint.
    Import(cmd_import::Args),
    /// List the runs under a directory (state, steps, losses, size), or overlay their loss curves.
    Runs(cmd_runs::Args),
    /// Serve a checkpoint with the OpenAI completions API over HTTP (continuous batching).
    Serve(cmd_serve::Args),
    /// Benchmarks that print throughput figures.
    #[command(subcommand)]
    Bench(cmd_bench::Command),
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = main_with(cli) {
        // Message and causes once, no backtrace (see errors::report); exit status 1.
        eprint!("{}", errors::report(&e));
        std::process::exit(1);
    }
}

fn main_with(cli: Cli) -> anyhow::Result<()> {
    // Under mpirun/srun (with the `mpi` feature): one data-parallel rank of a training job.
    #[cfg(feature = "mpi")]
    let mpi = ferrolm_train::dist::mpi::init()?;
    #[cfg(not(feature = "mpi"))]
    if ferrolm_train::dist::launcher_world_size() > 1 && matches!(cli.command, Command::Train(_)) {
        anyhow::bail!(
            "started by an MPI launcher as one of {} processes, but this ferrolm was built without \
             MPI: build it with `cargo build --release --features mpi` (each process would \
             otherwise train alone into the same run directory)",
            ferrolm_train::dist::launcher_world_size()
        );
    }
    // srun without its MPI plugin (`--mpi=none`, or a cluster whose default is none) starts tasks
    // that each see a world of one: they would all train alone into the same run directory.
    #[cfg(feature = "mpi")]
    if matches!(cli.command, Command::Train(_)) {
        let (launched, (_, size)) = (
            ferrolm_train::dist::launcher_world_size(),
            ferrolm_train::dist::rank_and_size(),
        );
        if launched > 1 && size != launched {
            anyhow::bail!(
                "the launcher started {launched} processes but MPI joined {size}: srun needs its \
                 MPI plugin to wire up the ranks (`srun --mpi=pmix`, or MpiDefault=pmix in \
                 slurm.conf; `srun --mpi=list` shows the plugins); each process would otherwise \
                 train alone into the same run directory"
            );
        }
    }
    // Ranks sharing a node share its cores: ranks × threads never exceeds them.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = cli
        .threads
        .or_else(|| ferrolm_train::dist::threads_per_process(cores));
    if let Some(n) = threads {
        rayon::ThreadPoolBuilder::new().num_threads(n).build_global()?;
    }
    // The command runs on a worker of the pool: each parallel section of the kernels then starts
    // as a join on that worker, instead of being injected from outside while this thread sleeps
    // until it ends (two thread wake-ups per section, several µs each on a VM); issue 5 measured
    // +4% for tiny bf16 training steps.
    let result = rayon::scope(|_| run(cli.command));
    #[cfg(feature = "mpi")]
    if let (Some(_), Err(e)) = (&mpi, &result) {
        // One rank failing ends the job at once (the others would wait for its gradients).
        let (rank, size) = ferrolm_train::dist::rank_and_size();
        // The message and its causes once, no backtrace (as for any user error).
        eprint!("rank {rank} of {size}: {}", errors::report(e));
        eprintln!("ending all ranks (MPI_Abort)");
        ferrolm_train::dist::mpi::abort(1);
    }
    result
}

fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Quickstart(a) => cmd_quickstart::run(a),
        Command::Tokenizer(c) => cmd_tokenizer::run(c),
        Command::Train(a) => cmd_train::run(*a),
        Command::Generate(a) => cmd_generate::run(a),
        Command::Eval(a) => cmd_eval::run(a),
        Command::Export(a) => cmd_export::run(a),
        Command::Import(a) => cmd_import::run(a),
        Command::Runs(a) => cmd_runs::run(a),
        Command::Serve(a) => cmd_serve::run(a),
        Command::Bench(c) => cmd_bench::run(c),
    }
}
