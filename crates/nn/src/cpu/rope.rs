//! Rotary position embedding on interleaved pairs `(x[2j], x[2j+1])` of each head, by angle
//! `pos · θ^(−2j/d_head)`.

use super::par::rows_per_task;
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

fn rotate(x: &mut [f32], positions: &[usize], n_heads: usize, table: &RopeTable, sign: f32) {
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
    let rows = rows_per_task(n, d);
    x.par_chunks_mut(rows * d)
        .zip(positions.par_chunks(rows))
        .for_each(|(x, pos)| {
            for (row, &p) in x.chunks_exact_mut(d).zip(pos) {
                let cos = &table.cos[p * half..(p + 1) * half];
                let sin = &table.sin[p * half..(p + 1) * half];
                for head in row.chunks_exact_mut(dh) {
                    rotate_pairs(head, cos, sin, sign);
                }
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
    rotate(x, positions, n_heads, table, 1.0);
}

/// In place: the gradient w.r.t. the unrotated input from the gradient w.r.t. the rotated output
/// (the inverse rotation, since a rotation's Jacobian is orthogonal). Shapes as in the forward.
pub fn rope_backward(dx: &mut [f32], positions: &[usize], n_heads: usize, table: &RopeTable) {
    rotate(dx, positions, n_heads, table, -1.0);
}

#[cfg(test)]
mod span_tests {
    use super::*;

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
