#!/usr/bin/env bash
# What data parallelism over MPI costs on this machine, and what overlapping the gradient reduction
# with the backward buys, for the tiny and small presets at 2 ranks (one thread each, the only
# layout 2 cores allow): the gradient bytes reduced per step, the reduction's time (the part the
# step waits for, and the communication thread's busy time) and share of the step, with overlap
# off and on IN THE SAME RUN (FERROLM_MPI_OVERLAP=alternate: odd steps on, even steps off, the
# same bits either way), medians over the steps of each kind after the first step. Buckets of
# 25 MiB (the default, as PyTorch DDP) and of 4 MiB. Beside it, one process doing the same
# 2 micro-batches per step with 2 threads.
# Usage: tools/mpi_bench.sh [ferrolm built with --features mpi] [steps (default 9)]
#   PRESETS="tiny small"  BATCH=8 (sequences of 256 tokens per rank and micro-step)
#   BUCKETS="25 4" (MiB)
set -euo pipefail
ferrolm=$(realpath "${1:-target/release/ferrolm}")
steps=${2:-9}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
"$ferrolm" quickstart --corpus-only all.txt --corpus-mb 2 >/dev/null
"$ferrolm" tokenizer train --input all.txt --vocab-size 4096 --special-token '<|endoftext|>' --out tok >/dev/null
"$ferrolm" tokenizer encode --tokenizer tok --input all.txt --output train.npy >/dev/null
echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) at the start"
for preset in ${PRESETS:-tiny small}; do
    args=(train --train train.npy --valid train.npy --tokenizer tok --preset "$preset" --set model.vocab_size=4096
          --batch-size "${BATCH:-8}" --steps "$steps" --set eval.every=0 --set eval.batches=1
          --checkpoint-every 0 --no-progress)
    echo "== preset $preset, batch ${BATCH:-8} x 256 tokens per rank, $steps steps"
    "$ferrolm" "${args[@]}" --grad-accum 2 --threads 2 --run-dir one-$preset 2>&1 | grep -E "^done" \
        | sed 's/^/  1 process, --grad-accum 2, 2 threads: /'
    for mb in ${BUCKETS:-25 4}; do
        echo "  mpirun -np 2, 1 thread each, FERROLM_MPI_OVERLAP=alternate FERROLM_MPI_BUCKET_MB=$mb:"
        mpirun --allow-run-as-root --oversubscribe --bind-to none -np 2 \
            -x FERROLM_MPI_OVERLAP=alternate -x FERROLM_MPI_BUCKET_MB=$mb \
            "$ferrolm" "${args[@]}" --run-dir two-$preset-$mb 2>&1 \
            | grep -E "^data-parallel on|^  overlap|^done" | sed 's/^/    /'
        cmp -s one-$preset/checkpoints/*/model.safetensors two-$preset-$mb/checkpoints/*/model.safetensors \
            && echo "    (same model.safetensors as the one process, bitwise)" \
            || echo "    MODELS DIFFER from the one process"
    done
done
echo "load average $(cut -d' ' -f1-3 /proc/loadavg) at the end"
