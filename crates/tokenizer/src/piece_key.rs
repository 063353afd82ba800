//! A fixed-size key for short pre-tokens (1..=16 bytes, the vast majority): hashing and comparing it
//! is a few integer operations instead of a byte-slice hash and a `memcmp` call.

/// The bytes of a short piece, loaded as (possibly overlapping) words, plus its length. Given the
/// length the words determine every byte, so equal keys mean equal pieces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct ShortKey {
    lo: u64,
    hi: u64,
    len: u32,
}

#[inline(always)]
fn word8(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

#[inline(always)]
fn word4(b: &[u8], at: usize) -> u64 {
    u64::from(u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes")))
}

/// The key of `bytes`, or `None` when it is empty or longer than 16 bytes.
#[inline(always)]
pub(crate) fn short_key(bytes: &[u8]) -> Option<ShortKey> {
    let len = bytes.len();
    let (lo, hi) = match len {
        8..=16 => (word8(bytes, 0), word8(bytes, len - 8)),
        4..=7 => (word4(bytes, 0) | (word4(bytes, len - 4) << 32), 0),
        1..=3 => (
            u64::from(bytes[0]) | (u64::from(bytes[len / 2]) << 8) | (u64::from(bytes[len - 1]) << 16),
            0,
        ),
        _ => return None,
    };
    Some(ShortKey {
        lo,
        hi,
        len: len as u32,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn equal_keys_mean_equal_pieces(a in prop::collection::vec(0u8..4, 0..18), b in prop::collection::vec(0u8..4, 0..18)) {
            if let (Some(ka), Some(kb)) = (short_key(&a), short_key(&b)) {
                prop_assert_eq!(ka == kb, a == b);
            } else {
                prop_assert!(a.is_empty() || b.is_empty() || a.len() > 16 || b.len() > 16);
            }
        }
    }
}
