//! Cutting text into pieces that can be encoded (or counted) independently: the encoding of the whole
//! is the concatenation of the encodings of the pieces. A cut is allowed at a special token's start or
//! end, or at a [`crate::pretokenize::is_safe_cut`] point that is not inside a special token.

use crate::pretokenize::is_safe_cut;
use crate::specials::SpecialMatcher;
use std::ops::Range;

/// Cuts `text` into consecutive ranges of about `target` bytes (longer where no cut point is near).
pub(crate) fn plan_chunks(text: &[u8], matcher: Option<&SpecialMatcher>, target: usize) -> Vec<Range<usize>> {
    let target = target.max(1);
    let specials: Vec<(usize, usize)> = match matcher {
        Some(m) => m.find_iter(text).map(|(s, e, _)| (s, e)).collect(),
        None => Vec::new(),
    };
    let mut chunks = Vec::new();
    let mut start = 0;
    while text.len() - start > target {
        let want = start + target;
        // First special token that ends after `want`.
        let j = specials.partition_point(|&(_, e)| e <= want);
        let cut = match specials.get(j) {
            Some(&(s, e)) if s < want => e,
            next => {
                let limit = next.map_or(text.len(), |&(s, _)| s);
                (want..limit).find(|&p| is_safe_cut(text, p)).unwrap_or(limit)
            }
        };
        chunks.push(start..cut);
        start = cut;
    }
    if start < text.len() {
        chunks.push(start..text.len());
    }
    chunks
}

/// The last cut point in `buf` that stays valid whatever text follows it (for streaming): at most
/// `buf.len() - longest special`, not inside a special token. `None` when there is none.
pub(crate) fn last_stable_cut(buf: &[u8], matcher: Option<&SpecialMatcher>) -> Option<usize> {
    let max_special = matcher.map_or(0, |m| m.max_len());
    // A leftmost-longest decision at position i looks at most at bytes i..i + max_special.
    let limit = buf.len().checked_sub(max_special)?;
    let specials: Vec<(usize, usize)> = match matcher {
        Some(m) => m
            .find_iter(buf)
            .map(|(s, e, _)| (s, e))
            .take_while(|&(s, _)| s < limit)
            .collect(),
        None => Vec::new(),
    };
    let inside_special = |p: usize| {
        let j = specials.partition_point(|&(_, e)| e <= p);
        specials.get(j).is_some_and(|&(s, _)| s < p)
    };
    let safe = (1..limit.min(buf.len()))
        .rev()
        .find(|&p| is_safe_cut(buf, p) && !inside_special(p));
    let after_special = specials.iter().rev().map(|&(_, e)| e).find(|&e| e <= limit);
    match (safe, after_special) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}
