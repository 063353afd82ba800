//! The tokenizer's error type: every message says what went wrong and where (file and byte offset).

use std::path::PathBuf;

/// Errors of training, loading, encoding and decoding.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path}: invalid UTF-8 at byte offset {offset}; ferrolm reads UTF-8 text only \
         (convert the file first, e.g. `iconv -f latin1 -t utf-8`)"
    )]
    InvalidUtf8 { path: PathBuf, offset: u64 },
    #[error(
        "vocab_size {vocab_size} is too small: it must be at least 256 (one token per byte) + \
         {specials} special token(s) = {min}"
    )]
    VocabTooSmall {
        vocab_size: usize,
        specials: usize,
        min: usize,
    },
    #[error("special token #{index} is empty; special tokens must be non-empty strings")]
    EmptySpecialToken { index: usize },
    #[error("{path}: corrupt {what} at byte offset {offset}: {message}")]
    Corrupt {
        path: PathBuf,
        what: &'static str,
        offset: u64,
        message: String,
    },
    /// A malformed token file (`.npy`), or ids that do not fit its dtype.
    #[error("{path}: {message}")]
    Npy { path: PathBuf, message: String },
    #[error(
        "token id {id} at position {position} is outside the vocabulary (ids 0..{vocab_size}); \
         was it produced by a different tokenizer?"
    )]
    IdOutOfRange {
        id: u64,
        position: usize,
        vocab_size: usize,
    },
}

/// Shorthand for results of this crate.
pub type Result<T> = std::result::Result<T, TokenizerError>;

impl TokenizerError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        TokenizerError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn corrupt(
        path: impl Into<PathBuf>,
        what: &'static str,
        offset: usize,
        message: impl Into<String>,
    ) -> Self {
        TokenizerError::Corrupt {
            path: path.into(),
            what,
            offset: offset as u64,
            message: message.into(),
        }
    }
}
