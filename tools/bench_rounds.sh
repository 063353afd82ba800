#!/usr/bin/env bash
# Issue 5's figures in one go: three alternating rounds of the training benchmarks (f32, then bf16
# against PyTorch autocast) and of KV-cache generation in f32 and bf16. Single runs on a shared
# machine swing by ±40%: report the median of the rounds (printed last, by tools/bench_summary.py;
# the whole log is kept in ${BENCH_LOG:-bench_rounds.log}). Uses $CARGO_TARGET_DIR or target/.
set -euo pipefail
cd "$(dirname "$0")/.."
log=${BENCH_LOG:-bench_rounds.log}
{
for r in 1 2 3; do
  python3 tools/bench_vs_torch.py --threads 2 --presets tiny,small --batches 8,32 --steps 4 --warmup 1
  python3 tools/bench_vs_torch.py --threads 2 --presets tiny,small --batches 8,32 --steps 4 --warmup 1 --precision bf16
  python3 tools/bench_vs_torch.py --mode generate --presets small,tiny --repeats 3
  python3 tools/bench_vs_torch.py --mode generate --presets small,tiny --repeats 3 --precision bf16
done
} | tee "$log"
echo "== medians over the rounds"
python3 tools/bench_summary.py "$log"
echo FINISHED
