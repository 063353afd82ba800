//! Generation and evaluation: KV-cache generation agrees with recomputing from scratch, seeds,
//! the end-of-text stop, the sliding window past the context, UTF-8 streaming; eval = mean loss.

mod common;

use ferrolm_nn::model::{Activations, KvCache, Model};
use ferrolm_nn::sample::argmax;
use ferrolm_train::data::{write_npy, TokenDtype, TokenFile};
use ferrolm_train::evaluate;
use ferrolm_train::generate::{generate_tokens, GenerateConfig, Utf8Stream};

fn model() -> Model {
    Model::new(common::tiny_model(), 7).unwrap()
}

fn greedy(max_tokens: usize) -> GenerateConfig {
    GenerateConfig {
        max_tokens,
        temperature: 0.0,
        top_p: 1.0,
        seed: 1,
    }
}

#[test]
fn cached_greedy_generation_matches_recomputing_every_step() {
    let m = model();
    let prompt = [1u32, 5, 9];
    let mut streamed = Vec::new();
    let out = generate_tokens(&m, &prompt, &greedy(8), None, &mut |t| {
        streamed.push(t);
        Ok(())
    })
    .unwrap();
    assert_eq!(out.tokens.len(), 8);
    assert_eq!(streamed, out.tokens);
    // Reference: a fresh cache over the whole history for every token.
    let mut hist = prompt.to_vec();
    let mut logits = vec![0.0; m.config.vocab_size];
    for &t in &out.tokens {
        let mut cache = KvCache::new(&m.config, 1, m.config.context_length);
        m.forward_infer(&mut cache, &hist, &mut logits).unwrap();
        assert_eq!(argmax(&logits), t);
        hist.push(t);
    }
}

#[test]
fn seeds_stop_token_and_long_generation() {
    let m = model();
    let cfg = GenerateConfig {
        max_tokens: 20,
        temperature: 1.0,
        top_p: 0.9,
        seed: 3,
    };
    let a = generate_tokens(&m, &[2], &cfg, None, &mut |_| Ok(())).unwrap();
    let b = generate_tokens(&m, &[2], &cfg, None, &mut |_| Ok(())).unwrap();
    let c = generate_tokens(
        &m,
        &[2],
        &GenerateConfig { seed: 4, ..cfg },
        None,
        &mut |_| Ok(()),
    )
    .unwrap();
    assert_eq!(a, b);
    assert_ne!(a.tokens, c.tokens);
    assert!(!a.stopped_at_eot);

    // Make the third token the end-of-text token: generation stops before it.
    let eot = a.tokens[2];
    let s = generate_tokens(&m, &[2], &cfg, Some(eot), &mut |_| Ok(())).unwrap();
    let first_eot = a.tokens.iter().position(|&t| t == eot).unwrap();
    assert!(s.stopped_at_eot);
    assert_eq!(s.tokens, a.tokens[..first_eot]);

    // Past the context length (16) by sliding the window; a prompt longer than the context is cut.
    let long = generate_tokens(&m, &[1; 40], &greedy(50), None, &mut |_| Ok(())).unwrap();
    assert_eq!(long.tokens.len(), 50);
    // An empty prompt starts from the end-of-text token; without one it is an error.
    assert!(generate_tokens(&m, &[], &greedy(3), Some(0), &mut |_| Ok(())).is_ok());
    assert!(generate_tokens(&m, &[], &greedy(3), None, &mut |_| Ok(())).is_err());
    let e = generate_tokens(&m, &[1000], &greedy(3), None, &mut |_| Ok(())).unwrap_err();
    assert!(format!("{e}").contains("outside the model's vocabulary"));
    assert!(generate_tokens(
        &m,
        &[1],
        &GenerateConfig { top_p: 0.0, ..cfg },
        None,
        &mut |_| Ok(())
    )
    .is_err());
}

#[test]
fn utf8_stream_holds_back_split_characters() {
    let mut s = Utf8Stream::default();
    let text = "héllo, 世界!";
    let bytes = text.as_bytes();
    let mut out = String::new();
    for b in bytes {
        out.push_str(&s.push(&[*b]));
    }
    out.push_str(&s.finish());
    assert_eq!(out, text);
    assert_eq!(s.push(&[0xe4, 0xb8]), "");
    assert_eq!(s.push(&[0x96, b'a']), "世a");
    assert_eq!(s.push(&[0xff, b'b']), "\u{FFFD}b");
    assert_eq!(s.push(&[0xe4]), "");
    assert_eq!(s.finish(), "\u{FFFD}");
}

#[test]
fn evaluate_is_the_mean_loss_over_the_windows() {
    let d = tempfile::tempdir().unwrap();
    let m = model();
    let p = d.path().join("v.npy");
    let toks = common::pattern_tokens(16 * 6 + 1, 48, 9);
    write_npy(&p, &toks, TokenDtype::U16).unwrap();
    let f = TokenFile::open(&p).unwrap();
    let r = evaluate(&m, &f, 2, 16, None).unwrap();
    assert_eq!((r.windows, r.tokens), (6, 96));
    let mut acts = Activations::new(&m.config, 1, 16);
    let mut sum = 0.0f64;
    for w in 0..6 {
        let x = &toks[w * 16..w * 16 + 16];
        let y = &toks[w * 16 + 1..w * 16 + 17];
        sum += m.forward_loss(&mut acts, x, y).unwrap() as f64;
    }
    assert!((r.loss - sum / 6.0).abs() < 1e-5, "{} vs {}", r.loss, sum / 6.0);
    assert!((r.perplexity - r.loss.exp()).abs() < 1e-9);
    // A subset, and an id outside the vocabulary.
    assert_eq!(evaluate(&m, &f, 2, 16, Some(4)).unwrap().windows, 4);
    let mut bad = toks.clone();
    bad[50] = 48;
    write_npy(&p, &bad, TokenDtype::U16).unwrap();
    let f = TokenFile::open(&p).unwrap();
    let e = format!("{:#}", evaluate(&m, &f, 2, 16, None).unwrap_err());
    assert!(e.contains("index 50") && e.contains("v.npy"), "{e}");
}
