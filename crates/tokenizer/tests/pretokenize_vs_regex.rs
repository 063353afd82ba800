//! The hand-written pre-tokenizer splits exactly like GPT-2's pattern run by fancy-regex, on random
//! text drawn from the tricky characters and on real text; and its "safe cut" points really are.

mod common;

use ferrolm_tokenizer::pretokenize::{is_safe_cut, split, GPT2_PATTERN};
use proptest::prelude::*;

fn regex_pieces(text: &str) -> Vec<&str> {
    thread_local! {
        static RE: fancy_regex::Regex = fancy_regex::Regex::new(GPT2_PATTERN).unwrap();
    }
    RE.with(|re| re.find_iter(text).map(|m| m.unwrap().as_str()).collect())
}

fn assert_same(text: &str) {
    let ours: Vec<&str> = split(text).collect();
    let want = regex_pieces(text);
    if ours != want {
        let at = ours
            .iter()
            .zip(&want)
            .position(|(a, b)| a != b)
            .unwrap_or(ours.len().min(want.len()));
        panic!(
            "split differs at piece {at}: ours {:?} vs regex {:?} in {text:?}",
            &ours[at..],
            &want[at..]
        );
    }
}

/// Characters that exercise every branch: contractions, letters/numbers/other in and out of ASCII,
/// all kinds of whitespace, marks (which are not letters), emoji and ZWJ.
const PALETTE: &[&str] = &[
    "a",
    "Z",
    "s",
    "t",
    "l",
    "v",
    "e",
    "r",
    "d",
    "m",
    "S",
    "'",
    "'",
    "'s",
    "'ll",
    "'ve",
    "'re",
    "0",
    "7",
    " ",
    " ",
    " ",
    "  ",
    "\n",
    "\n\n",
    "\t",
    "\r\n",
    "\u{0B}",
    "\u{0C}",
    "\u{85}",
    "\u{A0}",
    "\u{2028}",
    "\u{3000}",
    "\u{1680}",
    "\u{200B}",
    "é",
    "ß",
    "中",
    "ǅ",
    "ʰ",
    "\u{0301}",
    "\u{0903}",
    "²",
    "½",
    "Ⅻ",
    "①",
    "٣",
    "!",
    ".",
    ",",
    "?",
    "-",
    "_",
    "\"",
    "(",
    "🙂",
    "\u{200D}",
    "€",
    "\u{FEFF}",
    "\u{10FFFF}",
    "\u{E000}",
    "𝔸",
    "𝟙",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn random_palette_text_splits_like_the_regex(parts in prop::collection::vec(0..PALETTE.len(), 0..40)) {
        let text: String = parts.iter().map(|&i| PALETTE[i]).collect();
        assert_same(&text);
    }

    #[test]
    fn arbitrary_unicode_splits_like_the_regex(text in "\\PC*") {
        assert_same(&text);
    }

    #[test]
    fn arbitrary_chars_split_like_the_regex(chars in prop::collection::vec(any::<char>(), 0..30)) {
        let text: String = chars.into_iter().collect();
        assert_same(&text);
    }

    #[test]
    fn safe_cuts_do_not_change_the_split(parts in prop::collection::vec(0..PALETTE.len(), 1..40)) {
        let text: String = parts.iter().map(|&i| PALETTE[i]).collect();
        let whole: Vec<&str> = split(&text).collect();
        for p in (1..text.len()).filter(|&p| is_safe_cut(text.as_bytes(), p)) {
            let mut halves: Vec<&str> = split(&text[..p]).collect();
            halves.extend(split(&text[p..]));
            prop_assert_eq!(&halves, &whole, "cut at {} of {:?}", p, text);
        }
    }
}

#[test]
fn sample_text_splits_like_the_regex() {
    assert_same(&common::sample_text());
}

common::conformance_test!(real_text_splits_like_the_regex, |dir| {
    for name in ["corpus.en", "tinystories_sample.txt", "german.txt", "address.txt"] {
        assert_same(&std::fs::read_to_string(dir.join(name)).unwrap());
    }
    // A slice of real stories when the data folder is there (not required: conformance is above).
    let data = common::shared_root().join("data/stories-valid.txt");
    if data.exists() {
        let text = std::fs::read_to_string(data).unwrap();
        let end = (0..=text.len().min(2_000_000))
            .rev()
            .find(|&i| text.is_char_boundary(i))
            .unwrap();
        assert_same(&text[..end]);
    }
});
