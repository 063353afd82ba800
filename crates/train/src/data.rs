//! Token data: NumPy `.npy` files of `<u2`/`<u4` token ids (the format is `ferrolm_tokenizer::npy`),
//! memory-mapped, and the batches drawn
//! from them (uniform random windows or windows in order), plus the fixed validation windows.
//!
//! A window of context length `ctx` starting at `s` uses tokens `s..s+ctx+1`: inputs are
//! `s..s+ctx`, targets `s+1..s+ctx+1` (the next token at each position).

use anyhow::{bail, Context, Result};
use ferrolm_nn::Rng;
use memmap2::Mmap;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::path::{Path, PathBuf};

use ferrolm_tokenizer::npy::{check_data_len, parse_header};
pub use ferrolm_tokenizer::npy::{write_npy, TokenDtype};

/// A one-dimensional `.npy` array of token ids, memory-mapped (a 10 GB file costs no RAM up front).
pub struct TokenFile {
    path: PathBuf,
    mmap: Option<Mmap>,
    dtype: TokenDtype,
    /// Byte offset of the first element (after the header).
    data_offset: usize,
    len: usize,
}

impl std::fmt::Debug for TokenFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "TokenFile({}, {} x {})",
            self.path.display(),
            self.len,
            self.dtype.descr()
        )
    }
}

impl TokenFile {
    /// Opens and memory-maps `path`, parsing and validating the `.npy` header: magic, version,
    /// dtype `<u2` or `<u4`, C order, one dimension, and a data section exactly as long as the
    /// shape says. Errors name the file and what is wrong.
    pub fn open(path: impl AsRef<Path>) -> Result<TokenFile> {
        let path = path.as_ref().to_path_buf();
        let file = File::open(&path).with_context(|| format!("cannot open token file {}", path.display()))?;
        let file_len = file.metadata()?.len() as usize;
        let mmap = if file_len == 0 {
            None
        } else {
            // SAFETY: the mapping is read-only; the file must not be truncated by another process
            // while we train on it (the same contract as numpy.memmap).
            Some(unsafe { Mmap::map(&file) }.with_context(|| format!("cannot map {}", path.display()))?)
        };
        let bytes: &[u8] = mmap.as_deref().unwrap_or(&[]);
        let named = |e: String| anyhow::anyhow!("{}: {e}", path.display());
        let header = parse_header(bytes).map_err(named)?;
        check_data_len(&header, file_len).map_err(named)?;
        Ok(TokenFile {
            path,
            mmap,
            dtype: header.dtype,
            data_offset: header.data_offset,
            len: header.len,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn dtype(&self) -> TokenDtype {
        self.dtype
    }
    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn data(&self) -> &[u8] {
        match &self.mmap {
            Some(m) => &m[self.data_offset..],
            None => &[],
        }
    }

    /// Token `i` (panics if `i >= len`, like slice indexing).
    pub fn get(&self, i: usize) -> u32 {
        let d = self.data();
        match self.dtype {
            TokenDtype::U16 => u16::from_le_bytes([d[2 * i], d[2 * i + 1]]) as u32,
            TokenDtype::U32 => u32::from_le_bytes([d[4 * i], d[4 * i + 1], d[4 * i + 2], d[4 * i + 3]]),
        }
    }

    /// Copies tokens `start..start+out.len()` into `out`.
    pub fn read_into(&self, start: usize, out: &mut [u32]) {
        let d = self.data();
        match self.dtype {
            TokenDtype::U16 => {
                let src = &d[2 * start..2 * (start + out.len())];
                for (o, c) in out.iter_mut().zip(src.chunks_exact(2)) {
                    *o = u16::from_le_bytes([c[0], c[1]]) as u32;
                }
            }
            TokenDtype::U32 => {
                let src = &d[4 * start..4 * (start + out.len())];
                for (o, c) in out.iter_mut().zip(src.chunks_exact(4)) {
                    *o = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                }
            }
        }
    }

    /// All tokens as a vector (for small files and tests).
    pub fn to_vec(&self) -> Vec<u32> {
        let mut v = vec![0; self.len];
        self.read_into(0, &mut v);
        v
    }

    /// Checks every id is below `vocab_size` (one parallel pass over the file); the error names the
    /// file, the first offending element index and its byte offset, and the value.
    pub fn check_ids(&self, vocab_size: usize) -> Result<()> {
        use rayon::prelude::*;
        const CHUNK: usize = 1 << 20;
        let n_chunks = self.len.div_ceil(CHUNK);
        let bad = (0..n_chunks).into_par_iter().find_first(|&c| {
            let (s, e) = (c * CHUNK, ((c + 1) * CHUNK).min(self.len));
            (s..e).any(|i| self.get(i) as usize >= vocab_size)
        });
        if let Some(c) = bad {
            let (s, e) = (c * CHUNK, ((c + 1) * CHUNK).min(self.len));
            let i = (s..e).find(|&i| self.get(i) as usize >= vocab_size).unwrap();
            bail!(
                "{}: token id {} at index {} (byte offset {}) is outside the vocabulary (size {}); \
                 was the file encoded with a different tokenizer?",
                self.path.display(),
                self.get(i),
                i,
                self.data_offset + i * self.dtype.size(),
                vocab_size
            );
        }
        Ok(())
    }

    /// Errors (naming the file) unless the file holds at least one window of `ctx` (ctx+1 tokens).
    pub fn check_fits(&self, ctx: usize) -> Result<()> {
        if self.len < ctx + 1 {
            bail!(
                "{}: {} tokens is too short for one window of context length {} (needs {} tokens)",
                self.path.display(),
                self.len,
                ctx,
                ctx + 1
            );
        }
        Ok(())
    }
}

/// Fills `inputs` and `targets` (each batch·ctx, row-major (batch, ctx)) with the window starting
/// at `start`: inputs tokens[start..start+ctx], targets tokens[start+1..start+ctx+1].
fn fill_window(tokens: &TokenFile, start: usize, ctx: usize, inputs: &mut [u32], targets: &mut [u32]) {
    tokens.read_into(start, inputs);
    // The targets are the same run shifted by one: copy and read just the last token.
    targets[..ctx - 1].copy_from_slice(&inputs[1..]);
    targets[ctx - 1] = tokens.get(start + ctx);
}

/// A random batch: `batch` windows of `ctx` tokens with starts drawn uniformly from
/// `0..=n−ctx−1`. Returns `(inputs, targets)`, each batch·ctx ids row-major, targets shifted by one.
pub fn get_batch(
    tokens: &TokenFile,
    batch: usize,
    ctx: usize,
    rng: &mut Rng,
) -> Result<(Vec<u32>, Vec<u32>)> {
    let mut inputs = vec![0; batch * ctx];
    let mut targets = vec![0; batch * ctx];
    let mut sampler = BatchSampler::new(Sampling::Random, rng.clone());
    sampler.fill(tokens, ctx, &mut inputs, &mut targets)?;
    *rng = sampler.rng;
    Ok((inputs, targets))
}

/// How training windows are chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sampling {
    /// Uniform random starts in 0..=n−ctx−1 (the CS336 `get_batch`).
    Random,
    /// Non-overlapping windows in order (starts 0, ctx, 2·ctx, ...), wrapping to the start at the end.
    Sequential,
}

/// The batch-drawing state: the mode, its random stream and, for sequential mode, the next window.
/// It is all of the data-sampling state, so a checkpoint that stores it resumes the same batches.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchSampler {
    pub mode: Sampling,
    pub rng: Rng,
    /// Sequential mode: index of the next window (starts at `cursor·ctx` modulo the window count).
    pub cursor: u64,
}

impl BatchSampler {
    pub fn new(mode: Sampling, rng: Rng) -> BatchSampler {
        BatchSampler { mode, rng, cursor: 0 }
    }

    /// Draws the next batch into `inputs`/`targets` (each batch·ctx, batch = inputs.len()/ctx).
    pub fn fill(
        &mut self,
        tokens: &TokenFile,
        ctx: usize,
        inputs: &mut [u32],
        targets: &mut [u32],
    ) -> Result<()> {
        assert!(ctx > 0 && inputs.len().is_multiple_of(ctx) && inputs.len() == targets.len());
        tokens.check_fits(ctx)?;
        let n = tokens.len();
        let n_windows = ((n - 1) / ctx) as u64;
        for (inp, tgt) in inputs.chunks_exact_mut(ctx).zip(targets.chunks_exact_mut(ctx)) {
            let start = match self.mode {
                Sampling::Random => self.rng.below((n - ctx) as u64) as usize,
                Sampling::Sequential => {
                    let w = self.cursor % n_windows;
                    self.cursor = (w + 1) % n_windows;
                    w as usize * ctx
                }
            };
            fill_window(tokens, start, ctx, inp, tgt);
        }
        Ok(())
    }
}

/// The fixed validation set: starts of non-overlapping windows of `ctx`, all of them or, when
/// `max_windows` is smaller, that many spread evenly over the file. Always the same for the same
/// file, ctx and max_windows.
pub fn validation_starts(tokens: &TokenFile, ctx: usize, max_windows: Option<usize>) -> Result<Vec<usize>> {
    tokens.check_fits(ctx)?;
    let total = (tokens.len() - 1) / ctx;
    let m = max_windows.map_or(total, |m| m.clamp(1, total));
    Ok((0..m).map(|i| (i * total / m) * ctx).collect())
}

/// Fills a batch from given window starts (for evaluation).
pub fn fill_from_starts(
    tokens: &TokenFile,
    starts: &[usize],
    ctx: usize,
    inputs: &mut [u32],
    targets: &mut [u32],
) {
    for ((&s, inp), tgt) in starts
        .iter()
        .zip(inputs.chunks_exact_mut(ctx))
        .zip(targets.chunks_exact_mut(ctx))
    {
        fill_window(tokens, s, ctx, inp, tgt);
    }
}
