//! Bad input gets a clear error naming the file and byte offset; files round-trip; the fingerprint
//! is stable and tells tokenizers apart.

mod common;

use ferrolm_tokenizer::{
    encode_file_to_npy, read_npy, train_bpe_from_str, train_bpe_with, write_npy, TokenDtype, Tokenizer,
    TokenizerError, TrainOptions,
};

fn eot() -> Vec<String> {
    vec!["<|endoftext|>".to_string()]
}

fn small() -> Tokenizer {
    let (vocab, merges) = train_bpe_from_str(&common::sample_text(), 400, &eot()).unwrap();
    Tokenizer::new(vocab, &merges, &eot()).unwrap()
}

#[test]
fn non_utf8_input_names_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("latin1.txt");
    std::fs::write(&path, b"hello caf\xE9 world").unwrap();
    let err = train_bpe_with(&[&path], 300, &eot(), &TrainOptions::default()).unwrap_err();
    assert!(
        matches!(err, TokenizerError::InvalidUtf8 { offset: 9, .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("latin1.txt") && msg.contains("byte offset 9"),
        "{msg}"
    );
    let err = encode_file_to_npy(&small(), &path, dir.path().join("out.npy")).unwrap_err();
    assert!(
        matches!(err, TokenizerError::InvalidUtf8 { offset: 9, .. }),
        "{err:?}"
    );
    assert!(!dir.path().join("out.npy").exists());
    // Streaming reports the offset in the whole stream, not in its buffer.
    let mut data = "ok ".repeat(50_000).into_bytes();
    data.extend_from_slice(b"\xFF tail");
    let tok = small();
    let result: Result<Vec<u32>, _> = tok.encode_iter(&data[..]).collect();
    assert!(
        matches!(result, Err(TokenizerError::InvalidUtf8 { offset: 150_000, .. })),
        "{result:?}"
    );
}

#[test]
fn bad_arguments_are_refused() {
    let err = train_bpe_from_str("abc", 256, &eot()).unwrap_err();
    assert!(
        matches!(err, TokenizerError::VocabTooSmall { min: 257, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("at least 256"));
    let err = train_bpe_from_str("abc", 300, &["<a>".into(), String::new()]).unwrap_err();
    assert!(
        matches!(err, TokenizerError::EmptySpecialToken { index: 1 }),
        "{err:?}"
    );
    let (vocab, merges) = train_bpe_from_str("abc abc", 260, &[]).unwrap();
    let err = Tokenizer::new(vocab, &merges, &[String::new()]).unwrap_err();
    assert!(
        matches!(err, TokenizerError::EmptySpecialToken { index: 0 }),
        "{err:?}"
    );
    let missing = train_bpe_with(&["/nonexistent/x.txt"], 300, &eot(), &TrainOptions::default()).unwrap_err();
    assert!(missing.to_string().contains("/nonexistent/x.txt"), "{missing}");
}

#[test]
fn decoding_an_id_outside_the_vocab_fails() {
    let tok = small();
    let n = tok.vocab_size() as u32;
    let err = tok.decode(&[1, 2, n]).unwrap_err();
    assert!(
        matches!(err, TokenizerError::IdOutOfRange { position: 2, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains(&format!("token id {n}")));
}

#[test]
fn corrupt_files_name_file_and_offset() {
    let tok = small();
    let dir = tempfile::tempdir().unwrap();
    tok.save(dir.path()).unwrap();
    let vocab = dir.path().join("vocab.json");
    let merges = dir.path().join("merges.txt");

    // Truncated JSON.
    let text = std::fs::read_to_string(&vocab).unwrap();
    let bad = dir.path().join("bad_vocab.json");
    std::fs::write(&bad, &text[..text.len() / 2]).unwrap();
    let err = Tokenizer::from_gpt2_files(&bad, &merges, &eot()).unwrap_err();
    assert!(matches!(err, TokenizerError::Corrupt { .. }), "{err:?}");
    assert!(
        err.to_string().contains("bad_vocab.json") && err.to_string().contains("byte offset"),
        "{err}"
    );

    // A merge line with three parts: the offset is the start of that line.
    let mtext = std::fs::read_to_string(&merges).unwrap();
    let third_line = mtext.split_inclusive('\n').take(2).map(str::len).sum::<usize>();
    let mut broken = mtext.clone();
    broken.insert_str(third_line, "a b c\n");
    let bad_merges = dir.path().join("bad_merges.txt");
    std::fs::write(&bad_merges, broken).unwrap();
    let err = Tokenizer::from_gpt2_files(&vocab, &bad_merges, &eot()).unwrap_err();
    match &err {
        TokenizerError::Corrupt { offset, .. } => assert_eq!(*offset as usize, third_line),
        other => panic!("{other:?}"),
    }
    // A merge of tokens not in the vocab.
    std::fs::write(&bad_merges, format!("{mtext}zz qq\n")).unwrap();
    let err = Tokenizer::from_gpt2_files(&vocab, &bad_merges, &eot()).unwrap_err();
    assert!(
        err.to_string().contains("not in the vocab") && err.to_string().contains(&format!("{}", mtext.len()))
    );

    // Ids with a gap.
    std::fs::write(&bad, "{\"a\": 0, \"b\": 5}").unwrap();
    let err = Tokenizer::from_gpt2_files(&bad, &merges, &[]).unwrap_err();
    assert!(err.to_string().contains("dense"), "{err}");

    // tokenizer.json with another model or broken JSON.
    let tj = dir.path().join("tokenizer.json");
    let json = std::fs::read_to_string(&tj).unwrap();
    std::fs::write(&tj, json.replace("\"BPE\"", "\"WordPiece\"")).unwrap();
    let err = Tokenizer::from_dir(dir.path()).unwrap_err();
    assert!(err.to_string().contains("WordPiece"), "{err}");
    std::fs::write(&tj, &json[..100]).unwrap();
    let err = Tokenizer::from_dir(dir.path()).unwrap_err();
    assert!(
        err.to_string().contains("tokenizer.json") && err.to_string().contains("byte offset"),
        "{err}"
    );
    let err = Tokenizer::from_dir(dir.path().join("nothing")).unwrap_err();
    assert!(err.to_string().contains("ferrolm tokenizer train"), "{err}");
}

#[test]
fn save_and_load_round_trip_every_format() {
    let tok = small();
    let dir = tempfile::tempdir().unwrap();
    tok.save(dir.path()).unwrap();
    let text = common::sample_text();
    let want = tok.encode(&text);
    let from_dir = Tokenizer::from_dir(dir.path()).unwrap();
    let from_json = Tokenizer::from_tokenizer_json(dir.path().join("tokenizer.json")).unwrap();
    let from_gpt2 = Tokenizer::from_gpt2_files(
        dir.path().join("vocab.json"),
        dir.path().join("merges.txt"),
        &eot(),
    )
    .unwrap();
    for t in [&from_dir, &from_json, &from_gpt2] {
        assert_eq!(t.encode(&text), want);
        assert_eq!(t.fingerprint(), tok.fingerprint());
        assert_eq!(t.token_to_id("<|endoftext|>"), tok.token_to_id("<|endoftext|>"));
    }
    assert_eq!(tok.token_to_id("<|endoftext|>"), Some(399));
    assert_eq!(tok.vocab_size(), 400);
    // Without the specials the fingerprint differs, and the special text is ordinary text.
    let plain = Tokenizer::from_gpt2_files(dir.path().join("vocab.json"), dir.path().join("merges.txt"), &[])
        .unwrap();
    assert_ne!(plain.fingerprint(), tok.fingerprint());
    assert!(tok.fingerprint().starts_with("bpe-") && tok.fingerprint().len() == 36);
    // The fingerprint is a fixed function of the content (same value on every machine and run).
    let (v, m) = train_bpe_from_str("hello hello world", 260, &[]).unwrap();
    let tiny = Tokenizer::new(v, &m, &[]).unwrap();
    assert_eq!(
        tiny.fingerprint(),
        Tokenizer::new(tiny.vocab().to_vec(), &tiny.merges(), &[])
            .unwrap()
            .fingerprint()
    );
}

#[test]
fn npy_files_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let ids: Vec<u32> = (0..1000).map(|i| i * 61 % 65536).collect();
    for dtype in [TokenDtype::U16, TokenDtype::U32] {
        let path = dir.path().join(format!("{}.npy", dtype.descr().replace('<', "")));
        write_npy(&path, &ids, dtype).unwrap();
        assert_eq!(read_npy(&path).unwrap(), ids);
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[..6], b"\x93NUMPY");
        assert_eq!((bytes.len() - 128) % 64 % 2, 0);
        assert_eq!(bytes[127], b'\n');
    }
    assert_eq!(TokenDtype::for_vocab(65536), TokenDtype::U16);
    assert_eq!(TokenDtype::for_vocab(65537), TokenDtype::U32);
    let empty = dir.path().join("empty.txt");
    std::fs::write(&empty, "").unwrap();
    let stats = encode_file_to_npy(&small(), &empty, dir.path().join("e.npy")).unwrap();
    assert_eq!((stats.bytes, stats.tokens), (0, 0));
    assert_eq!(read_npy(dir.path().join("e.npy")).unwrap(), Vec::<u32>::new());
}

#[test]
fn npy_reader_refuses_truncated_files_and_the_writer_ids_that_do_not_fit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.npy");
    write_npy(&path, &[1, 2, 3, 4], TokenDtype::U16).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 2]).unwrap();
    let e = read_npy(&path).unwrap_err().to_string();
    assert!(e.contains("t.npy") && e.contains("truncated"), "{e}");
    std::fs::write(&path, b"not numpy at all").unwrap();
    let e = read_npy(&path).unwrap_err().to_string();
    assert!(e.contains("t.npy") && e.contains("magic"), "{e}");
    let e = write_npy(dir.path().join("big.npy"), &[7, 65536], TokenDtype::U16)
        .unwrap_err()
        .to_string();
    assert!(e.contains("65536") && e.contains("index 1"), "{e}");
    assert!(!dir.path().join("big.npy").exists());
}
