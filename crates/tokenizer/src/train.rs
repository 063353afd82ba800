//! BPE training: count pre-tokens (memory-mapped input, parallel over chunks), then merge the most
//! frequent pair until the vocab is full, updating pair counts incrementally (an index from each
//! pair to the words holding it and a max-heap with lazy invalidation), so a merge costs time in
//! proportion to the words it touches.

use crate::chunking::plan_chunks;
use crate::error::{Result, TokenizerError};
use crate::piece_key::{short_key, ShortKey};
use crate::pretokenize;
use crate::specials::{for_each_segment, Segment, SpecialMatcher};
use crate::tokenizer::Tokenizer;
use crate::{Merges, Vocab};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rayon::prelude::*;
use rustc_hash::FxHashMap;
use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// Options of [`train_bpe_with`].
#[derive(Clone, Debug, Default)]
pub struct TrainOptions {
    /// Draw progress bars on stderr (only when it is a terminal).
    pub progress: bool,
}

/// Pre-token counts: distinct pre-token text and its number of occurrences.
pub type PreTokenCounts = FxHashMap<String, u64>;

const CHUNK_BYTES: usize = 1 << 20;

fn check_args(vocab_size: usize, special_tokens: &[String]) -> Result<Vec<String>> {
    if let Some(index) = special_tokens.iter().position(String::is_empty) {
        return Err(TokenizerError::EmptySpecialToken { index });
    }
    let mut specials: Vec<String> = Vec::new();
    for s in special_tokens {
        if !specials.contains(s) {
            specials.push(s.clone());
        }
    }
    let min = 256 + specials.len();
    if vocab_size < min {
        return Err(TokenizerError::VocabTooSmall {
            vocab_size,
            specials: specials.len(),
            min,
        });
    }
    Ok(specials)
}

fn matcher_for(specials: &[String]) -> Option<SpecialMatcher> {
    let pairs: Vec<(String, u32)> = specials.iter().map(|s| (s.clone(), 0)).collect();
    SpecialMatcher::new(&pairs)
}

fn progress_bar(enabled: bool, len: u64, message: &'static str, unit: &str) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    let template = format!("{{msg:>16}} [{{bar:40}}] {{{unit}}} ({{eta}} left)");
    bar.set_style(
        ProgressStyle::with_template(&template)
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_message(message);
    bar
}

/// Pre-token counts borrowing from the text: short pieces under a [`ShortKey`] (cheap to hash and
/// compare), longer ones under their text.
#[derive(Default)]
struct Counter<'a> {
    short: FxHashMap<ShortKey, (u64, &'a str)>,
    long: FxHashMap<&'a str, u64>,
}

impl<'a> Counter<'a> {
    #[inline]
    fn add(&mut self, piece: &'a str) {
        match short_key(piece.as_bytes()) {
            Some(key) => self.short.entry(key).or_insert((0, piece)).0 += 1,
            None => *self.long.entry(piece).or_insert(0) += 1,
        }
    }

    fn merge(mut self, mut other: Counter<'a>) -> Counter<'a> {
        if self.short.len() + self.long.len() < other.short.len() + other.long.len() {
            std::mem::swap(&mut self, &mut other);
        }
        for (k, (c, s)) in other.short {
            self.short.entry(k).or_insert((0, s)).0 += c;
        }
        for (k, c) in other.long {
            *self.long.entry(k).or_insert(0) += c;
        }
        self
    }

    fn into_counts(self) -> PreTokenCounts {
        let mut counts = PreTokenCounts::default();
        counts.reserve(self.short.len() + self.long.len());
        counts.extend(self.short.into_values().map(|(c, s)| (s.to_string(), c)));
        counts.extend(self.long.into_iter().map(|(s, c)| (s.to_string(), c)));
        counts
    }
}

/// Counts the pre-tokens of `text` (split on special tokens first), in parallel over chunks.
fn count_text<'a>(text: &'a str, matcher: Option<&SpecialMatcher>, bar: &ProgressBar) -> Counter<'a> {
    let chunks = plan_chunks(text.as_bytes(), matcher, CHUNK_BYTES);
    chunks
        .into_par_iter()
        .fold(Counter::default, |mut counts: Counter<'a>, range| {
            let chunk = &text[range.clone()];
            for_each_segment(chunk, matcher, |segment| {
                if let Segment::Text(t) = segment {
                    for piece in pretokenize::split(t) {
                        counts.add(piece);
                    }
                }
            });
            bar.inc(range.len() as u64);
            counts
        })
        .reduce(Counter::default, Counter::merge)
}

/// Checks `bytes` as UTF-8; the error names `path` and the offset of the first bad byte.
pub(crate) fn check_utf8<'a>(bytes: &'a [u8], path: &Path) -> Result<&'a str> {
    std::str::from_utf8(bytes).map_err(|e| TokenizerError::InvalidUtf8 {
        path: path.to_path_buf(),
        offset: e.valid_up_to() as u64,
    })
}

/// A memory-mapped (or, when empty, absent) input file.
pub(crate) struct MappedFile {
    map: Option<memmap2::Mmap>,
}

impl MappedFile {
    pub(crate) fn open(path: &Path) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|e| TokenizerError::io(path, e))?;
        let len = file.metadata().map_err(|e| TokenizerError::io(path, e))?.len();
        if len == 0 {
            return Ok(MappedFile { map: None });
        }
        // SAFETY: the map is read-only; the file must not be truncated while it is in use, which is
        // the documented contract of every memory-mapped reader (a concurrent writer is a user error).
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| TokenizerError::io(path, e))?;
        Ok(MappedFile { map: Some(map) })
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        self.map.as_deref().unwrap_or(&[])
    }
}

/// Counts pre-tokens of files, each read memory-mapped and checked as UTF-8.
pub fn count_pretokens_in_files(
    inputs: &[impl AsRef<Path>],
    special_tokens: &[String],
    progress: bool,
) -> Result<PreTokenCounts> {
    let matcher = matcher_for(special_tokens);
    let files: Vec<(PathBuf, MappedFile)> = inputs
        .iter()
        .map(|p| Ok((p.as_ref().to_path_buf(), MappedFile::open(p.as_ref())?)))
        .collect::<Result<_>>()?;
    let total: u64 = files.iter().map(|(_, f)| f.bytes().len() as u64).sum();
    let bar = progress_bar(progress, total, "pre-tokenizing", "bytes");
    let mut counts = Counter::default();
    for (path, file) in &files {
        let text = check_utf8(file.bytes(), path)?;
        counts = counts.merge(count_text(text, matcher.as_ref(), &bar));
    }
    bar.finish_and_clear();
    Ok(counts.into_counts())
}

/// Counts pre-tokens of in-memory text.
pub fn count_pretokens(text: &str, special_tokens: &[String]) -> PreTokenCounts {
    let matcher = matcher_for(special_tokens);
    count_text(text, matcher.as_ref(), &ProgressBar::hidden()).into_counts()
}

/// Trains byte-level BPE on files; progress bars are drawn when stderr is a terminal.
/// The vocab holds ids 0..256 for the bytes, then one per merge, then the special tokens.
pub fn train_bpe(
    inputs: &[impl AsRef<Path>],
    vocab_size: usize,
    special_tokens: &[String],
) -> Result<(Vocab, Merges)> {
    train_bpe_with(
        inputs,
        vocab_size,
        special_tokens,
        &TrainOptions { progress: true },
    )
}

/// [`train_bpe`] with options.
pub fn train_bpe_with(
    inputs: &[impl AsRef<Path>],
    vocab_size: usize,
    special_tokens: &[String],
    options: &TrainOptions,
) -> Result<(Vocab, Merges)> {
    let specials = check_args(vocab_size, special_tokens)?;
    let counts = count_pretokens_in_files(inputs, &specials, options.progress)?;
    Ok(train_from_counts(
        counts.iter().map(|(k, &v)| (k.as_bytes(), v)),
        vocab_size,
        &specials,
        options.progress,
    ))
}

/// Trains byte-level BPE on in-memory text.
pub fn train_bpe_from_str(
    text: &str,
    vocab_size: usize,
    special_tokens: &[String],
) -> Result<(Vocab, Merges)> {
    let specials = check_args(vocab_size, special_tokens)?;
    let matcher = matcher_for(&specials);
    let counts = count_text(text, matcher.as_ref(), &ProgressBar::hidden()).into_counts();
    Ok(train_from_counts(
        counts.iter().map(|(k, &v)| (k.as_bytes(), v)),
        vocab_size,
        &specials,
        false,
    ))
}

/// Trains on files and builds the [`Tokenizer`].
pub fn train_tokenizer(
    inputs: &[impl AsRef<Path>],
    vocab_size: usize,
    special_tokens: &[String],
    options: &TrainOptions,
) -> Result<Tokenizer> {
    let (vocab, merges) = train_bpe_with(inputs, vocab_size, special_tokens, options)?;
    let specials = check_args(vocab_size, special_tokens)?;
    Tokenizer::new(vocab, &merges, &specials)
}

/// A heap entry: a pair with the count it had when pushed. Ordered by count, then by the pair's
/// byte strings (the lexicographically greater pair wins ties).
struct Candidate {
    count: u64,
    left: Rc<[u8]>,
    right: Rc<[u8]>,
    pair: u64,
}

impl PartialEq for Candidate {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Candidate {}
impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Candidate {
    fn cmp(&self, other: &Self) -> Ordering {
        self.count
            .cmp(&other.count)
            .then_with(|| self.left.cmp(&other.left))
            .then_with(|| self.right.cmp(&other.right))
    }
}

#[inline(always)]
fn pair_key(a: u32, b: u32) -> u64 {
    (u64::from(a) << 32) | u64::from(b)
}

#[inline(always)]
fn pair_parts(key: u64) -> (u32, u32) {
    ((key >> 32) as u32, key as u32)
}

/// The merge loop on pre-token counts. `vocab_size` counts 256 bytes + merges + specials; it stops
/// early when no pair is left.
pub fn train_from_counts<'a>(
    counts: impl Iterator<Item = (&'a [u8], u64)>,
    vocab_size: usize,
    special_tokens: &[String],
    progress: bool,
) -> (Vocab, Merges) {
    let num_merges = vocab_size.saturating_sub(256 + special_tokens.len());
    let mut tokens: Vec<Rc<[u8]>> = (0..=255u8).map(|b| Rc::from(&[b][..])).collect();
    let mut merges: Merges = Vec::with_capacity(num_merges);

    // Words: distinct pre-tokens as symbol ids, with their counts (sorted for a deterministic order).
    let mut words: Vec<(Vec<u32>, u64)> = counts
        .filter(|(w, _)| w.len() >= 2)
        .map(|(w, c)| (w.iter().map(|&b| u32::from(b)).collect(), c))
        .collect();
    words.sort_unstable();
    let mut pair_counts: FxHashMap<u64, u64> = FxHashMap::default();
    let mut where_: FxHashMap<u64, Vec<u32>> = FxHashMap::default();
    for (w, (syms, count)) in words.iter().enumerate() {
        for pair in syms.windows(2) {
            let key = pair_key(pair[0], pair[1]);
            *pair_counts.entry(key).or_insert(0) += count;
            let list = where_.entry(key).or_default();
            if list.last() != Some(&(w as u32)) {
                list.push(w as u32);
            }
        }
    }
    let candidate = |tokens: &[Rc<[u8]>], key: u64, count: u64| {
        let (a, b) = pair_parts(key);
        Candidate {
            count,
            left: tokens[a as usize].clone(),
            right: tokens[b as usize].clone(),
            pair: key,
        }
    };
    let mut heap: BinaryHeap<Candidate> = pair_counts
        .iter()
        .map(|(&key, &count)| candidate(&tokens, key, count))
        .collect();

    let bar = progress_bar(progress, num_merges as u64, "merging", "pos}/{len");
    let mut touched: Vec<u64> = Vec::new();
    while merges.len() < num_merges {
        let Some(top) = heap.pop() else { break };
        let current = pair_counts.get(&top.pair).copied().unwrap_or(0);
        if current != top.count {
            if current > 0 {
                heap.push(Candidate {
                    count: current,
                    ..top
                });
            }
            continue;
        }
        let (a, b) = pair_parts(top.pair);
        let new_id = tokens.len() as u32;
        let joined: Rc<[u8]> = [&*top.left, &*top.right].concat().into();
        merges.push((top.left.to_vec(), top.right.to_vec()));
        tokens.push(joined);
        pair_counts.remove(&top.pair);
        touched.clear();
        for w in where_.remove(&top.pair).unwrap_or_default() {
            let (syms, count) = &mut words[w as usize];
            let count = *count;
            if !syms.windows(2).any(|p| p[0] == a && p[1] == b) {
                continue; // stale index entry: an earlier merge consumed the pair in this word
            }
            for p in syms.windows(2) {
                let key = pair_key(p[0], p[1]);
                if key != top.pair {
                    let c = pair_counts.get_mut(&key).expect("counted pair");
                    *c -= count;
                }
            }
            let mut out = 0;
            let mut i = 0;
            while i < syms.len() {
                if i + 1 < syms.len() && syms[i] == a && syms[i + 1] == b {
                    syms[out] = new_id;
                    i += 2;
                } else {
                    syms[out] = syms[i];
                    i += 1;
                }
                out += 1;
            }
            syms.truncate(out);
            for p in syms.windows(2) {
                let key = pair_key(p[0], p[1]);
                *pair_counts.entry(key).or_insert(0) += count;
                if p[0] == new_id || p[1] == new_id {
                    let list = where_.entry(key).or_default();
                    if list.last() != Some(&w) {
                        list.push(w);
                        touched.push(key);
                    }
                }
            }
        }
        touched.sort_unstable();
        touched.dedup();
        for &key in &touched {
            if let Some(&count) = pair_counts.get(&key) {
                heap.push(candidate(&tokens, key, count));
            }
        }
        if merges.len().is_multiple_of(64) {
            bar.set_position(merges.len() as u64);
            pair_counts.retain(|_, c| *c > 0);
        }
    }
    bar.finish_and_clear();
    let mut vocab: Vocab = tokens.iter().map(|t| t.to_vec()).collect();
    vocab.extend(special_tokens.iter().map(|s| s.as_bytes().to_vec()));
    (vocab, merges)
}
