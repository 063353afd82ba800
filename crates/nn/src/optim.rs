//! AdamW, in the order `torch.optim.AdamW` applies it.
//!
//! One step, for every element i (θ parameters, g gradients, α the step's scheduled learning rate):
//! 1. θ ← θ·(1 − α·λ) (decoupled weight decay; skipped for elements in `no_decay`);
//! 2. m ← β1·m + (1 − β1)·g, computed as torch's `lerp_`: m + (1 − β1)·(g − m);
//! 3. v ← β2·v + (1 − β2)·g², computed as torch's `mul_(β2).addcmul_(g, g, 1 − β2)`;
//! 4. θ ← θ − (α / (1 − β1ᵗ))·m / (√v / √(1 − β2ᵗ) + ε).
//!
//! Step 4 is αt·m/(√v + ε̂) with αt = α·√(1−β2ᵗ)/(1−β1ᵗ), written the way torch's single-tensor
//! (CPU) path computes it: the scalars (1 − α·λ, the bias corrections, the step size) in f64 like
//! Python floats, then rounded to f32; the elementwise arithmetic in f32 in torch's operation
//! order. Given the same f32 hyperparameters, parameters after 10 steps agree with
//! `torch.optim.AdamW` to ~1e-7 relative, most of them bitwise (tests/torch_fixtures.rs); the
//! rest is torch's FMAs and vector sqrt rounding once where we round twice. A step over 22M
//! parameters takes ~40 ms on 2 cores (torch's: ~250 ms).

use crate::{NnError, ParamSpec, Result};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::ops::Range;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdamWConfig {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            weight_decay: 0.1,
        }
    }
}

/// AdamW state over one flat parameter buffer: first and second moments and the step count.
#[derive(Clone, Debug)]
pub struct AdamW {
    pub config: AdamWConfig,
    pub m: Vec<f32>,
    pub v: Vec<f32>,
    /// Steps taken so far.
    pub t: u64,
    /// Element ranges that get no weight decay (empty: all decay, the reference's default).
    pub no_decay: Vec<std::ops::Range<usize>>,
}

/// Elements per parallel work item of `step` (about 256 KiB of each buffer).
const CHUNK: usize = 1 << 16;

/// The scalars of one step, computed once (in f64, like torch's Python floats) and rounded to f32.
#[derive(Clone, Copy)]
struct StepScalars {
    /// 1 − α·λ.
    decay: f32,
    /// 1 − β1 (the lerp weight).
    w1: f32,
    /// torch's lerp switches formula at weight 0.5 (β1 ≤ 0.5): m ← g + (w1 − 1)·(g − m).
    w1_large: bool,
    beta2: f32,
    /// 1 − β2.
    w2: f32,
    /// √(1 − β2ᵗ).
    bc2_sqrt: f32,
    /// −α / (1 − β1ᵗ).
    neg_step_size: f32,
    eps: f32,
    /// Whether weight decay is on (λ ≠ 0).
    decay_on: bool,
    /// The factor on the gradients (1: none).
    grad_scale: f32,
}

impl AdamW {
    pub fn new(config: AdamWConfig, num_params: usize) -> AdamW {
        AdamW {
            config,
            m: vec![0.0; num_params],
            v: vec![0.0; num_params],
            t: 0,
            no_decay: Vec::new(),
        }
    }

    /// The element ranges of the parameters for which `exclude` is true, adjacent ranges merged,
    /// for `no_decay`. E.g. `AdamW::no_decay_ranges(&specs, |s| s.shape.len() == 1)` exempts the
    /// RMSNorm gains, `|s| s.name.ends_with("ln_final.weight")` one tensor by name.
    pub fn no_decay_ranges(specs: &[ParamSpec], exclude: impl Fn(&ParamSpec) -> bool) -> Vec<Range<usize>> {
        let mut ranges: Vec<Range<usize>> = specs.iter().filter(|s| exclude(s)).map(|s| s.range()).collect();
        ranges.sort_by_key(|r| r.start);
        let mut merged: Vec<Range<usize>> = Vec::with_capacity(ranges.len());
        for r in ranges.into_iter().filter(|r| !r.is_empty()) {
            match merged.last_mut() {
                Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
                _ => merged.push(r),
            }
        }
        merged
    }

    /// Sets `no_decay` to the parameters of `specs` for which `exclude` is true (builder style).
    pub fn with_no_decay(mut self, specs: &[ParamSpec], exclude: impl Fn(&ParamSpec) -> bool) -> AdamW {
        self.no_decay = Self::no_decay_ranges(specs, exclude);
        self
    }

    /// Whether element `i` gets weight decay.
    pub fn decays(&self, i: usize) -> bool {
        !self.no_decay.iter().any(|r| r.contains(&i))
    }

    /// Restores the state saved from `m`, `v` and `t` (e.g. from a checkpoint), checking that the
    /// moments fit this optimizer's parameter count and are finite.
    pub fn load_state(&mut self, m: &[f32], v: &[f32], t: u64) -> Result<()> {
        let n = self.m.len();
        if m.len() != n || v.len() != n {
            return Err(NnError::Shape(format!(
                "optimizer state has m of {} and v of {} elements, the model has {n} parameters",
                m.len(),
                v.len()
            )));
        }
        if let Some(i) = m.iter().position(|x| !x.is_finite()) {
            return Err(NnError::Shape(format!(
                "optimizer state m[{i}] = {} is not finite",
                m[i]
            )));
        }
        if let Some(i) = v.iter().position(|x| !(x.is_finite() && *x >= 0.0)) {
            return Err(NnError::Shape(format!(
                "optimizer state v[{i}] = {} is not a finite non-negative second moment",
                v[i]
            )));
        }
        self.m.copy_from_slice(m);
        self.v.copy_from_slice(v);
        self.t = t;
        Ok(())
    }

    /// One step with learning rate `lr` (the scheduled α; `config.lr` is not used here).
    /// Increments `t` first (the first step uses t = 1). Parallel over chunks, no allocation.
    ///
    /// Panics if `params`, `grads` and the state do not have the same length (a programming error).
    pub fn step(&mut self, params: &mut [f32], grads: &[f32], lr: f32) {
        self.check_lengths(params.len(), grads.len());
        self.update_chunks(params, grads.par_chunks(CHUNK), lr, 1.0, |_| {});
    }

    /// `step` on the gradients times `grad_scale` (the clipping factor, `clip::clip_scale`; 1
    /// for none), leaving `grads` zeroed for the next step's accumulation: one pass over the
    /// buffers where scaling, the update and zeroing took three. The parameters are bitwise those
    /// of scaling `grads` in place (`g · grad_scale` in f32), then `step`.
    pub fn step_scaled_and_zero_grads(
        &mut self,
        params: &mut [f32],
        grads: &mut [f32],
        lr: f32,
        grad_scale: f32,
    ) {
        self.check_lengths(params.len(), grads.len());
        self.update_chunks(params, grads.par_chunks_mut(CHUNK), lr, grad_scale, |g| {
            g.fill(0.0)
        });
    }

    /// Both steps: begins the step, then updates each CHUNK of params, m and v in parallel from
    /// the matching chunk of `grads` (times `grad_scale`), and hands that chunk to `after`.
    fn update_chunks<G: std::ops::Deref<Target = [f32]> + Send>(
        &mut self,
        params: &mut [f32],
        grads: impl IndexedParallelIterator<Item = G>,
        lr: f32,
        grad_scale: f32,
        after: impl Fn(G) + Sync,
    ) {
        let s = self.begin_step(lr, grad_scale);
        let no_decay = &self.no_decay;
        params
            .par_chunks_mut(CHUNK)
            .zip(grads)
            .zip(self.m.par_chunks_mut(CHUNK))
            .zip(self.v.par_chunks_mut(CHUNK))
            .enumerate()
            .for_each(|(ci, (((p, g), m), v))| {
                update_chunk(no_decay, ci * CHUNK, p, &g, m, v, s);
                after(g);
            });
    }

    fn check_lengths(&self, params: usize, grads: usize) {
        let n = self.m.len();
        assert!(
            params == n && grads == n,
            "AdamW::step: {params} params and {grads} grads for an optimizer over {n}"
        );
    }

    /// Increments `t` and computes the step's scalars.
    fn begin_step(&mut self, lr: f32, grad_scale: f32) -> StepScalars {
        self.t += 1;
        let c = &self.config;
        let (lr64, t) = (lr as f64, self.t as f64);
        let bc1 = 1.0 - (c.beta1 as f64).powf(t);
        let bc2 = 1.0 - (c.beta2 as f64).powf(t);
        StepScalars {
            decay: (1.0 - lr64 * c.weight_decay as f64) as f32,
            w1: (1.0 - c.beta1 as f64) as f32,
            w1_large: (1.0 - c.beta1 as f64) as f32 >= 0.5,
            beta2: c.beta2,
            w2: (1.0 - c.beta2 as f64) as f32,
            bc2_sqrt: bc2.sqrt() as f32,
            neg_step_size: (-(lr64 / bc1)) as f32,
            eps: c.eps,
            decay_on: c.weight_decay != 0.0,
            grad_scale,
        }
    }
}

/// The update of one parallel chunk starting at global element `base`, split into spans that
/// share a decay flag.
fn update_chunk(
    no_decay: &[Range<usize>],
    base: usize,
    p: &mut [f32],
    g: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    s: StepScalars,
) {
    let mut start = 0;
    while start < p.len() {
        let (end, decay) = span_at(no_decay, base + start, base + p.len());
        let r = start..end - base;
        update(
            &mut p[r.clone()],
            &g[r.clone()],
            &mut m[r.clone()],
            &mut v[r.clone()],
            s,
            decay && s.decay_on,
        );
        start = r.end;
    }
}

/// From global element `i` (below `end`): the end of the run of elements sharing `i`'s decay flag
/// (capped at `end`), and that flag. Linear in the number of no-decay ranges, no allocation.
fn span_at(no_decay: &[Range<usize>], i: usize, end: usize) -> (usize, bool) {
    if let Some(r) = no_decay.iter().find(|r| r.contains(&i)) {
        // Overlapping ranges may extend the run; follow them.
        let mut stop = r.end;
        while let Some(r2) = no_decay.iter().find(|r2| r2.contains(&stop)) {
            stop = r2.end;
        }
        return (stop.min(end), false);
    }
    let next = no_decay
        .iter()
        .filter(|r| r.start > i)
        .map(|r| r.start)
        .min()
        .unwrap_or(end);
    (next.min(end), true)
}

/// The elementwise update over one span, in torch's operation order (see the module docs).
#[inline]
fn update(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], s: StepScalars, decay: bool) {
    for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
        // x · 1 is x exactly, so the unscaled step is unchanged.
        let g = g * s.grad_scale;
        let mut theta = *p;
        if decay {
            theta *= s.decay;
        }
        // torch's CPU kernels round a few of these once where we round twice (its lerp_ and
        // addcmul_ use fused multiply-adds, its vectorized sqrt is not always correctly rounded):
        // ~1 ulp apart in some elements. Emulating the FMAs in f64 would cost a 2.5x slower step
        // (FMA is not in the baseline x86-64 target) for no bitwise equality anyway.
        let mm = if s.w1_large {
            g + (s.w1 - 1.0) * (g - *m)
        } else {
            *m + s.w1 * (g - *m)
        };
        let vv = *v * s.beta2 + s.w2 * g * g;
        let denom = vv.sqrt() / s.bc2_sqrt + s.eps;
        *p = theta + s.neg_step_size * mm / denom;
        *m = mm;
        *v = vv;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ModelConfig;

    /// The textbook formula in f64 (issue 3): θ −= αλθ; m, v; θ −= αt·m/(√v + ε).
    #[allow(clippy::too_many_arguments)]
    fn reference(
        p: &mut [f64],
        g: &[f64],
        m: &mut [f64],
        v: &mut [f64],
        t: u64,
        lr: f64,
        c: &AdamWConfig,
        decay: &dyn Fn(usize) -> bool,
    ) {
        let (b1, b2, eps, wd) = (
            c.beta1 as f64,
            c.beta2 as f64,
            c.eps as f64,
            c.weight_decay as f64,
        );
        let at = lr * (1.0 - b2.powi(t as i32)).sqrt() / (1.0 - b1.powi(t as i32));
        let eps_hat = eps * (1.0 - b2.powi(t as i32)).sqrt();
        for i in 0..p.len() {
            if decay(i) {
                p[i] -= lr * wd * p[i];
            }
            m[i] = b1 * m[i] + (1.0 - b1) * g[i];
            v[i] = b2 * v[i] + (1.0 - b2) * g[i] * g[i];
            p[i] -= at * m[i] / (v[i].sqrt() + eps_hat);
        }
    }

    #[test]
    fn matches_the_textbook_formula_with_and_without_decay() {
        let n = 3 * CHUNK + 1234;
        let cfg = AdamWConfig::default();
        let mut opt = AdamW::new(cfg.clone(), n);
        opt.no_decay = vec![100..200, CHUNK - 10..CHUNK + 10, 2 * CHUNK..3 * CHUNK + 5];
        let nd = opt.no_decay.clone();
        let decay = move |i: usize| !nd.iter().any(|r| r.contains(&i));
        let mut rng = crate::Rng::new(1);
        let mut p: Vec<f32> = (0..n).map(|_| rng.normal() as f32).collect();
        let mut p64: Vec<f64> = p.iter().map(|&x| x as f64).collect();
        let (mut m64, mut v64) = (vec![0.0; n], vec![0.0; n]);
        for t in 1..=5u64 {
            let g: Vec<f32> = (0..n).map(|_| rng.normal() as f32 * 0.1).collect();
            let g64: Vec<f64> = g.iter().map(|&x| x as f64).collect();
            let lr = 1e-2 / t as f32;
            opt.step(&mut p, &g, lr);
            reference(&mut p64, &g64, &mut m64, &mut v64, t, lr as f64, &cfg, &decay);
        }
        assert_eq!(opt.t, 5);
        let mut worst = 0.0f64;
        for i in 0..n {
            worst = worst.max((p[i] as f64 - p64[i]).abs() / (1e-3 + p64[i].abs()));
        }
        assert!(worst < 1e-5, "worst relative error {worst}");
        // Decay really is skipped where asked: with zero gradients only decay moves θ.
        let mut opt = AdamW::new(cfg, 4);
        opt.no_decay = std::iter::once(1..3).collect();
        let mut p = vec![1.0f32; 4];
        opt.step(&mut p, &[0.0; 4], 0.5);
        assert_eq!(p, vec![0.95, 1.0, 1.0, 0.95]);
    }

    /// The fused step equals scaling the gradients in place (as clip_grad_norm does) and then
    /// `step`, bit for bit, over several steps and chunks with no-decay spans; and it leaves the
    /// gradients zero. With scale 1 it equals the plain step.
    #[test]
    fn fused_scaled_step_is_bitwise_scale_then_step_and_zeroes_grads() {
        let n = 2 * CHUNK + 777;
        let mut rng = crate::Rng::new(5);
        let p0: Vec<f32> = (0..n).map(|_| rng.normal() as f32).collect();
        let mut plain = AdamW::new(AdamWConfig::default(), n);
        plain.no_decay = vec![10..20, CHUNK - 3..CHUNK + 3];
        let mut fused = plain.clone();
        let (mut pp, mut pf) = (p0.clone(), p0);
        for (t, scale) in [0.37f32, 1.0, 0.001, 1.0].into_iter().enumerate() {
            let g: Vec<f32> = (0..n).map(|_| rng.normal() as f32).collect();
            let mut scaled = g.clone();
            scaled.iter_mut().for_each(|x| *x *= scale);
            let lr = 1e-2 / (t + 1) as f32;
            plain.step(&mut pp, &scaled, lr);
            let mut gf = g.clone();
            fused.step_scaled_and_zero_grads(&mut pf, &mut gf, lr, scale);
            assert!(gf.iter().all(|&x| x == 0.0), "gradients not zeroed");
            assert!(
                pp.iter().zip(&pf).all(|(a, b)| a.to_bits() == b.to_bits()),
                "step {t}"
            );
        }
        assert_eq!((plain.m, plain.v, plain.t), (fused.m, fused.v, fused.t));
    }

    #[test]
    fn first_step_moves_each_parameter_by_about_lr() {
        // With m̂ = g and v̂ = g² after one step, the update is lr·sign(g) (ε aside).
        let mut opt = AdamW::new(
            AdamWConfig {
                weight_decay: 0.0,
                ..Default::default()
            },
            3,
        );
        let mut p = vec![0.0f32, 0.0, 0.0];
        opt.step(&mut p, &[2.0, -0.001, 0.0], 0.01);
        assert!(
            (p[0] + 0.01).abs() < 1e-7 && (p[1] - 0.01).abs() < 1e-6 && p[2] == 0.0,
            "{p:?}"
        );
    }

    #[test]
    fn no_decay_ranges_by_predicate_and_state_round_trip() {
        let specs = ModelConfig::tiny().param_specs();
        let ranges = AdamW::no_decay_ranges(&specs, |s| s.shape.len() == 1);
        // Per layer ln1 and ln2 are adjacent and merge; plus ln_final.
        assert_eq!(ranges.len(), 4 + 1);
        let ln1 = specs.iter().find(|s| s.name == "layers.0.ln1.weight").unwrap();
        let ln2 = specs.iter().find(|s| s.name == "layers.0.ln2.weight").unwrap();
        assert_eq!(ranges[0], ln1.offset..ln2.range().end);
        let n = ModelConfig::tiny().num_params();
        let opt =
            AdamW::new(AdamWConfig::default(), n).with_no_decay(&specs, |s| s.name == "ln_final.weight");
        let fin = specs.iter().find(|s| s.name == "ln_final.weight").unwrap();
        assert!(!opt.decays(fin.offset) && opt.decays(fin.offset - 1) && opt.decays(fin.range().end));

        let mut a = AdamW::new(AdamWConfig::default(), 3);
        a.step(&mut [1.0, 2.0, 3.0], &[0.1, 0.2, 0.3], 1e-3);
        let mut b = AdamW::new(AdamWConfig::default(), 3);
        b.load_state(&a.m, &a.v, a.t).unwrap();
        assert_eq!((a.m.clone(), a.v.clone(), a.t), (b.m.clone(), b.v.clone(), b.t));
        let err = b.load_state(&[0.0; 2], &a.v, 1).unwrap_err().to_string();
        assert!(err.contains("m of 2") && err.contains("3 parameters"), "{err}");
        assert!(b.load_state(&[0.0, f32::NAN, 0.0], &a.v, 1).is_err());
        assert!(b.load_state(&a.m, &[0.0, -1.0, 0.0], 1).is_err());
    }

    #[test]
    fn span_at_walks_ranges() {
        let nd = vec![5..10, 10..12, 20..30];
        assert_eq!(span_at(&nd, 0, 100), (5, true));
        assert_eq!(span_at(&nd, 5, 100), (12, false));
        assert_eq!(span_at(&nd, 12, 100), (20, true));
        assert_eq!(span_at(&nd, 25, 27), (27, false));
        assert_eq!(span_at(&nd, 30, 40), (40, true));
        assert_eq!(span_at(&[], 3, 9), (9, true));
    }
}
