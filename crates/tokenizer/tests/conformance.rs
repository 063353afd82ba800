//! Conformance against ../shared/conformance/tokenizer (CS336 assignment 1 fixtures): the reference
//! merges and vocab on corpus.en at vocab 500, every GPT-2 encode case, and streaming.

mod common;

use ferrolm_tokenizer::{read_merges_txt, read_vocab_json, train_bpe_with, Tokenizer, TrainOptions};
use serde_json::Value;
use std::collections::HashSet;
use std::path::Path;

fn eot() -> Vec<String> {
    vec!["<|endoftext|>".to_string()]
}

common::conformance_test!(train_corpus_en_matches_reference_merges_and_vocab, |dir| {
    let started = std::time::Instant::now();
    let (vocab, merges) =
        train_bpe_with(&[dir.join("corpus.en")], 500, &eot(), &TrainOptions::default()).expect("training");
    eprintln!(
        "corpus.en at vocab 500: {:.3} s (debug/test build, loaded machine)",
        started.elapsed().as_secs_f64()
    );
    let (want_merges, _) = read_merges_txt(&dir.join("train-bpe-reference-merges.txt")).unwrap();
    assert_eq!(want_merges.len(), 243);
    for (i, (got, want)) in merges.iter().zip(&want_merges).enumerate() {
        assert_eq!(got, want, "merge #{i} differs");
    }
    assert_eq!(merges.len(), want_merges.len());
    let want_vocab = read_vocab_json(&dir.join("train-bpe-reference-vocab.json")).unwrap();
    assert_eq!(vocab.len(), 500);
    let got: HashSet<&Vec<u8>> = vocab.iter().collect();
    let want: HashSet<&Vec<u8>> = want_vocab.iter().collect();
    assert_eq!(got, want);
});

struct Case {
    name: String,
    text: String,
    specials: Vec<String>,
    ids: Vec<u32>,
}

fn cases(dir: &Path) -> Vec<Case> {
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("gpt2_encode_cases.json")).unwrap()).unwrap();
    json["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let text = match (c.get("text"), c.get("file")) {
                (Some(t), _) => t.as_str().unwrap().to_string(),
                (None, Some(f)) => std::fs::read_to_string(dir.join(f.as_str().unwrap())).unwrap(),
                _ => panic!("case without text or file: {c}"),
            };
            Case {
                name: c["name"].as_str().unwrap().to_string(),
                text,
                specials: c["special_tokens"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|s| s.as_str().unwrap().into())
                    .collect(),
                ids: c["expected_ids"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|i| i.as_u64().unwrap() as u32)
                    .collect(),
            }
        })
        .collect()
}

fn gpt2(dir: &Path, specials: &[String]) -> Tokenizer {
    Tokenizer::from_gpt2_files(dir.join("gpt2_vocab.json"), dir.join("gpt2_merges.txt"), specials).unwrap()
}

common::conformance_test!(
    every_gpt2_case_encodes_to_the_expected_ids_and_round_trips,
    |dir| {
        let all = cases(&dir);
        assert!(all.len() >= 10, "expected the full case list, got {}", all.len());
        let save_dir = tempfile::tempdir().unwrap();
        let mut groups: Vec<Vec<String>> = all.iter().map(|c| c.specials.clone()).collect();
        groups.sort();
        groups.dedup();
        for specials in groups {
            let tok = gpt2(&dir, &specials);
            assert_eq!(tok.vocab_size(), 50257);
            // The same through tokenizer.json (+ vocab.json/merges.txt) written by ferrolm.
            tok.save(save_dir.path()).unwrap();
            let again = Tokenizer::from_dir(save_dir.path()).unwrap();
            assert_eq!(again.fingerprint(), tok.fingerprint());
            for case in all.iter().filter(|c| c.specials == specials) {
                let ids = tok.encode(&case.text);
                assert_eq!(ids, case.ids, "case {}", case.name);
                assert_eq!(
                    tok.decode(&ids).unwrap(),
                    case.text,
                    "round trip of case {}",
                    case.name
                );
                assert_eq!(
                    again.encode(&case.text),
                    case.ids,
                    "case {} after save/from_dir",
                    case.name
                );
            }
        }
        // All three load paths agree with the GPT-2 files byte for byte.
        let tok = gpt2(&dir, &eot());
        let from_files = Tokenizer::from_gpt2_files(
            save_dir.path().join("vocab.json"),
            save_dir.path().join("merges.txt"),
            &eot(),
        )
        .unwrap();
        assert_eq!(from_files.fingerprint(), tok.fingerprint());
    }
);

common::conformance_test!(overlapping_special_tokens_longest_wins, |dir| {
    let specials = vec![
        "<|endoftext|>".to_string(),
        "<|endoftext|><|endoftext|>".to_string(),
    ];
    let tok = gpt2(&dir, &specials);
    let double = tok.token_to_id("<|endoftext|><|endoftext|>").unwrap();
    assert_eq!(double, 50257);
    let text = "Hello, how <|endoftext|><|endoftext|> are you?<|endoftext|>";
    let ids = tok.encode(text);
    assert_eq!(ids.iter().filter(|&&i| i == double).count(), 1);
    assert_eq!(ids.iter().filter(|&&i| i == 50256).count(), 1);
    assert_eq!(tok.decode(&ids).unwrap(), text);
    // Three in a row: the double first, then the single.
    let ids = tok.encode("<|endoftext|><|endoftext|><|endoftext|>");
    assert_eq!(ids, [double, 50256]);
});

common::conformance_test!(streaming_tinystories_sample_equals_whole_file, |dir| {
    let path = dir.join("tinystories_sample.txt");
    let text = std::fs::read_to_string(&path).unwrap();
    let tok = gpt2(&dir, &eot());
    let whole = tok.encode(&text);
    let from_file: Vec<u32> = tok
        .encode_iter(std::io::BufReader::new(std::fs::File::open(&path).unwrap()))
        .map(Result::unwrap)
        .collect();
    assert_eq!(from_file, whole);
    // Line by line (a reader that hands out one line at a time), and in odd small pieces.
    let lines: Vec<usize> = text.split_inclusive('\n').map(str::len).collect();
    for sizes in [lines, vec![1], vec![7, 3, 13], vec![64, 1, 2]] {
        assert_eq!(common::encode_in_reads(&tok, &text, sizes), whole);
    }
});

common::conformance_test!(gpt2_decodes_invalid_utf8_to_replacement_characters, |dir| {
    let tok = gpt2(&dir, &eot());
    // "🙃" is three tokens; its first alone is an incomplete UTF-8 sequence.
    let ids = tok.encode("🙃");
    assert_eq!(tok.decode(&ids[..1]).unwrap(), "\u{FFFD}");
    assert_eq!(tok.decode(&ids).unwrap(), "🙃");
    assert!(tok.decode(&[50257]).is_err());
});
