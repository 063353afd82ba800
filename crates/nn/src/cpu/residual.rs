//! Residual connections: elementwise sums (their backward is the identity, so none is needed).

use super::par::{zip3_chunks, CHUNK};
use rayon::prelude::*;

/// `out = a + b`, all the same length. Overwrites out.
pub fn residual_forward(out: &mut [f32], a: &[f32], b: &[f32]) {
    zip3_chunks("residual_forward", out, a, b, |o, a, b| {
        for ((o, a), b) in o.iter_mut().zip(a).zip(b) {
            *o = a + b;
        }
    });
}

/// `x += y`.
pub fn add_inplace(x: &mut [f32], y: &[f32]) {
    assert_eq!(x.len(), y.len(), "add_inplace: lengths");
    x.par_chunks_mut(CHUNK)
        .zip(y.par_chunks(CHUNK))
        .for_each(|(x, y)| {
            for (x, y) in x.iter_mut().zip(y) {
                *x += y;
            }
        });
}
