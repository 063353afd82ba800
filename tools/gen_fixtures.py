#!/usr/bin/env python3
"""Writes the PyTorch reference fixtures of crates/nn (issue 3) to crates/nn/tests/fixtures/.

    python3 tools/gen_fixtures.py            # regenerate (deterministic: fixed seeds)
    python3 tools/gen_fixtures.py --check    # regenerate to a temp dir and compare with the committed files

crates/nn/tests/torch_fixtures.rs reads them, so `cargo test` needs no Python. Every file is a
safetensors file of small f32 / u32 / f64 tensors; scalar settings (shapes, the model config as
JSON) are in its string metadata.

How the references are computed:
- Kernels and the whole model: inputs are drawn as f32 values, then the forward and the backward
  (autograd, given an upstream gradient) run in float64 and the results are rounded once to f32.
  So the fixture holds the exact answer to f32 precision, and the Rust tolerance only has to cover
  Rust's own f32 rounding.
- The model is written here from issue 3's conventions (not imported from anywhere): Linear
  y = x Wᵀ, RMSNorm eps 1e-5, RoPE on interleaved pairs (x[2j], x[2j+1]) with angle
  pos·θ^(−2j/d_head), heads as consecutive row blocks of W_q/W_k/W_v, causal softmax(QKᵀ/√d_head),
  SwiGLU W2(SiLU(W1 x) ⊙ W3 x) or SiLU W2 SiLU(W1 x), untied LM head, no biases.
- AdamW and gradient clipping run in float32 through torch.optim.AdamW (foreach=False, the CPU
  single-tensor path) and torch.nn.utils.clip_grad_norm_, the code users compare against.
"""

import argparse
import json
import math
import os
import sys
import tempfile

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(HERE, "..", "crates", "nn", "tests", "fixtures")
EPS = 1e-5

rng = np.random.default_rng(20250601)


def randn(*shape, scale=1.0):
    """float64 tensor holding f32-representable N(0, scale²) values."""
    x = (rng.standard_normal(shape) * scale).astype(np.float32)
    return torch.from_numpy(x).double()


def f32(t):
    return np.ascontiguousarray(t.detach().to(torch.float64).numpy().astype(np.float32))


def u32(t):
    return np.ascontiguousarray(np.asarray(t, dtype=np.uint32))


def save(out_dir, name, tensors, meta):
    # safetensors.numpy writes a strided view's raw buffer, not its elements: copy to contiguous.
    tensors = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
    meta = {k: (v if isinstance(v, str) else json.dumps(v)) for k, v in meta.items()}
    path = os.path.join(out_dir, name + ".safetensors")
    # The header's key order is not stable between runs: leave an identical fixture untouched so
    # regenerating does not churn git.
    if os.path.exists(path):
        with safe_open(path, "np") as f:
            same = f.metadata() == meta and set(f.keys()) == set(tensors) and all(
                f.get_tensor(k).dtype == v.dtype and np.array_equal(f.get_tensor(k), v, equal_nan=True)
                for k, v in tensors.items())
        if same:
            return
    save_file(tensors, path, metadata=meta)


# ---------------------------------------------------------------- reference math (float64)


def rmsnorm(x, g):
    return x / torch.sqrt((x * x).mean(-1, keepdim=True) + EPS) * g


def rope(x, positions, n_heads, theta):
    """x (..., n_heads·d_head) with positions broadcasting against x's leading dims."""
    d = x.shape[-1]
    dh = d // n_heads
    j = torch.arange(dh // 2, dtype=torch.float64)
    freq = float(theta) ** (-2.0 * j / dh)
    ang = positions.to(torch.float64)[..., None] * freq  # (..., dh/2)
    c, s = torch.cos(ang)[..., None, :], torch.sin(ang)[..., None, :]  # (..., 1, dh/2)
    xs = x.reshape(*x.shape[:-1], n_heads, dh // 2, 2)
    a, b = xs[..., 0], xs[..., 1]
    out = torch.stack([a * c - b * s, a * s + b * c], dim=-1)
    return out.reshape(x.shape)


def attention(q, k, v, n_heads, return_probs=False):
    """q, k, v (B, T, n_heads·d_head) → (B, T, n_heads·d_head), causal."""
    B, T, d = q.shape
    dh = d // n_heads

    def heads(x):
        return x.reshape(B, T, n_heads, dh).transpose(1, 2)  # (B, H, T, dh)

    qh, kh, vh = heads(q), heads(k), heads(v)
    scores = qh @ kh.transpose(-1, -2) / math.sqrt(dh)
    mask = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
    probs = torch.softmax(scores.masked_fill(mask, float("-inf")), dim=-1)
    out = (probs @ vh).transpose(1, 2).reshape(B, T, d)
    return (out, probs) if return_probs else out


def silu(x):
    return x * torch.sigmoid(x)


def linear(x, w):
    return x @ w.T


def model_logits(cfg, P, ids):
    B, T = ids.shape
    d, H = cfg["d_model"], cfg["n_heads"]
    x = P["token_embeddings.weight"][ids]
    pos = torch.arange(T).expand(B, T)

    def attn(h, i):
        p = f"layers.{i}.attn."
        q, k, v = (linear(h, P[p + n + "_proj.weight"]) for n in "qkv")
        if cfg["position"] == "rope":
            q, k = rope(q, pos, H, cfg["rope_theta"]), rope(k, pos, H, cfg["rope_theta"])
        return linear(attention(q, k, v, H), P[p + "output_proj.weight"])

    def ffn(h, i):
        p = f"layers.{i}.ffn."
        a = silu(linear(h, P[p + "w1.weight"]))
        if cfg["ffn"] == "swiglu":
            a = a * linear(h, P[p + "w3.weight"])
        return linear(a, P[p + "w2.weight"])

    for i in range(cfg["n_layers"]):
        ln1, ln2 = P.get(f"layers.{i}.ln1.weight"), P.get(f"layers.{i}.ln2.weight")
        if cfg["norm"] == "pre":
            x = x + attn(rmsnorm(x, ln1), i)
            x = x + ffn(rmsnorm(x, ln2), i)
        elif cfg["norm"] == "post":
            x = rmsnorm(x + attn(x, i), ln1)
            x = rmsnorm(x + ffn(x, i), ln2)
        else:
            x = x + attn(x, i)
            x = x + ffn(x, i)
    x = rmsnorm(x, P["ln_final.weight"])
    return linear(x, P["lm_head.weight"])


def param_specs(cfg):
    """State-dict names and shapes in config.rs's order (ModelConfig::param_specs)."""
    v, d, f = cfg["vocab_size"], cfg["d_model"], cfg["d_ff"]
    specs = [("token_embeddings.weight", (v, d))]
    for i in range(cfg["n_layers"]):
        for p in ["q", "k", "v", "output"]:
            specs.append((f"layers.{i}.attn.{p}_proj.weight", (d, d)))
        if cfg["norm"] != "none":
            specs += [(f"layers.{i}.ln1.weight", (d,)), (f"layers.{i}.ln2.weight", (d,))]
        specs += [(f"layers.{i}.ffn.w1.weight", (f, d)), (f"layers.{i}.ffn.w2.weight", (d, f))]
        if cfg["ffn"] == "swiglu":
            specs.append((f"layers.{i}.ffn.w3.weight", (f, d)))
    specs += [("ln_final.weight", (d,)), ("lm_head.weight", (v, d))]
    return specs


def backward(outputs_and_upstream, inputs):
    """Gradients of Σ out·dout w.r.t. inputs (autograd, float64)."""
    total = sum((o * g).sum() for o, g in outputs_and_upstream)
    return torch.autograd.grad(total, inputs)


def leaf(t):
    return t.clone().requires_grad_(True)


# ---------------------------------------------------------------- kernel fixtures


def gen_rmsnorm(out):
    n, d = 6, 16
    # Rows of very different scales (RMSNorm must be scale-invariant up to eps).
    scales = torch.tensor([1.0, 1e-3, 30.0, 0.5, 2.0, 1e2], dtype=torch.float64)[:, None]
    x = leaf(randn(n, d) * scales)
    g = leaf(1.0 + randn(d, scale=0.2))
    y = rmsnorm(x, g)
    dy = randn(n, d)
    dx, dg = backward([(y, dy)], [x, g])
    save(out, "rmsnorm", {"x": f32(x), "g": f32(g), "y": f32(y), "dy": f32(dy), "dx": f32(dx),
                          "dg": f32(dg)}, {"n": n, "d": d, "eps": EPS})


def gen_rope(out):
    n_heads, dh, theta = 3, 8, 10000.0
    # Explicit positions (rows), including large ones where f32 angle arithmetic would drift.
    positions = torch.tensor([0, 1, 2, 3, 7, 15, 100, 1000, 4095], dtype=torch.int64)
    x = leaf(randn(len(positions), n_heads * dh))
    y = rope(x, positions, n_heads, theta)
    dy = randn(*y.shape)
    (dx,) = backward([(y, dy)], [x])
    save(out, "rope", {"x": f32(x), "positions": u32(positions.numpy()), "y": f32(y), "dy": f32(dy),
                       "dx": f32(dx)}, {"n_heads": n_heads, "d_head": dh, "theta": theta, "max_len": 4096})


def gen_attention(out):
    B, T, H, dh = 2, 7, 3, 4
    q, k, v = (leaf(randn(B, T, H * dh, scale=1.5)) for _ in range(3))
    o, probs = attention(q, k, v, H, return_probs=True)
    do = randn(*o.shape)
    dq, dk, dv = backward([(o, do)], [q, k, v])
    save(out, "attention", {"q": f32(q), "k": f32(k), "v": f32(v), "out": f32(o), "att": f32(probs),
                            "dout": f32(do), "dq": f32(dq), "dk": f32(dk), "dv": f32(dv)},
         {"batch": B, "seq": T, "n_heads": H, "d_head": dh})


def gen_swiglu_silu(out):
    n = 40
    h1 = leaf(randn(n, scale=3.0))
    h3 = leaf(randn(n))
    y = silu(h1) * h3
    dy = randn(n)
    dh1, dh3 = backward([(y, dy)], [h1, h3])
    x = leaf(randn(n, scale=4.0))
    s = silu(x)
    ds = randn(n)
    (dx,) = backward([(s, ds)], [x])
    save(out, "swiglu_silu", {"h1": f32(h1), "h3": f32(h3), "swiglu": f32(y), "dswiglu": f32(dy),
                              "dh1": f32(dh1), "dh3": f32(dh3), "x": f32(x), "silu": f32(s),
                              "dsilu": f32(ds), "dx": f32(dx)}, {"n": n})


def gen_ffn(out):
    """The whole FFN with its weights: SwiGLU W2(SiLU(W1 x) ⊙ W3 x) and SiLU W2 SiLU(W1 x)."""
    n, d, f = 5, 8, 12
    x = randn(n, d)
    w1, w3 = randn(f, d, scale=0.4), randn(f, d, scale=0.4)
    w2 = randn(d, f, scale=0.3)
    dy = randn(n, d)
    tensors = {"x": f32(x), "w1": f32(w1), "w2": f32(w2), "w3": f32(w3), "dy": f32(dy)}
    for kind in ["swiglu", "silu"]:
        xs, a, b, c = leaf(x), leaf(w1), leaf(w2), leaf(w3)
        h = silu(linear(xs, a))
        if kind == "swiglu":
            h = h * linear(xs, c)
        y = linear(h, b)
        grads = backward([(y, dy)], [xs, a, b, c] if kind == "swiglu" else [xs, a, b])
        tensors[f"{kind}.y"] = f32(y)
        for name, g in zip(["dx", "dw1", "dw2", "dw3"], grads):
            tensors[f"{kind}.{name}"] = f32(g)
    save(out, "ffn", tensors, {"n": n, "d_model": d, "d_ff": f})


def gen_softmax(out):
    """Row softmax, including rows of huge magnitude and -inf (masked) entries."""
    x = randn(5, 9, scale=2.0)
    x[1] *= 1e4
    x[2] = x[2] * 1e30
    x[3, ::2] = float("-inf")
    x[4] = 0.0
    p = torch.softmax(x, dim=-1)
    save(out, "softmax", {"x": f32(x), "p": f32(p)}, {})


def ce_case(logits, targets):
    lg = leaf(logits)
    loss = F.cross_entropy(lg.reshape(-1, lg.shape[-1]), targets.reshape(-1))
    (dlogits,) = torch.autograd.grad(loss, [lg])
    per_row = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="none")
    return loss, dlogits, per_row


def gen_cross_entropy(out):
    vocab = 11
    # Leading batch dims (2, 3).
    logits = randn(2, 3, vocab, scale=2.0)
    targets = torch.from_numpy(rng.integers(0, vocab, size=(2, 3)))
    loss, dl, rows = ce_case(logits, targets)
    # Extreme logits: magnitudes 1e4 .. 1e30, the target far below the max (loss ~1e4+), the
    # target at the max (loss ~0), ties and a row where everything but one entry underflows.
    ext = randn(2, 2, 3, vocab, scale=1.0)
    ext[0, 0, 0] *= 1e4
    ext[0, 0, 1] = ext[0, 0, 1] * 3e4
    ext[0, 0, 2] *= 1e5
    ext[0, 1, 0] = 1e4
    ext[0, 1, 0, 3] = -1e4
    ext[0, 1, 1] *= 1e30
    ext[0, 1, 2] = -2e4
    ext[1, 0, 0] = torch.linspace(-5e4, 5e4, vocab, dtype=torch.float64)
    ext[1, 0, 1] = torch.linspace(5e4, -5e4, vocab, dtype=torch.float64)
    ext[1, 0, 2] = 1e6 * torch.sign(randn(vocab))
    ext[1, 1] *= 1e3
    ext = torch.from_numpy(ext.numpy().astype(np.float32)).double()
    ext_t = torch.from_numpy(rng.integers(0, vocab, size=(2, 2, 3)))
    ext_t[0, 1, 0] = 3  # the -1e4 entry of a constant-1e4 row: loss 2e4 + ln(...)
    ext_t[1, 0, 0] = vocab - 1  # the max: loss ~0
    ext_t[1, 0, 1] = vocab - 1  # the min: loss 1e5
    eloss, edl, erows = ce_case(ext, ext_t)
    save(out, "cross_entropy",
         {"logits": f32(logits), "targets": u32(targets.numpy()), "loss": f32(loss.reshape(1)),
          "dlogits": f32(dl), "row_loss": f32(rows),
          "extreme.logits": f32(ext), "extreme.targets": u32(ext_t.numpy()),
          "extreme.loss": f32(eloss.reshape(1)), "extreme.dlogits": f32(edl), "extreme.row_loss": f32(erows)},
         {"vocab": vocab})


# ---------------------------------------------------------------- whole-model fixtures

BASE_CFG = dict(vocab_size=64, context_length=16, d_model=32, n_layers=2, n_heads=4, d_ff=48,
                rope_theta=10000.0, norm="pre", position="rope", ffn="swiglu")
ABLATIONS = {
    "pre_rope_swiglu": {},
    "post_rope_swiglu": {"norm": "post"},
    "none_rope_swiglu": {"norm": "none"},
    "pre_nope_swiglu": {"position": "none"},
    "pre_rope_silu": {"ffn": "silu"},
}


def gen_model(out):
    # One set of parameters (the superset layout: pre-norm, SwiGLU) shared by every ablation;
    # an ablation uses the tensors its layout has.
    params = {}
    for name, shape in param_specs(BASE_CFG):
        if name == "token_embeddings.weight":
            # Small (GPT-2-like std 0.02), so mean(x²) ~ 4e-4 and RMSNorm's eps 1e-5 changes the
            # result by ~1%: a wrong eps in the model cannot hide inside the tolerance.
            params[name] = randn(*shape, scale=0.02)
        elif len(shape) == 1:
            params[name] = 1.0 + randn(*shape, scale=0.2)  # gains away from 1 to exercise dgain
        else:
            d_out, d_in = shape
            params[name] = randn(*shape, scale=math.sqrt(2.0 / (d_in + d_out)))
    save(out, "model_params", {k: f32(v) for k, v in params.items()}, {"config": BASE_CFG})

    B, T = 2, BASE_CFG["context_length"]
    ids = torch.from_numpy(rng.integers(0, BASE_CFG["vocab_size"], size=(B, T)))
    targets = torch.from_numpy(rng.integers(0, BASE_CFG["vocab_size"], size=(B, T)))
    short_ids = torch.from_numpy(rng.integers(0, BASE_CFG["vocab_size"], size=(1, 9)))
    short_targets = torch.from_numpy(rng.integers(0, BASE_CFG["vocab_size"], size=(1, 9)))
    for tag, change in ABLATIONS.items():
        cfg = dict(BASE_CFG, **change)
        names = [n for n, _ in param_specs(cfg)]
        P = {n: leaf(params[n]) for n in names}
        logits = model_logits(cfg, P, ids)
        loss = F.cross_entropy(logits.reshape(-1, cfg["vocab_size"]), targets.reshape(-1))
        grads = torch.autograd.grad(loss, [P[n] for n in names])
        with torch.no_grad():
            s_logits = model_logits(cfg, P, short_ids)
            s_loss = F.cross_entropy(s_logits.reshape(-1, cfg["vocab_size"]), short_targets.reshape(-1))
        tensors = {"ids": u32(ids.numpy()), "targets": u32(targets.numpy()), "logits": f32(logits),
                   "loss": f32(loss.reshape(1)), "short.ids": u32(short_ids.numpy()),
                   "short.targets": u32(short_targets.numpy()), "short.logits": f32(s_logits),
                   "short.loss": f32(s_loss.reshape(1))}
        for n, g in zip(names, grads):
            tensors["grad." + n] = f32(g)
        save(out, "model_" + tag, tensors, {"config": cfg, "params": "model_params"})


# ---------------------------------------------------------------- training-math fixtures


def lr_cosine(t, max_lr, min_lr, tw, tc):
    if t < tw:
        return t / tw * max_lr
    if t <= tc:
        return min_lr + 0.5 * (1 + math.cos(math.pi * (t - tw) / (tc - tw))) * (max_lr - min_lr)
    return min_lr


def gen_schedule(out):
    cases = []
    for (mx, mn, tw, tc) in [(1e-3, 1e-4, 10, 100), (6e-4, 0.0, 0, 50), (1.0, 0.1, 5, 6), (3e-3, 3e-5, 200, 5000)]:
        for t in sorted({0, 1, tw // 2, max(tw - 1, 0), tw, tw + 1, (tw + tc) // 2, tc - 1, tc, tc + 1, 2 * tc + 7}):
            cases.append((t, mx, mn, tw, tc, lr_cosine(t, mx, mn, tw, tc)))
    arr = np.array(cases, dtype=np.float64)
    save(out, "schedule", {"t": u32(arr[:, 0]), "max_lr": arr[:, 1].astype(np.float32),
                           "min_lr": arr[:, 2].astype(np.float32), "warmup": u32(arr[:, 3]),
                           "cycle": u32(arr[:, 4]), "lr": np.ascontiguousarray(arr[:, 5])}, {})


def gen_adamw(out):
    """10 steps of torch.optim.AdamW (float32, CPU single-tensor path) on three tensors, the second
    excluded from weight decay, with the learning rate scheduled by lr_cosine each step.

    `adamw`: the default hyperparameters given to torch as the f32 values Rust's AdamWConfig holds,
    so the comparison isolates the formula and its operation order (expected: bit-identical).
    `adamw_py_defaults`: torch exactly as a user calls it, betas=(0.9, 0.95), eps=1e-8,
    weight_decay=0.1 as Python doubles (1e-8 relative from the f32 values).
    `adamw_beta1_0.3`: β1 < 0.5, where torch's lerp switches to its other formula."""
    c = lambda x: float(np.float32(x))  # noqa: E731
    for name, hp in [("adamw", dict(betas=(c(0.9), c(0.95)), eps=c(1e-8), weight_decay=c(0.1))),
                     ("adamw_py_defaults", dict(betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)),
                     ("adamw_beta1_0.3", dict(betas=(c(0.3), c(0.95)), eps=c(1e-8), weight_decay=c(0.1)))]:
        adamw_case(out, name, hp)


def adamw_case(out, name, hp):
    shapes = [(4, 5), (7,), (3, 3)]
    init = [torch.from_numpy((rng.standard_normal(s)).astype(np.float32)) for s in shapes]
    init[0][0, 0] = 0.0
    ps = [p.clone().requires_grad_(True) for p in init]
    opt = torch.optim.AdamW([{"params": [ps[0], ps[2]]}, {"params": [ps[1]], "weight_decay": 0.0}],
                            lr=1e-3, foreach=False, fused=False, **hp)
    steps = 10
    n = sum(int(np.prod(s)) for s in shapes)
    grads, lrs, after = np.zeros((steps, n), np.float32), np.zeros(steps, np.float32), np.zeros((steps, n), np.float32)
    for step in range(steps):
        # Gradient scales vary per tensor and step; the third tensor's are ~1e-8 so ε matters.
        gs = [torch.from_numpy((rng.standard_normal(s) * sc * (1 + step % 3)).astype(np.float32))
              for s, sc in zip(shapes, [1.0, 0.1, 1e-8])]
        if step == 4:
            gs[0].zero_()  # a zero gradient: only decay and momentum move the parameters
        # Rust's lr_cosine takes f32 max/min and rounds its result to f32: use the same values.
        lr = float(np.float32(lr_cosine(step, float(np.float32(1e-2)), float(np.float32(1e-3)), 3, 8)))
        for group in opt.param_groups:
            group["lr"] = lr
        for p, g in zip(ps, gs):
            p.grad = g.clone()
        opt.step()
        grads[step] = np.concatenate([g.numpy().ravel() for g in gs])
        lrs[step] = lr
        after[step] = np.concatenate([p.detach().numpy().ravel() for p in ps])
    m = np.concatenate([opt.state[p]["exp_avg"].numpy().ravel() for p in ps])
    v = np.concatenate([opt.state[p]["exp_avg_sq"].numpy().ravel() for p in ps])
    off1 = int(np.prod(shapes[0]))
    save(out, name, {"init": np.concatenate([p.numpy().ravel() for p in init]), "grads": grads, "lr": lrs,
                     "params": after, "m": m, "v": v},
         {"steps": steps, "beta1": hp["betas"][0], "beta2": hp["betas"][1], "eps": hp["eps"],
          "weight_decay": hp["weight_decay"], "no_decay_start": off1, "no_decay_end": off1 + 7,
          "schedule": {"max_lr": 1e-2, "min_lr": 1e-3, "warmup": 3, "cycle": 8},
          "torch": torch.__version__})


def gen_clip(out):
    shapes = [(30, 20), (50,), (7, 9)]
    base = [torch.from_numpy(rng.standard_normal(s).astype(np.float32)) for s in shapes]
    tensors = {"grads": np.concatenate([g.numpy().ravel() for g in base])}
    for tag, max_norm in [("above", 1.0), ("below", 1e3)]:
        ps = [torch.zeros(s, requires_grad=True) for s in shapes]
        for p, g in zip(ps, base):
            p.grad = g.clone()
        norm = torch.nn.utils.clip_grad_norm_(ps, max_norm)
        tensors[f"{tag}.max_norm"] = np.array([max_norm], np.float32)
        tensors[f"{tag}.norm"] = np.array([norm.item()], np.float32)
        tensors[f"{tag}.clipped"] = np.concatenate([p.grad.numpy().ravel() for p in ps])
    tensors["norm_f64"] = np.array([math.sqrt(sum(float((g.double() ** 2).sum()) for g in base))])
    save(out, "clip", tensors, {})


def gen_train_steps(out):
    """The training math composed, as the training loop uses it: 3 steps of the tiny pre-norm model
    (model_params), each forward + backward on a new batch, clip_grad_norm_, the lr from lr_cosine
    and torch.optim.AdamW with the 1-D gains excluded from weight decay. All in float64 (the
    reference); the Rust side runs it in f32. ε = 1e-6 (not 1e-8) keeps Adam's update a smooth
    function of the gradient for the few entries whose gradient is ~1e-8 (where a sign flip from
    f32 rounding would otherwise move a parameter by 2·lr), so the comparison stays tight."""
    cfg = dict(BASE_CFG)
    names = [n for n, _ in param_specs(cfg)]
    init = load_file(os.path.join(out, "model_params.safetensors"))
    P = {n: torch.from_numpy(init[n]).double().requires_grad_(True) for n in names}
    decay = [P[n] for n in names if P[n].dim() > 1]
    no_decay = [P[n] for n in names if P[n].dim() == 1]
    c = lambda x: float(np.float32(x))  # noqa: E731
    opt = torch.optim.AdamW([{"params": decay}, {"params": no_decay, "weight_decay": 0.0}], lr=1e-3,
                            betas=(c(0.9), c(0.95)), eps=c(1e-6), weight_decay=c(0.1), foreach=False)
    steps, B, T, max_norm = 3, 2, cfg["context_length"], 0.5
    sched = dict(max_lr=c(1e-2), min_lr=c(1e-3), warmup=2, cycle=4)
    tensors = {}
    for step in range(steps):
        ids = torch.from_numpy(rng.integers(0, cfg["vocab_size"], size=(B, T)))
        targets = torch.from_numpy(rng.integers(0, cfg["vocab_size"], size=(B, T)))
        opt.zero_grad()
        logits = model_logits(cfg, P, ids)
        loss = F.cross_entropy(logits.reshape(-1, cfg["vocab_size"]), targets.reshape(-1))
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_([P[n] for n in names], max_norm)
        # t = step + 1, so that every step moves the parameters (t = 0 is warmup's lr 0).
        lr = float(np.float32(lr_cosine(step + 1, sched["max_lr"], sched["min_lr"], sched["warmup"], sched["cycle"])))
        for group in opt.param_groups:
            group["lr"] = lr
        opt.step()
        tensors[f"step{step}.ids"] = u32(ids.numpy())
        tensors[f"step{step}.targets"] = u32(targets.numpy())
        tensors[f"step{step}.loss"] = f32(loss.reshape(1))
        tensors[f"step{step}.grad_norm"] = f32(norm.reshape(1))
        tensors[f"step{step}.lr"] = np.array([lr], np.float32)
    for n in names:
        tensors["final." + n] = f32(P[n])
    save(out, "train_steps", tensors,
         {"config": cfg, "params": "model_params", "steps": steps, "max_norm": max_norm, "schedule": sched,
          "beta1": c(0.9), "beta2": c(0.95), "eps": c(1e-6), "weight_decay": c(0.1), "no_decay": "1-D gains"})


GENERATORS = [gen_rmsnorm, gen_rope, gen_attention, gen_swiglu_silu, gen_ffn, gen_softmax, gen_cross_entropy,
              gen_model, gen_schedule, gen_adamw, gen_clip, gen_train_steps]


def generate(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    torch.manual_seed(0)
    for gen in GENERATORS:
        gen(out_dir)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=DEFAULT_OUT, help="output folder (default: crates/nn/tests/fixtures)")
    ap.add_argument("--check", action="store_true",
                    help="regenerate into a temporary folder and compare with --out instead of writing")
    args = ap.parse_args()
    if not args.check:
        generate(args.out)
        files = sorted(f for f in os.listdir(args.out) if f.endswith(".safetensors"))
        total = sum(os.path.getsize(os.path.join(args.out, f)) for f in files)
        print(f"wrote {len(files)} fixtures, {total / 1024:.0f} KiB, to {os.path.relpath(args.out)}")
        return
    with tempfile.TemporaryDirectory() as tmp:
        generate(tmp)
        bad = 0
        for f in sorted(os.listdir(tmp)):
            new, old_path = load_file(os.path.join(tmp, f)), os.path.join(args.out, f)
            if not os.path.exists(old_path):
                print(f"{f}: missing in {args.out}")
                bad += 1
                continue
            old = load_file(old_path)
            for k in sorted(set(new) | set(old)):
                if k not in new or k not in old or new[k].shape != old[k].shape:
                    print(f"{f}: {k} differs in presence or shape")
                    bad += 1
                elif not np.allclose(new[k], old[k], rtol=1e-6, atol=1e-7, equal_nan=True):
                    print(f"{f}: {k} max diff {np.nanmax(np.abs(new[k].astype(np.float64) - old[k])):.3g}")
                    bad += 1
        print("fixtures match" if bad == 0 else f"{bad} differences")
        sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
