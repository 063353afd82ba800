//! A tokenizer.json written by Hugging Face `tokenizers` (fixture from tools/tokenizer_hf_fixture.py)
//! loads and encodes exactly like HF did; ferrolm's own tokenizer.json has the shape HF reads (the
//! Python side of that check, HF loading ferrolm's file and comparing ids, is in tools/bench_tokenizer.py).

use ferrolm_tokenizer::Tokenizer;
use serde_json::Value;
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

#[test]
fn hf_written_tokenizer_json_encodes_like_hf() {
    let tok = Tokenizer::from_tokenizer_json(fixture("hf_tokenizer.json")).unwrap();
    assert_eq!(tok.vocab_size(), 400);
    assert_eq!(tok.token_to_id("<|endoftext|>"), Some(0));
    // HF keeps this one raw (with spaces) in the model vocab.
    assert_eq!(tok.token_to_id("<|end of text|>"), Some(1));
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("hf_expected.json")).unwrap()).unwrap();
    let cases = expected["cases"].as_array().unwrap();
    assert!(cases.len() >= 8);
    let dir = tempfile::tempdir().unwrap();
    tok.save(dir.path()).unwrap();
    let again = Tokenizer::from_dir(dir.path()).unwrap();
    assert_eq!(again.fingerprint(), tok.fingerprint());
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let want: Vec<u32> = case["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(tok.encode(text), want, "{text:?}");
        assert_eq!(again.encode(text), want, "{text:?} after save/from_dir");
        assert_eq!(tok.decode(&want).unwrap(), text);
    }
}

#[test]
fn written_tokenizer_json_has_the_hf_shape() {
    let tok = Tokenizer::from_tokenizer_json(fixture("hf_tokenizer.json")).unwrap();
    let json = tok.tokenizer_json();
    assert_eq!(json["model"]["type"], "BPE");
    assert_eq!(json["model"]["ignore_merges"], false);
    assert_eq!(json["pre_tokenizer"]["type"], "ByteLevel");
    assert_eq!(json["pre_tokenizer"]["add_prefix_space"], false);
    assert_eq!(json["pre_tokenizer"]["use_regex"], true);
    assert_eq!(json["decoder"]["type"], "ByteLevel");
    assert_eq!(json["added_tokens"][0]["content"], "<|endoftext|>");
    assert_eq!(json["added_tokens"][0]["special"], true);
    assert_eq!(json["model"]["vocab"].as_object().unwrap().len(), 400);
    assert_eq!(
        json["model"]["merges"].as_array().unwrap().len(),
        tok.num_merges()
    );
    assert_eq!(json["model"]["vocab"]["Ġ"], tok.token_to_id(" ").unwrap());
}
