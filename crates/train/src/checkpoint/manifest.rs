//! Checksums of a checkpoint's files: `checksums.json` lists every file of the checkpoint
//! (`model.safetensors`, `optimizer.safetensors`, `state.json`, `tokenizer/*`) with its length
//! and CRC-32C, plus a CRC-32C of that list itself, so a damaged manifest is told apart from a
//! damaged file. It is written last; every load verifies it first. Checkpoints saved before
//! checksums existed have no manifest and load unverified (the loader says so).

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::Path;

pub const MANIFEST_FILE: &str = "checksums.json";
const ALGORITHM: &str = "crc32c";

/// One file's length and checksum.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSum {
    pub bytes: u64,
    /// CRC-32C of the contents, 8 hex digits.
    pub crc32c: String,
}

/// The contents of `checksums.json`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub algorithm: String,
    /// Paths relative to the checkpoint directory ('/'-separated) → length and checksum.
    pub files: BTreeMap<String, FileSum>,
    /// CRC-32C of `files` serialized as compact JSON.
    pub files_crc32c: String,
}

fn hex(crc: u32) -> String {
    format!("{crc:08x}")
}

impl Manifest {
    /// Records a file's contents under `rel`.
    pub fn add(&mut self, rel: &str, bytes: &[u8]) {
        let sum = FileSum {
            bytes: bytes.len() as u64,
            crc32c: hex(crc32c::crc32c(bytes)),
        };
        self.files.insert(rel.to_string(), sum);
    }

    fn files_crc(&self) -> String {
        hex(crc32c::crc32c(
            &serde_json::to_vec(&self.files).expect("serializes"),
        ))
    }

    /// The manifest as written: JSON with its own checksum filled in.
    pub fn to_json(&mut self) -> Vec<u8> {
        self.algorithm = ALGORITHM.to_string();
        self.files_crc32c = self.files_crc();
        serde_json::to_vec_pretty(self).expect("serializes")
    }

    /// Reads the manifest of the checkpoint in `dir`: None when there is none (a checkpoint saved
    /// before checksums existed); an error naming the file when it is damaged.
    pub fn read(dir: &Path) -> Result<Option<Manifest>> {
        let path = dir.join(MANIFEST_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        let m: Manifest = serde_json::from_slice(&bytes)
            .with_context(|| format!("{}: damaged (not a valid checksum list)", path.display()))?;
        if m.algorithm != ALGORITHM {
            bail!("{}: unknown checksum algorithm {:?}", path.display(), m.algorithm);
        }
        if m.files_crc() != m.files_crc32c {
            bail!(
                "{}: damaged (its own checksum is {}, the file records {})",
                path.display(),
                m.files_crc(),
                m.files_crc32c
            );
        }
        Ok(Some(m))
    }

    /// Checks every listed file of the checkpoint in `dir` (read in 1 MiB pieces): present, of
    /// the recorded length, with the recorded CRC-32C. The error names the first bad file.
    pub fn verify(&self, dir: &Path) -> Result<()> {
        for (rel, sum) in &self.files {
            let path = dir.join(rel);
            let mut f = File::open(&path)
                .with_context(|| format!("{}: missing (listed in {MANIFEST_FILE})", path.display()))?;
            let (mut crc, mut len) = (0u32, 0u64);
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = f
                    .read(&mut buf)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                if n == 0 {
                    break;
                }
                crc = crc32c::crc32c_append(crc, &buf[..n]);
                len += n as u64;
            }
            if len != sum.bytes {
                bail!(
                    "{}: damaged: {} bytes, but {} bytes were saved ({})",
                    path.display(),
                    len,
                    sum.bytes,
                    if len < sum.bytes { "truncated" } else { "grown" }
                );
            }
            if hex(crc) != sum.crc32c {
                bail!(
                    "{}: damaged: its CRC-32C is {}, but {} was saved (the bytes changed on disk)",
                    path.display(),
                    hex(crc),
                    sum.crc32c
                );
            }
        }
        Ok(())
    }
}
