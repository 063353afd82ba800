//! Byte-level BPE tokenizer (issue 2): training ([`train_bpe`]), encoding and decoding
//! ([`Tokenizer`]), streaming ([`Tokenizer::encode_iter`]), GPT-2 and Hugging Face files, and
//! `.npy` token files ([`encode_file_to_npy`]).
//!
//! Pre-tokenization follows GPT-2's pattern ([`pretokenize::GPT2_PATTERN`]), implemented by hand
//! ([`pretokenize::split`]); special tokens are matched first (leftmost, longest) and never merged.
//! Trained vocabularies hold ids 0..256 for the bytes, then one id per merge in order, then the
//! special tokens (so `<|endoftext|>` is the last id).
//!
//! ```
//! use ferrolm_tokenizer::{train_bpe_from_str, Tokenizer};
//! let specials = vec!["<|endoftext|>".to_string()];
//! let text = "the cat sat on the mat<|endoftext|>the dog sat on the log".repeat(20);
//! let (vocab, merges) = train_bpe_from_str(&text, 300, &specials)?;
//! let tok = Tokenizer::new(vocab, &merges, &specials)?;
//! let ids = tok.encode("the cat<|endoftext|>");
//! assert_eq!(ids.last(), tok.token_to_id("<|endoftext|>").as_ref());
//! assert_eq!(tok.decode(&ids)?, "the cat<|endoftext|>");
//! # Ok::<(), ferrolm_tokenizer::TokenizerError>(())
//! ```

mod bpe;
pub mod byte_unicode;
mod char_class;
mod char_class_table;
mod chunking;
mod encode_npy;
mod error;
mod files;
pub mod npy;
mod piece_key;
pub mod pretokenize;
mod specials;
mod stream;
mod tokenizer;
mod train;

pub use error::{Result, TokenizerError};

/// The end-of-text special token that separates documents (the quickstart corpus, generation's
/// stop marker, `ferrolm tokenizer train`'s default special token).
pub const END_OF_TEXT: &str = "<|endoftext|>";
pub use encode_npy::{encode_file_to_npy, encode_file_to_npy_with, EncodeStats};
pub use files::{read_merges_txt, read_vocab_json};
pub use npy::{read_npy, write_npy, TokenDtype};
pub use stream::EncodeIter;
pub use tokenizer::Tokenizer;
pub use train::{
    count_pretokens, count_pretokens_in_files, train_bpe, train_bpe_from_str, train_bpe_with,
    train_from_counts, train_tokenizer, PreTokenCounts, TrainOptions,
};

/// Token bytes by id (ids are dense, 0..len).
pub type Vocab = Vec<Vec<u8>>;
/// Merges in the order they were learned: (left bytes, right bytes).
pub type Merges = Vec<(Vec<u8>, Vec<u8>)>;
