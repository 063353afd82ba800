//! The trainer's merges equal those of a straightforward reference trainer written here: split on
//! special tokens with plain string search, pre-tokenize with fancy-regex, then per merge recount
//! every pair from scratch and take the most frequent (ties: the greater pair of byte strings).

mod common;

use ferrolm_tokenizer::{pretokenize::GPT2_PATTERN, train_bpe_from_str, Merges};
use std::collections::HashMap;

fn reference_train(text: &str, vocab_size: usize, specials: &[&str]) -> Merges {
    // Split on special tokens: at each position the longest special token that starts there.
    let mut segments = Vec::new();
    let (mut start, mut i) = (0, 0);
    while i < text.len() {
        let hit = specials
            .iter()
            .filter(|s| text[i..].starts_with(**s))
            .map(|s| s.len())
            .max();
        match hit {
            Some(len) => {
                segments.push(&text[start..i]);
                i += len;
                start = i;
            }
            None => i += text[i..].chars().next().unwrap().len_utf8(),
        }
    }
    segments.push(&text[start..]);
    let re = fancy_regex::Regex::new(GPT2_PATTERN).unwrap();
    let mut counts: HashMap<Vec<Vec<u8>>, u64> = HashMap::new();
    for seg in segments {
        for m in re.find_iter(seg) {
            let word = m.unwrap().as_str().bytes().map(|b| vec![b]).collect();
            *counts.entry(word).or_insert(0) += 1;
        }
    }
    let mut words: Vec<(Vec<Vec<u8>>, u64)> = counts.into_iter().collect();
    let mut merges = Vec::new();
    while 256 + specials.len() + merges.len() < vocab_size {
        let mut pairs: HashMap<(Vec<u8>, Vec<u8>), u64> = HashMap::new();
        for (w, c) in &words {
            for p in w.windows(2) {
                *pairs.entry((p[0].clone(), p[1].clone())).or_insert(0) += c;
            }
        }
        let Some(best) = pairs
            .into_iter()
            .max_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)))
            .map(|(p, _)| p)
        else {
            break;
        };
        for (w, _) in &mut words {
            let mut out = Vec::with_capacity(w.len());
            let mut i = 0;
            while i < w.len() {
                if i + 1 < w.len() && w[i] == best.0 && w[i + 1] == best.1 {
                    out.push([best.0.clone(), best.1.clone()].concat());
                    i += 2;
                } else {
                    out.push(w[i].clone());
                    i += 1;
                }
            }
            *w = out;
        }
        merges.push(best);
    }
    merges
}

fn check(text: &str, vocab_size: usize, specials: &[&str]) {
    let want = reference_train(text, vocab_size, specials);
    let owned: Vec<String> = specials.iter().map(|s| s.to_string()).collect();
    let (vocab, merges) = train_bpe_from_str(text, vocab_size, &owned).unwrap();
    for (i, (a, b)) in merges.iter().zip(&want).enumerate() {
        assert_eq!(a, b, "merge #{i} differs (vocab {vocab_size})");
    }
    assert_eq!(merges.len(), want.len());
    assert_eq!(vocab.len(), 256 + merges.len() + specials.len());
}

#[test]
fn merges_equal_the_reference_on_english_with_specials() {
    check(&common::sample_text(), 600, &["<|endoftext|>"]);
}

#[test]
fn merges_equal_the_reference_with_many_ties_and_repeats() {
    // Few letters and equal frequencies make ties everywhere; runs like "aaaa" test overlapping pairs.
    let mut rng = 12345u64;
    let mut text = String::new();
    for _ in 0..4000 {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let word_len = 1 + (rng >> 60) as usize % 6;
        if (rng >> 20).is_multiple_of(7) {
            text.push_str("<s>");
        }
        text.push(if (rng >> 40).is_multiple_of(5) { '\n' } else { ' ' });
        for k in 0..word_len {
            text.push(['a', 'a', 'b', 'b', 'c', 'é'][((rng >> (k * 5)) % 6) as usize]);
        }
    }
    for vocab_size in [258, 280, 400] {
        check(&text, vocab_size, &["<s>", "<s><s>"]);
    }
    check("aaaaaaaaaaaa aaa aa a", 270, &[]); // runs out of pairs before the vocab is full
}
