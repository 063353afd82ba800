//! Rotary position embedding on interleaved pairs `(x[2j], x[2j+1])` of each head, by angle
//! `pos · θ^(−2j/d_head)`.

use super::transpose::transpose_to_ptr;
use super::{rows_per_task, SyncPtr};
use rayon::prelude::*;

/// cos/sin of `pos · θ^(−2j/d_head)` for pos < max_len and j < d_head/2, each (max_len, d_head/2);
/// angles computed in f64 and rounded once.
#[derive(Clone, Debug)]
pub struct RopeTable {
    pub d_head: usize,
    pub max_len: usize,
    pub cos: Vec<f32>,
    pub sin: Vec<f32>,
}

impl RopeTable {
    pub fn new(d_head: usize, max_len: usize, theta: f32) -> RopeTable {
        assert!(
            d_head.is_multiple_of(2),
            "RoPE needs an even head size, got {d_head}"
        );
        let half = d_head / 2;
        let mut cos = Vec::with_capacity(max_len * half);
        let mut sin = Vec::with_capacity(max_len * half);
        for pos in 0..max_len {
            for j in 0..half {
                let freq = (theta as f64).powf(-2.0 * j as f64 / d_head as f64);
                let a = pos as f64 * freq;
                cos.push(a.cos() as f32);
                sin.push(a.sin() as f32);
            }
        }
        RopeTable {
            d_head,
            max_len,
            cos,
            sin,
        }
    }
}

fn rotate(
    x: &mut [f32],
    positions: &[usize],
    n_heads: usize,
    table: &RopeTable,
    sign: f32,
    transposed: Option<(SyncPtr, usize)>,
) {
    let dh = table.d_head;
    let d = n_heads * dh;
    let half = dh / 2;
    assert_eq!(
        x.len(),
        positions.len() * d,
        "rope: x is not (positions, n_heads·d_head)"
    );
    if let Some(&p) = positions.iter().find(|&&p| p >= table.max_len) {
        panic!("rope: position {p} ≥ table length {}", table.max_len);
    }
    let n = positions.len();
    if n == 0 || d == 0 {
        return;
    }
    // Whole 16-row tiles per task where possible, for the transposed copy.
    let rows = rows_per_task(n, d).next_multiple_of(16).min(n);
    x.par_chunks_mut(rows * d)
        .zip(positions.par_chunks(rows))
        .enumerate()
        .for_each(|(i, (x, pos))| {
            for (row, &p) in x.chunks_exact_mut(d).zip(pos) {
                let cos = &table.cos[p * half..(p + 1) * half];
                let sin = &table.sin[p * half..(p + 1) * half];
                for head in row.chunks_exact_mut(dh) {
                    rotate_pairs(head, cos, sin, sign);
                }
            }
            if let Some((t, ld_t)) = transposed {
                // SAFETY: rope_backward_t checked that t points at d·ld_t writable floats of an
                // exclusively borrowed slice, n ≤ ld_t; this task writes only its columns
                // i·rows..i·rows + pos.len() (≤ n) of each of the d rows, disjoint from every
                // other task's.
                unsafe { transpose_to_ptr(t.ptr().add(i * rows), ld_t, x, d, pos.len(), d) };
            }
        });
}

/// `(x[2j], x[2j+1])` rotated by the angle whose cosine and sine are `cos[j]`, `sign·sin[j]`.
#[inline(always)]
fn rotate_pairs(x: &mut [f32], cos: &[f32], sin: &[f32], sign: f32) {
    for ((pair, &c), &s) in x.chunks_exact_mut(2).zip(cos).zip(sin) {
        let s = sign * s;
        let (a, b) = (pair[0], pair[1]);
        pair[0] = a * c - b * s;
        pair[1] = a * s + b * c;
    }
}

/// `rope_forward` of part of one row, on the calling thread: `x` holds elements `offset..` of a
/// row of n_heads·d_head values at position `pos`; offset and x.len() must be even (whole pairs).
/// Gives the same values as rotating the whole row.
pub fn rope_forward_span(x: &mut [f32], offset: usize, pos: usize, table: &RopeTable) {
    let (dh, half) = (table.d_head, table.d_head / 2);
    assert!(
        offset.is_multiple_of(2) && x.len().is_multiple_of(2),
        "rope_forward_span: split pairs"
    );
    assert!(
        pos < table.max_len,
        "rope: position {pos} ≥ table length {}",
        table.max_len
    );
    let (cos, sin) = (&table.cos[pos * half..][..half], &table.sin[pos * half..][..half]);
    let mut i = 0;
    while i < x.len() {
        // The rest of the head that element offset + i falls in.
        let in_head = (offset + i) % dh;
        let len = (dh - in_head).min(x.len() - i);
        let j = in_head / 2;
        rotate_pairs(&mut x[i..i + len], &cos[j..], &sin[j..], 1.0);
        i += len;
    }
}

/// In place: `x (n, n_heads·d_head)`, row i rotated by position `positions[i]` (n = positions.len()).
pub fn rope_forward(x: &mut [f32], positions: &[usize], n_heads: usize, table: &RopeTable) {
    rotate(x, positions, n_heads, table, 1.0, None);
}

/// In place: the gradient w.r.t. the unrotated input from the gradient w.r.t. the rotated output
/// (the inverse rotation, since a rotation's Jacobian is orthogonal). Shapes as in the forward.
pub fn rope_backward(dx: &mut [f32], positions: &[usize], n_heads: usize, table: &RopeTable) {
    rotate(dx, positions, n_heads, table, -1.0, None);
}

/// `rope_backward` that also writes the result transposed: `dx_t[c·ld_t + r] = dx[r·d + c]`
/// (n ≤ ld_t; dx_t holds d·ld_t floats), for the Q/K weight gradients
/// (`matmul_backward_weight_t`). Each row block is transposed while in cache (non-temporal
/// stores on 64-byte-aligned rows, see `transpose_to_ptr`); dx ends bitwise as with
/// `rope_backward`.
pub fn rope_backward_t(
    dx: &mut [f32],
    positions: &[usize],
    n_heads: usize,
    table: &RopeTable,
    dx_t: &mut [f32],
    ld_t: usize,
) {
    let d = n_heads * table.d_head;
    assert!(
        positions.len() <= ld_t && dx_t.len() >= d * ld_t,
        "rope_backward_t: dx_t"
    );
    let t = SyncPtr(dx_t.as_mut_ptr());
    rotate(dx, positions, n_heads, table, -1.0, Some((t, ld_t)));
}

#[cfg(test)]
mod span_tests {
    use super::*;

    /// dx bitwise as `rope_backward`; dx_t its exact transpose, padding untouched, for row counts
    /// off the 16-row tile, aligned and unaligned transposed rows.
    #[test]
    fn backward_with_transposed_copy_matches() {
        let table = RopeTable::new(8, 64, 10000.0);
        for n in [1, 17, 40] {
            let d = 3 * 8;
            let positions: Vec<usize> = (0..n).map(|i| (i * 7) % 64).collect();
            let x: Vec<f32> = (0..n * d).map(|i| ((i * 31) % 53) as f32 / 53.0 - 0.5).collect();
            let mut want = x.clone();
            rope_backward(&mut want, &positions, 3, &table);
            for (ld, skew) in [(n.div_ceil(16) * 16 + 16, 0), (n + 1, 2)] {
                let mut got = x.clone();
                let mut t = vec![-3.0f32; d * ld + 32];
                let off = t.as_ptr().align_offset(64) + skew;
                rope_backward_t(&mut got, &positions, 3, &table, &mut t[off..], ld);
                assert_eq!(got, want, "n {n}");
                for c in 0..d {
                    for r in 0..ld {
                        let v = t[off + c * ld + r];
                        if r < n {
                            assert_eq!(v.to_bits(), want[r * d + c].to_bits(), "({c},{r})");
                        } else {
                            assert_eq!(v, -3.0, "padding ({c},{r}) written");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn rope_forward_span_matches_rotating_the_whole_row() {
        let (heads, dh, pos) = (3, 10, 5);
        let table = RopeTable::new(dh, 8, 10000.0);
        let row: Vec<f32> = (0..heads * dh).map(|i| (i as f32 * 0.37).sin()).collect();
        let mut want = row.clone();
        rope_forward(&mut want, &[pos], heads, &table);
        // Spans that start and end inside heads and cross head boundaries.
        for (a, b) in [(0, 30), (0, 16), (16, 30), (4, 26), (8, 12)] {
            let mut part = row[a..b].to_vec();
            rope_forward_span(&mut part, a, pos, &table);
            assert_eq!(part, want[a..b], "span {a}..{b}");
        }
    }
}
