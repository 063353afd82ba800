//! Streaming encode: ids of text read from any reader, in constant memory, exactly equal to encoding
//! the whole text at once (buffers are cut only where [`crate::chunking::last_stable_cut`] allows).

use crate::chunking::last_stable_cut;
use crate::error::{Result, TokenizerError};
use crate::tokenizer::Tokenizer;
use std::io::Read;
use std::path::PathBuf;

const READ_BYTES: usize = 1 << 16;

/// Iterator of ids returned by [`Tokenizer::encode_iter`].
pub struct EncodeIter<'t, R> {
    tokenizer: &'t Tokenizer,
    reader: R,
    name: PathBuf,
    buf: Vec<u8>,
    /// Read buffer (allocated once).
    chunk: Vec<u8>,
    /// Bytes per read and between attempts to cut.
    step: usize,
    /// Buffer length at which to look for a cut next (so small reads do not rescan the buffer).
    next_try: usize,
    /// Stream offset of `buf[0]`.
    consumed: u64,
    ids: Vec<u32>,
    next_id: usize,
    eof: bool,
    failed: bool,
}

impl Tokenizer {
    /// Encodes text from `reader` lazily, in constant memory (a 64 KiB read buffer plus the text since
    /// the last whitespace); yields exactly the ids of `encode` on the whole text.
    pub fn encode_iter<R: Read>(&self, reader: R) -> EncodeIter<'_, R> {
        self.encode_iter_named(reader, "<stream>")
    }

    /// [`Self::encode_iter`] naming the input (e.g. its path) in errors.
    pub fn encode_iter_named<R: Read>(&self, reader: R, name: impl Into<PathBuf>) -> EncodeIter<'_, R> {
        EncodeIter {
            tokenizer: self,
            reader,
            name: name.into(),
            buf: Vec::with_capacity(2 * READ_BYTES),
            chunk: vec![0; READ_BYTES],
            next_try: READ_BYTES,
            step: READ_BYTES,
            consumed: 0,
            ids: Vec::new(),
            next_id: 0,
            eof: false,
            failed: false,
        }
    }
}

impl<R: Read> EncodeIter<'_, R> {
    /// Reads `bytes` at a time (default 64 KiB) and looks for a cut every `bytes`; small values
    /// exercise the cutting logic in tests. The result does not depend on it.
    pub fn with_read_size(mut self, bytes: usize) -> Self {
        self.step = bytes.max(1);
        self.chunk = vec![0; self.step];
        self.next_try = self.step;
        self
    }

    /// Encodes `buf[..end]` into `ids` and drops it from the buffer.
    fn encode_prefix(&mut self, end: usize) -> Result<()> {
        let text = std::str::from_utf8(&self.buf[..end]).map_err(|e| TokenizerError::InvalidUtf8 {
            path: self.name.clone(),
            offset: self.consumed + e.valid_up_to() as u64,
        })?;
        self.ids.clear();
        self.next_id = 0;
        self.tokenizer.encode_into(text, &mut self.ids);
        self.buf.drain(..end);
        self.consumed += end as u64;
        Ok(())
    }

    /// Reads until a stable cut or the end of input, and encodes up to it.
    fn refill(&mut self) -> Result<()> {
        while !self.eof {
            let n = loop {
                match self.reader.read(&mut self.chunk) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(TokenizerError::io(self.name.clone(), e)),
                }
            };
            if n == 0 {
                self.eof = true;
                break;
            }
            self.buf.extend_from_slice(&self.chunk[..n]);
            if self.buf.len() < self.next_try {
                continue;
            }
            match last_stable_cut(&self.buf, self.tokenizer.matcher()) {
                Some(cut) => {
                    self.next_try = self.step;
                    return self.encode_prefix(cut);
                }
                // No cut yet (e.g. a very long line without spaces): wait for more text.
                None => self.next_try = self.buf.len() + self.step,
            }
        }
        let end = self.buf.len();
        self.encode_prefix(end)
    }
}

impl<R: Read> Iterator for EncodeIter<'_, R> {
    type Item = Result<u32>;

    fn next(&mut self) -> Option<Result<u32>> {
        loop {
            if let Some(&id) = self.ids.get(self.next_id) {
                self.next_id += 1;
                return Some(Ok(id));
            }
            if self.failed || (self.eof && self.buf.is_empty()) {
                return None;
            }
            if let Err(e) = self.refill() {
                self.failed = true;
                return Some(Err(e));
            }
        }
    }
}
