//! Finite-difference gradient checks of the whole model, every ablation: the crate's f32 forward
//! and hand-written backward against central differences of an independent f64 reference model
//! (tests/reference). Errors are relative to the largest gradient of each tensor; f32 rounding in
//! a model this size gives ≤ 1e-6 (measured ~8e-7), a wrong backward term gives ≥ 1e-2, so 1e-5 is tight and can fail.

mod reference;

use ferrolm_nn::model::{Activations, KvCache, Model};
use ferrolm_nn::{Ffn, ModelConfig, NnError, Norm, Position};
use reference::*;

fn tiny(norm: Norm, position: Position, ffn: Ffn) -> ModelConfig {
    ModelConfig {
        vocab_size: 11,
        context_length: 8,
        d_model: 8,
        n_layers: 2,
        n_heads: 2,
        d_ff: 12,
        rope_theta: 10000.0,
        norm,
        position,
        ffn,
    }
}

fn batch_of(c: &ModelConfig, batch: usize, seq: usize, seed: u64) -> (Vec<u32>, Vec<u32>) {
    let mut r = Lcg(seed);
    let n = batch * seq;
    let inputs = (0..n).map(|_| r.below(c.vocab_size)).collect();
    let targets = (0..n).map(|_| r.below(c.vocab_size)).collect();
    (inputs, targets)
}

/// A model with its gains perturbed away from 1 (so their gradients and roles are exercised)
/// and small random embeddings, from the crate's own init.
fn model_for(c: &ModelConfig, seed: u64) -> Model {
    let mut m = Model::new(c.clone(), seed).unwrap();
    let mut r = Lcg(seed ^ 0x5eed);
    for s in m.specs.clone() {
        if s.shape.len() == 1 {
            for x in &mut m.params[s.range()] {
                *x = 1.0 + 0.3 * r.next() as f32;
            }
        }
    }
    m
}

fn check(c: ModelConfig) {
    let (batch, seq) = (2, 5);
    let mut model = model_for(&c, 7);
    let (inputs, targets) = batch_of(&c, batch, seq, 3);
    let mut acts = Activations::new(&c, batch, seq);
    model.zero_grads();
    let loss = model.forward_backward(&mut acts, &inputs, &targets).unwrap();
    let p64 = to64(&model.params);
    let ref_loss = model_loss(&c, &p64, &inputs, &targets, batch, seq);
    assert!(
        (loss as f64 - ref_loss).abs() < 1e-5 * ref_loss.abs().max(1.0),
        "{c:?}: loss {loss} vs f64 {ref_loss}"
    );
    let eval = model.forward_loss(&mut acts, &inputs, &targets).unwrap();
    assert!(
        (eval - loss).abs() < 1e-6,
        "forward_loss {eval} vs forward_backward {loss}"
    );

    let num = numeric_grad(&p64, 1e-5, |p| model_loss(&c, p, &inputs, &targets, batch, seq));
    let mut worst = 0.0f64;
    for s in &model.specs {
        let r = s.range();
        let what = format!("{:?}/{:?}/{:?} d{}", c.norm, c.position, c.ffn, s.name);
        worst = worst.max(assert_close(&what, &model.grads[r.clone()], &num[r], 1e-5, 1e-6));
    }
    println!(
        "{:?}/{:?}/{:?}: worst relative gradient error {worst:.2e}",
        c.norm, c.position, c.ffn
    );
    // Gradients accumulate: a second call without zero_grads doubles them.
    let once = model.grads.clone();
    model.forward_backward(&mut acts, &inputs, &targets).unwrap();
    let twice: Vec<f64> = once.iter().map(|&g| 2.0 * g as f64).collect();
    assert_close("accumulated gradients", &model.grads, &twice, 1e-5, 1e-6);
}

/// A test per named ablation, `name: (norm, position, ffn)` (`Norm::norm`, ...), and `NAMED`,
/// the list of them that `every_other_ablation_combination` leaves out.
macro_rules! named_ablations {
    ($($name:ident: ($n:ident, $p:ident, $f:ident)),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                check(tiny(Norm::$n, Position::$p, Ffn::$f));
            }
        )*
        const NAMED: &[(Norm, Position, Ffn)] = &[$((Norm::$n, Position::$p, Ffn::$f)),*];
    };
}

named_ablations! {
    pre_norm_rope_swiglu: (Pre, Rope, Swiglu),
    post_norm: (Post, Rope, Swiglu),
    no_norm: (None, Rope, Swiglu),
    no_position: (Pre, None, Swiglu),
    silu_ffn: (Pre, Rope, Silu),
}

#[test]
fn every_other_ablation_combination() {
    for norm in [Norm::Pre, Norm::Post, Norm::None] {
        for position in [Position::Rope, Position::None] {
            for ffn in [Ffn::Swiglu, Ffn::Silu] {
                if !NAMED.contains(&(norm, position, ffn)) {
                    check(tiny(norm, position, ffn));
                }
            }
        }
    }
}

#[test]
fn logits_match_the_reference_across_attention_blocks() {
    // seq > the attention kernel's causal row block, d_head 16.
    let c = ModelConfig {
        vocab_size: 23,
        context_length: 140,
        d_model: 32,
        n_layers: 1,
        n_heads: 2,
        d_ff: 40,
        ..ModelConfig::tiny()
    };
    let (batch, seq) = (2, ferrolm_nn::cpu::attention::BLOCK + 5);
    let model = model_for(&c, 11);
    let (inputs, _) = batch_of(&c, batch, seq, 5);
    let mut acts = Activations::new(&c, batch, seq);
    let got = model.forward_logits(&mut acts, &inputs).unwrap().to_vec();
    let want = model_logits(&c, &to64(&model.params), &inputs, batch, seq);
    assert_close("logits", &got, &want, 1e-5, 1e-3);
}

#[test]
fn kv_cache_inference_matches_the_full_forward() {
    for norm in [Norm::Pre, Norm::Post, Norm::None] {
        let c = ModelConfig {
            context_length: 12,
            ..tiny(norm, Position::Rope, Ffn::Swiglu)
        };
        let (batch, seq) = (2, 9);
        let model = model_for(&c, 5);
        let (inputs, _) = batch_of(&c, batch, seq, 9);
        let mut acts = Activations::new(&c, batch, seq);
        let full = model.forward_logits(&mut acts, &inputs).unwrap().to_vec();
        let v = c.vocab_size;
        // Batch 2: a 4-token prompt per sequence, then one token at a time.
        let mut cache = KvCache::new(&c, batch, 10);
        let mut logits = vec![0.0; batch * v];
        let prompt: Vec<u32> = (0..batch)
            .flat_map(|b| inputs[b * seq..b * seq + 4].to_vec())
            .collect();
        model.forward_infer(&mut cache, &prompt, &mut logits).unwrap();
        for t in 3..seq {
            if t > 3 {
                let step: Vec<u32> = (0..batch).map(|b| inputs[b * seq + t]).collect();
                model.forward_infer(&mut cache, &step, &mut logits).unwrap();
            }
            for b in 0..batch {
                let row = (b * seq + t) * v;
                let want = to64(&full[row..row + v]);
                assert_close(
                    &format!("{norm:?} pos {t}"),
                    &logits[b * v..(b + 1) * v],
                    &want,
                    1e-5,
                    1e-3,
                );
            }
        }
        assert_eq!(cache.len, seq);
        // One more than max_len is an error, and the cache is untouched.
        let err = model.forward_infer(&mut cache, &[1, 2], &mut logits);
        assert!(matches!(err, Ok(())));
        assert!(model.forward_infer(&mut cache, &[1, 2], &mut logits).is_err());
        assert_eq!(cache.len, 10);
        cache.reset();
        assert_eq!(cache.len, 0);
    }
}

#[test]
fn bad_ids_and_shapes_are_errors() {
    let c = tiny(Norm::Pre, Position::Rope, Ffn::Swiglu);
    let mut model = model_for(&c, 1);
    let mut acts = Activations::new(&c, 1, 3);
    // The error's kind, and a message naming the id, its position and the vocabulary.
    let token = model
        .forward_backward(&mut acts, &[1, 11, 2], &[0, 0, 0])
        .unwrap_err();
    let target = model
        .forward_loss(&mut acts, &[1, 1, 2], &[0, 0, 99])
        .unwrap_err();
    assert!(matches!(token, NnError::TokenOutOfRange { .. }), "{token:?}");
    assert!(matches!(target, NnError::TargetOutOfRange { .. }), "{target:?}");
    for (err, what) in [
        (token, "token id 11 at position 1"),
        (target, "target id 99 at position 2"),
    ] {
        assert_eq!(
            err.to_string(),
            format!("{what} is outside the vocabulary (size 11)")
        );
    }
    assert!(model.forward_backward(&mut acts, &[1, 2], &[0, 0]).is_err());
    let mut long = Activations::new(&c, 1, 9);
    assert!(model.forward_loss(&mut long, &[0; 9], &[0; 9]).is_err());
    let mut cache = KvCache::new(&c, 1, 8);
    let mut logits = vec![0.0; 11];
    assert!(model.forward_infer(&mut cache, &[0; 9], &mut logits).is_err());
    assert!(model.forward_infer(&mut cache, &[0], &mut [0.0; 3]).is_err());
    assert!(model.grads.iter().all(|&g| g == 0.0));
}

#[test]
fn init_follows_the_contract_and_is_deterministic() {
    let c = ModelConfig::tiny();
    let m = Model::new(c.clone(), 42).unwrap();
    assert_eq!(m.params, Model::new(c.clone(), 42).unwrap().params);
    assert_ne!(m.params[..100], Model::new(c.clone(), 43).unwrap().params[..100]);
    let emb = m.param("token_embeddings.weight").unwrap();
    let std = |x: &[f32]| (x.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / x.len() as f64).sqrt();
    assert!(emb.iter().all(|x| x.abs() <= 3.0));
    // N(0,1) truncated at ±3 has std 0.9866.
    assert!((std(emb) - 0.9866).abs() < 0.01, "{}", std(emb));
    let w1 = m.param("layers.0.ffn.w1.weight").unwrap();
    let s = (2.0 / (256.0 + 672.0f64)).sqrt();
    assert!(w1.iter().all(|&x| (x as f64).abs() <= 3.0 * s + 1e-7));
    assert!((std(w1) / s - 0.9866).abs() < 0.01);
    assert!(m.param("layers.3.ln2.weight").unwrap().iter().all(|&g| g == 1.0));
    assert!(m.param("nope").is_none());
    let z = Model::zeros(c).unwrap();
    assert!(z.params.iter().all(|&x| x == 0.0));
}

#[test]
fn sgd_on_one_batch_drives_the_loss_down() {
    let c = tiny(Norm::Pre, Position::Rope, Ffn::Swiglu);
    let mut model = Model::new(c.clone(), 0).unwrap();
    let (inputs, targets) = batch_of(&c, 2, 8, 1);
    let mut acts = Activations::new(&c, 2, 8);
    let first = model.forward_loss(&mut acts, &inputs, &targets).unwrap();
    let mut last = first;
    for _ in 0..200 {
        model.zero_grads();
        last = model.forward_backward(&mut acts, &inputs, &targets).unwrap();
        for (p, g) in model.params.iter_mut().zip(&model.grads) {
            *p -= 0.1 * g;
        }
    }
    assert!(last < 0.3 * first, "loss {first} -> {last}");
}
