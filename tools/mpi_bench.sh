#!/usr/bin/env bash
# What data parallelism over MPI costs on this machine, for the tiny and small presets: the
# gradient bytes reduced per step, the reduction's time and share of the step with 2 ranks (one
# thread each), beside one process doing the same 2 micro-batches per step with 2 threads.
# Prints the reducer's own report line (medians over the steps after the first) and both runs'
# seconds per step. Usage: tools/mpi_bench.sh [ferrolm built with --features mpi] [steps]
set -euo pipefail
ferrolm=$(realpath "${1:-target/release/ferrolm}")
steps=${2:-6}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
"$ferrolm" quickstart --corpus-only all.txt --corpus-mb 2 >/dev/null
"$ferrolm" tokenizer train --input all.txt --vocab-size 4096 --special-token '<|endoftext|>' --out tok >/dev/null
"$ferrolm" tokenizer encode --tokenizer tok --input all.txt --output train.npy >/dev/null
for preset in ${PRESETS:-tiny small}; do
    args=(train --train train.npy --valid train.npy --tokenizer tok --preset "$preset" --set model.vocab_size=4096
          --steps "$steps" --set eval.every=0 --set eval.batches=1 --checkpoint-every 0 --no-progress)
    echo "== preset $preset, $steps steps"
    "$ferrolm" "${args[@]}" --grad-accum 2 --threads 2 --run-dir one-$preset 2>&1 | grep -E "^training|^done" | sed 's/^/  1 process, --grad-accum 2, 2 threads: /'
    mpirun --allow-run-as-root --oversubscribe --bind-to none -np 2 "$ferrolm" "${args[@]}" --run-dir two-$preset 2>&1 \
        | grep -E "^data-parallel on|^done" | sed 's/^/  mpirun -np 2, 1 thread each: /'
done
