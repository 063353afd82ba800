#!/usr/bin/env bash
# Trains the same short run in f32 and in bf16 and evaluates both checkpoints on the whole
# validation file (in f32), for issue 5's "validation loss within 0.02 of the f32 run".
# Usage: tools/compare_precision.sh FERROLM TRAIN.npy VALID.npy TOKENIZER_DIR VOCAB [STEPS] [OUT_DIR]
# e.g. (the session-2 figures): tools/compare_precision.sh target/release/ferrolm train.npy valid.npy tok 8192 300
set -euo pipefail
ferrolm=$(realpath "$1"); train=$(realpath "$2"); valid=$(realpath "$3"); tok=$(realpath "$4"); vocab=$5
steps=${6:-300}; out=${7:-runs/precision}
mkdir -p "$out"
for p in f32 bf16; do
    rm -rf "$out/run-$p"
    "$ferrolm" --threads 2 train --train "$train" --valid "$valid" --tokenizer "$tok" --preset tiny \
        --set model.vocab_size="$vocab" --steps "$steps" --batch-size 16 --lr 2e-3 \
        --set schedule.warmup_steps=30 --set eval.batches=40 --eval-every 100 --checkpoint-every "$steps" \
        --run-dir "$out/run-$p" --precision "$p" --no-progress > "$out/train-$p.log"
    echo "$p: $("$ferrolm" --threads 2 eval --checkpoint "$out/run-$p" --data "$valid")"
done
