//! A run with a real tokenizer: its files travel in every checkpoint, generation streams text with
//! them, and a different tokenizer or a too-small vocabulary is refused.

mod common;

use ferrolm_tokenizer::Tokenizer;
use ferrolm_train::data::{write_npy, TokenDtype};
use ferrolm_train::generate::{checkpoint_tokenizer, generate_text, GenerateConfig, END_OF_TEXT};
use ferrolm_train::{checkpoint, train, TrainOptions};
use std::path::Path;

fn tokenizer(dir: &Path, text: &str, vocab: usize) -> Tokenizer {
    let specials = vec![END_OF_TEXT.to_string()];
    let (v, m) = ferrolm_tokenizer::train_bpe_from_str(text, vocab, &specials).unwrap();
    let tok = Tokenizer::new(v, &m, &specials).unwrap();
    tok.save(dir).unwrap();
    tok
}

#[test]
fn checkpoints_carry_the_tokenizer_and_generation_streams_text() {
    let d = tempfile::tempdir().unwrap();
    let story = "the cat sat on the mat. the dog ran to the cat. they were happy.<|endoftext|>";
    let text = story.repeat(60);
    let tok = tokenizer(&d.path().join("tok"), &text, 300);
    let ids = tok.encode(&text);
    let mut c = common::tiny_run(d.path(), 30);
    c.model.vocab_size = 300;
    write_npy(&c.data.train, &ids, TokenDtype::U16).unwrap();
    write_npy(&c.data.valid, &ids[..400], TokenDtype::U16).unwrap();
    c.data.tokenizer = d.path().join("tok");
    c.optimizer.lr = 3e-2;
    let s = train(&c, &TrainOptions::default()).unwrap();
    let ck_dir = s.checkpoint.unwrap();

    let st = checkpoint::read_state(&ck_dir).unwrap();
    let id = st.tokenizer.unwrap();
    assert_eq!(id.bpe_fingerprint.as_deref(), Some(tok.fingerprint().as_str()));
    assert_eq!(id.vocab_size, Some(tok.vocab_size()));
    let loaded = checkpoint_tokenizer(&ck_dir).unwrap();
    assert_eq!(loaded.fingerprint(), tok.fingerprint());

    // The model learned the story well enough to continue it greedily, and streaming pieces add
    // up to the decoded text.
    let ck = checkpoint::load_model(&ck_dir).unwrap();
    let cfg = GenerateConfig {
        max_tokens: 12,
        temperature: 0.0,
        top_p: 1.0,
        seed: 1,
    };
    let mut streamed = String::new();
    let g = generate_text(&ck.model, &loaded, "the cat sat", &cfg, &mut |p| {
        streamed.push_str(p);
        Ok(())
    })
    .unwrap();
    assert_eq!(streamed, g.text);
    assert_eq!(g.text, loaded.decode(&g.tokens).unwrap());
    assert!(g.text.starts_with(" on the mat"), "{:?}", g.text);

    // Resuming with another tokenizer is refused; so is a model vocabulary smaller than it.
    let other = tokenizer(&d.path().join("tok2"), &"a b c d e f g h. ".repeat(50), 280);
    assert_ne!(other.fingerprint(), tok.fingerprint());
    let mut c2 = c.clone();
    c2.run.max_steps = 40;
    c2.data.tokenizer = d.path().join("tok2");
    let e = format!("{:#}", common::resume_latest(&c2).unwrap_err());
    assert!(e.contains("tokenizer") && e.contains("tok2"), "{e}");
    let mut c3 = c.clone();
    c3.run.dir = d.path().join("small");
    c3.model.vocab_size = 200;
    let e = format!("{:#}", train(&c3, &TrainOptions::default()).unwrap_err());
    assert!(
        e.contains("model.vocab_size") || e.contains("outside the vocabulary"),
        "{e}"
    );

    // Without a tokenizer copy, the error says what to do.
    let mut c4 = c.clone();
    c4.run.dir = d.path().join("notok");
    c4.data.tokenizer = "".into();
    c4.run.max_steps = 1;
    let s4 = train(&c4, &TrainOptions::default()).unwrap();
    let e = format!("{:#}", checkpoint_tokenizer(&s4.checkpoint.unwrap()).unwrap_err());
    assert!(e.contains("--tokenizer"), "{e}");
}
