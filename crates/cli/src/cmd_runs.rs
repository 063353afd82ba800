//! `ferrolm runs`: the runs under a directory at a glance, and their loss curves overlaid.

use anyhow::{bail, Result};
use ferrolm_train::runs::{self, RunInfo};
use std::path::PathBuf;

/// List the training runs under a directory: state (running, finished, interrupted), steps done
/// and planned, training tokens, wall-clock time, the last and the best validation loss, the last
/// training loss, precision and parameter count. With --compare, overlay the loss curves of the
/// given runs in one SVG (against training tokens) and list those runs.
#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  ferrolm runs                      # the runs under runs/\n  \
ferrolm runs experiments/\n  ferrolm runs --compare runs/a runs/b --out a-vs-b.svg"
)]
pub struct Args {
    /// Directory holding run directories (or a run directory itself).
    #[arg(default_value = "runs", conflicts_with = "compare")]
    dir: PathBuf,
    /// Run directories whose loss curves to overlay (two or more).
    #[arg(long, num_args = 2.., value_name = "RUN")]
    compare: Vec<PathBuf>,
    /// Where --compare writes its SVG.
    #[arg(long, default_value = "compare.svg", requires = "compare")]
    out: PathBuf,
}

pub fn run(args: Args) -> Result<()> {
    if !args.compare.is_empty() {
        let infos = args
            .compare
            .iter()
            .map(|d| runs::inspect(d))
            .collect::<Result<Vec<RunInfo>>>()?;
        let curves: Vec<(String, Vec<_>)> = infos
            .iter()
            .map(|r| (r.dir.display().to_string(), r.records.clone()))
            .collect();
        let names: Vec<&str> = curves.iter().map(|(n, _)| n.as_str()).collect();
        ferrolm_train::plot::plot_compare(&curves, &args.out, &names.join(" vs "))?;
        print!("{}", runs::table(&infos));
        println!("plot: {}", args.out.display());
        return Ok(());
    }
    let dirs = runs::find_runs(&args.dir)?;
    if dirs.is_empty() {
        bail!(
            "no runs in {} (a run directory has config.toml, metrics.jsonl or checkpoints/)",
            args.dir.display()
        );
    }
    let infos: Vec<RunInfo> = dirs.iter().map(|d| runs::inspect(d)).collect::<Result<_>>()?;
    print!("{}", runs::table(&infos));
    Ok(())
}
