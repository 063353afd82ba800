//! Attention of one new query per sequence over the KV cache (decoding): the keys are kept
//! transposed per head (`store_keys_transposed`), so the scores are d_head vector multiply-adds
//! over the positions (`attention_decode` for a batch, `decode_head` for one head).

use crate::cpu::gemm::gemv::PARALLEL_MIN_ELEMS;
use crate::cpu::simd;
use rayon::prelude::*;

/// Attention of one new position per sequence over the KV cache (generation):
/// `out (batch, d)`, `q (batch, d)` (after RoPE), keys stored transposed per head
/// `k_t (batch, n_heads, d_head, max_len)` and values `v_cache (batch, max_len, d)`, the first
/// `n_keys` positions filled (the new one included); d = n_heads·d_head. Scaled dot-product
/// softmax attention per head, no mask needed (every cached key precedes the query). With the
/// keys transposed the scores are d_head vector multiply-adds over the positions, with no
/// horizontal sums. Parallel over (sequence, head) pairs. Overwrites out.
#[allow(clippy::too_many_arguments)]
pub fn attention_decode(
    out: &mut [f32],
    q: &[f32],
    k_t: &[f32],
    v_cache: &[f32],
    batch: usize,
    n_keys: usize,
    max_len: usize,
    n_heads: usize,
    d_head: usize,
) {
    let d = n_heads * d_head;
    assert_eq!(out.len(), batch * d, "attention_decode: out");
    assert_eq!(q.len(), batch * d, "attention_decode: q");
    assert_eq!(k_t.len(), batch * max_len * d, "attention_decode: k_t");
    assert_eq!(v_cache.len(), batch * max_len * d, "attention_decode: v_cache");
    assert!(n_keys >= 1 && n_keys <= max_len, "attention_decode: n_keys");
    if d_head == 0 {
        return;
    }
    let scale = 1.0 / (d_head as f32).sqrt();
    let units = batch * n_heads;
    let threads = rayon::current_num_threads();
    let per = if threads > 1 && n_keys * d * batch >= PARALLEL_MIN_ELEMS {
        units.div_ceil(threads)
    } else {
        units
    };
    out.par_chunks_mut(per * d_head)
        .enumerate()
        .with_max_len(1)
        .for_each(|(c, out)| {
            let mut scores = vec![0.0f32; n_keys];
            for (j, o) in out.chunks_exact_mut(d_head).enumerate() {
                let unit = c * per + j;
                let (b, h) = (unit / n_heads, unit % n_heads);
                let qh = &q[b * d + h * d_head..][..d_head];
                let kt = &k_t[unit * d_head * max_len..][..d_head * max_len];
                let vc = &v_cache[b * max_len * d + h * d_head..];
                decode_head(o, &mut scores, qh, kt, vc, max_len, d, scale);
            }
        });
}

/// One head: scores[u] = scale·Σ_j q_j·kt[j][u], softmax, o = Σ_u p_u v_u; kt rows of length
/// max_len, values at stride d.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn decode_head_body(
    o: &mut [f32],
    scores: &mut [f32],
    q: &[f32],
    kt: &[f32],
    vc: &[f32],
    max_len: usize,
    d: usize,
    scale: f32,
) {
    let dh = q.len();
    let n = scores.len();
    // Blocks of 64 positions: the 64 partial scores stay in registers over the d_head rows.
    const B: usize = 64;
    let mut u0 = 0;
    while u0 + B <= n {
        let mut acc = [0.0f32; B];
        for (&qj, row) in q.iter().zip(kt.chunks_exact(max_len)) {
            let row: &[f32; B] = row[u0..u0 + B].try_into().expect("64 positions");
            for i in 0..B {
                acc[i] += qj * row[i];
            }
        }
        for (s, a) in scores[u0..u0 + B].iter_mut().zip(acc) {
            *s = a * scale;
        }
        u0 += B;
    }
    if u0 < n {
        let rest = &mut scores[u0..];
        rest.fill(0.0);
        for (&qj, row) in q.iter().zip(kt.chunks_exact(max_len)) {
            for (s, &k) in rest.iter_mut().zip(&row[u0..n]) {
                *s += qj * k;
            }
        }
        rest.iter_mut().for_each(|s| *s *= scale);
    }
    let m = crate::cpu::fastmath::max(scores);
    let sum = crate::cpu::fastmath::exp_shift_sum(scores, m);
    let inv = 1.0 / sum;
    match dh {
        16 => weighted_values::<16>(o, scores, vc, d, inv),
        32 => weighted_values::<32>(o, scores, vc, d, inv),
        64 => weighted_values::<64>(o, scores, vc, d, inv),
        _ => {
            o.fill(0.0);
            for (u, &p) in scores.iter().enumerate() {
                let p = p * inv;
                for (o, &v) in o.iter_mut().zip(&vc[u * d..u * d + dh]) {
                    *o += p * v;
                }
            }
        }
    }
}

/// `o = inv · Σ_u p_u v_u` for a head of DH values (rows of vc at stride d), accumulated in
/// registers, two positions at a time (two independent multiply-add chains).
#[inline(always)]
fn weighted_values<const DH: usize>(o: &mut [f32], p: &[f32], vc: &[f32], d: usize, inv: f32) {
    let (mut a0, mut a1) = ([0.0f32; DH], [0.0f32; DH]);
    let pairs = p.len() / 2;
    for u in 0..pairs {
        let (p0, p1) = (p[2 * u], p[2 * u + 1]);
        let v0: &[f32; DH] = vc[2 * u * d..][..DH].try_into().expect("DH values");
        let v1: &[f32; DH] = vc[(2 * u + 1) * d..][..DH].try_into().expect("DH values");
        for i in 0..DH {
            a0[i] += p0 * v0[i];
            a1[i] += p1 * v1[i];
        }
    }
    if p.len() % 2 == 1 {
        let u = p.len() - 1;
        let v0: &[f32; DH] = vc[u * d..][..DH].try_into().expect("DH values");
        for i in 0..DH {
            a0[i] += p[u] * v0[i];
        }
    }
    for ((o, a), b) in o.iter_mut().zip(a0).zip(a1) {
        *o = (a + b) * inv;
    }
}

simd::dispatch!(
    /// One head of `attention_decode` on the calling thread: `o (d_head)` from the query `q (d_head)`,
    /// the head's transposed keys `kt (d_head, max_len)` and its values `vc[u·d..u·d + d_head]` for
    /// the `scores.len()` cached positions u (scores is scratch of that length). Overwrites o.
    pub(crate) fn decode_head(o: &mut [f32], scores: &mut [f32], q: &[f32], kt: &[f32], vc: &[f32], max_len: usize, d: usize, scale: f32) -> () = decode_head_body; avx512f
);

/// Writes keys `k (batch, t_new, d)` for positions start.. into the transposed per-head cache
/// `k_t (batch, n_heads, d_head, max_len)` that `attention_decode` reads.
pub fn store_keys_transposed(
    k_t: &mut [f32],
    k: &[f32],
    batch: usize,
    t_new: usize,
    start: usize,
    max_len: usize,
    d: usize,
) {
    assert_eq!(k_t.len(), batch * max_len * d, "store_keys_transposed: k_t");
    assert_eq!(k.len(), batch * t_new * d, "store_keys_transposed: k");
    assert!(start + t_new <= max_len, "store_keys_transposed: past max_len");
    for b in 0..batch {
        for t in 0..t_new {
            let row = &k[(b * t_new + t) * d..][..d];
            for (c, &v) in row.iter().enumerate() {
                k_t[(b * d + c) * max_len + start + t] = v;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::gemm::gemv::tests::data;

    #[test]
    fn attention_decode_matches_naive_softmax_attention() {
        // Head sizes with and without a specialized value loop; position counts below, at and
        // past the 64-position score blocks.
        for (batch, max_len, h, dh, keys) in [
            (2, 9, 3, 20, &[1, 5, 9][..]),
            (1, 131, 2, 32, &[1, 63, 64, 65, 128, 131][..]),
            (2, 70, 3, 16, &[2, 64, 70][..]),
            (1, 66, 1, 64, &[66][..]),
        ] {
            check_attention_decode(batch, max_len, h, dh, keys);
        }
    }

    fn check_attention_decode(batch: usize, max_len: usize, h: usize, dh: usize, keys: &[usize]) {
        let d = h * dh;
        let (kc, vc, q) = (
            data(batch * max_len * d, 6),
            data(batch * max_len * d, 7),
            data(batch * d, 8),
        );
        let mut kt = vec![0.0; batch * max_len * d];
        store_keys_transposed(&mut kt, &kc, batch, max_len, 0, max_len, d);
        for &n_keys in keys {
            let mut out = vec![f32::NAN; batch * d];
            attention_decode(&mut out, &q, &kt, &vc, batch, n_keys, max_len, h, dh);
            for b in 0..batch {
                for hh in 0..h {
                    let qh = &q[b * d + hh * dh..][..dh];
                    let s: Vec<f64> = (0..n_keys)
                        .map(|u| {
                            let k = &kc[(b * max_len + u) * d + hh * dh..][..dh];
                            qh.iter().zip(k).map(|(a, b)| *a as f64 * *b as f64).sum::<f64>()
                                / (dh as f64).sqrt()
                        })
                        .collect();
                    let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let z: f64 = s.iter().map(|v| (v - m).exp()).sum();
                    for j in 0..dh {
                        let want: f64 = (0..n_keys)
                            .map(|u| (s[u] - m).exp() / z * vc[(b * max_len + u) * d + hh * dh + j] as f64)
                            .sum();
                        let got = out[b * d + hh * dh + j] as f64;
                        assert!((got - want).abs() < 1e-5, "{n_keys} {b} {hh} {j}: {got} {want}");
                    }
                }
            }
        }
    }
}
