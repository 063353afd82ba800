//! A hand-written pre-tokenizer that splits text exactly like GPT-2's pattern
//! [`GPT2_PATTERN`] (leftmost-first alternation, as fancy-regex / tiktoken / HF run it), without a
//! regex engine: one pass over the bytes, ASCII fast path, no allocation.
//! `tests/pretokenize_vs_regex.rs` checks it against fancy-regex on random and real text.

use crate::char_class::ASCII_CLASS;
pub use crate::char_class::{char_class, CharClass};

/// GPT-2's pre-tokenization pattern, the definition this module implements.
pub const GPT2_PATTERN: &str = r"'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

/// The pre-tokens of `text`, in order; their concatenation is `text`.
pub fn split(text: &str) -> PreTokens<'_> {
    PreTokens { text, pos: 0 }
}

/// Iterator returned by [`split`].
#[derive(Clone, Debug)]
pub struct PreTokens<'a> {
    text: &'a str,
    pos: usize,
}

/// Class and UTF-8 length of the character starting at byte `i` (a char boundary).
#[inline(always)]
fn class_at(text: &str, i: usize) -> (CharClass, usize) {
    let b = text.as_bytes()[i];
    if b < 128 {
        (ASCII_CLASS[b as usize], 1)
    } else {
        let c = text[i..].chars().next().expect("char boundary inside text");
        (char_class(c), c.len_utf8())
    }
}

/// End of the run of characters of class `class` starting at `i`.
#[inline(always)]
fn run_end(text: &str, mut i: usize, class: CharClass) -> usize {
    let bytes = text.as_bytes();
    while i < bytes.len() {
        let b = bytes[i];
        if b < 128 {
            if ASCII_CLASS[b as usize] != class {
                break;
            }
            i += 1;
        } else {
            let (c, len) = class_at(text, i);
            if c != class {
                break;
            }
            i += len;
        }
    }
    i
}

/// `\s+(?!\S)|\s+` at `start` (a whitespace character): the whole run when it ends the text or is a
/// single character, otherwise the run minus its last character (which then starts the next match).
#[inline]
fn whitespace_end(text: &str, start: usize) -> usize {
    let n = text.len();
    let (mut i, mut last) = (start, start);
    while i < n {
        let (c, len) = class_at(text, i);
        if c != CharClass::Space {
            break;
        }
        last = i;
        i += len;
    }
    if i == n || last == start {
        i
    } else {
        last
    }
}

/// Length of `'s|'d|'m|'t|'ll|'ve|'re` after the apostrophe, if `rest` starts with one.
#[inline]
fn contraction_len(rest: &[u8]) -> Option<usize> {
    match rest {
        [b's' | b'd' | b'm' | b't', ..] => Some(1),
        [b'l', b'l', ..] | [b'v', b'e', ..] | [b'r', b'e', ..] => Some(2),
        _ => None,
    }
}

impl<'a> Iterator for PreTokens<'a> {
    type Item = &'a str;

    #[inline]
    fn next(&mut self) -> Option<&'a str> {
        let text = self.text;
        let bytes = text.as_bytes();
        let start = self.pos;
        if start >= bytes.len() {
            return None;
        }
        let b0 = bytes[start];
        let end = match (b0, contraction_len(&bytes[start + 1..])) {
            (b'\'', Some(len)) => start + 1 + len,
            _ => {
                let (c0, _) = class_at(text, start);
                if b0 == b' ' && start + 1 < bytes.len() {
                    // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+` take the space with them.
                    match class_at(text, start + 1).0 {
                        CharClass::Space => whitespace_end(text, start),
                        c1 => run_end(text, start + 1, c1),
                    }
                } else if c0 == CharClass::Space {
                    whitespace_end(text, start)
                } else {
                    run_end(text, start, c0)
                }
            }
        };
        self.pos = end;
        Some(&text[start..end])
    }
}

/// Whether cutting `bytes` at `p` leaves its pre-tokenization unchanged (the pieces of the two halves
/// are exactly the pieces of the whole): the byte before `p` is non-whitespace ASCII and the byte at
/// `p` is ASCII whitespace. No match of the pattern holds non-whitespace followed by whitespace, so a
/// match ends at `p`; nothing before `p` looks past it (`(?!\S)` only follows whitespace, and every
/// whitespace run before `p` ends before the non-whitespace byte at `p - 1`), and matching restarts
/// from scratch at `p` (the pattern has no look-behind).
#[inline]
pub fn is_safe_cut(bytes: &[u8], p: usize) -> bool {
    p > 0
        && p < bytes.len()
        && bytes[p - 1] < 128
        && ASCII_CLASS[bytes[p - 1] as usize] != CharClass::Space
        && bytes[p] < 128
        && ASCII_CLASS[bytes[p] as usize] == CharClass::Space
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(s: &str) -> Vec<&str> {
        split(s).collect()
    }

    #[test]
    fn splits_like_gpt2_on_hand_picked_cases() {
        assert_eq!(pieces("Hello, world!"), ["Hello", ",", " world", "!"]);
        assert_eq!(
            pieces("I'll see you're 'sup"),
            ["I", "'ll", " see", " you", "'re", " '", "sup"]
        );
        assert_eq!(pieces("a   b"), ["a", "  ", " b"]);
        assert_eq!(pieces("a\n\n\nb  "), ["a", "\n\n", "\n", "b", "  "]);
        assert_eq!(pieces("x 12 3.5"), ["x", " 12", " 3", ".", "5"]);
        assert_eq!(pieces(" \u{3000}é?!'s"), [" ", "\u{3000}", "é", "?!'", "s"]);
        assert_eq!(pieces(""), Vec::<&str>::new());
    }

    #[test]
    fn safe_cuts() {
        let b = b"ab \ncd";
        assert!(is_safe_cut(b, 2));
        assert!(!is_safe_cut(b, 3));
        assert!(!is_safe_cut(b, 0));
    }
}
