//! The nucleus (top-p) selection of `sample`: the most probable tokens, in descending order,
//! whose mass reaches the wanted share, found exactly as a full sort would, without sorting the
//! whole vocabulary.

/// Weight buckets of the histogram: a weight's f32 bits shifted right by BUCKET_SHIFT (its
/// exponent and the top 4 mantissa bits, so a bucket spans at most 1/16 of a binade). Weights are
/// in [0, 1], so the buckets run up to 1.0's; larger keys (never made by `sample`) share the top
/// one. Bucket order is weight order: every bucket from some b up is a prefix of the nucleus order.
const BUCKET_SHIFT: u32 = 19;
const BUCKETS: usize = (1.0f32.to_bits() >> BUCKET_SHIFT) as usize + 1;

/// Above this many candidates the whole array is radix-sorted rather than the candidates
/// comparison-sorted.
const MAX_SORTED_CANDIDATES: usize = 2048;

/// Reorders `weights[..n]` (n = weights.len() / 2; the second half is working space) so that its
/// first `count` entries are the nucleus in descending order (ties by lower id): the shortest
/// such prefix whose mass reaches `want` (all if none does). Returns (count, the prefix's mass
/// summed in that order).
///
/// One pass makes a histogram of the weights' high bits (count and mass per bucket); walking it
/// from the top finds the bucket where the mass reaches `want`; the weights in that bucket and
/// above (a prefix of the nucleus order, since buckets follow the weights) are gathered and
/// sorted, and the nucleus is their shortest prefix that reaches `want`, summed in order: the
/// same numbers as a full sort gives. If that prefix falls short (the bucket masses, summed in
/// another order, rounded past `want`) or a flat distribution puts most of the vocabulary in the
/// nucleus, the whole array is radix-sorted instead, O(n).
pub(super) fn select_nucleus(weights: &mut [(f32, u32)], want: f64) -> (usize, f64) {
    let n = weights.len() / 2;
    let (weights, spare) = weights.split_at_mut(n);
    if n > 512 {
        if let Some(found) = nucleus_by_buckets(weights, &mut spare[..n], want) {
            return found;
        }
    }
    if n <= 512 {
        weights.sort_unstable_by_key(order_key);
    } else {
        radix_sort_by_order(weights, &mut spare[..n]);
    }
    nucleus_prefix(weights, want).unwrap_or_else(|| (n, weights.iter().map(|&(w, _)| w as f64).sum()))
}

/// The bucket of a weight (see BUCKET_SHIFT).
#[inline]
fn bucket(w: f32) -> usize {
    ((w.to_bits() >> BUCKET_SHIFT) as usize).min(BUCKETS - 1)
}

/// The nucleus from the candidates in the buckets down to the one where the mass reaches
/// `want`, as `select_nucleus` describes; None (nothing reordered) when there are more than
/// MAX_SORTED_CANDIDATES of them or their sorted prefix does not reach `want`.
fn nucleus_by_buckets(
    weights: &mut [(f32, u32)],
    spare: &mut [(f32, u32)],
    want: f64,
) -> Option<(usize, f64)> {
    let mut count = [0u32; BUCKETS];
    let mut mass = [0.0f64; BUCKETS];
    for &(w, _) in weights.iter() {
        let b = bucket(w);
        count[b] += 1;
        mass[b] += w as f64;
    }
    let (mut taken, mut sum, mut lowest) = (0usize, 0.0f64, 0);
    for b in (0..BUCKETS).rev() {
        taken += count[b] as usize;
        sum += mass[b];
        if sum >= want {
            lowest = b;
            break;
        }
    }
    if taken > MAX_SORTED_CANDIDATES {
        return None;
    }
    let mut m = 0;
    for &(w, id) in weights.iter() {
        if bucket(w) >= lowest {
            spare[m] = (w, id);
            m += 1;
        }
    }
    let candidates = &mut spare[..m];
    candidates.sort_unstable_by_key(order_key);
    let found = nucleus_prefix(candidates, want)?;
    weights[..found.0].copy_from_slice(&candidates[..found.0]);
    Some(found)
}

/// The shortest prefix of `sorted` whose mass (summed in order, f64) reaches `want`: (its
/// length, its mass); None when the whole slice does not reach it.
pub(super) fn nucleus_prefix(sorted: &[(f32, u32)], want: f64) -> Option<(usize, f64)> {
    let mut mass = 0.0;
    let i = sorted.iter().position(|&(w, _)| {
        mass += w as f64;
        mass >= want
    })?;
    Some((i + 1, sorted[..=i].iter().map(|&(w, _)| w as f64).sum()))
}

/// Sorts `(weight, id)` pairs (weights ≥ 0, ids distinct) in `order_key` order: the pairs are
/// first put back in id order (the ids are a permutation of 0..n), then sorted stably by the
/// descending weight bits, 8 bits per pass (passes where every key has the same digit are
/// skipped), so equal weights keep ascending ids. `spare` is working space of the same length.
fn radix_sort_by_order(items: &mut [(f32, u32)], spare: &mut [(f32, u32)]) {
    let n = items.len();
    debug_assert_eq!(spare.len(), n);
    for &(w, id) in items.iter() {
        spare[id as usize] = (w, id);
    }
    let key = |w: f32| !w.to_bits();
    let mut hist = [[0usize; 256]; 4];
    for &(w, _) in spare.iter() {
        let k = key(w);
        for (d, h) in hist.iter_mut().enumerate() {
            h[((k >> (8 * d)) & 0xff) as usize] += 1;
        }
    }
    // The data is in `spare`; each pass moves it to the other buffer.
    let (mut src, mut dst) = (spare, items);
    let mut in_items = false;
    for (d, h) in hist.iter().enumerate() {
        if h.contains(&n) {
            continue;
        }
        let mut at = [0usize; 256];
        let mut sum = 0;
        for (a, &c) in at.iter_mut().zip(h.iter()) {
            *a = sum;
            sum += c;
        }
        for &(w, id) in src.iter() {
            let b = ((key(w) >> (8 * d)) & 0xff) as usize;
            dst[at[b]] = (w, id);
            at[b] += 1;
        }
        std::mem::swap(&mut src, &mut dst);
        in_items = !in_items;
    }
    if !in_items {
        // The sorted data ended in `spare` (src): copy it back.
        dst.copy_from_slice(src);
    }
}

/// The nucleus order as one integer: descending weight, then ascending id (the weights are ≥ 0,
/// never NaN, so their bit patterns order like the values; `!` makes larger weights first). The
/// same total order as comparing `(weight, id)` with `total_cmp`, but one integer comparison.
#[inline]
pub(super) fn order_key(&(w, id): &(f32, u32)) -> u64 {
    debug_assert!(w >= 0.0 || w.is_nan(), "nucleus weights are non-negative");
    ((!w.to_bits() as u64) << 32) | id as u64
}
