//! The model in mixed precision (`Precision::Bf16`: bf16 matmul operands, f32 sums, f32
//! parameters and gradients) against the same model in f32: the loss and every gradient agree to
//! bf16's precision (not bit for bit), the bf16 path really changes the numbers, and a short
//! training run reaches the same loss.

use ferrolm_nn::model::{Activations, Model};
use ferrolm_nn::optim::{AdamW, AdamWConfig};
use ferrolm_nn::{ModelConfig, Precision};

fn config() -> ModelConfig {
    ModelConfig {
        vocab_size: 97,
        context_length: 32,
        d_model: 64,
        n_layers: 2,
        n_heads: 4,
        d_ff: 176,
        ..ModelConfig::preset("tiny").unwrap()
    }
}

/// Random ids from a simple LCG (deterministic, no dependency).
fn ids(n: usize, vocab: usize, seed: u64) -> Vec<u32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 33) % vocab as u64) as u32
        })
        .collect()
}

fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    let num: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
        .sum();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (num / den.max(1e-300)).sqrt()
}

#[test]
fn bf16_loss_and_gradients_match_f32_to_bf16_precision() {
    let c = config();
    let (batch, seq) = (3, 32);
    let inputs = ids(batch * seq, c.vocab_size, 1);
    let targets = ids(batch * seq, c.vocab_size, 2);
    let mut acts = Activations::new(&c, batch, seq);
    let mut m32 = Model::new(c.clone(), 5).unwrap();
    let mut m16 = Model::new(c.clone(), 5).unwrap();
    m16.precision = Precision::Bf16;
    let l32 = m32.forward_backward(&mut acts, &inputs, &targets).unwrap();
    let l16 = m16.forward_backward(&mut acts, &inputs, &targets).unwrap();
    // bf16 keeps 8 significant bits (relative rounding 2^-9 ≈ 2e-3) on each operand.
    eprintln!("loss f32 {l32} bf16 {l16}");
    assert!((l32 - l16).abs() < 1e-2, "loss f32 {l32} vs bf16 {l16}");
    assert_ne!(
        l32, l16,
        "the bf16 path gave the f32 loss bit for bit: precision ignored?"
    );
    for s in &m32.specs {
        let e = rel_err(&m16.grads[s.range()], &m32.grads[s.range()]);
        eprintln!("{}: relative error {e:.2e}", s.name);
        assert!(e < 3e-2, "{}: relative gradient error {e:.2e}", s.name);
        assert!(e > 0.0, "{}: identical gradients in bf16", s.name);
    }
    // Forward-only paths use the precision too.
    let lf16 = m16.forward_loss(&mut acts, &inputs, &targets).unwrap();
    assert_eq!(lf16, l16, "forward_loss and forward_backward disagree in bf16");
}

#[test]
fn bf16_training_reaches_the_f32_loss() {
    // A learnable task: each sequence counts up from a random start (mod vocab), so the next
    // token is predictable from the current one.
    let c = config();
    let (batch, seq) = (4, 32);
    let run = |precision: Precision| -> (f32, f32) {
        let mut model = Model::new(c.clone(), 11).unwrap();
        model.precision = precision;
        let mut opt = AdamW::new(
            AdamWConfig {
                lr: 3e-3,
                ..AdamWConfig::default()
            },
            model.params.len(),
        );
        let mut acts = Activations::new(&c, batch, seq);
        let (mut first, mut last) = (0.0, 0.0);
        for step in 0..80 {
            let starts = ids(batch, c.vocab_size, 100 + step);
            let seqs: Vec<u32> = starts
                .iter()
                .flat_map(|&s| (0..=seq as u32).map(move |i| (s + i) % c.vocab_size as u32))
                .collect();
            let (mut inputs, mut targets) = (Vec::new(), Vec::new());
            for row in seqs.chunks(seq + 1) {
                inputs.extend_from_slice(&row[..seq]);
                targets.extend_from_slice(&row[1..]);
            }
            model.zero_grads();
            let loss = model.forward_backward(&mut acts, &inputs, &targets).unwrap();
            opt.step(&mut model.params, &model.grads, 3e-3);
            if step == 0 {
                first = loss;
            }
            last = loss;
        }
        (first, last)
    };
    let (first32, last32) = run(Precision::F32);
    let (first16, last16) = run(Precision::Bf16);
    eprintln!("f32 {first32} → {last32}, bf16 {first16} → {last16}");
    assert!(last32 < 0.5 * first32, "f32 did not learn: {first32} → {last32}");
    assert!(last16 < 0.5 * first16, "bf16 did not learn: {first16} → {last16}");
    assert!(
        (last16 - last32).abs() < 0.05 * last32.max(0.2),
        "f32 {last32} vs bf16 {last16}"
    );
}
