//! The settings of the overlapped gradient reduction (overlap mode, bucket size, from the
//! environment) and the plan that groups the backward's ready ranges into buckets.

use anyhow::{anyhow, bail, Result};
use std::ops::Range;

/// When the reduction overlaps the backward.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overlap {
    /// The whole gradient after the backward.
    Off,
    /// Buckets during the backward (the default).
    On,
    /// Off and on in turn, step by step (to compare the two within one run).
    Alternate,
}

/// How the reduction is done: overlap and bucket size (the same on every rank: checked at start).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    pub overlap: Overlap,
    /// A bucket closes once it holds at least this many gradient bytes (4 per parameter).
    pub bucket_bytes: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            overlap: Overlap::On,
            bucket_bytes: 25 << 20,
        }
    }
}

impl Settings {
    /// From `FERROLM_MPI_OVERLAP` (`on`, the default; `off`; `alternate`) and
    /// `FERROLM_MPI_BUCKET_MB` (MiB, fractions allowed; default 25).
    pub fn from_env() -> Result<Settings> {
        let var = |name| std::env::var(name).ok();
        Settings::parse(
            var("FERROLM_MPI_OVERLAP").as_deref(),
            var("FERROLM_MPI_BUCKET_MB").as_deref(),
        )
    }

    /// The settings from those two variables' values (None: unset); an error names a bad one.
    pub fn parse(overlap: Option<&str>, bucket_mb: Option<&str>) -> Result<Settings> {
        let mut s = Settings::default();
        if let Some(v) = overlap {
            s.overlap = match v.trim() {
                "on" | "1" | "" => Overlap::On,
                "off" | "0" => Overlap::Off,
                "alternate" => Overlap::Alternate,
                other => bail!("FERROLM_MPI_OVERLAP={other}: expected on, off or alternate"),
            };
        }
        if let Some(v) = bucket_mb {
            let mb: f64 = v
                .trim()
                .parse()
                .ok()
                .filter(|m: &f64| *m > 0.0 && m.is_finite())
                .ok_or_else(|| anyhow!("FERROLM_MPI_BUCKET_MB={v}: expected a positive number of MiB"))?;
            s.bucket_bytes = ((mb * (1 << 20) as f64) as usize).max(4);
        }
        Ok(s)
    }

    pub(super) fn describe(&self) -> String {
        let mb = format!("{:.3}", self.bucket_bytes as f64 / (1 << 20) as f64);
        let mb = mb.trim_end_matches('0').trim_end_matches('.');
        match self.overlap {
            Overlap::Off => "overlap off".to_string(),
            Overlap::On => format!("overlap on, buckets of {mb} MiB"),
            Overlap::Alternate => format!("overlap alternating off/on, buckets of {mb} MiB"),
        }
    }
}

/// Which buckets the backward's ready ranges fill.
pub(super) struct Plan {
    /// The ready ranges in the backward's order (contiguous, descending).
    pub order: Vec<Range<usize>>,
    /// Each bucket's parameter range and the index in `order` of its last (lowest) piece.
    pub buckets: Vec<(Range<usize>, usize)>,
    /// The bucket of each piece.
    pub bucket_of: Vec<usize>,
}

impl Plan {
    /// None when the ranges are not contiguous and descending (then there is no overlap).
    pub fn new(order: &[Range<usize>], bucket_bytes: usize) -> Option<Plan> {
        if order.windows(2).any(|w| w[1].end != w[0].start) || order.is_empty() {
            return None;
        }
        let (mut buckets, mut bucket_of) = (Vec::new(), Vec::new());
        let mut top = order[0].end;
        for (i, r) in order.iter().enumerate() {
            bucket_of.push(buckets.len());
            if (top - r.start) * 4 >= bucket_bytes || i + 1 == order.len() {
                buckets.push((r.start..top, i));
                top = r.start;
            }
        }
        Some(Plan {
            order: order.to_vec(),
            buckets,
            bucket_of,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_parse_and_bad_values_are_named() {
        assert_eq!(Settings::parse(None, None).unwrap(), Settings::default());
        let s = Settings::parse(Some("alternate"), Some("0.5")).unwrap();
        assert_eq!((s.overlap, s.bucket_bytes), (Overlap::Alternate, 1 << 19));
        assert_eq!(Settings::parse(Some("off"), None).unwrap().overlap, Overlap::Off);
        let e = Settings::parse(Some("maybe"), None).unwrap_err().to_string();
        assert!(e.contains("FERROLM_MPI_OVERLAP=maybe"), "{e}");
        for bad in ["0", "-1", "x", "inf"] {
            let e = Settings::parse(None, Some(bad)).unwrap_err().to_string();
            assert!(e.contains("FERROLM_MPI_BUCKET_MB"), "{e}");
        }
    }

    #[test]
    fn buckets_are_contiguous_descending_and_close_at_the_cap() {
        // Ready ranges as the backward reports them: head, layers from the last, embedding.
        let order = [90..100, 60..90, 30..60, 0..30];
        let p = Plan::new(&order, 4 * 35).unwrap();
        let ranges: Vec<_> = p.buckets.iter().map(|(r, _)| r.clone()).collect();
        assert_eq!(ranges, [60..100, 0..60]);
        assert_eq!(p.bucket_of, [0, 0, 1, 1]);
        let one = Plan::new(&order, 25 << 20).unwrap();
        assert_eq!(one.buckets, [(0..100, 3)]);
        assert!(
            Plan::new(&[0..10, 20..30], 4).is_none(),
            "not contiguous: no overlap"
        );
    }
}
