//! The parallel encoder of text files into token files (`.npy`, see [`crate::npy`]).

use crate::chunking::plan_chunks;
use crate::error::{Result, TokenizerError};
use crate::files::tmp_path;
use crate::npy::{push_ids, TokenDtype};
use crate::tokenizer::Tokenizer;
use crate::train::{check_utf8, MappedFile};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rayon::prelude::*;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::Instant;

/// Figures of [`encode_file_to_npy`].
#[derive(Clone, Debug)]
pub struct EncodeStats {
    pub bytes: u64,
    pub tokens: u64,
    pub seconds: f64,
    pub dtype: TokenDtype,
}

impl EncodeStats {
    /// Bytes of text per token.
    pub fn compression(&self) -> f64 {
        self.bytes as f64 / self.tokens.max(1) as f64
    }
    /// Megabytes (10^6 bytes) of text per second.
    pub fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.seconds.max(1e-9)
    }
}

/// [`encode_file_to_npy_with`] without a progress bar.
pub fn encode_file_to_npy(
    tokenizer: &Tokenizer,
    input: impl AsRef<Path>,
    output: impl AsRef<Path>,
) -> Result<EncodeStats> {
    encode_file_to_npy_with(tokenizer, input, output, false)
}

/// Encodes a UTF-8 text file (memory-mapped) in parallel over chunks cut at safe points, writes the
/// ids in order to a `.npy` file (via a temporary file renamed at the end) and returns the figures.
/// Memory stays bounded: chunks are encoded in batches and written as they finish.
pub fn encode_file_to_npy_with(
    tokenizer: &Tokenizer,
    input: impl AsRef<Path>,
    output: impl AsRef<Path>,
    progress: bool,
) -> Result<EncodeStats> {
    let (input, output) = (input.as_ref(), output.as_ref());
    let started = Instant::now();
    let file = MappedFile::open(input)?;
    let text = check_utf8(file.bytes(), input)?;
    let dtype = TokenDtype::for_vocab(tokenizer.vocab_size());
    let chunks = plan_chunks(text.as_bytes(), tokenizer.matcher(), 1 << 20);
    let bar = if progress {
        let bar = ProgressBar::with_draw_target(Some(text.len() as u64), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "        encoding [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta} left)",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    let tmp = tmp_path(output);
    let io_err = |e| TokenizerError::io(&tmp, e);
    let mut writer = BufWriter::with_capacity(1 << 20, std::fs::File::create(&tmp).map_err(io_err)?);
    writer.write_all(&crate::npy::header(dtype, 0)).map_err(io_err)?;
    let mut tokens = 0u64;
    let batch = 8 * rayon::current_num_threads().max(1);
    for group in chunks.chunks(batch) {
        let encoded: Vec<Vec<u8>> = group
            .par_iter()
            .map(|range| {
                let ids = tokenizer.encode(&text[range.clone()]);
                let mut bytes = Vec::with_capacity(ids.len() * dtype.size());
                push_ids(&mut bytes, &ids, dtype);
                bytes
            })
            .collect();
        for (bytes, range) in encoded.iter().zip(group) {
            writer.write_all(bytes).map_err(io_err)?;
            tokens += (bytes.len() / dtype.size()) as u64;
            bar.inc(range.len() as u64);
        }
    }
    let mut file_out = writer.into_inner().map_err(|e| io_err(e.into_error()))?;
    file_out.seek(SeekFrom::Start(0)).map_err(io_err)?;
    file_out
        .write_all(&crate::npy::header(dtype, tokens))
        .map_err(io_err)?;
    file_out.sync_all().map_err(io_err)?;
    drop(file_out);
    std::fs::rename(&tmp, output).map_err(|e| TokenizerError::io(output, e))?;
    bar.finish_and_clear();
    Ok(EncodeStats {
        bytes: text.len() as u64,
        tokens,
        seconds: started.elapsed().as_secs_f64(),
        dtype,
    })
}
