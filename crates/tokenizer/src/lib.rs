//! Byte-level BPE tokenizer (see issue 2).
