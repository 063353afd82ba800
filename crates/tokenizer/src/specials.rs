//! Special tokens: matched before anything else, leftmost first, the longest where several start at
//! the same place, never split or merged.

use aho_corasick::{AhoCorasick, MatchKind};

/// Finds special tokens in text (leftmost-longest).
#[derive(Clone, Debug)]
pub(crate) struct SpecialMatcher {
    ac: AhoCorasick,
    ids: Vec<u32>,
    max_len: usize,
}

impl SpecialMatcher {
    /// `None` when there are no special tokens.
    pub(crate) fn new(specials: &[(String, u32)]) -> Option<Self> {
        if specials.is_empty() {
            return None;
        }
        let ac = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(specials.iter().map(|(s, _)| s.as_bytes()))
            .expect("special tokens form a valid automaton");
        let ids = specials.iter().map(|(_, id)| *id).collect();
        let max_len = specials.iter().map(|(s, _)| s.len()).max().unwrap_or(0);
        Some(SpecialMatcher { ac, ids, max_len })
    }

    /// Byte length of the longest special token.
    pub(crate) fn max_len(&self) -> usize {
        self.max_len
    }

    /// Matches in `haystack` as (start, end, token id).
    pub(crate) fn find_iter<'a>(
        &'a self,
        haystack: &'a [u8],
    ) -> impl Iterator<Item = (usize, usize, u32)> + 'a {
        self.ac
            .find_iter(haystack)
            .map(|m| (m.start(), m.end(), self.ids[m.pattern().as_usize()]))
    }
}

/// A stretch of ordinary text or a special token (its id).
pub(crate) enum Segment<'a> {
    Text(&'a str),
    Special(u32),
}

/// Calls `f` for each stretch of ordinary text and each special token of `text`, in order.
pub(crate) fn for_each_segment<'a>(
    text: &'a str,
    matcher: Option<&SpecialMatcher>,
    mut f: impl FnMut(Segment<'a>),
) {
    let Some(matcher) = matcher else {
        if !text.is_empty() {
            f(Segment::Text(text));
        }
        return;
    };
    let mut pos = 0;
    for (start, end, id) in matcher.find_iter(text.as_bytes()) {
        if start > pos {
            f(Segment::Text(&text[pos..start]));
        }
        f(Segment::Special(id));
        pos = end;
    }
    if pos < text.len() {
        f(Segment::Text(&text[pos..]));
    }
}
