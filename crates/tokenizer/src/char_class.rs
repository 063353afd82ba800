//! The three Unicode classes the GPT-2 pattern uses: `\p{L}` (letters), `\p{N}` (numbers) and `\s`
//! (White_Space). The table is generated from `regex-syntax`, the Unicode tables of the regex engines
//! (fancy-regex, tiktoken) the pattern is defined by; `tests/char_class_table.rs` checks it is exact.

use crate::char_class_table::CLASS_RANGES;

pub use crate::char_class_kind::CharClass;

const fn ascii_class(b: u8) -> CharClass {
    match b {
        b'a'..=b'z' | b'A'..=b'Z' => CharClass::Letter,
        b'0'..=b'9' => CharClass::Number,
        b' ' | b'\t' | b'\n' | 0x0B | 0x0C | b'\r' => CharClass::Space,
        _ => CharClass::Other,
    }
}

/// Class of each ASCII byte, the fast path.
pub(crate) static ASCII_CLASS: [CharClass; 128] = {
    let mut t = [CharClass::Other; 128];
    let mut i = 0;
    while i < 128 {
        t[i] = ascii_class(i as u8);
        i += 1;
    }
    t
};

/// The class of `c`.
#[inline]
pub fn char_class(c: char) -> CharClass {
    let code = c as u32;
    if code < 128 {
        return ASCII_CLASS[code as usize];
    }
    match CLASS_RANGES.binary_search_by(|&(lo, hi, _)| {
        if hi < code {
            std::cmp::Ordering::Less
        } else if lo > code {
            std::cmp::Ordering::Greater
        } else {
            std::cmp::Ordering::Equal
        }
    }) {
        Ok(i) => CLASS_RANGES[i].2,
        Err(_) => CharClass::Other,
    }
}
