//! Training as several processes (data parallelism): what a process's run is made of (compared
//! across processes at the start), the launcher's environment (ranks per node → threads per rank),
//! the rank-ordered reduction on a communication thread that overlaps the backward ([`ring`]),
//! and, with the `mpi` feature, its MPI transport in [`mpi`].

mod buckets;
#[cfg(feature = "mpi")]
pub mod mpi;
pub mod ring;

use crate::config::TrainConfig;
use crate::data::TokenFile;
use crate::trainer::setup::TrainData;
use std::path::Path;

/// Whether this process was started by an MPI launcher (mpirun/mpiexec of Open MPI or MPICH, or
/// Slurm's srun with PMI/PMIx).
pub fn launched_by_mpi() -> bool {
    ["OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE"]
        .iter()
        .any(|v| std::env::var_os(v).is_some())
}

/// This process's rank and the number of processes training together ((0, 1) without MPI).
pub fn rank_and_size() -> (usize, usize) {
    #[cfg(feature = "mpi")]
    if mpi::is_initialized() {
        return mpi::rank_and_size();
    }
    (0, 1)
}

/// The number of processes the launcher started (1 when none did), from its environment: mpirun's
/// or PMI's world size, else the tasks of this Slurm job step (`SLURM_STEP_NUM_TASKS`, which only
/// `srun` sets; not SLURM_NTASKS, which a batch script has set outside `srun` too). srun sets it
/// even when its MPI plugin is off (`--mpi=none`), so tasks that MPI did not join are found.
pub fn launcher_world_size() -> usize {
    ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_STEP_NUM_TASKS"]
        .iter()
        .find_map(|v| std::env::var(v).ok()?.parse().ok())
        .unwrap_or(1)
}

/// Worker threads per process when several share a node: `SLURM_CPUS_PER_TASK` when Slurm set it,
/// else the node's cores divided by the processes the launcher put on this node
/// (`OMPI_COMM_WORLD_LOCAL_SIZE`, `MPI_LOCALNRANKS`, `SLURM_NTASKS_PER_NODE`), at least 1. None when
/// no launcher says how many processes share the node (then every core is used).
pub fn threads_per_process(cores: usize) -> Option<usize> {
    let var = |name: &str| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.trim().split('(').next()?.parse::<usize>().ok())
            .filter(|&n| n > 0)
    };
    if let Some(n) = var("SLURM_CPUS_PER_TASK") {
        return Some(n);
    }
    [
        "OMPI_COMM_WORLD_LOCAL_SIZE",
        "MPI_LOCALNRANKS",
        "SLURM_NTASKS_PER_NODE",
    ]
    .iter()
    .find_map(|v| var(v))
    .map(|local| (cores / local).max(1))
}

/// What fixes a process's run, as (name, value) pairs compared across processes at the start: the
/// whole config (after command-line overrides), each data file's path, length and content sample,
/// the tokenizer's fingerprint, the checkpoint the run starts from, and the program's version.
pub fn identity(
    cfg: &TrainConfig,
    data: &TrainData,
    resumed_from: Option<&Path>,
    step: u64,
) -> Vec<(String, String)> {
    let mut out = vec![
        (
            "ferrolm version".to_string(),
            env!("CARGO_PKG_VERSION").to_string(),
        ),
        ("config".to_string(), cfg.to_toml()),
        ("data.train".to_string(), describe_tokens(&data.train)),
    ];
    if let Some(v) = &data.valid {
        out.push(("data.valid".to_string(), describe_tokens(v)));
    }
    let tok = data
        .tokenizer
        .as_ref()
        .map_or("none".to_string(), |t| t.fingerprint.clone());
    out.push(("tokenizer".to_string(), tok));
    let start = match resumed_from {
        Some(d) => format!("checkpoint {} (step {step})", d.display()),
        None => "a fresh initialization".to_string(),
    };
    out.push(("starting point".to_string(), start));
    out
}

/// A token file's path, length and a hash of 256 windows of 1024 tokens spread over it (cheap on
/// large files; differing files almost always differ there).
fn describe_tokens(t: &TokenFile) -> String {
    let n = t.len();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut buf = vec![0u32; 1024.min(n)];
    for i in 0..256usize {
        let start = (n - buf.len()) * i / 255;
        t.read_into(start, &mut buf);
        for &x in &buf {
            h = (h ^ x as u64).wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{} ({n} tokens, content hash {h:016x})", t.path().display())
}

/// How `mine` differs from rank 0's `root` (both from [`identity`]): one line per difference,
/// naming it (for the config, the differing keys); empty when they agree.
pub fn differences(mine: &[(String, String)], root: &[(String, String)]) -> Vec<String> {
    let mut out = Vec::new();
    for (name, value) in mine {
        let Some((_, rv)) = root.iter().find(|(n, _)| n == name) else {
            out.push(format!("{name}: {value} here, absent on rank 0"));
            continue;
        };
        if rv == value {
            continue;
        }
        if name == "config" {
            if let (Ok(a), Ok(b)) = (TrainConfig::from_toml(value), TrainConfig::from_toml(rv)) {
                for (k, here, r0) in a.diff(&b) {
                    out.push(format!("config {k}: {here} here, {r0} on rank 0"));
                }
                continue;
            }
        }
        out.push(format!("{name}: {value} here, {rv} on rank 0"));
    }
    for (name, rv) in root {
        if !mine.iter().any(|(n, _)| n == name) {
            out.push(format!("{name}: absent here, {rv} on rank 0"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_name_the_config_key_and_the_data_file() {
        let a = TrainConfig::default();
        let mut b = a.clone();
        b.data.batch_size += 1;
        let id = |c: &TrainConfig, data: &str| {
            vec![
                ("config".to_string(), c.to_toml()),
                ("data.train".to_string(), data.to_string()),
            ]
        };
        assert!(differences(&id(&a, "x"), &id(&a, "x")).is_empty());
        let d = differences(&id(&b, "x (10 tokens)"), &id(&a, "x (12 tokens)"));
        assert_eq!(d.len(), 2, "{d:?}");
        assert!(d[0].starts_with("config data.batch_size:"), "{d:?}");
        assert!(d[1].contains("10 tokens") && d[1].contains("12 tokens"), "{d:?}");
    }

    #[test]
    fn threads_per_process_divides_the_cores() {
        // Only checks the arithmetic on variables this test controls the absence of.
        if std::env::var_os("SLURM_CPUS_PER_TASK").is_none()
            && std::env::var_os("OMPI_COMM_WORLD_LOCAL_SIZE").is_none()
        {
            assert_eq!(threads_per_process(8), None);
        }
    }
}
