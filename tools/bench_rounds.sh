#!/usr/bin/env bash
# Issue 5's figures in one go: three alternating rounds of the training benchmarks (f32, then bf16
# against PyTorch autocast) and of KV-cache generation in f32 and bf16. Single runs on a shared
# machine swing by ±40%: report the median of the rounds (printed last, by tools/bench_summary.py;
# the whole log is kept in ${BENCH_LOG:-bench_rounds.log}). Uses $CARGO_TARGET_DIR or target/.
# Three untimed steps first, for PyTorch's sake: it allocates its activations anew every step
# (~156k page faults per small-preset step here, ferrolm ~200), and in some runs on this VM its
# early steps took 1.2 s instead of 0.9 s; with one warm-up step that landed in its median.
set -euo pipefail
cd "$(dirname "$0")/.."
log=${BENCH_LOG:-bench_rounds.log}
{
for r in 1 2 3; do
  python3 tools/bench_vs_torch.py --threads 2 --presets tiny,small --batches 8,32 --steps 6 --warmup 3
  python3 tools/bench_vs_torch.py --threads 2 --presets tiny,small --batches 8,32 --steps 6 --warmup 3 --precision bf16
  python3 tools/bench_vs_torch.py --mode generate --presets small,tiny --repeats 3
  python3 tools/bench_vs_torch.py --mode generate --presets small,tiny --repeats 3 --precision bf16
done
} | tee "$log"
echo "== medians over the rounds"
python3 tools/bench_summary.py "$log"
echo FINISHED
