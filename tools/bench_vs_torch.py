#!/usr/bin/env python3
"""Training throughput of ferrolm vs the same model in PyTorch (eager), side by side.

For each preset and batch it times full training steps (zero grads, forward, cross-entropy,
backward, AdamW) in PyTorch with torch.set_num_threads(T), then runs
`ferrolm --threads T bench train --preset P --batch B --seq S --steps N` as a subprocess, and
prints tokens/s of both and the ratio (ferrolm / PyTorch). Medians over the timed steps.

    python3 tools/bench_vs_torch.py --threads 2 --presets tiny,small --batches 8,32
    python3 tools/bench_vs_torch.py --ferrolm /path/to/ferrolm --steps 5 --attn manual
    python3 tools/bench_vs_torch.py --precision bf16   # ferrolm bf16 vs PyTorch bf16 autocast

The PyTorch model follows issue 3's conventions exactly (Llama-style pre-norm, RMSNorm in f32,
interleaved-pair RoPE, SwiGLU, untied head, no biases). Attention uses
F.scaled_dot_product_attention (its fused CPU kernel, the stronger baseline) unless --attn manual.
"""

import argparse
import math
import os
import re
import statistics
import subprocess
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

PRESETS = {
    "small": dict(vocab_size=10000, context_length=256, d_model=512, n_layers=4, n_heads=16, d_ff=1344),
    "tiny": dict(vocab_size=10000, context_length=256, d_model=256, n_layers=4, n_heads=8, d_ff=672),
}


class RMSNorm(nn.Module):
    def __init__(self, d, eps=1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def linear(d_in, d_out):
    lin = nn.Linear(d_in, d_out, bias=False)
    std = math.sqrt(2.0 / (d_in + d_out))
    nn.init.trunc_normal_(lin.weight, 0.0, std, -3 * std, 3 * std)
    return lin


class Block(nn.Module):
    def __init__(self, d, h, f, attn):
        super().__init__()
        self.h, self.attn_kind = h, attn
        self.ln1, self.ln2 = RMSNorm(d), RMSNorm(d)
        self.q, self.k, self.v, self.o = (linear(d, d) for _ in range(4))
        self.w1, self.w2, self.w3 = linear(d, f), linear(f, d), linear(d, f)

    def rope(self, x, cos, sin):
        # x (B, H, T, dh); rotate interleaved pairs.
        x0, x1 = x[..., 0::2], x[..., 1::2]
        return torch.stack((x0 * cos - x1 * sin, x0 * sin + x1 * cos), dim=-1).flatten(-2)

    def forward(self, x, cos, sin, mask):
        B, T, D = x.shape
        a = self.ln1(x)
        split = lambda t: t.view(B, T, self.h, D // self.h).transpose(1, 2)
        q, k, v = split(self.q(a)), split(self.k(a)), split(self.v(a))
        q, k = self.rope(q, cos, sin), self.rope(k, cos, sin)
        if self.attn_kind == "sdpa":
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            s = (q @ k.transpose(-1, -2)) / math.sqrt(D // self.h)
            y = torch.softmax(s.masked_fill(mask, float("-inf")), dim=-1) @ v
        z = x + self.o(y.transpose(1, 2).reshape(B, T, D))
        b = self.ln2(z)
        return z + self.w2(F.silu(self.w1(b)) * self.w3(b))


class LM(nn.Module):
    def __init__(self, vocab_size, context_length, d_model, n_layers, n_heads, d_ff, attn="sdpa", theta=10000.0):
        super().__init__()
        self.emb = nn.Embedding(vocab_size, d_model)
        nn.init.trunc_normal_(self.emb.weight, 0.0, 1.0, -3.0, 3.0)
        self.layers = nn.ModuleList(Block(d_model, n_heads, d_ff, attn) for _ in range(n_layers))
        self.ln_final = RMSNorm(d_model)
        self.head = linear(d_model, vocab_size)
        dh = d_model // n_heads
        freq = theta ** (-torch.arange(0, dh, 2, dtype=torch.float64) / dh)
        ang = torch.arange(context_length, dtype=torch.float64)[:, None] * freq[None, :]
        self.register_buffer("cos", ang.cos().float(), persistent=False)
        self.register_buffer("sin", ang.sin().float(), persistent=False)
        mask = torch.triu(torch.ones(context_length, context_length, dtype=torch.bool), 1)
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, ids):
        T = ids.shape[1]
        x = self.emb(ids)
        cos, sin, mask = self.cos[:T], self.sin[:T], self.mask[:T, :T]
        for layer in self.layers:
            x = layer(x, cos, sin, mask)
        return self.head(self.ln_final(x))


def bench_torch(preset, batch, seq, steps, warmup, attn, precision="f32"):
    cfg = PRESETS[preset]
    torch.manual_seed(0)
    model = LM(**cfg, attn=attn)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    ids = torch.randint(0, cfg["vocab_size"], (batch, seq))
    tgt = torch.randint(0, cfg["vocab_size"], (batch, seq))
    times = []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            logits = model(ids)
            loss = F.cross_entropy(logits.view(-1, cfg["vocab_size"]), tgt.view(-1))
        loss.backward()
        opt.step()
        dt = time.perf_counter() - t0
        if i >= warmup:
            times.append(dt)
    med = statistics.median(times)
    return batch * seq / med, med


def bench_ferrolm(binary, threads, preset, batch, seq, steps, warmup, precision="f32"):
    cmd = [binary, "--threads", str(threads), "bench", "train", "--preset", preset, "--batch", str(batch),
           "--seq", str(seq), "--steps", str(steps), "--warmup", str(warmup), "--precision", precision]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    m = re.search(r"RESULT tokens_per_s=([\d.]+) step_ms=([\d.]+)", out)
    if not m:
        sys.exit(f"could not parse the output of {' '.join(cmd)}:\n{out}")
    return float(m.group(1)), float(m.group(2)) / 1e3


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", default="tiny,small")
    ap.add_argument("--batches", default="8,32")
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--attn", choices=["sdpa", "manual"], default="sdpa")
    ap.add_argument("--precision", choices=["f32", "bf16"], default="f32",
                    help="bf16: ferrolm --precision bf16 vs PyTorch under torch.autocast(cpu, bfloat16)")
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(os.path.dirname(__file__), "..", "target"))
    ap.add_argument("--ferrolm", default=os.path.join(target, "release", "ferrolm"),
                    help="the ferrolm binary (default: $CARGO_TARGET_DIR or target/, release)")
    ap.add_argument("--torch-only", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if not args.torch_only and not os.path.exists(args.ferrolm):
        sys.exit(f"{args.ferrolm} not found: build it with `cargo build --release -p ferrolm` or pass --ferrolm")
    print(f"threads {args.threads}, seq {args.seq}, {args.steps} timed steps (median), torch {torch.__version__}, "
          f"attention {args.attn}, precision {args.precision}, load average {os.getloadavg()[0]:.1f}")
    print(f"{'preset':<7}{'batch':>6}{'ferrolm tok/s':>15}{'torch tok/s':>13}{'ratio':>8}"
          f"{'ferrolm ms':>12}{'torch ms':>10}")
    for preset in args.presets.split(","):
        for batch in (int(b) for b in args.batches.split(",")):
            if args.torch_only:
                ours, our_t = float("nan"), float("nan")
            else:
                ours, our_t = bench_ferrolm(args.ferrolm, args.threads, preset, batch, args.seq, args.steps,
                                            args.warmup, args.precision)
            theirs, their_t = bench_torch(preset, batch, args.seq, args.steps, args.warmup, args.attn,
                                          args.precision)
            print(f"{preset:<7}{batch:>6}{ours:>15.0f}{theirs:>13.0f}{ours / theirs:>8.2f}"
                  f"{our_t * 1e3:>12.0f}{their_t * 1e3:>10.0f}", flush=True)


if __name__ == "__main__":
    main()
