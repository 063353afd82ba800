//! Properties: decode(encode(s)) == s for arbitrary strings with special tokens; encode_iter equals
//! encode for arbitrary chunkings; the parallel .npy encoder equals encode.

mod common;

use ferrolm_tokenizer::{encode_file_to_npy, read_npy, train_bpe_from_str, Tokenizer};
use proptest::prelude::*;
use std::sync::OnceLock;

fn specials() -> Vec<String> {
    [
        "<|endoftext|>",
        "<|endoftext|><|endoftext|>",
        "<pad>",
        "\n\n<sep>",
    ]
    .map(String::from)
    .to_vec()
}

fn tokenizer() -> &'static Tokenizer {
    static TOK: OnceLock<Tokenizer> = OnceLock::new();
    TOK.get_or_init(|| {
        let (vocab, merges) = train_bpe_from_str(&common::sample_text(), 700, &specials()).unwrap();
        Tokenizer::new(vocab, &merges, &specials()).unwrap()
    })
}

/// Strings mixing arbitrary text with special tokens and pieces of them.
fn text_with_specials() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => "\\PC{0,12}",
        2 => "[a-z' .,\n]{0,12}",
        1 => Just("<|endoftext|>".to_string()),
        1 => Just("<|endoftext|><|endoftext|>".to_string()),
        1 => Just("<|endof".to_string()),
        1 => Just("<pad>".to_string()),
        1 => Just("\n\n<sep>".to_string()),
        1 => Just("\n".to_string()),
        1 => Just("  ".to_string()),
    ];
    prop::collection::vec(piece, 0..24).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    #[test]
    fn decode_encode_round_trips(text in text_with_specials()) {
        let tok = tokenizer();
        let ids = tok.encode(&text);
        prop_assert_eq!(tok.decode(&ids).unwrap(), text);
    }

    #[test]
    fn arbitrary_strings_round_trip(text in any::<String>()) {
        let tok = tokenizer();
        prop_assert_eq!(tok.decode(&tok.encode(&text)).unwrap(), text);
    }

    #[test]
    fn specials_are_never_split(before in "[a-z ]{0,8}", after in "[a-z ]{0,8}") {
        let tok = tokenizer();
        let eot = tok.token_to_id("<|endoftext|>").unwrap();
        let ids = tok.encode(&format!("{before}<|endoftext|>{after}"));
        prop_assert_eq!(ids.iter().filter(|&&i| i == eot).count(), 1);
    }

    #[test]
    fn encode_iter_equals_encode_for_any_chunking(
        text in text_with_specials(),
        sizes in prop::collection::vec(1usize..20, 1..6),
        read_size in 1usize..64,
        repeat in 1usize..20,
    ) {
        let tok = tokenizer();
        let text = text.repeat(repeat);
        let want = tok.encode(&text);
        // Small reads and a small cut interval put cuts everywhere they are allowed.
        let reader = common::ChoppyReader::new(text.as_bytes(), sizes.clone());
        let got: Vec<u32> = tok.encode_iter(reader).with_read_size(read_size).map(Result::unwrap).collect();
        prop_assert_eq!(&got, &want);
        // The default 64 KiB reads.
        prop_assert_eq!(common::encode_in_reads(tok, &text, sizes), want);
    }
}

#[test]
fn streaming_a_large_input_in_big_reads_equals_encode() {
    let tok = tokenizer();
    let text = common::sample_text().repeat(60); // ~ 1.5 MB, many read buffers
    let want = tok.encode(&text);
    for sizes in [vec![1 << 16], vec![65_535, 3], vec![100_000]] {
        assert_eq!(common::encode_in_reads(tok, &text, sizes), want);
    }
}

#[test]
fn parallel_encode_equals_encode() {
    let tok = tokenizer();
    let text = common::sample_text().repeat(50);
    assert_eq!(tok.encode_parallel(&text), tok.encode(&text));
    assert_eq!(tok.encode_parallel(""), Vec::<u32>::new());
}

#[test]
fn progress_bars_do_not_change_results() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    std::fs::write(&input, common::sample_text()).unwrap();
    let specials = vec!["<|endoftext|>".to_string()];
    let quiet = ferrolm_tokenizer::train_bpe_with(&[&input], 400, &specials, &Default::default()).unwrap();
    let shown = ferrolm_tokenizer::train_bpe_with(
        &[&input],
        400,
        &specials,
        &ferrolm_tokenizer::TrainOptions { progress: true },
    )
    .unwrap();
    assert_eq!(quiet, shown);
    let tok = Tokenizer::new(shown.0, &shown.1, &specials).unwrap();
    let stats =
        ferrolm_tokenizer::encode_file_to_npy_with(&tok, &input, dir.path().join("o.npy"), true).unwrap();
    assert_eq!(
        read_npy(dir.path().join("o.npy")).unwrap(),
        tok.encode(&common::sample_text())
    );
    assert!(stats.compression() > 1.0);
}

#[test]
fn npy_encoder_equals_encode_across_chunks() {
    let tok = tokenizer();
    // > 1 MiB so the file is cut into several chunks encoded in parallel.
    let text = common::sample_text().repeat(90);
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("in.txt"), dir.path().join("out.npy"));
    std::fs::write(&input, &text).unwrap();
    let stats = encode_file_to_npy(tok, &input, &output).unwrap();
    let want = tok.encode(&text);
    assert_eq!(stats.bytes, text.len() as u64);
    assert_eq!(stats.tokens, want.len() as u64);
    assert_eq!(stats.dtype.descr(), "<u2");
    assert_eq!(read_npy(&output).unwrap(), want);
    assert!(!dir.path().join("out.npy.tmp").exists());
}
