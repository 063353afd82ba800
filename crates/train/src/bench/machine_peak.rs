//! The machine's arithmetic peak as `bench train` judges a step against it: measured robustly
//! (the best of several rounds, since other load only ever lowers a peak), cached per CPU model
//! and thread count by `ferrolm bench peak`, and chosen per precision (the f32 FMA peak for f32 on
//! the FMA GEMM, the bf16 unit's peak for bf16, the tiles' peak ÷ 6 for the three-term f32 split
//! on AMX).
//!
//! FLOP/s figures are in GFLOP/s (a multiply-add counts 2).

use super::probe::{self, Bf16Kernel, Bf16Unit};
use anyhow::{Context, Result};
use ferrolm_nn::Precision;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Rounds `bench peak` and an uncached `bench train` take; the best counts.
pub const PEAK_ROUNDS: usize = 5;

/// One machine's measured peaks, as cached in `peak-<threads>t.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MachinePeak {
    /// The CPU's model name (`/proc/cpuinfo`), so that a cache from another CPU is not used.
    pub cpu: String,
    /// Worker threads the peak was measured on.
    pub threads: usize,
    /// f32 multiply-add peak (FMA), GFLOP/s.
    pub f32_gflops: f64,
    /// The bf16 unit ("AMX tiles" or "AVX-512 BF16") and its peak in GFLOP/s; None without one.
    pub bf16: Option<(String, f64)>,
    /// Rounds measured (the best is kept) and seconds per round.
    pub rounds: usize,
    pub seconds_per_round: f64,
    /// When it was measured, seconds since the Unix epoch.
    pub measured_unix: u64,
}

/// The name of a bf16 unit as `bench` prints it.
pub fn unit_name(unit: Bf16Unit) -> &'static str {
    match unit {
        Bf16Unit::Amx => "AMX tiles",
        Bf16Unit::Avx512Bf16 => "AVX-512 BF16",
    }
}

/// This CPU's model name from `/proc/cpuinfo` ("unknown CPU" where there is none).
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".to_string())
}

/// Measures the f32 and bf16 peaks on the current rayon pool: `rounds` rounds of about
/// `seconds` each, 20 ms apart, keeping the best of each (a busy moment only lowers a round).
pub fn measure(seconds: f64, rounds: usize) -> MachinePeak {
    let mut f32_best = 0.0f64;
    let mut bf16_best: Option<(Bf16Unit, f64)> = None;
    for r in 0..rounds.max(1) {
        if r > 0 {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        f32_best = f32_best.max(probe::f32_peak(seconds) / 1e9);
        if let Some((unit, flops)) = probe::bf16_peak(seconds) {
            let best = bf16_best.map_or(0.0, |(_, f)| f);
            bf16_best = Some((unit, best.max(flops / 1e9)));
        }
    }
    MachinePeak {
        cpu: cpu_model(),
        threads: rayon::current_num_threads(),
        f32_gflops: f32_best,
        bf16: bf16_best.map(|(u, f)| (unit_name(u).to_string(), f)),
        rounds: rounds.max(1),
        seconds_per_round: seconds,
        measured_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    }
}

/// The folder of ferrolm's per-machine cache: `$FERROLM_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/ferrolm`, else `$HOME/.cache/ferrolm`; None when none is set.
pub fn cache_dir() -> Option<PathBuf> {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    var("FERROLM_CACHE_DIR")
        .or_else(|| var("XDG_CACHE_HOME").map(|d| d.join("ferrolm")))
        .or_else(|| var("HOME").map(|d| d.join(".cache").join("ferrolm")))
}

/// The cache file for `threads` worker threads in `dir`.
pub fn cache_file(dir: &Path, threads: usize) -> PathBuf {
    dir.join(format!("peak-{threads}t.json"))
}

/// Writes `peak` to its cache file in `dir` (atomically: a temporary file renamed into place).
pub fn save(dir: &Path, peak: &MachinePeak) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = cache_file(dir, peak.threads);
    let tmp = path.with_extension("json.tmp");
    let text = serde_json::to_string_pretty(peak)?;
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// The cached peak for this CPU model and `threads` in `dir`, if there is a readable one; a
/// cache of another CPU or thread count, or an unreadable file, is ignored (the reason returned).
pub fn load(dir: &Path, threads: usize, cpu: &str) -> std::result::Result<MachinePeak, String> {
    let path = cache_file(dir, threads);
    let text = std::fs::read_to_string(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!(
            "no `ferrolm bench peak` figure is cached for {threads} threads ({})",
            path.display()
        ),
        _ => format!("{}: {e}", path.display()),
    })?;
    let peak: MachinePeak =
        serde_json::from_str(&text).map_err(|e| format!("{} is not a peak cache ({e})", path.display()))?;
    if peak.cpu != cpu || peak.threads != threads {
        return Err(format!(
            "{} was measured on {} with {} threads, not this {} with {threads}",
            path.display(),
            peak.cpu,
            peak.threads,
            cpu
        ));
    }
    if !(peak.f32_gflops.is_finite() && peak.f32_gflops > 0.0) {
        return Err(format!("{} holds no valid f32 peak", path.display()));
    }
    Ok(peak)
}

/// Which unit's peak a step in `precision` is judged against, and that peak in GFLOP/s.
#[derive(Clone, Debug, PartialEq)]
pub struct ReferencePeak {
    /// What the peak is, for the report ("the f32 FMA peak", ...).
    pub label: String,
    pub gflops: f64,
}

/// The peak that bounds a training step's matmuls in `precision`: f32 on the FMA GEMM → the f32
/// FMA peak; f32 split on AMX → the AMX bf16 peak ÷ 6 (six tile products per f32 product); bf16
/// on AMX or AVX-512 BF16 → that unit's peak; bf16 emulated (operands rounded, f32 GEMM) → the f32
/// FMA peak.
pub fn reference(
    peak: &MachinePeak,
    precision: Precision,
    f32_on_amx: bool,
    kernel: Bf16Kernel,
) -> ReferencePeak {
    let f32_fma = || ReferencePeak {
        label: "the f32 FMA peak".to_string(),
        gflops: peak.f32_gflops,
    };
    let unit = |name: &str| peak.bf16.as_ref().filter(|(n, _)| n == name).map(|(_, g)| *g);
    match precision {
        Precision::F32 if f32_on_amx => match unit(unit_name(Bf16Unit::Amx)) {
            Some(g) => ReferencePeak {
                label: "the AMX tiles' bf16 peak / 6 (six term products per f32 product)".to_string(),
                gflops: g / 6.0,
            },
            None => f32_fma(),
        },
        Precision::F32 => f32_fma(),
        Precision::Bf16 => {
            let name = match kernel {
                Bf16Kernel::Amx => Some(unit_name(Bf16Unit::Amx)),
                Bf16Kernel::Avx512Bf16 => Some(unit_name(Bf16Unit::Avx512Bf16)),
                Bf16Kernel::Emulated => None,
            };
            match name.and_then(|n| unit(n).map(|g| (n, g))) {
                Some((n, g)) => ReferencePeak {
                    label: format!("the {n} peak"),
                    gflops: g,
                },
                None => ReferencePeak {
                    label: "the f32 FMA peak (bf16 emulated: operands rounded, f32 GEMM)".to_string(),
                    gflops: peak.f32_gflops,
                },
            }
        }
    }
}

/// Where `bench train`'s peak came from.
#[derive(Clone, Debug, PartialEq)]
pub enum PeakSource {
    /// Read from this cache file, written by `ferrolm bench peak`.
    Cached(PathBuf),
    /// Measured by this run (and written to the cache file, if any), with the reason no cache
    /// was used.
    Measured { why: String, saved: Option<PathBuf> },
}

/// The peak for `bench train`: the cache for this CPU and thread count if there is one, else
/// measured now (best of [`PEAK_ROUNDS`] rounds of 0.1 s, before the steps so the machine is as
/// idle as this process can make it) and cached.
pub fn for_bench() -> (MachinePeak, PeakSource) {
    let threads = rayon::current_num_threads();
    let cpu = cpu_model();
    let dir = cache_dir();
    let why = match &dir {
        Some(d) => match load(d, threads, &cpu) {
            Ok(p) => return (p, PeakSource::Cached(cache_file(d, threads))),
            Err(why) => why,
        },
        None => "no cache folder (set FERROLM_CACHE_DIR or HOME)".to_string(),
    };
    let peak = measure(0.1, PEAK_ROUNDS);
    let saved = dir.and_then(|d| save(&d, &peak).ok());
    (peak, PeakSource::Measured { why, saved })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peak(bf16: Option<(&str, f64)>) -> MachinePeak {
        MachinePeak {
            cpu: "Test CPU".into(),
            threads: 2,
            f32_gflops: 100.0,
            bf16: bf16.map(|(n, g)| (n.to_string(), g)),
            rounds: 5,
            seconds_per_round: 0.1,
            measured_unix: 1,
        }
    }

    #[test]
    fn each_precision_is_judged_against_its_own_unit() {
        let p = peak(Some(("AVX-512 BF16", 300.0)));
        let r = reference(&p, Precision::F32, false, Bf16Kernel::Avx512Bf16);
        assert_eq!((r.gflops, r.label.as_str()), (100.0, "the f32 FMA peak"));
        let r = reference(&p, Precision::Bf16, false, Bf16Kernel::Avx512Bf16);
        assert_eq!(r.gflops, 300.0);
        assert!(r.label.contains("AVX-512 BF16"), "{}", r.label);
        // Forced to the emulated kernel, bf16 runs on the f32 GEMM.
        let r = reference(&p, Precision::Bf16, false, Bf16Kernel::Emulated);
        assert_eq!(r.gflops, 100.0);
        assert!(r.label.contains("emulated"), "{}", r.label);

        let amx = peak(Some(("AMX tiles", 1200.0)));
        let r = reference(&amx, Precision::F32, true, Bf16Kernel::Amx);
        assert_eq!(r.gflops, 200.0);
        assert!(r.label.contains("/ 6"), "{}", r.label);
        let r = reference(&amx, Precision::F32, false, Bf16Kernel::Amx);
        assert_eq!(r.gflops, 100.0);
        assert_eq!(
            reference(&amx, Precision::Bf16, false, Bf16Kernel::Amx).gflops,
            1200.0
        );
        // No bf16 unit measured: the f32 peak.
        let none = peak(None);
        assert_eq!(
            reference(&none, Precision::Bf16, false, Bf16Kernel::Emulated).gflops,
            100.0
        );
    }

    #[test]
    fn the_cache_round_trips_and_refuses_another_machine() {
        let dir = std::env::temp_dir().join(format!("ferrolm-peak-test-{}", std::process::id()));
        let p = peak(Some(("AVX-512 BF16", 300.0)));
        let path = save(&dir, &p).unwrap();
        assert_eq!(path, cache_file(&dir, 2));
        assert_eq!(load(&dir, 2, "Test CPU").unwrap(), p);
        let other_cpu = load(&dir, 2, "Other CPU").unwrap_err();
        assert!(other_cpu.contains("Test CPU"), "{other_cpu}");
        assert!(load(&dir, 4, "Test CPU").is_err());
        std::fs::write(&path, "not json").unwrap();
        let bad = load(&dir, 2, "Test CPU").unwrap_err();
        assert!(bad.contains("not a peak cache"), "{bad}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_measured_peak_is_positive_and_names_this_machine() {
        let p = measure(0.002, 2);
        assert!(p.f32_gflops > 0.1, "{p:?}");
        assert_eq!(p.threads, rayon::current_num_threads());
        assert_eq!(p.cpu, cpu_model());
        if let Some((name, g)) = &p.bf16 {
            assert!(g.is_finite() && *g > 0.1, "{name} {g}");
        }
    }
}
