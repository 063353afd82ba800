//! Token files: NumPy `.npy` arrays of ids (`<u2` when the vocab fits in 16 bits, else `<u4`),
//! one dimension, C order — the header parser, the reader and the writer that the tokenizer's
//! encoder and the trainer's data loader (memory-mapped) share.

use crate::error::{Result, TokenizerError};
use std::path::Path;

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

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            TokenDtype::U16 => 2,
            TokenDtype::U32 => 4,
        }
    }
}

/// Header length of the files written here: a multiple of 64 (so the data is aligned as numpy
/// aligns it) with room for any 1-D shape, so the encoder can rewrite it in place.
pub(crate) const HEADER_LEN: usize = 128;

/// The version-1 header of a 1-D array of `len` elements of `dtype`, [`HEADER_LEN`] bytes.
pub(crate) fn header(dtype: TokenDtype, len: u64) -> Vec<u8> {
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

/// Appends `ids` to `out` as little-endian `dtype` (ids must fit it).
pub(crate) fn push_ids(out: &mut Vec<u8>, ids: &[u32], dtype: TokenDtype) {
    match dtype {
        TokenDtype::U16 => out.extend(ids.iter().flat_map(|&id| (id as u16).to_le_bytes())),
        TokenDtype::U32 => out.extend(ids.iter().flat_map(|&id| id.to_le_bytes())),
    }
}

/// Writes `ids` as a 1-D `.npy` array of `dtype` (atomically: a temporary file renamed into
/// place). Errors if an id does not fit `dtype`.
pub fn write_npy(path: impl AsRef<Path>, ids: &[u32], dtype: TokenDtype) -> Result<()> {
    let path = path.as_ref();
    if dtype == TokenDtype::U16 {
        if let Some((i, &id)) = ids.iter().enumerate().find(|(_, &id)| id > u16::MAX as u32) {
            return Err(TokenizerError::Npy {
                path: path.to_path_buf(),
                message: format!("token {id} at index {i} does not fit in <u2"),
            });
        }
    }
    let mut bytes = header(dtype, ids.len() as u64);
    push_ids(&mut bytes, ids, dtype);
    crate::files::write_atomic(path, &bytes)
}

/// Reads a 1-D `<u2` or `<u4` `.npy` array of ids (checked as [`parse_header`] and
/// [`check_data_len`] do).
pub fn read_npy(path: impl AsRef<Path>) -> Result<Vec<u32>> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| TokenizerError::io(path, e))?;
    let bad = |message: String| TokenizerError::Npy {
        path: path.to_path_buf(),
        message,
    };
    let h = parse_header(&bytes).map_err(bad)?;
    check_data_len(&h, bytes.len()).map_err(bad)?;
    let data = &bytes[h.data_offset..];
    Ok(match h.dtype {
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

/// A parsed `.npy` header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NpyHeader {
    pub dtype: TokenDtype,
    /// Elements.
    pub len: usize,
    /// Byte offset of the first element.
    pub data_offset: usize,
}

/// Checks that a file of `file_len` bytes holds exactly the data `h` declares; the message says
/// whether it is truncated or too long.
pub fn check_data_len(h: &NpyHeader, file_len: usize) -> std::result::Result<(), String> {
    let data_bytes = file_len.saturating_sub(h.data_offset);
    let want = h.len.saturating_mul(h.dtype.size());
    if data_bytes == want {
        return Ok(());
    }
    Err(format!(
        "the header says {} elements of {} ({} bytes) but the file has {} data bytes after the header \
         at offset {}: the file is {}",
        h.len,
        h.dtype.descr(),
        want,
        data_bytes,
        h.data_offset,
        if data_bytes < want {
            "truncated"
        } else {
            "longer than its header says"
        }
    ))
}

/// Parses the header of a `.npy` file of token ids (format versions 1, 2 and 3): magic, version,
/// dtype `<u2` or `<u4`, C order, one dimension. The message says what is wrong and at which offset.
pub fn parse_header(bytes: &[u8]) -> std::result::Result<NpyHeader, String> {
    const MAGIC: &[u8] = b"\x93NUMPY";
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err("not a .npy file (the magic string \\x93NUMPY is missing at offset 0)".into());
    }
    let major = bytes[6];
    let (hlen, start) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err("truncated .npy header".into());
            }
            (
                u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
                12,
            )
        }
        v => return Err(format!("unsupported .npy format version {v} at offset 6")),
    };
    if bytes.len() < start + hlen {
        return Err(format!(
            "truncated .npy header: it declares {hlen} header bytes at offset {start} but the file \
             has {}",
            bytes.len()
        ));
    }
    let header = std::str::from_utf8(&bytes[start..start + hlen])
        .map_err(|_| format!("corrupt .npy header at offset {start}: not text"))?;
    let field = |key: &str| -> std::result::Result<&str, String> {
        let pat = format!("'{key}':");
        let i = header
            .find(&pat)
            .ok_or_else(|| format!("corrupt .npy header at offset {start}: no '{key}' in {header:?}"))?;
        Ok(header[i + pat.len()..].trim_start())
    };
    let descr = field("descr")?;
    let dtype = if descr.starts_with("'<u2'") {
        TokenDtype::U16
    } else if descr.starts_with("'<u4'") {
        TokenDtype::U32
    } else {
        let d: String = descr.chars().take_while(|&c| c != ',').collect();
        return Err(format!(
            "unsupported dtype {d} in the .npy header at offset {start}: token files must be '<u2' or \
             '<u4' (as `ferrolm tokenizer encode` writes them)"
        ));
    };
    if !field("fortran_order")?.starts_with("False") {
        return Err("the .npy array is in Fortran order; token files must be C-order 1-D arrays".into());
    }
    let shape = field("shape")?;
    let close = shape
        .find(')')
        .ok_or_else(|| format!("corrupt .npy header at offset {start}: bad shape in {header:?}"))?;
    let dims: Vec<&str> = shape[1..close]
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if dims.len() != 1 {
        return Err(format!(
            "the .npy array has shape {}; token files must be one-dimensional",
            &shape[..=close]
        ));
    }
    let len = dims[0]
        .parse::<usize>()
        .map_err(|_| format!("corrupt .npy header at offset {start}: bad length {:?}", dims[0]))?;
    Ok(NpyHeader {
        dtype,
        len,
        data_offset: start + hlen,
    })
}
