#!/usr/bin/env python3
"""The training step's f32 matmuls, ferrolm against PyTorch's (MKL / oneDNN), side by side.

For each of a preset's linear-layer shapes (batch·seq rows) it times the three products of a
training step, the same way in both:

    fwd     y  = x · Wᵀ         x (n, d_in), W (d_out, d_in)      PyTorch: F.linear(x, W)
    bwd-in  dx = dy · W         dy (n, d_out)                      PyTorch: dy @ W
    bwd-w   dW = dyᵀ · x (+=)   (d_out, d_in)                      PyTorch: dW.addmm_(dy.T, x)
    bwd-w-t the same from dyᵀ stored transposed (ferrolm only; compared with PyTorch's bwd-w)

ferrolm's figures come from its `kernel_times` example (the model's own matmul functions:
`matmul_forward`, `matmul_backward_input`, `matmul_backward_weight`), run as a subprocess with
the same thread count; PyTorch's from torch.set_num_threads(T). Medians of --reps calls each.
It also prints the machine's f32 FMA peak (`ferrolm bench peak`), so each product reads as a
share of what the cores can do:

    cargo build --release -p ferrolm-nn --example kernel_times && cargo build --release
    python3 tools/bench_matmul_vs_torch.py --preset small --batch 8 --threads 2

Issue 5 used it to ask whether a better GEMM exists on the machine: if PyTorch's MKL products
ran well above the `gemm` crate's, the f32 training gap would be a GEMM problem.
"""

import argparse
import os
import re
import statistics
import subprocess
import time

import torch
import torch.nn.functional as F

PRESETS = {
    "small": dict(n_layers=4, d_model=512, d_ff=1344, vocab_size=10000, context_length=256),
    "tiny": dict(n_layers=4, d_model=256, d_ff=672, vocab_size=10000, context_length=256),
}
# (kernel_times' name, d_in, d_out, how many per layer; 0 = the LM head, once per step)
SHAPES = [("qkvo d→d", "d", "d", 4), ("w1/w3 d→f", "d", "f", 2), ("w2 f→d", "f", "d", 1), ("head d→V", "d", "V", 0)]


def median_time(f, reps):
    f()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def torch_times(preset, batch, reps):
    c = PRESETS[preset]
    dims = {"d": c["d_model"], "f": c["d_ff"], "V": c["vocab_size"]}
    n = batch * c["context_length"]
    out = {}
    with torch.no_grad():
        for name, a, b, _ in SHAPES:
            d_in, d_out = dims[a], dims[b]
            x = torch.randn(n, d_in) * 0.1
            w = torch.randn(d_out, d_in) * 0.1
            dy = torch.randn(n, d_out) * 0.1
            dw = torch.zeros(d_out, d_in)
            y = torch.empty(n, d_out)
            dx = torch.empty(n, d_in)
            out[("fwd", name)] = median_time(lambda: torch.matmul(x, w.t(), out=y), reps)
            out[("bwd-in", name)] = median_time(lambda: torch.matmul(dy, w, out=dx), reps)
            out[("bwd-w", name)] = median_time(lambda: dw.addmm_(dy.t(), x), reps)
            out[("flops", name)] = 2.0 * n * d_in * d_out
    return out


def ferrolm_times(example, preset, batch, threads, reps):
    cmd = [example, preset, str(batch), str(threads), "f32", str(reps)]
    text = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    out = {}
    for line in text.splitlines():
        m = re.match(r"matmul (fwd|bwd-in|bwd-w-t|bwd-w) (.+?)\s+([0-9.]+) ms", line)
        if m:
            out[(m.group(1), m.group(2))] = float(m.group(3)) / 1e3
    return out


def peak(binary, threads):
    text = subprocess.run([binary, "--threads", str(threads), "bench", "peak"], check=True,
                          capture_output=True, text=True).stdout
    m = re.search(r"f32_gflops=([0-9.]+)", text)
    return float(m.group(1)) if m else None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", choices=sorted(PRESETS), default="small")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=7, help="timed calls per product (median)")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    target = os.path.join(root, "target", "release")
    ap.add_argument("--kernel-times", default=os.path.join(target, "examples", "kernel_times"))
    ap.add_argument("--ferrolm", default=os.path.join(target, "ferrolm"))
    args = ap.parse_args()
    for path in (args.kernel_times, args.ferrolm):
        if not os.path.exists(path):
            raise SystemExit(f"{path} not found: build it first (cargo build --release, and "
                             "cargo build --release -p ferrolm-nn --example kernel_times)")
    torch.set_num_threads(args.threads)
    pk = peak(args.ferrolm, args.threads)
    ours = ferrolm_times(args.kernel_times, args.preset, args.batch, args.threads, args.reps)
    theirs = torch_times(args.preset, args.batch, args.reps)
    print(f"{args.preset}, batch {args.batch} ({args.batch * PRESETS[args.preset]['context_length']} rows), "
          f"{args.threads} threads, f32 peak {pk:.0f} GFLOP/s (ferrolm bench peak), medians of {args.reps}")
    print(f"{'product':<20}{'ferrolm ms':>11}{'GF/s':>7}{'%pk':>5}{'torch ms':>10}{'GF/s':>7}{'%pk':>5}{'ratio':>7}")
    step = [0.0, 0.0]
    for name, _, _, per_layer in SHAPES:
        fl = theirs[("flops", name)]
        for op in ("fwd", "bwd-in", "bwd-w", "bwd-w-t"):
            # bwd-w-t: ferrolm's weight gradient from a transposed output gradient (what the f32
            # model runs for W1/W3, where the SwiGLU backward writes it), vs PyTorch's bwd-w.
            a, b = ours[(op, name)], theirs[("bwd-w" if op == "bwd-w-t" else op, name)]
            ga, gb = fl / a / 1e9, fl / b / 1e9
            print(f"{op + ' ' + name:<20}{a * 1e3:>11.2f}{ga:>7.0f}{ga / pk * 100:>5.0f}"
                  f"{b * 1e3:>10.2f}{gb:>7.0f}{gb / pk * 100:>5.0f}{b / a:>7.2f}")
            if op == "bwd-w-t":
                continue  # the step totals below count the plain form once
            weight = per_layer * PRESETS[args.preset]["n_layers"] if per_layer else 1
            step[0] += weight * a
            step[1] += weight * b
    print(f"all of a step's matmuls (layers + head): ferrolm {step[0] * 1e3:.0f} ms, "
          f"PyTorch {step[1] * 1e3:.0f} ms, ratio {step[1] / step[0]:.2f}")


if __name__ == "__main__":
    main()
