//! Times the kernels of one training step at a preset's shapes (where the step's time goes).
//! `cargo run --release -p ferrolm-nn --example kernel_times -- small 8 [threads] [f32|bf16] [reps]`
//! (reps: timed calls per kernel, median printed; default 3). `tools/bench_matmul_vs_torch.py`
//! runs it next to PyTorch's matmuls.
//! The last lines add the kernels up per training step (n_layers blocks + head + loss).

use ferrolm_nn::ops::*;
use ferrolm_nn::ModelConfig;

mod common;

/// The median of `reps` calls of `f` in seconds, printed with `name` and the GFLOP/s of `flops`.
fn time(name: &str, flops: f64, reps: usize, mut f: impl FnMut()) -> f64 {
    let t = common::median(reps, &mut f);
    println!("{name:<34} {:>9.2} ms {:>8.1} GFLOP/s", t * 1e3, flops / t / 1e9);
    t
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let c = ModelConfig::preset(args.get(1).map_or("small", |s| s.as_str())).expect("small|tiny");
    let batch: usize = args.get(2).map_or(8, |s| s.parse().unwrap());
    let threads: usize = args.get(3).map_or(2, |s| s.parse().unwrap());
    let prec: Precision = args.get(4).map_or(Precision::F32, |s| s.parse().unwrap());
    println!("matmuls: {}", prec.backend());
    let (mut layer_mm, mut head_mm, mut layer_other) = (0.0, 0.0, 0.0);
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
        .unwrap();
    let (t, d, f, v, h) = (c.context_length, c.d_model, c.d_ff, c.vocab_size, c.n_heads);
    let n = batch * t;
    let x = vec![0.01f32; n * v.max(f)];
    let w = vec![0.01f32; v * d.max(f)];
    let mut y = vec![0.0f32; n * v.max(f)];
    let mut dw = vec![0.0f32; v * d.max(f)];
    let reps: usize = args.get(5).map_or(3, |s| s.parse().unwrap());
    for (name, din, dout) in [
        ("qkvo d→d", d, d),
        ("w1/w3 d→f", d, f),
        ("w2 f→d", f, d),
        ("head d→V", d, v),
    ] {
        let fl = 2.0 * (n * din * dout) as f64;
        let per_layer = match name {
            "qkvo d→d" => 4.0,
            "w1/w3 d→f" => 2.0,
            "w2 f→d" => 1.0,
            _ => 0.0,
        };
        // Inputs of each product: x as n×din or n×dout, the weight din×dout.
        let (x_in, x_out, wt) = (&x[..n * din], &x[..n * dout], &w[..din * dout]);
        let mut total = 0.0;
        total += time(&format!("matmul fwd {name}"), fl, reps, || {
            matmul_forward(prec, &mut y[..n * dout], x_in, wt, n, din, dout)
        });
        total += time(&format!("matmul bwd-in {name}"), fl, reps, || {
            matmul_backward_input(prec, &mut y[..n * din], x_out, wt, n, din, dout, false)
        });
        total += time(&format!("matmul bwd-w {name}"), fl, reps, || {
            matmul_backward_weight(prec, &mut dw[..din * dout], x_out, &y[..n * din], n, din, dout)
        });
        // The f32 model takes the W1/W3 weight gradients from a transposed output gradient that
        // the SwiGLU backward writes: that form, without the transpose, for every shape. (Not
        // added to the estimate below, which keeps the plain form.)
        time(&format!("matmul bwd-w-t {name}"), fl, reps, || {
            let (dwt, y_in) = (&mut dw[..din * dout], &y[..n * din]);
            matmul_backward_weight_t(prec, dwt, x_out, n, y_in, n, din, dout)
        });
        if per_layer > 0.0 {
            layer_mm += per_layer * total;
        } else {
            head_mm += total;
        }
    }
    let dh = d / h;
    let q = vec![0.1f32; n * d];
    let mut att = vec![0.0f32; batch * h * t * t];
    let mut datt = att.clone();
    let mut o = vec![0.0f32; n * d];
    let (mut dq, mut dk, mut dv) = (o.clone(), o.clone(), o.clone());
    let afl = 2.0 * (batch * h * t * t * dh) as f64; // causal half of 2 products
    let (x, shape) = (
        Qkv::new(&q[..], &q, &q),
        AttnShape {
            batch,
            seq: t,
            n_heads: h,
            d_head: dh,
        },
    );
    time("attention fwd", afl, reps, || {
        attention_forward(&mut o, &mut att, x, shape)
    });
    time("attention bwd", 2.0 * afl, reps, || {
        attention_backward(Qkv::new(&mut dq, &mut dk, &mut dv), &mut datt, &q, x, &att, shape)
    });
    layer_other += 2.0
        * time("attention fwd (recompute)", afl, reps, || {
            attention_forward_recompute(&mut o, x, shape)
        });
    layer_other += time("attention bwd (recompute)", 2.0 * afl, reps, || {
        attention_backward_recompute(Qkv::new(&mut dq, &mut dk, &mut dv), &q, x, shape)
    });
    let mut rstd = vec![0.0f32; n];
    let g = vec![1.0f32; d];
    let mut dg = vec![0.0f32; d];
    layer_other += 2.0
        * time("rmsnorm fwd", 0.0, reps, || {
            rmsnorm_forward(&mut o, &mut rstd, &q, &g, n, d, 1e-5)
        });
    layer_other += 2.0
        * time("rmsnorm bwd", 0.0, reps, || {
            rmsnorm_backward(&mut dq, &mut dg, &o, &q, &g, &rstd, n, d)
        });
    let pos: Vec<usize> = (0..n).map(|i| i % t).collect();
    let table = RopeTable::new(dh, t, 10000.0);
    layer_other += 4.0 * time("rope", 0.0, reps, || rope_forward(&mut dq, &pos, h, &table));
    let (mut a, b) = (vec![0.1f32; n * f], vec![0.1f32; n * f]);
    let mut a2 = a.clone();
    layer_other += time("swiglu fwd", 0.0, reps, || swiglu_forward(&mut a, &b, &b));
    layer_other += time("swiglu bwd", 0.0, reps, || {
        swiglu_backward(&mut a, &mut a2, &b, &b, &b)
    });
    let tg: Vec<u32> = (0..n as u32).map(|i| i % v as u32).collect();
    let mut losses = vec![0.0f32; n];
    let mut logits = vec![0.1f32; n * v];
    let ce = time("cross-entropy fused", 0.0, reps, || {
        cross_entropy_fused(&mut logits, &mut losses, &tg, v, 1.0)
    });
    layer_other += 4.0 * time("residual add", 0.0, reps, || residual_forward(&mut dq, &o, &q));
    let n_params = c.param_specs().last().map_or(0, |s| s.range().end);
    let mut opt = ferrolm_nn::optim::AdamW::new(Default::default(), n_params);
    let (mut params, grads) = (vec![0.01f32; n_params], vec![1e-3f32; n_params]);
    time("adamw step (unfused)", 0.0, reps, || {
        opt.step(&mut params, &grads, 1e-3)
    });
    let mut all_grads = vec![0.0f32; n_params];
    time("zero grads (unfused, serial)", 0.0, reps, || {
        all_grads.iter_mut().for_each(|g| *g = 0.0)
    });
    // What a training step runs: the AdamW pass applies the clip factor and zeroes the gradients.
    let adamw = time("adamw + clip scale + zero, fused", 0.0, reps, || {
        opt.step_scaled_and_zero_grads(&mut params, &mut all_grads, 1e-3, 0.5)
    });
    let zero = 0.0;
    let l = c.n_layers as f64;
    let total = l * (layer_mm + layer_other) + head_mm + ce + adamw + zero;
    println!(
        "per step (estimate): {:.0} ms = block matmuls {:.0} + attention/norms/rope/swiglu/residual {:.0} \
         + head matmuls {:.0} + cross-entropy {:.0} + AdamW and zeroing {:.0}",
        total * 1e3,
        l * layer_mm * 1e3,
        l * layer_other * 1e3,
        head_mm * 1e3,
        ce * 1e3,
        (adamw + zero) * 1e3
    );
}
