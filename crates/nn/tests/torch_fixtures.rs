//! The whole crate checked against PyTorch: fixtures written by `tools/gen_fixtures.py` (regenerate
//! with `python3 tools/gen_fixtures.py`, verify with `--check`) and committed, so no Python is needed.
//!
//! How the references were computed decides the tolerances:
//! - Kernels and the whole model: the inputs are f32 values, the reference forward and backward
//!   ran in float64 and were rounded once to f32. So the fixture is the exact answer to f32
//!   precision, and a tolerance only has to cover *our* f32 rounding: different accumulation order
//!   (gemm blocking, rayon splits), f32 exp/sqrt, and its growth through the layers. Errors are
//!   measured relative to the largest magnitude of the tensor (`scaled` below), because elementwise
//!   relative error is meaningless for entries that cancel to ~0. A real bug (wrong index, missing
//!   term, transposed weight) gives errors of order 1e-1..1, orders of magnitude above the bounds.
//! - AdamW and clipping: the reference is torch.optim.AdamW / clip_grad_norm_ themselves, in f32.
//!   We mirror torch's formula order, so the only differences are single roundings (torch's
//!   `lerp_`/`addcmul_` use fused multiply-adds and its AVX-512 sqrt is not always correctly
//!   rounded; we round each operation).
//! - Three composed training steps: float64 PyTorch (model, clip, AdamW) against our f32 run.
//!
//! Each comparison prints its maximum error (`cargo test --test torch_fixtures -- --nocapture`).

use ferrolm_nn::clip::{clip_grad_norm, grad_norm};
use ferrolm_nn::loss::{cross_entropy, cross_entropy_with_grad};
use ferrolm_nn::model::{Activations, KvCache, Model};
use ferrolm_nn::ops::{self, Precision};
use ferrolm_nn::optim::{AdamW, AdamWConfig};
use ferrolm_nn::schedule::lr_cosine;
use ferrolm_nn::ModelConfig;
use safetensors::{Dtype, SafeTensors};
use std::collections::HashMap;

// ------------------------------------------------------------------ fixture loading

struct Fixture {
    name: String,
    bytes: Vec<u8>,
    meta: HashMap<String, String>,
}

impl Fixture {
    fn load(name: &str) -> Fixture {
        let path = format!("{}/tests/fixtures/{name}.safetensors", env!("CARGO_MANIFEST_DIR"));
        let bytes = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{path}: {e} (regenerate with `python3 tools/gen_fixtures.py`)"));
        let (_, header) = SafeTensors::read_metadata(&bytes).unwrap_or_else(|e| panic!("{path}: {e}"));
        let meta = header.metadata().clone().unwrap_or_default();
        Fixture {
            name: name.to_string(),
            bytes,
            meta,
        }
    }

    fn view(&self, key: &str) -> (Dtype, Vec<usize>, Vec<u8>) {
        let st = SafeTensors::deserialize(&self.bytes).unwrap();
        let t = st
            .tensor(key)
            .unwrap_or_else(|e| panic!("fixture {}: tensor {key}: {e}", self.name));
        (t.dtype(), t.shape().to_vec(), t.data().to_vec())
    }

    fn shape(&self, key: &str) -> Vec<usize> {
        self.view(key).1
    }

    /// Tensor `key`, which must be of `dtype`, as values of N little-endian bytes each.
    fn values<T, const N: usize>(&self, key: &str, dtype: Dtype, from_le: fn([u8; N]) -> T) -> Vec<T> {
        let (got, _, data) = self.view(key);
        assert_eq!(got, dtype, "fixture {}: {key} is {got:?}", self.name);
        data.chunks_exact(N)
            .map(|b| from_le(b.try_into().unwrap()))
            .collect()
    }

    fn f32(&self, key: &str) -> Vec<f32> {
        self.values(key, Dtype::F32, f32::from_le_bytes)
    }

    fn f64(&self, key: &str) -> Vec<f64> {
        self.values(key, Dtype::F64, f64::from_le_bytes)
    }

    fn u32(&self, key: &str) -> Vec<u32> {
        self.values(key, Dtype::U32, u32::from_le_bytes)
    }

    /// The AdamW settings in the metadata (beta1, beta2, eps, weight_decay); lr 0, as the step
    /// is given its learning rate.
    fn adamw(&self) -> AdamWConfig {
        AdamWConfig {
            lr: 0.0,
            beta1: self.meta_f64("beta1") as f32,
            beta2: self.meta_f64("beta2") as f32,
            eps: self.meta_f64("eps") as f32,
            weight_decay: self.meta_f64("weight_decay") as f32,
        }
    }

    fn scalar(&self, key: &str) -> f32 {
        let v = self.f32(key);
        assert_eq!(v.len(), 1, "fixture {}: {key} is not a scalar", self.name);
        v[0]
    }

    fn meta_str(&self, key: &str) -> &str {
        self.meta
            .get(key)
            .unwrap_or_else(|| panic!("fixture {}: metadata {key} missing", self.name))
    }

    fn meta_f64(&self, key: &str) -> f64 {
        self.meta_str(key).parse().unwrap()
    }

    fn meta_usize(&self, key: &str) -> usize {
        self.meta_str(key).parse().unwrap()
    }
}

// ------------------------------------------------------------------ comparisons

/// Asserts `|got − want| ≤ tol · max|want|` elementwise (error relative to the tensor's scale);
/// returns the largest such normalized error. NaN anywhere fails.
fn assert_scaled(what: &str, got: &[f32], want: &[f32], tol: f64) -> f64 {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want
        .iter()
        .fold(0.0f64, |m, &w| m.max((w as f64).abs()))
        .max(1e-30);
    let mut worst = (0.0f64, 0usize);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let e = (g as f64 - w as f64).abs() / scale;
        assert!(!e.is_nan(), "{what}[{i}]: got {g}, want {w}");
        if e > worst.0 {
            worst = (e, i);
        }
    }
    eprintln!(
        "{what:40} max err {:.2e} (relative to max |ref| {scale:.3e})",
        worst.0
    );
    let i = worst.1;
    assert!(
        worst.0 <= tol,
        "{what}: error {:.3e} > {tol:.0e} at [{i}]: got {}, want {} (scale {scale:.3e})",
        worst.0,
        got[i],
        want[i]
    );
    worst.0
}

/// Asserts `|got − want| ≤ atol + rtol·|want|` elementwise; returns the largest |got − want|/(atol + rtol|want|).
fn assert_close(what: &str, got: &[f32], want: &[f32], atol: f64, rtol: f64) -> f64 {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let mut worst = (0.0f64, 0usize, 0.0f64);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let diff = (g as f64 - w as f64).abs();
        let r = diff / (atol + rtol * (w as f64).abs());
        assert!(
            !r.is_nan() && g.is_finite() == w.is_finite(),
            "{what}[{i}]: got {g}, want {w}"
        );
        if r > worst.0 {
            worst = (r, i, diff / (w as f64).abs().max(1e-30));
        }
    }
    eprintln!(
        "{what:40} max err {:.2} of tolerance (worst relative {:.2e})",
        worst.0, worst.2
    );
    let i = worst.1;
    assert!(
        worst.0 <= 1.0,
        "{what}: at [{i}] got {}, want {} (atol {atol:e}, rtol {rtol:e})",
        got[i],
        want[i]
    );
    worst.0
}

// ------------------------------------------------------------------ kernels

/// Kernel tolerance: f32 results of a handful of operations per element (sums of ≤ 32 terms) are
/// within a few ulps (~1e-7) of the exact value; 1e-5 of the tensor's scale leaves room for
/// accumulation order and f32 exp, and is still 4+ orders below what any real bug produces.
const KERNEL_TOL: f64 = 1e-5;

#[test]
fn rmsnorm_forward_backward_match_torch() {
    let f = Fixture::load("rmsnorm");
    let (n, d, eps) = (f.meta_usize("n"), f.meta_usize("d"), f.meta_f64("eps") as f32);
    let (x, g, dy) = (f.f32("x"), f.f32("g"), f.f32("dy"));
    let mut y = vec![0.0; n * d];
    let mut rstd = vec![0.0; n];
    ops::rmsnorm_forward(&mut y, &mut rstd, &x, &g, n, d, eps);
    // Rows have scales 1e-3..1e2; compare each row relative to its own scale via the normalized
    // output (y is O(1) per row whatever the input scale).
    assert_scaled("rmsnorm y", &y, &f.f32("y"), KERNEL_TOL);
    let (mut dx, mut dg) = (vec![0.0; n * d], vec![0.0; d]);
    ops::rmsnorm_backward(&mut dx, &mut dg, &dy, &x, &g, &rstd, n, d);
    // dx scales as 1/rms(row): compare row by row.
    let want_dx = f.f32("dx");
    for r in 0..n {
        let s = r * d..(r + 1) * d;
        assert_scaled(
            &format!("rmsnorm dx row {r}"),
            &dx[s.clone()],
            &want_dx[s],
            KERNEL_TOL,
        );
    }
    assert_scaled("rmsnorm dgain", &dg, &f.f32("dg"), KERNEL_TOL);
}

#[test]
fn rope_forward_backward_match_torch_at_large_positions() {
    let f = Fixture::load("rope");
    let (h, dh) = (f.meta_usize("n_heads"), f.meta_usize("d_head"));
    let table = ops::RopeTable::new(dh, f.meta_usize("max_len"), f.meta_f64("theta") as f32);
    let positions: Vec<usize> = f.u32("positions").iter().map(|&p| p as usize).collect();
    let mut x = f.f32("x");
    ops::rope_forward(&mut x, &positions, h, &table);
    assert_scaled("rope y", &x, &f.f32("y"), KERNEL_TOL);
    let mut dx = f.f32("dy");
    ops::rope_backward(&mut dx, &positions, h, &table);
    assert_scaled("rope dx", &dx, &f.f32("dx"), KERNEL_TOL);
}

#[test]
fn causal_attention_forward_backward_match_torch() {
    let f = Fixture::load("attention");
    let (b, t, h, dh) = (
        f.meta_usize("batch"),
        f.meta_usize("seq"),
        f.meta_usize("n_heads"),
        f.meta_usize("d_head"),
    );
    let (q, k, v, dout) = (f.f32("q"), f.f32("k"), f.f32("v"), f.f32("dout"));
    let n = b * t * h * dh;
    let mut out = vec![0.0; n];
    let mut att = vec![f32::NAN; b * h * t * t];
    let (x, shape) = (
        ops::Qkv::new(&q[..], &k, &v),
        ops::AttnShape {
            batch: b,
            seq: t,
            n_heads: h,
            d_head: dh,
        },
    );
    ops::attention_forward(&mut out, &mut att, x, shape);
    assert_scaled("attention out", &out, &f.f32("out"), KERNEL_TOL);
    // The probabilities, zeros above the diagonal included (torch's masked softmax gives exact 0).
    assert_close("attention probs", &att, &f.f32("att"), 1e-6, 1e-5);
    let (mut dq, mut dk, mut dv) = (vec![f32::NAN; n], vec![f32::NAN; n], vec![f32::NAN; n]);
    let mut datt = vec![0.0; b * h * t * t];
    ops::attention_backward(
        ops::Qkv::new(&mut dq[..], &mut dk, &mut dv),
        &mut datt,
        &dout,
        x,
        &att,
        shape,
    );
    assert_scaled("attention dq", &dq, &f.f32("dq"), KERNEL_TOL);
    assert_scaled("attention dk", &dk, &f.f32("dk"), KERNEL_TOL);
    assert_scaled("attention dv", &dv, &f.f32("dv"), KERNEL_TOL);
}

#[test]
fn swiglu_and_silu_elementwise_match_torch() {
    let f = Fixture::load("swiglu_silu");
    let n = f.meta_usize("n");
    let (h1, h3) = (f.f32("h1"), f.f32("h3"));
    let mut y = vec![0.0; n];
    ops::swiglu_forward(&mut y, &h1, &h3);
    assert_close("swiglu", &y, &f.f32("swiglu"), 1e-6, 1e-5);
    let (mut d1, mut d3) = (vec![f32::NAN; n], vec![f32::NAN; n]);
    ops::swiglu_backward(&mut d1, &mut d3, &f.f32("dswiglu"), &h1, &h3);
    assert_close("swiglu dh1", &d1, &f.f32("dh1"), 1e-6, 1e-5);
    assert_close("swiglu dh3", &d3, &f.f32("dh3"), 1e-6, 1e-5);
    let x = f.f32("x");
    let mut s = vec![0.0; n];
    ops::silu_forward(&mut s, &x);
    assert_close("silu", &s, &f.f32("silu"), 1e-6, 1e-5);
    let mut dx = vec![f32::NAN; n];
    ops::silu_backward(&mut dx, &f.f32("dsilu"), &x);
    assert_close("silu dx", &dx, &f.f32("dx"), 1e-6, 1e-5);
}

/// The whole FFN composed from the published kernels (matmul + gate), forward and backward.
#[test]
fn swiglu_and_silu_ffn_with_weights_match_torch() {
    let f = Fixture::load("ffn");
    let (n, d, ff) = (f.meta_usize("n"), f.meta_usize("d_model"), f.meta_usize("d_ff"));
    let (x, w1, w2, w3, dy) = (f.f32("x"), f.f32("w1"), f.f32("w2"), f.f32("w3"), f.f32("dy"));
    for kind in ["swiglu", "silu"] {
        let glu = kind == "swiglu";
        let (mut h1, mut h3, mut g, mut y) = (
            vec![0.0; n * ff],
            vec![0.0; n * ff],
            vec![0.0; n * ff],
            vec![0.0; n * d],
        );
        ops::matmul_forward(Precision::F32, &mut h1, &x, &w1, n, d, ff);
        if glu {
            ops::matmul_forward(Precision::F32, &mut h3, &x, &w3, n, d, ff);
            ops::swiglu_forward(&mut g, &h1, &h3);
        } else {
            ops::silu_forward(&mut g, &h1);
        }
        ops::matmul_forward(Precision::F32, &mut y, &g, &w2, n, ff, d);
        assert_scaled(
            &format!("ffn {kind} y"),
            &y,
            &f.f32(&format!("{kind}.y")),
            KERNEL_TOL,
        );

        let (mut dg, mut dw1, mut dw2, mut dw3) = (
            vec![0.0; n * ff],
            vec![0.0; ff * d],
            vec![0.0; d * ff],
            vec![0.0; ff * d],
        );
        let (mut dh1, mut dh3, mut dx) = (vec![0.0; n * ff], vec![0.0; n * ff], vec![0.0; n * d]);
        let prec = Precision::F32;
        ops::matmul_backward_input(prec, &mut dg, &dy, &w2, n, ff, d, true);
        ops::matmul_backward_weight(prec, &mut dw2, &dy, &g, n, ff, d);
        if glu {
            ops::swiglu_backward(&mut dh1, &mut dh3, &dg, &h1, &h3);
            ops::matmul_backward_input(prec, &mut dx, &dh3, &w3, n, d, ff, true);
            ops::matmul_backward_weight(prec, &mut dw3, &dh3, &x, n, d, ff);
        } else {
            ops::silu_backward(&mut dh1, &dg, &h1);
        }
        ops::matmul_backward_input(prec, &mut dx, &dh1, &w1, n, d, ff, true);
        ops::matmul_backward_weight(prec, &mut dw1, &dh1, &x, n, d, ff);
        assert_scaled(
            &format!("ffn {kind} dx"),
            &dx,
            &f.f32(&format!("{kind}.dx")),
            KERNEL_TOL,
        );
        assert_scaled(
            &format!("ffn {kind} dw1"),
            &dw1,
            &f.f32(&format!("{kind}.dw1")),
            KERNEL_TOL,
        );
        assert_scaled(
            &format!("ffn {kind} dw2"),
            &dw2,
            &f.f32(&format!("{kind}.dw2")),
            KERNEL_TOL,
        );
        if glu {
            assert_scaled(
                &format!("ffn {kind} dw3"),
                &dw3,
                &f.f32(&format!("{kind}.dw3")),
                KERNEL_TOL,
            );
        }
    }
}

/// Softmax has no kernel of its own (it lives inside attention and cross-entropy); it is read off
/// `cross_entropy_backward` with scale 1: softmax − onehot(target), plus the one-hot added back.
/// Rows reach |x| ~ 1e30 and contain −inf (masked) entries. Adding 1 back costs up to one ulp of 1
/// (6e-8) at the target, hence the absolute tolerance.
#[test]
fn softmax_matches_torch_on_huge_and_masked_rows() {
    let f = Fixture::load("softmax");
    let shape = f.shape("x");
    let (rows, vocab) = (shape[0], shape[1]);
    let x = f.f32("x");
    // Target: each row's max (a finite entry), so the loss side stays finite too.
    let targets: Vec<u32> = x
        .chunks_exact(vocab)
        .map(|r| (0..vocab).fold(0, |b, i| if r[i] > r[b] { i } else { b }) as u32)
        .collect();
    let mut p = vec![f32::NAN; rows * vocab];
    ops::cross_entropy_backward(&mut p, &x, &targets, vocab, 1.0);
    for (r, &t) in targets.iter().enumerate() {
        p[r * vocab + t as usize] += 1.0;
    }
    assert_close("softmax", &p, &f.f32("p"), 2e-7, 1e-5);
}

/// Cross-entropy through the library API (loss.rs) and the per-row kernel, on ordinary logits and
/// on extreme ones (|logits| 1e4..1e30, losses up to ~1e5). The loss is a mean of 12 rows each
/// within a few ulps; for the extreme rows an f32 loss near 1e5 has an ulp of ~0.008, so the
/// relative tolerance (1e-6) is what matters there.
#[test]
fn cross_entropy_matches_torch_including_extreme_logits() {
    let f = Fixture::load("cross_entropy");
    let vocab = f.meta_usize("vocab");
    // An out-of-range target is an error that names it, not a panic or a silent clamp.
    let logits = f.f32("logits");
    let mut bad = f.u32("targets");
    bad[4] = vocab as u32;
    let err = cross_entropy(&logits, &bad, vocab).unwrap_err().to_string();
    assert!(
        err.contains(&format!("{vocab}")) && err.contains("position 4"),
        "{err}"
    );
    let mut dl = vec![0.0; logits.len()];
    assert!(cross_entropy_with_grad(&logits, &bad, vocab, &mut dl).is_err());
    for prefix in ["", "extreme."] {
        let logits = f.f32(&format!("{prefix}logits"));
        let targets = f.u32(&format!("{prefix}targets"));
        // Leading batch dims are flattened: (2, 3, vocab) or (2, 2, 3, vocab) → (N, vocab).
        let shape = f.shape(&format!("{prefix}logits"));
        assert_eq!(*shape.last().unwrap(), vocab);
        assert_eq!(targets.len(), shape[..shape.len() - 1].iter().product::<usize>());
        let want_loss = f.scalar(&format!("{prefix}loss"));
        let loss = cross_entropy(&logits, &targets, vocab).unwrap();
        let mut dl = vec![f32::NAN; logits.len()];
        let loss2 = cross_entropy_with_grad(&logits, &targets, vocab, &mut dl).unwrap();
        assert!(loss.is_finite() && dl.iter().all(|x| x.is_finite()));
        assert_close(
            &format!("cross_entropy {prefix}loss"),
            &[loss],
            &[want_loss],
            1e-6,
            1e-6,
        );
        assert_close(
            &format!("cross_entropy_with_grad {prefix}loss"),
            &[loss2],
            &[want_loss],
            1e-6,
            1e-6,
        );
        // Gradient entries are (p − onehot)/N, |·| ≤ 1/N; 1e-6 of that scale is a few ulps.
        assert_scaled(
            &format!("cross_entropy {prefix}dlogits"),
            &dl,
            &f.f32(&format!("{prefix}dlogits")),
            1e-6,
        );
        let mut rows = vec![f32::NAN; targets.len()];
        ops::cross_entropy_forward(&mut rows, &logits, &targets, vocab);
        assert_close(
            &format!("cross_entropy_forward {prefix}rows"),
            &rows,
            &f.f32(&format!("{prefix}row_loss")),
            1e-6,
            1e-6,
        );
    }
}

// ------------------------------------------------------------------ the whole model

/// Whole-model tolerance relative to each tensor's scale. Through 2 layers, f32 errors of ~1e-7
/// per operation grow by the layers' gains and sums of up to 64 terms (vocab) to ~1e-6; the
/// parameter gradients are sums over 32 positions of such products. Observed: ≤ 1e-6. 1e-5 gives a
/// 10x margin for other accumulation orders (thread counts, SIMD widths) while any structural error
/// (and even RMSNorm's eps off by 10x, ~1e-2 with these small embeddings) is far above it.
const MODEL_TOL: f64 = 1e-5;

fn load_model(f: &Fixture) -> Model {
    let config: ModelConfig = serde_json::from_str(f.meta_str("config")).unwrap();
    config.validate().unwrap();
    let params = Fixture::load(f.meta_str("params"));
    let mut model = Model::zeros(config.clone()).unwrap();
    for spec in config.param_specs() {
        assert_eq!(params.shape(&spec.name), spec.shape, "{}: shape", spec.name);
        model
            .param_mut(&spec.name)
            .unwrap_or_else(|| panic!("model has no parameter {}", spec.name))
            .copy_from_slice(&params.f32(&spec.name));
    }
    model
}

fn check_model(tag: &str) {
    let f = Fixture::load(&format!("model_{tag}"));
    let mut model = load_model(&f);
    let config = model.config.clone();
    let vocab = config.vocab_size;
    let (ids, targets) = (f.u32("ids"), f.u32("targets"));
    let shape = f.shape("ids");
    let (b, t) = (shape[0], shape[1]);
    let want_logits = f.f32("logits");
    let want_loss = f.scalar("loss");

    // Forward only: logits and loss.
    let mut acts = Activations::new(&config, b, t);
    let logits = model.forward_logits(&mut acts, &ids).unwrap().to_vec();
    assert_scaled(&format!("{tag} logits"), &logits, &want_logits, MODEL_TOL);
    let loss = model.forward_loss(&mut acts, &ids, &targets).unwrap();
    assert_close(&format!("{tag} forward_loss"), &[loss], &[want_loss], 1e-5, 1e-5);

    // Forward + backward: the loss and every parameter's gradient (twice, to see that the
    // gradients accumulate and zero_grads resets them).
    model.zero_grads();
    let loss = model.forward_backward(&mut acts, &ids, &targets).unwrap();
    assert_close(
        &format!("{tag} forward_backward loss"),
        &[loss],
        &[want_loss],
        1e-5,
        1e-5,
    );
    for spec in config.param_specs() {
        let want = f.f32(&format!("grad.{}", spec.name));
        assert_scaled(
            &format!("{tag} d{}", spec.name),
            &model.grads[spec.range()],
            &want,
            MODEL_TOL,
        );
    }
    let first = model.grads.clone();
    model.forward_backward(&mut acts, &ids, &targets).unwrap();
    let doubled: Vec<f32> = first.iter().map(|g| 2.0 * g).collect();
    assert_scaled(&format!("{tag} accumulated grads"), &model.grads, &doubled, 1e-6);
    model.zero_grads();
    assert!(model.grads.iter().all(|&g| g == 0.0));

    // Incremental inference with a KV cache: one token per sequence per call; the logits of
    // every position must equal the full forward's.
    let mut cache = KvCache::new(&config, b, t);
    let mut step = vec![0.0f32; b * vocab];
    let mut got = vec![0.0f32; b * t * vocab];
    for pos in 0..t {
        let toks: Vec<u32> = (0..b).map(|s| ids[s * t + pos]).collect();
        model.forward_infer(&mut cache, &toks, &mut step).unwrap();
        for s in 0..b {
            got[(s * t + pos) * vocab..(s * t + pos + 1) * vocab]
                .copy_from_slice(&step[s * vocab..(s + 1) * vocab]);
        }
    }
    assert_scaled(&format!("{tag} kv-cache logits"), &got, &want_logits, MODEL_TOL);

    // A shorter sequence (seq < context_length), batch 1: loss, and the whole prompt at once
    // through the cache gives the last position's logits.
    let (sids, stargets) = (f.u32("short.ids"), f.u32("short.targets"));
    let n = sids.len();
    let want_short = f.f32("short.logits");
    let mut sacts = Activations::new(&config, 1, n);
    let sloss = model.forward_loss(&mut sacts, &sids, &stargets).unwrap();
    assert_close(
        &format!("{tag} short loss"),
        &[sloss],
        &[f.scalar("short.loss")],
        1e-5,
        1e-5,
    );
    let mut cache = KvCache::new(&config, 1, config.context_length);
    let mut last = vec![0.0f32; vocab];
    model.forward_infer(&mut cache, &sids, &mut last).unwrap();
    assert_scaled(
        &format!("{tag} prompt last logits"),
        &last,
        &want_short[(n - 1) * vocab..],
        MODEL_TOL,
    );
}

#[test]
fn model_pre_rope_swiglu_matches_torch() {
    check_model("pre_rope_swiglu");
}

#[test]
fn model_post_norm_matches_torch() {
    check_model("post_rope_swiglu");
}

#[test]
fn model_no_norm_matches_torch() {
    check_model("none_rope_swiglu");
}

#[test]
fn model_no_position_matches_torch() {
    check_model("pre_nope_swiglu");
}

#[test]
fn model_silu_ffn_matches_torch() {
    check_model("pre_rope_silu");
}

// ------------------------------------------------------------------ training math

/// 10 steps of our AdamW against torch.optim.AdamW (f32, CPU single-tensor path, the default
/// hyperparameters β = (0.9, 0.95), ε = 1e-8, λ = 0.1 given to torch as the f32 values our config
/// holds; the second tensor excluded from decay, the lr scheduled by lr_cosine each step, one step
/// with a zero gradient, one tensor with ~1e-8 gradients where ε matters).
/// Formula: torch's own order: θ·(1 − αλ); m ← m + (1−β1)(g − m) (its `lerp_`);
/// v ← v·β2 + (1−β2)·g·g (its `addcmul_`); θ + (−α/(1−β1ᵗ))·m / (√v/√(1−β2ᵗ) + ε), the scalars in
/// f64 like Python's floats. torch rounds once where we round twice in places (its lerp_/addcmul_
/// use FMAs, its AVX-512 sqrt is not always correctly rounded), so elements differ by an ulp
/// here and there: observed ≤ 2.2e-7 relative after 10 steps (7e-7 with β1 = 0.3).
/// Tolerance: 1e-6 relative (+1e-8 absolute for entries passing near 0) for the parameters, and
/// 1e-6 of each state tensor's scale for m and v (an EMA can cancel to ~0, where relative error
/// means nothing). A wrong order (decay after the update, ε inside the root, a missing bias
/// correction, the unscheduled lr) fails by 1e-3 or more.
#[test]
fn adamw_matches_torch_over_10_steps() {
    check_adamw("adamw");
}

/// As above with torch called exactly as users do, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1
/// as Python doubles; ours are the nearest f32 values (1e-8 relative apart). Same tolerances.
#[test]
fn adamw_matches_torch_with_python_default_hyperparameters() {
    check_adamw("adamw_py_defaults");
}

/// β1 = 0.3: torch's `lerp_` switches to its other formula for weights ≥ 0.5, and so do we.
#[test]
fn adamw_matches_torch_with_small_beta1() {
    check_adamw("adamw_beta1_0.3");
}

/// Runs the 10 steps of fixture `name`; returns the largest error as a fraction of its tolerance.
fn check_adamw(name: &str) -> f64 {
    let f = Fixture::load(name);
    let steps = f.meta_usize("steps");
    let config = f.adamw();
    let defaults = AdamWConfig {
        lr: 0.0,
        beta1: config.beta1,
        ..AdamWConfig::default()
    };
    assert_eq!(
        config, defaults,
        "fixture {name} uses the default hyperparameters (β1 aside)"
    );
    let sched: serde_json::Value = serde_json::from_str(f.meta_str("schedule")).unwrap();
    let sf = |k: &str| sched[k].as_f64().unwrap();
    let mut params = f.f32("init");
    let n = params.len();
    let (grads, lrs, want) = (f.f32("grads"), f.f32("lr"), f.f32("params"));
    let mut opt = AdamW::new(config, n);
    opt.no_decay = std::iter::once(f.meta_usize("no_decay_start")..f.meta_usize("no_decay_end")).collect();
    let mut worst = 0.0f64;
    for s in 0..steps {
        let lr = lr_cosine(
            s as u64,
            sf("max_lr") as f32,
            sf("min_lr") as f32,
            sf("warmup") as u64,
            sf("cycle") as u64,
        );
        // lr_cosine reproduces the scheduled lr torch got (to f32 rounding of a libm cos); the
        // step is then fed torch's exact value so the comparison is about AdamW alone.
        assert_close(&format!("{name} lr at step {s}"), &[lr], &[lrs[s]], 1e-12, 1e-6);
        opt.step(&mut params, &grads[s * n..(s + 1) * n], lrs[s]);
        worst = worst.max(assert_close(
            &format!("{name} params after step {}", s + 1),
            &params,
            &want[s * n..(s + 1) * n],
            1e-8,
            1e-6,
        ));
    }
    assert_eq!(opt.t, steps as u64);
    worst = worst.max(assert_scaled(&format!("{name} m after 10 steps"), &opt.m, &f.f32("m"), 1e-6) / 1e-6);
    worst.max(assert_scaled(&format!("{name} v after 10 steps"), &opt.v, &f.f32("v"), 1e-6) / 1e-6)
}

/// lr_cosine against the formula in f64 (Python), over warmup, cosine and tail, including the
/// boundaries t = Tw, Tc, Tc + 1 and a one-step cycle. Our f32 result is one rounding away.
#[test]
fn lr_cosine_matches_reference_values() {
    let f = Fixture::load("schedule");
    let (t, mx, mn, tw, tc, lr) = (
        f.u32("t"),
        f.f32("max_lr"),
        f.f32("min_lr"),
        f.u32("warmup"),
        f.u32("cycle"),
        f.f64("lr"),
    );
    let got: Vec<f32> = (0..t.len())
        .map(|i| lr_cosine(t[i] as u64, mx[i], mn[i], tw[i] as u64, tc[i] as u64))
        .collect();
    let want: Vec<f32> = lr.iter().map(|&x| x as f32).collect();
    assert_close("lr_cosine", &got, &want, 1e-12, 1e-6);
}

/// clip_grad_norm against torch.nn.utils.clip_grad_norm_ (f32 per-tensor norms, then the norm of
/// norms) above and below max_norm. Our norm is accumulated in f64, so it is closer to the exact
/// norm than torch's; both are within ~1e-7 relative of it: tolerance 1e-6 relative.
#[test]
fn clip_grad_norm_matches_torch() {
    let f = Fixture::load("clip");
    let base = f.f32("grads");
    let exact = f.f64("norm_f64")[0];
    assert!((grad_norm(&base) - exact).abs() / exact < 1e-12);
    for tag in ["above", "below"] {
        let mut g = base.clone();
        let norm = clip_grad_norm(&mut g, f.scalar(&format!("{tag}.max_norm")));
        assert_close(
            &format!("clip {tag} norm"),
            &[norm],
            &[f.scalar(&format!("{tag}.norm"))],
            0.0,
            1e-6,
        );
        assert_close(
            &format!("clip {tag} grads"),
            &g,
            &f.f32(&format!("{tag}.clipped")),
            1e-9,
            1e-6,
        );
    }
}

/// The training math composed as the training loop uses it, against PyTorch in float64: 3 steps of
/// the tiny pre-norm model, each zero_grads → forward_backward on a new batch → clip_grad_norm
/// (max 0.5, active every step) → lr_cosine → AdamW with the 1-D gains excluded from decay
/// (`no_decay_ranges` by shape), ε = 1e-6 (see tools/gen_fixtures.py).
/// Tolerances: loss 1e-5 relative and grad norm 1e-5 relative (f32 forward/backward, see
/// MODEL_TOL); parameters after 3 steps within 1e-5 of each tensor's scale plus 0.5% of the
/// largest lr: Adam's update lr·m/(√v + ε) is bounded by lr but its sensitivity to a gradient
/// error δg is up to lr·δg/ε, and f32 gradients carry δg ~ 1e-8 absolute. Observed: ≤ 0.06% of lr.
/// A decayed gain (λ·θ ≈ 10% of lr per step), the wrong step's lr or a gradient bug fails.
#[test]
fn three_training_steps_match_torch() {
    let f = Fixture::load("train_steps");
    let mut model = load_model(&f);
    let config = model.config.clone();
    let steps = f.meta_usize("steps");
    let max_norm = f.meta_f64("max_norm") as f32;
    let sched: serde_json::Value = serde_json::from_str(f.meta_str("schedule")).unwrap();
    let sf = |k: &str| sched[k].as_f64().unwrap();
    let adam = f.adamw();
    let mut opt = AdamW::new(adam, model.params.len()).with_no_decay(&model.specs, |s| s.shape.len() == 1);
    let (b, t) = (2, config.context_length);
    let mut acts = Activations::new(&config, b, t);
    let mut max_lr = 0.0f32;
    for s in 0..steps {
        let (ids, targets) = (f.u32(&format!("step{s}.ids")), f.u32(&format!("step{s}.targets")));
        model.zero_grads();
        let loss = model.forward_backward(&mut acts, &ids, &targets).unwrap();
        assert_close(
            &format!("train step {s} loss"),
            &[loss],
            &[f.scalar(&format!("step{s}.loss"))],
            0.0,
            1e-5,
        );
        let norm = clip_grad_norm(&mut model.grads, max_norm);
        let want_norm = f.scalar(&format!("step{s}.grad_norm"));
        assert!(want_norm > max_norm, "fixture should exercise clipping");
        assert_close(
            &format!("train step {s} grad norm"),
            &[norm],
            &[want_norm],
            0.0,
            1e-5,
        );
        let lr = lr_cosine(
            s as u64 + 1,
            sf("max_lr") as f32,
            sf("min_lr") as f32,
            sf("warmup") as u64,
            sf("cycle") as u64,
        );
        assert_close(
            &format!("train step {s} lr"),
            &[lr],
            &[f.scalar(&format!("step{s}.lr"))],
            0.0,
            1e-6,
        );
        max_lr = max_lr.max(lr);
        opt.step(&mut model.params, &model.grads, lr);
    }
    for spec in &model.specs {
        let want = f.f32(&format!("final.{}", spec.name));
        let got = &model.params[spec.range()];
        let scale = want.iter().fold(0.0f64, |m, &w| m.max((w as f64).abs()));
        let atol = 1e-5 * scale + 0.005 * max_lr as f64;
        let worst = got
            .iter()
            .zip(&want)
            .map(|(&g, &w)| (g as f64 - w as f64).abs())
            .fold(0.0, f64::max);
        eprintln!(
            "{:40} max |Δ| {worst:.2e} = {:.3} lr",
            format!("train final {}", spec.name),
            worst / max_lr as f64
        );
        assert!(
            worst <= atol,
            "{}: parameters after {steps} steps differ by {worst:e} > {atol:e}",
            spec.name
        );
    }
}
