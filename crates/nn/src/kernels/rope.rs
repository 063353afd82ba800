//! Rotary position embedding on interleaved pairs `(x[2j], x[2j+1])` of each head, by angle
//! `pos · θ^(−2j/d_head)`.

use super::rows_per_task;
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
                    for ((pair, &c), &s) in head.chunks_exact_mut(2).zip(cos).zip(sin) {
                        let s = sign * s;
                        let (a, b) = (pair[0], pair[1]);
                        pair[0] = a * c - b * s;
                        pair[1] = a * s + b * c;
                    }
                }
            }
        });
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
