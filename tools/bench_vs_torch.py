#!/usr/bin/env python3
"""Training throughput of ferrolm vs the same model in PyTorch (eager), side by side.

For each preset and batch it times full training steps (zero grads, forward, cross-entropy,
backward, AdamW) in PyTorch with torch.set_num_threads(T), then runs
`ferrolm --threads T bench train --preset P --batch B --seq S --steps N` as a subprocess, and
prints tokens/s of both and the ratio (ferrolm / PyTorch). Medians over the timed steps.

    python3 tools/bench_vs_torch.py --threads 2 --presets tiny,small --batches 8,32
    python3 tools/bench_vs_torch.py --ferrolm /path/to/ferrolm --steps 5 --attn manual
    python3 tools/bench_vs_torch.py --precision bf16   # ferrolm bf16 vs PyTorch bf16 autocast

`--mode generate` times generation with a KV cache instead: a 1-token prompt, then N new tokens
greedy (default 256), batch 1, in PyTorch (the same LM, its layers run one position at a time
against preallocated key/value caches, under torch.inference_mode) and in
`ferrolm --threads T bench generate --preset P --tokens N` (optionally --precision bf16: ferrolm
reads bf16 weights; PyTorch runs in f32 and with its weights cast to bf16, and the ratio is taken
against the faster), and prints tokens/s of both and the ratio:

    python3 tools/bench_vs_torch.py --mode generate --presets small,tiny --repeats 5

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


@torch.inference_mode()
def torch_generate(model, n_new, max_len):
    """Greedy generation with a KV cache, batch 1: a 1-token prompt (id 0), then n_new tokens (n_new
    forward passes of one position: the prompt's gives the first new token). Returns the new ids.
    Caches are preallocated (per layer (1, heads, max_len, d_head))."""
    d = model.emb.weight.shape[1]
    caches = []
    for layer in model.layers:
        h = layer.h
        shape = (1, h, max_len, d // h)
        caches.append((torch.zeros(shape, dtype=model.emb.weight.dtype),
                       torch.zeros(shape, dtype=model.emb.weight.dtype)))
    tok = torch.zeros((1, 1), dtype=torch.long)
    out = []
    for pos in range(n_new):
        x = model.emb(tok)
        cos, sin = model.cos[pos:pos + 1].to(x.dtype), model.sin[pos:pos + 1].to(x.dtype)
        for layer, (kc, vc) in zip(model.layers, caches):
            a = layer.ln1(x)
            split = lambda t: t.view(1, 1, layer.h, d // layer.h).transpose(1, 2)
            q, k, v = split(layer.q(a)), split(layer.k(a)), split(layer.v(a))
            q, k = layer.rope(q, cos, sin), layer.rope(k, cos, sin)
            kc[:, :, pos:pos + 1] = k
            vc[:, :, pos:pos + 1] = v
            y = F.scaled_dot_product_attention(q, kc[:, :, :pos + 1], vc[:, :, :pos + 1])
            x = x + layer.o(y.transpose(1, 2).reshape(1, 1, d))
            b = layer.ln2(x)
            x = x + layer.w2(F.silu(layer.w1(b)) * layer.w3(b))
        logits = model.head(model.ln_final(x))
        tok = logits[:, -1].argmax(-1, keepdim=True)
        out.append(int(tok))
    return out


def bench_torch_generate(preset, n_new, repeats, precision="f32"):
    cfg = PRESETS[preset]
    torch.manual_seed(0)
    model = LM(**cfg).eval()
    if precision == "bf16":
        model = model.to(torch.bfloat16)
    torch_generate(model, 8, n_new)  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch_generate(model, n_new, n_new)
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    return n_new / med, med / n_new


def bench_ferrolm_generate(binary, threads, preset, n_new, repeats, precision="f32"):
    cmd = [binary, "--threads", str(threads), "bench", "generate", "--preset", preset, "--tokens", str(n_new),
           "--repeats", str(repeats)]
    if precision != "f32":
        cmd += ["--precision", precision]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    m = re.search(r"RESULT tokens_per_s=([\d.]+)", out)
    if not m:
        sys.exit(f"could not parse the output of {' '.join(cmd)}:\n{out}")
    tok_s = float(m.group(1))
    return tok_s, 1.0 / tok_s


def main_generate(args):
    print(f"generate: batch 1, 1-token prompt, {args.tokens} new tokens greedy, threads {args.threads}, "
          f"ferrolm weights {args.precision}, median of {args.repeats}, torch {torch.__version__}, "
          f"load average {os.getloadavg()[0]:.1f}")
    # With --precision bf16, PyTorch runs both in f32 and with bf16 weights; the ratio is taken
    # against the faster of the two (on CPU its bf16 decoding is often the slower one).
    torch_precisions = ["f32"] + (["bf16"] if args.precision == "bf16" else [])
    print(f"{'preset':<7}{'ferrolm tok/s':>15}" + "".join(f"{'torch ' + p + ' tok/s':>18}" for p in torch_precisions)
          + f"{'ratio':>8}{'ferrolm ms/tok':>16}")
    for preset in args.presets.split(","):
        if args.torch_only:
            ours, our_t = float("nan"), float("nan")
        else:
            ours, our_t = bench_ferrolm_generate(args.ferrolm, args.threads, preset, args.tokens, args.repeats,
                                                 args.precision)
        theirs = [bench_torch_generate(preset, args.tokens, args.repeats, p)[0] for p in torch_precisions]
        print(f"{preset:<7}{ours:>15.0f}" + "".join(f"{t:>18.0f}" for t in theirs)
              + f"{ours / max(theirs):>8.2f}{our_t * 1e3:>16.3f}", flush=True)


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
                    help="train: ferrolm --precision bf16 vs PyTorch under torch.autocast(cpu, bfloat16); "
                         "generate: ferrolm reads bf16 weights, PyTorch is timed in f32 and bf16")
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(os.path.dirname(__file__), "..", "target"))
    ap.add_argument("--ferrolm", default=os.path.join(target, "release", "ferrolm"),
                    help="the ferrolm binary (default: $CARGO_TARGET_DIR or target/, release)")
    ap.add_argument("--torch-only", action="store_true")
    ap.add_argument("--mode", choices=["train", "generate"], default="train",
                    help="train: training steps (default); generate: KV-cache generation, batch 1")
    ap.add_argument("--tokens", type=int, default=256, help="generate mode: new tokens per run")
    ap.add_argument("--repeats", type=int, default=3, help="generate mode: timed runs (median)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if not args.torch_only and not os.path.exists(args.ferrolm):
        sys.exit(f"{args.ferrolm} not found: build it with `cargo build --release -p ferrolm` or pass --ferrolm")
    if args.mode == "generate":
        return main_generate(args)
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
