//! The FFN's elementwise parts: SwiGLU gate `SiLU(h1) ⊙ h3` and plain SiLU, SiLU(x) = x·σ(x).

use super::fastmath::{swiglu_back_rows, swiglu_rows};
use rayon::prelude::*;

const CHUNK: usize = 16 * 1024;

/// `out = SiLU(h1) ⊙ h3`, all of the same length (n·d_ff). Overwrites out.
pub fn swiglu_forward(out: &mut [f32], h1: &[f32], h3: &[f32]) {
    assert!(
        out.len() == h1.len() && h1.len() == h3.len(),
        "swiglu_forward: lengths"
    );
    out.par_chunks_mut(CHUNK)
        .zip(h1.par_chunks(CHUNK))
        .zip(h3.par_chunks(CHUNK))
        .for_each(|((o, a), b)| swiglu_rows(o, a, Some(b)));
}

/// Backward of `swiglu_forward`: `dh1 = dout ⊙ h3 ⊙ σ(h1)(1 + h1(1 − σ(h1)))`, `dh3 = dout ⊙ SiLU(h1)`.
/// Overwrites dh1 and dh3.
pub fn swiglu_backward(dh1: &mut [f32], dh3: &mut [f32], dout: &[f32], h1: &[f32], h3: &[f32]) {
    let n = dout.len();
    assert!(
        dh1.len() == n && dh3.len() == n && h1.len() == n && h3.len() == n,
        "swiglu_backward: lengths"
    );
    dh1.par_chunks_mut(CHUNK)
        .zip(dh3.par_chunks_mut(CHUNK))
        .zip(dout.par_chunks(CHUNK))
        .zip(h1.par_chunks(CHUNK).zip(h3.par_chunks(CHUNK)))
        .for_each(|(((d1, d3), dy), (a, b))| swiglu_back_rows(d1, Some(d3), dy, a, Some(b)));
}

/// `out = SiLU(inp)`. Overwrites out.
pub fn silu_forward(out: &mut [f32], inp: &[f32]) {
    assert_eq!(out.len(), inp.len(), "silu_forward: lengths");
    out.par_chunks_mut(CHUNK)
        .zip(inp.par_chunks(CHUNK))
        .for_each(|(o, x)| swiglu_rows(o, x, None));
}

/// `dinp = dout ⊙ σ(x)(1 + x(1 − σ(x)))`. Overwrites dinp.
pub fn silu_backward(dinp: &mut [f32], dout: &[f32], inp: &[f32]) {
    assert!(
        dinp.len() == dout.len() && dout.len() == inp.len(),
        "silu_backward: lengths"
    );
    dinp.par_chunks_mut(CHUNK)
        .zip(dout.par_chunks(CHUNK))
        .zip(inp.par_chunks(CHUNK))
        .for_each(|((dx, dy), x)| swiglu_back_rows(dx, None, dy, x, None));
}
