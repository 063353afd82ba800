//! Tests of incremental inference: batched and batch-1 paths against each other and the full
//! forward, bf16 weights, the model's precision, errors.

use super::*;
use crate::testing::for_each_pool;

fn config() -> ModelConfig {
    ModelConfig {
        vocab_size: 97,
        context_length: 16,
        d_model: 48,
        n_layers: 2,
        n_heads: 3,
        d_ff: 72,
        ..ModelConfig::tiny()
    }
}

/// Logits per step, batch 2: a `prompt`-token prompt per sequence, then one token per step
/// (fixed tokens, so every run sees the same inputs).
fn run(model: &Model, bf16: Option<&Bf16Weights>, prompt: usize) -> Vec<Vec<f32>> {
    let c = &model.config;
    let mut cache = KvCache::new(c, 2, 12);
    let mut logits = vec![0.0; 2 * c.vocab_size];
    let mut steps = Vec::new();
    let mut tokens: Vec<u32> = (0..2 * prompt as u32).map(|i| (i * 31 + 5) % 97).collect();
    for i in 0..12 - prompt as u32 {
        match bf16 {
            Some(w) => model.forward_infer_bf16(w, &mut cache, &tokens, &mut logits),
            None => model.forward_infer(&mut cache, &tokens, &mut logits),
        }
        .unwrap();
        steps.push(logits.clone());
        tokens = vec![(i * 7 + 3) % 97, (i * 13 + 2) % 97];
    }
    steps
}

/// The largest |a − b| over all steps, relative to the largest |a| of its step.
fn worst_relative(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    let mut worst = 0.0f32;
    for (a, b) in a.iter().zip(b) {
        let scale = a.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        for (x, y) in a.iter().zip(b) {
            worst = worst.max((x - y).abs() / scale);
        }
    }
    worst
}

#[test]
fn bf16_decode_logits_are_within_tolerance_of_f32() {
    let model = Model::new(config(), 11).unwrap();
    let w = model.bf16_weights();
    // The same weights rounded to bf16 but read through the f32 path: with a 1-token prompt
    // (every call decodes) the bf16 path must agree with it to f32 rounding, since only the
    // storage of the weights differs.
    // (The embedding and the norm gains stay f32 in the bf16 path.)
    let mut rounded = Model::new(config(), 11).unwrap();
    let c = config();
    let mut matrices = vec![layout::lm_head(&c)];
    for l in 0..c.n_layers {
        let r = layout::layer(&c, l);
        matrices.extend([r.wq, r.wk, r.wv, r.wo, r.w1, r.w2, r.w3]);
    }
    for range in matrices {
        for p in &mut rounded.params[range] {
            *p = crate::cpu::simd::round_bf16(*p);
        }
    }
    let bf16_steps = run(&model, Some(&w), 1);
    let exact = worst_relative(&run(&rounded, None, 1), &bf16_steps);
    assert!(exact < 1e-5, "bf16 path vs rounded weights in f32: {exact}");
    // Against f32 weights: bf16 keeps 8 significant bits (rounding error ≤ 2^-9 per weight).
    // Also with a 5-token prompt (10 rows, through `gemv_batch`) before the decode steps.
    for prompt in [1, 5] {
        let worst = worst_relative(&run(&model, None, prompt), &run(&model, Some(&w), prompt));
        assert!(
            worst < 2e-2,
            "prompt {prompt}: bf16 logits differ from f32 by {worst} of the largest"
        );
        assert!(
            worst > 1e-5,
            "prompt {prompt}: the bf16 path was not taken ({worst})"
        );
    }
}

/// Logits of every call for batch 1: a `prompt`-token prompt, then single tokens (the decode
/// step), all through the general path when `general` is set.
fn run_batch1(model: &Model, bf16: Option<&Bf16Weights>, prompt: usize, general: bool) -> Vec<Vec<f32>> {
    FORCE_GENERAL_PATH.with(|f| f.set(general));
    let c = &model.config;
    let max_len = c.context_length.min(13);
    let mut cache = KvCache::new(c, 1, max_len);
    let mut logits = vec![0.0; c.vocab_size];
    let mut steps = Vec::new();
    let v = c.vocab_size as u32;
    let mut tokens: Vec<u32> = (0..prompt as u32).map(|i| (i * 31 + 5) % v).collect();
    for i in 0..(max_len - prompt) as u32 {
        match bf16 {
            Some(w) => model.forward_infer_bf16(w, &mut cache, &tokens, &mut logits),
            None => model.forward_infer(&mut cache, &tokens, &mut logits),
        }
        .unwrap();
        if !general && ops::decode_step_supported(c) && tokens.len() == 1 {
            assert_eq!(cache.last_argmax(), Some(crate::sample::argmax(&logits)));
        } else {
            assert_eq!(cache.last_argmax(), None);
        }
        steps.push(logits.clone());
        tokens = vec![(i * 7 + 3) % v];
    }
    FORCE_GENERAL_PATH.with(|f| f.set(false));
    // The decode step ran unless the general path was forced.
    assert_eq!(cache.decode.is_some(), !general && ops::decode_step_supported(c));
    steps
}

#[test]
fn decode_step_is_bit_identical_to_the_general_path() {
    // Odd sizes (d_head 16, 10 and 5 (no RoPE), d_ff 72 and 100, vocab 97), every supported
    // norm / FFN / position variant, f32 and bf16 weights, prompts of 1 and 4 tokens (the
    // general path fills the cache the decode step then reads), 1, 2 and 3 threads, called
    // from inside the pool and from outside it.
    let variants = [
        config(),
        ModelConfig {
            d_model: 30,
            n_heads: 3,
            d_ff: 100,
            ..config()
        },
        ModelConfig {
            d_model: 15,
            n_heads: 3,
            position: Position::None,
            ..config()
        },
        ModelConfig {
            norm: Norm::None,
            ffn: Ffn::Silu,
            ..config()
        },
        ModelConfig {
            position: Position::None,
            n_layers: 3,
            ..config()
        },
        ModelConfig {
            vocab_size: 3000,
            d_model: 64,
            n_heads: 4,
            d_ff: 160,
            ..config()
        },
    ];
    for c in variants {
        let model = Model::new(c.clone(), 5).unwrap();
        let w = model.bf16_weights();
        for bf16 in [None, Some(&w)] {
            for prompt in [1, 4] {
                let want = run_batch1(&model, bf16, prompt, true);
                for_each_pool(&[1, 2, 3], |threads, pool| {
                    let inside = pool.install(|| run_batch1(&model, bf16, prompt, false));
                    assert!(
                        inside == want,
                        "{c:?} bf16 {} prompt {prompt}: {threads} threads differ",
                        bf16.is_some()
                    );
                    // From a thread outside any pool (the calling thread then is the first
                    // participant and the global pool's workers the helpers).
                    assert!(run_batch1(&model, bf16, prompt, false) == want);
                });
            }
        }
    }
}

#[test]
fn kv_cache_stays_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<KvCache>();
}

#[test]
fn decode_step_does_not_deadlock_when_called_from_busy_workers() {
    // Two generations at once on a 2-thread pool: each caller is a worker, and the helper it
    // asks for is the other, busy, worker.
    let model = Model::new(config(), 5).unwrap();
    let want = run_batch1(&model, None, 1, true);
    let pool = crate::testing::pool(2);
    let (a, b) = pool.install(|| {
        rayon::join(
            || run_batch1(&model, None, 1, false),
            || run_batch1(&model, None, 1, false),
        )
    });
    assert!(a == want && b == want);
}

/// `forward_infer` reads the weights in `Model::precision`, as training does: in bf16 the
/// same logits, bit for bit, as `forward_infer_bf16` with the explicit snapshot, on the
/// batched path and the batch-1 decode step; a new sequence takes a new snapshot.
#[test]
fn forward_infer_reads_the_weights_in_the_models_precision() {
    let mut model = Model::new(config(), 21).unwrap();
    let f32_logits = run(&model, None, 3);
    let w = model.bf16_weights();
    let (explicit, explicit1) = (run(&model, Some(&w), 3), run_batch1(&model, Some(&w), 2, false));
    model.precision = Precision::Bf16;
    assert_eq!(run(&model, None, 3), explicit);
    assert_eq!(run_batch1(&model, None, 2, false), explicit1);
    assert_ne!(explicit, f32_logits, "bf16 precision ignored");
    // After the parameters change, a reset cache reads the new ones.
    let mut cache = KvCache::new(&model.config, 1, 8);
    let mut logits = vec![0.0; model.config.vocab_size];
    model.forward_infer(&mut cache, &[1, 2], &mut logits).unwrap();
    model.params.iter_mut().for_each(|p| *p *= 0.5);
    cache.reset();
    model.forward_infer(&mut cache, &[1, 2], &mut logits).unwrap();
    let mut want = vec![0.0; model.config.vocab_size];
    let mut fresh = KvCache::new(&model.config, 1, 8);
    model
        .forward_infer_bf16(&model.bf16_weights(), &mut fresh, &[1, 2], &mut want)
        .unwrap();
    assert_eq!(logits, want);
}

#[test]
fn bf16_weights_of_another_model_are_rejected() {
    let model = Model::new(config(), 11).unwrap();
    let other = Model::new(ModelConfig { d_ff: 80, ..config() }, 11).unwrap();
    let mut cache = KvCache::new(&model.config, 1, 4);
    let mut logits = vec![0.0; 97];
    let err = model.forward_infer_bf16(&other.bf16_weights(), &mut cache, &[1], &mut logits);
    assert!(err.is_err());
    assert_eq!(cache.len, 0);
}
