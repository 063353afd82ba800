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

/// Writes bytes in GPT-2's alphabet.
pub fn bytes_to_unicode(bytes: &[u8]) -> String {
    let table = byte_to_char_table();
    bytes.iter().map(|&b| table[b as usize]).collect()
}

/// Reads a string written in GPT-2's alphabet back to bytes; `Err(char offset)` names the first
/// character outside the alphabet.
pub fn unicode_to_bytes(s: &str) -> Result<Vec<u8>, usize> {
    let table = byte_to_char_table();
    s.chars()
        .enumerate()
        .map(|(i, c)| {
            let code = c as u32;
            if code < 256 && table[code as usize] == c {
                Ok(code as u8)
            } else if (256..256 + 68).contains(&code) {
                // The 68 unprintable bytes map to U+0100.. in byte order.
                table.iter().position(|&t| t == c).map(|b| b as u8).ok_or(i)
            } else {
                Err(i)
            }
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
