//! [`Tokenizer`]: encode text to ids and decode ids to text with a byte-level BPE vocabulary, merges
//! and special tokens.

use crate::bpe::{MergeTable, Scratch};
use crate::error::{Result, TokenizerError};
use crate::piece_key::{short_key, ShortKey};
use crate::pretokenize;
use crate::specials::{for_each_segment, Segment, SpecialMatcher};
use crate::{Merges, Vocab};
use rustc_hash::FxHashMap;
use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};

/// A byte-level BPE tokenizer (GPT-2 pre-tokenization, merges by rank, special tokens).
#[derive(Clone, Debug)]
pub struct Tokenizer {
    /// Token bytes by id.
    tokens: Vec<Vec<u8>>,
    /// Merges by rank, as (left, right, merged) ids.
    merges: Vec<(u32, u32, u32)>,
    table: MergeTable,
    /// Special tokens and their ids, in the order given.
    specials: Vec<(String, u32)>,
    matcher: Option<SpecialMatcher>,
    /// Bytes to id for ordinary tokens (the lowest id where bytes repeat).
    encoder: FxHashMap<Vec<u8>, u32>,
    /// Identifies this tokenizer's entries in the per-thread cache.
    instance: u64,
}

/// A problem building a tokenizer from a vocab and merges; the loader adds the file and offset.
#[derive(Debug)]
pub(crate) struct BuildError {
    /// Index of the merge at fault, if any.
    pub(crate) merge: Option<usize>,
    pub(crate) message: String,
}

static NEXT_INSTANCE: AtomicU64 = AtomicU64::new(1);
const CACHE_CAPACITY: usize = 1 << 18;

/// Per-thread cache of the ids of frequent pre-tokens, plus merge scratch buffers.
#[derive(Default)]
struct EncodeCache {
    owner: u64,
    /// Piece -> (start, len) of its ids in `ids`.
    map: FxHashMap<ShortKey, (u32, u32)>,
    ids: Vec<u32>,
    scratch: Scratch,
}

impl EncodeCache {
    fn reset(&mut self, owner: u64) {
        self.owner = owner;
        self.map.clear();
        self.ids.clear();
    }
}

thread_local! {
    static CACHE: RefCell<EncodeCache> = RefCell::new(EncodeCache::default());
}

impl Tokenizer {
    /// Builds a tokenizer from token bytes by id, merges in rank order and special tokens. A special
    /// token whose bytes are already in the vocab keeps that id (the highest such); others are added.
    pub fn new(vocab: Vocab, merges: &Merges, special_tokens: &[String]) -> Result<Self> {
        check_specials(special_tokens)?;
        Self::build(vocab, merges, special_tokens).map_err(|e| TokenizerError::Corrupt {
            path: "<memory>".into(),
            what: "vocab/merges",
            offset: 0,
            message: e.message,
        })
    }

    pub(crate) fn build(
        mut tokens: Vocab,
        merges: &Merges,
        special_tokens: &[String],
    ) -> std::result::Result<Self, BuildError> {
        let err = |merge, message: String| BuildError { merge, message };
        let mut encoder: FxHashMap<Vec<u8>, u32> = FxHashMap::default();
        encoder.reserve(tokens.len());
        for (id, bytes) in tokens.iter().enumerate() {
            encoder.entry(bytes.clone()).or_insert(id as u32);
        }
        let mut byte_ids = [0u32; 256];
        for (b, slot) in byte_ids.iter_mut().enumerate() {
            *slot = *encoder
                .get(&[b as u8][..])
                .ok_or_else(|| err(None, format!("the vocab has no token for byte 0x{b:02X}")))?;
        }
        let mut merge_ids = Vec::with_capacity(merges.len());
        for (i, (a, b)) in merges.iter().enumerate() {
            let find = |t: &[u8]| {
                encoder.get(t).copied().ok_or_else(|| {
                    err(
                        Some(i),
                        format!(
                            "merge #{i} uses {:?}, which is not in the vocab",
                            String::from_utf8_lossy(t)
                        ),
                    )
                })
            };
            let joined = [a.as_slice(), b.as_slice()].concat();
            merge_ids.push((find(a)?, find(b)?, find(&joined)?));
        }
        let mut specials = Vec::with_capacity(special_tokens.len());
        for (index, s) in special_tokens.iter().enumerate() {
            if s.is_empty() {
                return Err(err(None, format!("special token #{index} is empty")));
            }
            if specials.iter().any(|(t, _)| t == s) {
                continue;
            }
            let id = match tokens.iter().rposition(|t| t == s.as_bytes()) {
                Some(id) => id as u32,
                None => {
                    tokens.push(s.as_bytes().to_vec());
                    (tokens.len() - 1) as u32
                }
            };
            specials.push((s.clone(), id));
        }
        if tokens.len() > u32::MAX as usize {
            return Err(err(None, "more than 2^32 tokens".into()));
        }
        Ok(Tokenizer {
            table: MergeTable::new(&merge_ids, byte_ids),
            matcher: SpecialMatcher::new(&specials),
            tokens,
            merges: merge_ids,
            specials,
            encoder,
            instance: NEXT_INSTANCE.fetch_add(1, Ordering::Relaxed),
        })
    }

    /// Number of ids (ordinary and special tokens).
    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    /// Token bytes by id.
    pub fn vocab(&self) -> &[Vec<u8>] {
        &self.tokens
    }

    /// Merges in rank order, as byte strings.
    pub fn merges(&self) -> Merges {
        self.merges
            .iter()
            .map(|&(a, b, _)| (self.tokens[a as usize].clone(), self.tokens[b as usize].clone()))
            .collect()
    }

    /// Number of merges.
    pub fn num_merges(&self) -> usize {
        self.merges.len()
    }

    /// Special tokens and their ids.
    pub fn special_tokens(&self) -> &[(String, u32)] {
        &self.specials
    }

    /// The id of a special token or of an ordinary token given as text (e.g. `<|endoftext|>`).
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.specials
            .iter()
            .find(|(s, _)| s == token)
            .map(|&(_, id)| id)
            .or_else(|| self.encoder.get(token.as_bytes()).copied())
    }

    /// The bytes of token `id`.
    pub fn id_to_bytes(&self, id: u32) -> Option<&[u8]> {
        self.tokens.get(id as usize).map(Vec::as_slice)
    }

    /// Whether `id` is a special token.
    pub fn is_special(&self, id: u32) -> bool {
        self.specials.iter().any(|&(_, s)| s == id)
    }

    /// Encodes `text`: special tokens first (leftmost, longest), then GPT-2 pre-tokens merged by rank.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut out = Vec::with_capacity(text.len() / 3 + 1);
        self.encode_into(text, &mut out);
        out
    }

    /// Encodes `text` on all rayon threads (chunks cut where the result cannot change, results in
    /// order); equal to [`Self::encode`].
    pub fn encode_parallel(&self, text: &str) -> Vec<u32> {
        use rayon::prelude::*;
        let chunks = crate::chunking::plan_chunks(text.as_bytes(), self.matcher.as_ref(), 1 << 18);
        let parts: Vec<Vec<u32>> = chunks.into_par_iter().map(|r| self.encode(&text[r])).collect();
        parts.concat()
    }

    /// Encodes `text`, appending to `out`.
    pub fn encode_into(&self, text: &str, out: &mut Vec<u32>) {
        CACHE.with(|cache| {
            let mut cache = cache.borrow_mut();
            if cache.owner != self.instance {
                cache.reset(self.instance);
            }
            let cache = &mut *cache;
            for_each_segment(text, self.matcher.as_ref(), |segment| match segment {
                Segment::Text(t) => self.encode_ordinary(t, out, cache),
                Segment::Special(id) => out.push(id),
            });
        })
    }

    /// Encodes text without special tokens (special-token text is encoded as ordinary text).
    pub fn encode_ordinary_text(&self, text: &str) -> Vec<u32> {
        let mut out = Vec::new();
        CACHE.with(|cache| {
            let mut cache = cache.borrow_mut();
            if cache.owner != self.instance {
                cache.reset(self.instance);
            }
            self.encode_ordinary(text, &mut out, &mut cache);
        });
        out
    }

    #[inline]
    fn encode_ordinary(&self, text: &str, out: &mut Vec<u32>, cache: &mut EncodeCache) {
        for piece in pretokenize::split(text) {
            let bytes = piece.as_bytes();
            if bytes.len() == 1 {
                out.push(self.table.byte_ids[bytes[0] as usize]);
                continue;
            }
            let Some(key) = short_key(bytes) else {
                self.table.encode_piece(bytes, out, &mut cache.scratch);
                continue;
            };
            if let Some(&(start, len)) = cache.map.get(&key) {
                // Most pieces are one or two tokens: pushing beats a memmove call.
                for &id in &cache.ids[start as usize..(start + len) as usize] {
                    out.push(id);
                }
                continue;
            }
            let start = out.len();
            self.table.encode_piece(bytes, out, &mut cache.scratch);
            if cache.map.len() >= CACHE_CAPACITY {
                cache.map.clear();
                cache.ids.clear();
            }
            cache
                .map
                .insert(key, (cache.ids.len() as u32, (out.len() - start) as u32));
            cache.ids.extend_from_slice(&out[start..]);
        }
    }

    /// The bytes of `ids` concatenated; an error names the first id outside the vocab.
    pub fn decode_bytes(&self, ids: &[u32]) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(ids.len() * 4);
        for (position, &id) in ids.iter().enumerate() {
            let token = self.tokens.get(id as usize).ok_or(TokenizerError::IdOutOfRange {
                id: u64::from(id),
                position,
                vocab_size: self.tokens.len(),
            })?;
            out.extend_from_slice(token);
        }
        Ok(out)
    }

    /// The text of `ids`; byte sequences that are not valid UTF-8 become U+FFFD.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        let bytes = self.decode_bytes(ids)?;
        Ok(match String::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        })
    }

    /// A stable identity of this tokenizer (vocab, merges, special tokens and their ids), e.g.
    /// `bpe-3f2a...`: equal for equal tokenizers, on every machine and version of ferrolm.
    pub fn fingerprint(&self) -> String {
        let mut h = Fnv128::new();
        h.write(b"ferrolm-bpe-v1");
        h.write_u64(self.tokens.len() as u64);
        for t in &self.tokens {
            h.write_u64(t.len() as u64);
            h.write(t);
        }
        h.write_u64(self.merges.len() as u64);
        for &(a, b, _) in &self.merges {
            h.write_u64(u64::from(a));
            h.write_u64(u64::from(b));
        }
        h.write_u64(self.specials.len() as u64);
        for (s, id) in &self.specials {
            h.write_u64(s.len() as u64);
            h.write(s.as_bytes());
            h.write_u64(u64::from(*id));
        }
        format!("bpe-{:032x}", h.finish())
    }

    pub(crate) fn matcher(&self) -> Option<&SpecialMatcher> {
        self.matcher.as_ref()
    }

    #[cfg(test)]
    pub(crate) fn table(&self) -> &MergeTable {
        &self.table
    }
}

/// Refuses empty special tokens.
pub(crate) fn check_specials(special_tokens: &[String]) -> Result<()> {
    match special_tokens.iter().position(String::is_empty) {
        Some(index) => Err(TokenizerError::EmptySpecialToken { index }),
        None => Ok(()),
    }
}

/// 128-bit FNV-1a: a fixed, documented hash (no dependency, same result everywhere).
struct Fnv128(u128);

impl Fnv128 {
    fn new() -> Self {
        Fnv128(0x6c62272e07bb014262b821756295c58d)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u128::from(b);
            self.0 = self.0.wrapping_mul(0x0000000001000000000000000000013B);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.write(&v.to_le_bytes());
    }
    fn finish(&self) -> u128 {
        self.0
    }
}
