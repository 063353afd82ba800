//! Sampling the next token from logits: greedy, temperature, top-p (nucleus), seeded.

use crate::Rng;

mod nucleus;
#[cfg(test)]
use nucleus::order_key;
use nucleus::select_nucleus;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SamplingConfig {
    /// 0 means greedy (argmax).
    pub temperature: f32,
    /// Nucleus mass in (0, 1]; 1 disables top-p.
    pub top_p: f32,
}

impl Default for SamplingConfig {
    /// Plain sampling from softmax(logits): temperature 1, no nucleus.
    fn default() -> Self {
        SamplingConfig {
            temperature: 1.0,
            top_p: 1.0,
        }
    }
}

/// The index of the largest logit (the first one on ties); NaN logits are never chosen
/// (0 if all are NaN). Panics on empty logits.
pub fn argmax(logits: &[f32]) -> u32 {
    assert!(!logits.is_empty(), "argmax of empty logits");
    // The first logit equal to the largest (±0 compare equal, as the largest is only ever
    // replaced by a strictly larger one); none if all are NaN.
    let max = max_logit(logits);
    logits.iter().position(|&x| x == max).unwrap_or(0) as u32
}

/// The largest non-NaN logit (-inf if there is none): `logits[argmax(logits)]` up to the sign of
/// a zero (which changes no weight below), in 16 independent lanes that the compiler vectorizes
/// (NaN fails the comparison, so it is skipped). Panics on empty logits.
fn max_logit(logits: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; 16];
    let chunks = logits.chunks_exact(16);
    let rest = chunks.remainder();
    for c in chunks {
        for (m, &x) in lanes.iter_mut().zip(c) {
            *m = if x > *m { x } else { *m };
        }
    }
    for (m, &x) in lanes.iter_mut().zip(rest) {
        *m = if x > *m { x } else { *m };
    }
    lanes
        .into_iter()
        .fold(f32::NEG_INFINITY, |a, x| if x > a { x } else { a })
}

/// Draws a token id from `logits` (vocab). `scratch` is reused memory (any length) to avoid
/// allocating per token.
///
/// - `temperature <= 0` (or non-finite logits at the top): greedy, [`argmax`].
/// - otherwise p = softmax(logits / temperature), computed stably (max subtracted);
/// - `top_p < 1`: sampling is restricted to the nucleus, the smallest set of most probable tokens
///   whose mass reaches `top_p` (at least one token; ties broken by lower id), renormalized.
///
/// Exactly one uniform number is drawn from `rng` per sampled token (none for greedy), so equal
/// seeds give equal tokens. NaN logits get probability 0. Panics on empty logits.
pub fn sample(logits: &[f32], cfg: SamplingConfig, rng: &mut Rng, scratch: &mut Vec<(f32, u32)>) -> u32 {
    // scratch: the (weight, id) pairs, then as many pairs of working space (the candidates, the
    // radix sort).
    sample_with(logits, cfg, rng, scratch, |pairs, want| {
        pairs.resize(2 * logits.len(), (0.0, 0));
        select_nucleus(pairs, want)
    })
}

/// [`sample`] with the nucleus chosen by `nucleus(pairs, want)`: given the (weight, id) pairs of
/// the vocabulary, it reorders them so that the first `count` are the nucleus in descending order
/// (ties by lower id), the shortest prefix whose mass reaches `want`, and returns (count, mass).
/// (The tests pass the implementation before the radix sort, as the reference.)
fn sample_with(
    logits: &[f32],
    cfg: SamplingConfig,
    rng: &mut Rng,
    scratch: &mut Vec<(f32, u32)>,
    nucleus: impl FnOnce(&mut Vec<(f32, u32)>, f64) -> (usize, f64),
) -> u32 {
    assert!(!logits.is_empty(), "sample from empty logits");
    if cfg.temperature.is_nan() || cfg.temperature <= 0.0 {
        return argmax(logits);
    }
    let max = max_logit(logits);
    if !max.is_finite() {
        // +inf dominates (or every logit is NaN / -inf): the distribution is a point mass.
        return argmax(logits);
    }
    let inv_t = 1.0 / cfg.temperature as f64;
    let weight = |x: f32| -> f64 {
        if x.is_nan() {
            0.0
        } else {
            ((x as f64 - max as f64) * inv_t).exp()
        }
    };
    if cfg.top_p.is_nan() || cfg.top_p >= 1.0 {
        // Full distribution: two passes, no scratch needed.
        let total: f64 = logits.iter().map(|&x| weight(x)).sum();
        let target = rng.uniform() * total;
        let mut acc = 0.0;
        // The largest logit's weight is 1, so `last` is always set.
        let mut last = 0;
        for (i, &x) in logits.iter().enumerate() {
            let w = weight(x);
            if w > 0.0 {
                acc += w;
                last = i as u32;
                if acc > target {
                    return i as u32;
                }
            }
        }
        return last;
    }
    // Nucleus: the smallest prefix, in order of descending weight (ties by lower id), whose mass
    // reaches top_p (`select_nucleus`: no comparison sort of the whole vocabulary). The order is
    // total, so the result equals a full sort's.
    scratch.clear();
    scratch.extend(
        logits
            .iter()
            .enumerate()
            .map(|(i, &x)| (weight(x) as f32, i as u32)),
    );
    let total: f64 = scratch.iter().map(|&(w, _)| w as f64).sum();
    let want = cfg.top_p.max(0.0) as f64 * total;
    let (count, mass) = nucleus(scratch, want);
    let target = rng.uniform() * mass;
    let mut acc = 0.0;
    for &(w, id) in &scratch[..count] {
        acc += w as f64;
        if acc > target {
            return id;
        }
    }
    scratch[count - 1].1
}

/// The nucleus by a full sort, the plain definition `sample` is tested against.
#[cfg(test)]
fn nucleus_by_full_sort(logits: &[f32], temperature: f32, top_p: f32) -> Vec<u32> {
    let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
    let mut w: Vec<(f32, u32)> = logits
        .iter()
        .enumerate()
        .map(|(i, &x)| ((((x as f64 - max) / temperature as f64).exp()) as f32, i as u32))
        .collect();
    let total: f64 = w.iter().map(|&(w, _)| w as f64).sum();
    w.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut mass = 0.0;
    let mut out = Vec::new();
    for (x, id) in w {
        mass += x as f64;
        out.push(id);
        if mass >= top_p as f64 * total {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn softmax(logits: &[f32], t: f64) -> Vec<f64> {
        let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
        let e: Vec<f64> = logits.iter().map(|&x| ((x as f64 - max) / t).exp()).collect();
        let s: f64 = e.iter().sum();
        e.iter().map(|x| x / s).collect()
    }

    fn counts(logits: &[f32], cfg: SamplingConfig, seed: u64, n: usize) -> Vec<usize> {
        let mut rng = Rng::new(seed);
        let mut scratch = Vec::new();
        let mut c = vec![0; logits.len()];
        for _ in 0..n {
            c[sample(logits, cfg, &mut rng, &mut scratch) as usize] += 1;
        }
        c
    }

    #[test]
    fn greedy_is_argmax_and_draws_nothing() {
        let logits = [0.1f32, 2.5, -1.0, 2.5, f32::NAN];
        let mut rng = Rng::new(5);
        let before = rng.clone();
        let cfg = SamplingConfig {
            temperature: 0.0,
            top_p: 0.9,
        };
        assert_eq!(sample(&logits, cfg, &mut rng, &mut Vec::new()), 1);
        assert_eq!(rng, before);
        assert_eq!(argmax(&[f32::NAN, -3.0, -2.0]), 2);
        assert_eq!(argmax(&[f32::NEG_INFINITY, f32::NEG_INFINITY]), 0);
        // A tiny temperature is effectively greedy, with no overflow.
        let cfg = SamplingConfig {
            temperature: 1e-6,
            top_p: 1.0,
        };
        assert_eq!(counts(&[1e4, -1e4, 1e4 - 1.0], cfg, 1, 100)[0], 100);
    }

    #[test]
    fn temperature_matches_softmax_statistically() {
        let logits = [1.0f32, 0.0, -1.0, 2.0, 0.5, -3.0];
        let n = 200_000;
        for t in [0.5f32, 1.0, 2.0] {
            let cfg = SamplingConfig {
                temperature: t,
                top_p: 1.0,
            };
            let c = counts(&logits, cfg, 42, n);
            let p = softmax(&logits, t as f64);
            for (i, (&ci, &pi)) in c.iter().zip(&p).enumerate() {
                // Binomial standard deviation √(n p (1−p)); allow 5σ.
                let sd = (n as f64 * pi * (1.0 - pi)).sqrt();
                let diff = (ci as f64 - n as f64 * pi).abs();
                assert!(
                    diff <= 5.0 * sd + 1.0,
                    "T {t} token {i}: {ci} vs expected {}",
                    n as f64 * pi
                );
            }
        }
    }

    #[test]
    fn top_p_restricts_support_to_the_nucleus_and_renormalizes() {
        // softmax of ln(p) is p: 0.5, 0.3, 0.15, 0.05.
        let logits: Vec<f32> = [0.5f32, 0.3, 0.15, 0.05].iter().map(|p| p.ln()).collect();
        let n = 100_000;
        // top_p 0.7: nucleus {0, 1} (0.5 < 0.7 ≤ 0.8); renormalized 0.625 / 0.375.
        let c = counts(
            &logits,
            SamplingConfig {
                temperature: 1.0,
                top_p: 0.7,
            },
            9,
            n,
        );
        assert_eq!(c[2] + c[3], 0, "{c:?}");
        let f0 = c[0] as f64 / n as f64;
        assert!((f0 - 0.625).abs() < 0.01, "{f0}");
        // top_p 0.5: exactly the top token's mass suffices → always token 0.
        let c = counts(
            &logits,
            SamplingConfig {
                temperature: 1.0,
                top_p: 0.5,
            },
            9,
            1000,
        );
        assert_eq!(c[0], 1000);
        // top_p 0.94: nucleus is the first three (0.8 < 0.94 ≤ 0.95).
        let c = counts(
            &logits,
            SamplingConfig {
                temperature: 1.0,
                top_p: 0.94,
            },
            9,
            n,
        );
        assert_eq!(c[3], 0);
        assert!(c[2] > 0);
        // top_p 1 keeps everything.
        let c = counts(
            &logits,
            SamplingConfig {
                temperature: 1.0,
                top_p: 1.0,
            },
            9,
            n,
        );
        assert!(c.iter().all(|&x| x > 0));
    }

    #[test]
    fn same_seed_same_tokens_and_scratch_is_reused() {
        let logits: Vec<f32> = (0..1000).map(|i| ((i * 37) % 101) as f32 * 0.05).collect();
        let cfg = SamplingConfig {
            temperature: 0.8,
            top_p: 0.9,
        };
        let run = |seed| {
            let mut rng = Rng::new(seed);
            let mut scratch = Vec::new();
            let toks: Vec<u32> = (0..200)
                .map(|_| sample(&logits, cfg, &mut rng, &mut scratch))
                .collect();
            (toks, scratch.capacity())
        };
        let (a, cap) = run(3);
        assert_eq!(a, run(3).0);
        assert_ne!(a, run(4).0);
        assert!((1000..4096).contains(&cap));
        // The plain path gives the same stream for equal seeds too.
        let cfg = SamplingConfig::default();
        let mut r1 = Rng::new(8);
        let mut r2 = Rng::new(8);
        let mut s = Vec::new();
        for _ in 0..100 {
            assert_eq!(
                sample(&logits, cfg, &mut r1, &mut s),
                sample(&logits, cfg, &mut r2, &mut s)
            );
        }
    }

    #[test]
    fn partial_selection_gives_the_full_sort_nucleus() {
        // Flat and peaked distributions over 5000 tokens with many ties, nuclei from 1 token to
        // nearly all (few candidates, over 2048 of them, the radix sort): exactly the full sort's
        // nucleus, in order.
        let mut rng = Rng::new(11);
        for spread in [0.01f32, 1.0, 3.0, 20.0] {
            let logits: Vec<f32> = (0..5000)
                .map(|_| ((rng.normal() as f32) * spread).round())
                .collect();
            for top_p in [0.0f32, 0.1, 0.5, 0.9, 0.99, 0.999_999] {
                let want = nucleus_by_full_sort(&logits, 1.0, top_p);
                let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
                let mut w: Vec<(f32, u32)> = logits
                    .iter()
                    .enumerate()
                    .map(|(i, &x)| ((x as f64 - max).exp() as f32, i as u32))
                    .collect();
                let total: f64 = w.iter().map(|&(x, _)| x as f64).sum();
                w.resize(2 * w.len(), (0.0, 0));
                let (count, _) = select_nucleus(&mut w, top_p as f64 * total);
                let got: Vec<u32> = w[..count].iter().map(|&(_, id)| id).collect();
                assert_eq!(got, want, "spread {spread} top_p {top_p}");
            }
        }
    }

    /// The plain argmax: the first non-NaN logit strictly larger than all before it.
    fn argmax_by_scan(logits: &[f32]) -> u32 {
        let mut best = 0usize;
        let mut best_val = f32::NEG_INFINITY;
        let mut found = false;
        for (i, &x) in logits.iter().enumerate() {
            if !x.is_nan() && (!found || x > best_val) {
                best = i;
                best_val = x;
                found = true;
            }
        }
        best as u32
    }

    #[test]
    fn max_logit_and_argmax_equal_the_plain_scan() {
        let mut rng = Rng::new(3);
        for n in [1usize, 15, 16, 17, 100, 1000] {
            for case in 0..20 {
                let mut logits: Vec<f32> = (0..n).map(|_| rng.normal() as f32).collect();
                if case % 4 == 1 {
                    logits[(case * 7) % n] = f32::NAN;
                }
                if case % 4 == 2 {
                    logits.iter_mut().for_each(|x| *x = f32::NAN);
                }
                if case % 4 == 3 {
                    logits[(case * 5) % n] = f32::INFINITY;
                }
                if case % 5 == 4 {
                    // Ties, ±0 and -inf.
                    logits.iter_mut().for_each(|x| *x = (*x).round().min(0.0));
                    logits[(case * 3) % n] = -0.0;
                    logits[(case * 11) % n] = f32::NEG_INFINITY;
                }
                let top = argmax_by_scan(&logits);
                assert_eq!(argmax(&logits), top, "n {n} case {case}");
                let want = logits[top as usize];
                let got = max_logit(&logits);
                if want.is_nan() {
                    assert_eq!(got, f32::NEG_INFINITY, "n {n} case {case}");
                } else {
                    assert_eq!(got.to_bits(), want.to_bits(), "n {n} case {case}");
                }
            }
        }
    }

    #[test]
    fn extreme_and_masked_logits() {
        let cfg = SamplingConfig {
            temperature: 1.0,
            top_p: 0.9,
        };
        let c = counts(
            &[f32::NEG_INFINITY, 0.0, f32::NEG_INFINITY, f32::NAN],
            cfg,
            2,
            100,
        );
        assert_eq!(c[1], 100);
        let c = counts(&[-1e30, 1e30, 0.0], SamplingConfig::default(), 2, 100);
        assert_eq!(c[1], 100);
        assert_eq!(
            counts(&[0.0, f32::INFINITY], SamplingConfig::default(), 2, 10)[1],
            10
        );
    }

    /// `sample` as it was before the radix sort (top k selected and sorted, k growing 8x): the
    /// reference the current one must equal token for token.
    fn sample_before(
        logits: &[f32],
        cfg: SamplingConfig,
        rng: &mut Rng,
        scratch: &mut Vec<(f32, u32)>,
    ) -> u32 {
        sample_with(logits, cfg, rng, scratch, |pairs, want| {
            select_nucleus_before(pairs, want)
        })
    }

    /// The nucleus selection before the radix sort: only the top k are selected (O(vocab)) and
    /// sorted, k growing 8x until the prefix is found (a trained model's nucleus is usually a few
    /// dozen tokens, so a full sort of the vocabulary per token is avoided). The order is total,
    /// so the result equals a full sort's.
    fn select_nucleus_before(weights: &mut [(f32, u32)], want: f64) -> (usize, f64) {
        let n = weights.len();
        let mut k = 64.min(n);
        loop {
            if k < n {
                weights.select_nth_unstable_by_key(k - 1, order_key);
            }
            weights[..k].sort_unstable_by_key(order_key);
            let mut mass = 0.0;
            let found = weights[..k].iter().position(|&(w, _)| {
                mass += w as f64;
                mass >= want
            });
            match found {
                Some(i) => {
                    let mass = weights[..=i].iter().map(|&(w, _)| w as f64).sum();
                    return (i + 1, mass);
                }
                None if k == n => return (n, mass),
                None => k = (k * 8).min(n),
            }
        }
    }

    #[test]
    fn sample_equals_the_implementation_before_the_radix_sort() {
        // Random logit vectors (vocabularies around the 64 / 512 selection sizes and the presets'
        // 10000; flat, peaked and heavily tied), seeds, temperatures and top_p values: the same
        // token and the same RNG state after every draw, and the same kept set in the same order.
        let mut gen = Rng::new(2024);
        let mut draws = 0;
        for case in 0..120 {
            let n = [1usize, 7, 64, 65, 500, 513, 2000, 10000][case % 8];
            let spread = [0.001f32, 0.3, 1.0, 4.0, 30.0][case % 5];
            let ties = case % 3 == 0;
            let logits: Vec<f32> = (0..n)
                .map(|_| {
                    let x = gen.normal() as f32 * spread;
                    if ties {
                        (x * 2.0).round() / 2.0
                    } else {
                        x
                    }
                })
                .collect();
            for (temperature, top_p) in [
                (1.0f32, 0.9f32),
                (0.8, 0.95),
                (0.3, 0.5),
                (2.0, 0.999),
                (1.0, 1e-6),
                (0.7, 1.0),
            ] {
                let cfg = SamplingConfig { temperature, top_p };
                let seed = gen.uniform().to_bits();
                let (mut r1, mut r2) = (Rng::new(seed), Rng::new(seed));
                let (mut s1, mut s2) = (Vec::new(), Vec::new());
                for _ in 0..4 {
                    let a = sample(&logits, cfg, &mut r1, &mut s1);
                    let b = sample_before(&logits, cfg, &mut r2, &mut s2);
                    assert_eq!(a, b, "case {case} n {n} T {temperature} top_p {top_p}");
                    assert_eq!(r1, r2);
                    draws += 1;
                }
                if top_p < 1.0 && n > 0 {
                    let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
                    let pairs: Vec<(f32, u32)> = logits
                        .iter()
                        .enumerate()
                        .map(|(i, &x)| ((((x as f64 - max) / temperature as f64).exp()) as f32, i as u32))
                        .collect();
                    let total: f64 = pairs.iter().map(|&(w, _)| w as f64).sum();
                    let want = top_p as f64 * total;
                    let mut old = pairs.clone();
                    let (c_old, m_old) = select_nucleus_before(&mut old, want);
                    let mut new = pairs.clone();
                    new.resize(2 * n, (0.0, 0));
                    let (c_new, m_new) = select_nucleus(&mut new, want);
                    assert_eq!((c_new, m_new.to_bits()), (c_old, m_old.to_bits()), "case {case}");
                    assert_eq!(&new[..c_new], &old[..c_old], "case {case}");
                }
            }
        }
        assert!(draws > 2000);
    }
}
