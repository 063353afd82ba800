//! An independent, naive f64 implementation of the model and its pieces, written straight from
//! the contract in issue 3 (no code shared with the crate except the config and parameter names).
//! The gradient checks differentiate it numerically and compare with the crate's f32 backward.
#![allow(dead_code)]

use ferrolm_nn::{Ffn, ModelConfig, Norm, Position};

pub const EPS: f64 = 1e-5;

/// A deterministic stream of values in [-1, 1) for test inputs.
pub struct Lcg(pub u64);
impl Lcg {
    pub fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
    }
    pub fn vec(&mut self, n: usize, scale: f64) -> Vec<f64> {
        (0..n).map(|_| self.next() * scale).collect()
    }
    pub fn below(&mut self, n: usize) -> u32 {
        (((self.next() + 1.0) / 2.0 * n as f64) as usize).min(n - 1) as u32
    }
}

pub fn to32(x: &[f64]) -> Vec<f32> {
    x.iter().map(|&v| v as f32).collect()
}
pub fn to64(x: &[f32]) -> Vec<f64> {
    x.iter().map(|&v| v as f64).collect()
}

/// x (n, d_in) · wᵀ, w (d_out, d_in) → (n, d_out).
pub fn linear(x: &[f64], w: &[f64], d_in: usize, d_out: usize) -> Vec<f64> {
    let n = x.len() / d_in;
    let mut y = vec![0.0; n * d_out];
    for i in 0..n {
        for o in 0..d_out {
            y[i * d_out + o] = (0..d_in).map(|j| x[i * d_in + j] * w[o * d_in + j]).sum();
        }
    }
    y
}

pub fn rmsnorm(x: &[f64], g: &[f64]) -> Vec<f64> {
    let d = g.len();
    let mut y = vec![0.0; x.len()];
    for (yr, xr) in y.chunks_mut(d).zip(x.chunks(d)) {
        let ms = xr.iter().map(|v| v * v).sum::<f64>() / d as f64;
        let r = 1.0 / (ms + EPS).sqrt();
        for j in 0..d {
            yr[j] = xr[j] * r * g[j];
        }
    }
    y
}

/// RoPE on x (n, n_heads·d_head), row i at position pos[i].
pub fn rope(x: &[f64], pos: &[usize], d_head: usize, theta: f64) -> Vec<f64> {
    let d = x.len() / pos.len();
    let mut y = x.to_vec();
    for (i, &p) in pos.iter().enumerate() {
        for h in 0..d / d_head {
            for j in 0..d_head / 2 {
                let a = p as f64 * theta.powf(-2.0 * j as f64 / d_head as f64);
                let base = i * d + h * d_head + 2 * j;
                let (x0, x1) = (x[base], x[base + 1]);
                y[base] = x0 * a.cos() - x1 * a.sin();
                y[base + 1] = x0 * a.sin() + x1 * a.cos();
            }
        }
    }
    y
}

/// Causal attention; q, k, v (batch, seq, n_heads·d_head) → same shape.
pub fn attention(q: &[f64], k: &[f64], v: &[f64], batch: usize, seq: usize, n_heads: usize) -> Vec<f64> {
    let d = q.len() / (batch * seq);
    let dh = d / n_heads;
    let mut out = vec![0.0; q.len()];
    for b in 0..batch {
        for h in 0..n_heads {
            for t in 0..seq {
                let row = |x: &[f64], u: usize| -> Vec<f64> {
                    let o = (b * seq + u) * d + h * dh;
                    x[o..o + dh].to_vec()
                };
                let qt = row(q, t);
                let s: Vec<f64> = (0..=t)
                    .map(|u| qt.iter().zip(row(k, u)).map(|(a, b)| a * b).sum::<f64>() / (dh as f64).sqrt())
                    .collect();
                let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
                let z: f64 = e.iter().sum();
                for (u, eu) in e.iter().enumerate() {
                    for (c, vc) in row(v, u).iter().enumerate() {
                        out[(b * seq + t) * d + h * dh + c] += eu / z * vc;
                    }
                }
            }
        }
    }
    out
}

pub fn silu(x: f64) -> f64 {
    x / (1.0 + (-x).exp())
}

/// Mean cross-entropy of logits (n, vocab).
pub fn cross_entropy(logits: &[f64], targets: &[u32], vocab: usize) -> f64 {
    let mut total = 0.0;
    for (row, &t) in logits.chunks(vocab).zip(targets) {
        let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let lse = m + row.iter().map(|x| (x - m).exp()).sum::<f64>().ln();
        total += lse - row[t as usize];
    }
    total / targets.len() as f64
}

fn add(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(x, y)| x + y).collect()
}

/// The model's logits (batch·seq, vocab) with parameters `params` laid out by `param_specs`.
pub fn model_logits(c: &ModelConfig, params: &[f64], inputs: &[u32], batch: usize, seq: usize) -> Vec<f64> {
    let specs = c.param_specs();
    let get = |name: &str| -> &[f64] {
        let s = specs
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no {name}"));
        &params[s.range()]
    };
    let (d, f) = (c.d_model, c.d_ff);
    let emb = get("token_embeddings.weight");
    let mut x: Vec<f64> = inputs
        .iter()
        .flat_map(|&i| emb[i as usize * d..(i as usize + 1) * d].to_vec())
        .collect();
    let pos: Vec<usize> = (0..batch * seq).map(|i| i % seq).collect();
    for l in 0..c.n_layers {
        let w = |n: &str| get(&format!("layers.{l}.{n}.weight"));
        let mha = |a: &[f64]| -> Vec<f64> {
            let mut q = linear(a, w("attn.q_proj"), d, d);
            let mut k = linear(a, w("attn.k_proj"), d, d);
            let v = linear(a, w("attn.v_proj"), d, d);
            if c.position == Position::Rope {
                q = rope(&q, &pos, c.d_head(), c.rope_theta as f64);
                k = rope(&k, &pos, c.d_head(), c.rope_theta as f64);
            }
            linear(
                &attention(&q, &k, &v, batch, seq, c.n_heads),
                w("attn.output_proj"),
                d,
                d,
            )
        };
        let ffn = |a: &[f64]| -> Vec<f64> {
            let h1 = linear(a, w("ffn.w1"), d, f);
            let g: Vec<f64> = match c.ffn {
                Ffn::Swiglu => {
                    let h3 = linear(a, w("ffn.w3"), d, f);
                    h1.iter().zip(&h3).map(|(a, b)| silu(*a) * b).collect()
                }
                Ffn::Silu => h1.iter().map(|&a| silu(a)).collect(),
            };
            linear(&g, w("ffn.w2"), f, d)
        };
        x = match c.norm {
            Norm::Pre => {
                let z = add(&x, &mha(&rmsnorm(&x, w("ln1"))));
                add(&z, &ffn(&rmsnorm(&z, w("ln2"))))
            }
            Norm::Post => {
                let z = rmsnorm(&add(&x, &mha(&x)), w("ln1"));
                rmsnorm(&add(&z, &ffn(&z)), w("ln2"))
            }
            Norm::None => {
                let z = add(&x, &mha(&x));
                add(&z, &ffn(&z))
            }
        };
    }
    let xf = rmsnorm(&x, get("ln_final.weight"));
    linear(&xf, get("lm_head.weight"), d, c.vocab_size)
}

pub fn model_loss(
    c: &ModelConfig,
    params: &[f64],
    inputs: &[u32],
    targets: &[u32],
    batch: usize,
    seq: usize,
) -> f64 {
    cross_entropy(
        &model_logits(c, params, inputs, batch, seq),
        targets,
        c.vocab_size,
    )
}

/// Central-difference gradient of `f` at `x` with step `h` (f64: truncation error O(h²), rounding
/// O(ε/h), so h ≈ 1e-5 gives ~1e-10 absolute accuracy for well-scaled functions).
pub fn numeric_grad(x: &[f64], h: f64, mut f: impl FnMut(&[f64]) -> f64) -> Vec<f64> {
    let mut x = x.to_vec();
    (0..x.len())
        .map(|i| {
            let x0 = x[i];
            x[i] = x0 + h;
            let fp = f(&x);
            x[i] = x0 - h;
            let fm = f(&x);
            x[i] = x0;
            (fp - fm) / (2.0 * h)
        })
        .collect()
}

/// Largest |a − b| relative to the largest |b| (floored at `floor`); panics with context when
/// above `tol`.
pub fn assert_close(what: &str, got: &[f32], want: &[f64], tol: f64, floor: f64) -> f64 {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let scale = want.iter().fold(floor, |m, v| m.max(v.abs()));
    let (mut worst, mut at) = (0.0f64, 0);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let e = (g as f64 - w).abs() / scale;
        if e > worst || e.is_nan() {
            worst = e;
            at = i;
        }
    }
    assert!(
        worst <= tol,
        "{what}: relative error {worst:.3e} > {tol:.0e} at {at}: got {} want {} (scale {scale:.3e})",
        got[at],
        want[at]
    );
    worst
}
