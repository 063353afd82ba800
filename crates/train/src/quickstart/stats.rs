//! Corpus statistics: the unigram entropy and held-out unigram cross-entropy, the baselines a
//! trained model's loss is judged against.

use std::collections::HashMap;

/// Entropy, in nats per token, of the unigram (single-token frequency) distribution of `tokens`:
/// −Σ p·ln p over the token ids' relative frequencies. It is the loss of the best model that
/// ignores context, so a language model that learned anything has a lower loss. 0 for an empty
/// sequence.
pub fn unigram_entropy(tokens: &[u32]) -> f64 {
    if tokens.is_empty() {
        return 0.0;
    }
    let mut counts: HashMap<u32, u64> = HashMap::new();
    for &t in tokens {
        *counts.entry(t).or_insert(0) += 1;
    }
    let n = tokens.len() as f64;
    counts
        .values()
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.ln()
        })
        .sum()
}

/// Cross-entropy, in nats per token, of a unigram model fit on `train` (add-one smoothing over
/// `vocab_size` ids) evaluated on `valid`: the held-out loss of the best context-free model, the
/// fair baseline for a validation loss.
pub fn unigram_cross_entropy(train: &[u32], valid: &[u32], vocab_size: usize) -> f64 {
    if valid.is_empty() {
        return 0.0;
    }
    let mut counts = vec![0u64; vocab_size];
    for &t in train {
        if let Some(c) = counts.get_mut(t as usize) {
            *c += 1;
        }
    }
    let total = train.len() as f64 + vocab_size as f64;
    let nll: f64 = valid
        .iter()
        .map(|&t| {
            let c = counts.get(t as usize).copied().unwrap_or(0) as f64 + 1.0;
            -(c / total).ln()
        })
        .sum();
    nll / valid.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unigram_entropy_matches_hand_computed_values() {
        assert_eq!(unigram_entropy(&[]), 0.0);
        assert_eq!(unigram_entropy(&[5, 5, 5]), 0.0);
        let h = unigram_entropy(&[1, 2, 1, 2]);
        assert!((h - 2f64.ln()).abs() < 1e-12);
        let h = unigram_entropy(&[0, 1, 2, 3, 0, 1, 2, 3]);
        assert!((h - 4f64.ln()).abs() < 1e-12);
        // p = (1/2, 1/4, 1/4): H = ½ln2 + ½ln4 = 1.5 ln 2.
        let h = unigram_entropy(&[7, 7, 8, 9]);
        assert!((h - 1.5 * 2f64.ln()).abs() < 1e-12);
        // Cross-entropy of a smoothed unigram on its own data is at least the entropy.
        let toks: Vec<u32> = (0..1000).map(|i| (i * i % 17) as u32).collect();
        assert!(unigram_cross_entropy(&toks, &toks, 17) >= unigram_entropy(&toks) - 1e-12);
    }
}
