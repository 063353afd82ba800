//! GPT-2's byte-to-unicode alphabet: every byte maps to a printable character, so that byte strings
//! can be written in vocab.json / merges.txt / tokenizer.json (e.g. the space byte is `Ġ`).

/// The character GPT-2 uses for each byte.
pub fn byte_to_char_table() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut n = 0u32;
    for b in 0..=255u8 {
        let printable =
            (b'!'..=b'~').contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b);
        table[b as usize] = if printable {
            char::from(b)
        } else {
            n += 1;
            char::from_u32(255 + n).expect("valid code point")
        };
    }
    table
}

/// The table of [`byte_to_char_table`], computed once.
fn encode_table() -> &'static [char; 256] {
    static TABLE: std::sync::OnceLock<[char; 256]> = std::sync::OnceLock::new();
    TABLE.get_or_init(byte_to_char_table)
}

/// Byte of each code point below 512 in GPT-2's alphabet (`u16::MAX`: not in the alphabet).
fn decode_table() -> &'static [u16; 512] {
    static TABLE: std::sync::OnceLock<[u16; 512]> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t = [u16::MAX; 512];
        for (b, &c) in encode_table().iter().enumerate() {
            t[c as usize] = b as u16;
        }
        t
    })
}

/// Writes bytes in GPT-2's alphabet.
pub fn bytes_to_unicode(bytes: &[u8]) -> String {
    let table = encode_table();
    bytes.iter().map(|&b| table[b as usize]).collect()
}

/// Reads a string written in GPT-2's alphabet back to bytes; `Err(char offset)` names the first
/// character outside the alphabet.
pub fn unicode_to_bytes(s: &str) -> Result<Vec<u8>, usize> {
    let table = decode_table();
    s.chars()
        .enumerate()
        .map(|(i, c)| match table.get(c as usize) {
            Some(&b) if b != u16::MAX => Ok(b as u8),
            _ => Err(i),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alphabet_is_a_bijection_with_known_points() {
        let table = byte_to_char_table();
        assert_eq!(table[b' ' as usize], 'Ġ');
        assert_eq!(table[b'\n' as usize], 'Ċ');
        assert_eq!(table[b'a' as usize], 'a');
        let mut seen = std::collections::HashSet::new();
        assert!(table.iter().all(|c| seen.insert(*c)));
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(unicode_to_bytes(&bytes_to_unicode(&all)).unwrap(), all);
        assert_eq!(unicode_to_bytes("a\u{4e00}"), Err(1));
    }
}
