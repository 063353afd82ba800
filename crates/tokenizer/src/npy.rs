//! Token files: NumPy `.npy` arrays of ids (`<u2` when the vocab fits in 16 bits, else `<u4`), and
//! the parallel encoder that writes them.

use crate::chunking::plan_chunks;
use crate::error::{Result, TokenizerError};
use crate::files::tmp_path;
use crate::tokenizer::Tokenizer;
use crate::train::{check_utf8, MappedFile};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rayon::prelude::*;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::Instant;

/// Element type of a token file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenDtype {
    /// `<u2`, for vocabularies of at most 65,536 ids.
    U16,
    /// `<u4`.
    U32,
}

impl TokenDtype {
    /// The smallest dtype that holds every id of a vocab of `vocab_size`.
    pub fn for_vocab(vocab_size: usize) -> Self {
        if vocab_size <= 1 << 16 {
            TokenDtype::U16
        } else {
            TokenDtype::U32
        }
    }

    /// NumPy's name, `<u2` or `<u4`.
    pub fn descr(self) -> &'static str {
        match self {
            TokenDtype::U16 => "<u2",
            TokenDtype::U32 => "<u4",
        }
    }

    fn size(self) -> usize {
        match self {
            TokenDtype::U16 => 2,
            TokenDtype::U32 => 4,
        }
    }
}

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

/// Header length: a multiple of 64 with room for any 1-D shape, so it can be rewritten in place.
const HEADER_LEN: usize = 128;

fn npy_header(dtype: TokenDtype, len: u64) -> Vec<u8> {
    let dict = format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': ({len},), }}",
        dtype.descr()
    );
    let mut h = b"\x93NUMPY\x01\x00".to_vec();
    h.extend_from_slice(&((HEADER_LEN - 10) as u16).to_le_bytes());
    h.extend_from_slice(dict.as_bytes());
    h.resize(HEADER_LEN - 1, b' ');
    h.push(b'\n');
    h
}

fn push_ids(out: &mut Vec<u8>, ids: &[u32], dtype: TokenDtype) {
    match dtype {
        TokenDtype::U16 => out.extend(ids.iter().flat_map(|&id| (id as u16).to_le_bytes())),
        TokenDtype::U32 => out.extend(ids.iter().flat_map(|&id| id.to_le_bytes())),
    }
}

/// Writes `ids` as a 1-D `.npy` array of `dtype` (ids must fit it).
pub fn write_npy(path: impl AsRef<Path>, ids: &[u32], dtype: TokenDtype) -> Result<()> {
    let path = path.as_ref();
    let mut bytes = npy_header(dtype, ids.len() as u64);
    push_ids(&mut bytes, ids, dtype);
    crate::files::write_atomic(path, &bytes)
}

/// Reads a 1-D `<u2` or `<u4` `.npy` array of ids.
pub fn read_npy(path: impl AsRef<Path>) -> Result<Vec<u32>> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| TokenizerError::io(path, e))?;
    let bad = |offset: usize, m: &str| TokenizerError::corrupt(path, ".npy file", offset, m);
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad(0, "not a .npy file (no \\x93NUMPY magic)"));
    }
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => return Err(bad(6, &format!("unsupported .npy version {v}"))),
    };
    let header = bytes
        .get(start..start + header_len)
        .ok_or_else(|| bad(start, "header runs past the end"))?;
    let header = String::from_utf8_lossy(header);
    let dtype = if header.contains("'<u2'") {
        TokenDtype::U16
    } else if header.contains("'<u4'") {
        TokenDtype::U32
    } else {
        return Err(bad(
            start,
            &format!("dtype must be '<u2' or '<u4': {}", header.trim()),
        ));
    };
    if header.contains("'fortran_order': True") {
        return Err(bad(start, "Fortran order is not supported"));
    }
    let data = &bytes[start + header_len..];
    if data.len() % dtype.size() != 0 {
        return Err(bad(
            start + header_len,
            "data length is not a multiple of the element size",
        ));
    }
    Ok(match dtype {
        TokenDtype::U16 => data
            .chunks_exact(2)
            .map(|c| u32::from(u16::from_le_bytes([c[0], c[1]])))
            .collect(),
        TokenDtype::U32 => data
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    })
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
    writer.write_all(&npy_header(dtype, 0)).map_err(io_err)?;
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
    file_out.write_all(&npy_header(dtype, tokens)).map_err(io_err)?;
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
