#!/usr/bin/env bash
# Data-parallel training over MPI, end to end (CI runs it after `cargo build --release --features
# mpi`; about a minute on 2 cores). Proves, with Open MPI on this machine (loopback):
#  1. N ranks give bitwise the parameters of one process with N times the accumulation
#     (N = 2, 3; random and sequential sampling; ranks combined with --grad-accum too), with the
#     reduction overlapping the backward (buckets of 50 kB here: 4 per gradient) and without;
#  2. a run saved with 2 ranks resumes with 1 and with 3 ranks to bitwise the uninterrupted result;
#  3. kill -9 of one rank ends the whole job within seconds with a clear message, and --resume
#     continues from the last complete checkpoint;
#  4. a rank that hangs without dying (SIGSTOP) ends the job once FERROLM_MPI_TIMEOUT (here 5 s)
#     has passed, with a message naming it;
#  5. a rank whose config, data or reduction settings differ from rank 0's is refused at start,
#     naming the difference.
# Usage: tools/mpi_check.sh [path/to/ferrolm built with --features mpi]
set -euo pipefail
ferrolm=$(realpath "${1:-target/release/ferrolm}")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
mpirun=(mpirun --allow-run-as-root --oversubscribe --bind-to none)
fail() { echo "mpi_check: FAILED: $*" >&2; exit 1; }

"$ferrolm" quickstart --corpus-only all.txt --corpus-mb 1 >/dev/null
"$ferrolm" tokenizer train --input all.txt --vocab-size 512 --special-token '<|endoftext|>' --out tok >/dev/null
"$ferrolm" tokenizer encode --tokenizer tok --input all.txt --output train.npy >/dev/null
head -c 200000 all.txt > short.txt
"$ferrolm" tokenizer encode --tokenizer tok --input short.txt --output short.npy >/dev/null

# A small model; the schedule is fixed at 6 steps so that shorter runs are prefixes of it.
base=(train --train train.npy --valid train.npy --tokenizer tok --no-progress --threads 1
      --set model.vocab_size=512 --set model.d_model=64 --set model.n_heads=4 --set model.d_ff=172
      --set model.n_layers=2 --set model.context_length=32 --set data.batch_size=4 --set eval.batches=2
      --set schedule.warmup_steps=2 --set schedule.cosine_steps=6)
final() { ls -d "$1"/checkpoints/step-* | tail -n 1; }
same() {
    cmp "$(final "$1")/model.safetensors" "$(final "$2")/model.safetensors" \
        || fail "$1 and $2 differ"
    echo "  $1 == $2 (model.safetensors bitwise)"
}

echo "== 1. N ranks == one process with --grad-accum N, bitwise (overlap on and off)"
# The model's 165k parameters (660 kB) in buckets of 50 kB: the head, each layer, the embedding.
small_buckets=(-x FERROLM_MPI_BUCKET_MB=0.05)
for sampling in random sequential; do
    for n in 2 3; do
        "$ferrolm" "${base[@]}" --sampling $sampling --steps 4 --grad-accum $n --run-dir one-$sampling-$n 2>/dev/null
        "${mpirun[@]}" -np $n "${small_buckets[@]}" "$ferrolm" "${base[@]}" --sampling $sampling --steps 4 --run-dir mpi-$sampling-$n > mpi-$sampling-$n.log 2>&1
        grep -q "overlap on, buckets of 0.05 MiB (4 buckets)" mpi-$sampling-$n.log \
            || fail "the run did not overlap in 4 buckets: $(cat mpi-$sampling-$n.log)"
        same one-$sampling-$n mpi-$sampling-$n
        if [ $sampling = random ]; then
            "${mpirun[@]}" -np $n -x FERROLM_MPI_OVERLAP=off "$ferrolm" "${base[@]}" --sampling $sampling --steps 4 --run-dir off-$sampling-$n 2>/dev/null
            same one-$sampling-$n off-$sampling-$n
        fi
    done
done
# Ranks with accumulation: 6 micro-batches per step as 1×6, 2×3 and 3×2 (overlap on, in 50 kB
# buckets, and alternating off/on); the 3-rank run with ring chunks of 10007 f32s (several
# chunks per bucket, the last one short).
"$ferrolm" "${base[@]}" --steps 6 --grad-accum 6 --run-dir ref6 2>/dev/null
"${mpirun[@]}" -np 2 "${small_buckets[@]}" "$ferrolm" "${base[@]}" --steps 6 --grad-accum 3 --run-dir n2a3 2>/dev/null
"${mpirun[@]}" -np 3 -x FERROLM_MPI_CHUNK=10007 -x FERROLM_MPI_OVERLAP=alternate "${small_buckets[@]}" \
    "$ferrolm" "${base[@]}" --steps 6 --grad-accum 2 --run-dir n3a2 2>/dev/null
same ref6 n2a3
same ref6 n3a2

echo "== 2. saved with 2 ranks, resumed with 1 and with 3 ranks == uninterrupted"
"${mpirun[@]}" -np 2 "$ferrolm" "${base[@]}" --steps 3 --grad-accum 3 --run-dir half 2>/dev/null
cp -r half to1 && cp -r half to3
# Without a config the checkpoint's (one-process) grad_accum 6 is split over the ranks.
"$ferrolm" train --run-dir to1 --resume --steps 6 --no-progress --threads 1 2>/dev/null
"${mpirun[@]}" -np 3 -x FERROLM_MPI_CHUNK=4096 "$ferrolm" train --run-dir to3 --resume --steps 6 --no-progress --threads 1 2>/dev/null
same ref6 to1
same ref6 to3

# Starts a long 2-rank run into run directory $1 (mpirun options after $3) with output in $3,
# waits for its checkpoint at step $2 and sets mpirun_pid and rank1 (rank 1's pid, found by its
# OMPI_COMM_WORLD_RANK among mpirun's children).
start_long_job() {
    local dir=$1 log=$3 ckpt
    ckpt=$1/checkpoints/step-$(printf %09d "$2")
    shift 3
    "${mpirun[@]}" -np 2 "$@" "$ferrolm" "${base[@]}" --set schedule.cosine_steps=100000 --steps 100000 \
        --checkpoint-every 20 --run-dir "$dir" > "$log" 2>&1 &
    mpirun_pid=$!
    for _ in $(seq 600); do [ -d "$ckpt" ] && break; sleep 0.1; done
    [ -d "$ckpt" ] || fail "no checkpoint after a minute: $(cat "$log")"
    rank1=""
    for p in $(pgrep -P $mpirun_pid); do
        if tr '\0' '\n' < /proc/$p/environ | grep -qx OMPI_COMM_WORLD_RANK=1; then rank1=$p; fi
    done
    [ -n "$rank1" ] || fail "rank 1 not found among the children of mpirun"
}

echo "== 3. kill -9 of one rank ends the job within seconds; --resume continues"
start_long_job killed 40 kill.log
t0=$(date +%s.%N)
kill -9 "$rank1"
set +e
timeout 30 tail --pid=$mpirun_pid -f /dev/null
wait $mpirun_pid; rc=$?
set -e
t1=$(date +%s.%N)
secs=$(echo "$t1 - $t0" | bc)
echo "  mpirun exited with status $rc, $secs s after the kill; it said:"
grep -i -E "signal|exited|killed|abort" kill.log | sed 's/^/    /' | head -5
[ "$rc" -ne 0 ] || fail "the job did not fail after a rank was killed"
(( $(echo "$secs < 10" | bc) )) || fail "the job took $secs s to end"
grep -q -i "signal 9" kill.log || fail "no message naming the killed rank: $(cat kill.log)"
last=$(basename "$(final killed)")
# Continue 20 steps past the newest checkpoint (how far the job got before the kill depends on the
# machine's speed; --steps below it would be refused).
target=$(( 10#${last#step-} + 20 ))
"${mpirun[@]}" -np 2 "$ferrolm" train --run-dir killed --resume --steps "$target" --no-progress --threads 1 > resume.log 2>&1 \
    || fail "resume after the kill failed: $(cat resume.log)"
grep -q "\"step\":$target" killed/metrics.jsonl || fail "the resumed run did not reach step $target"
echo "  resumed from $last to step $target"

echo "== 4. a rank that hangs without dying (SIGSTOP) ends the job after FERROLM_MPI_TIMEOUT, naming it"
start_long_job hung 20 hang.log -x FERROLM_MPI_TIMEOUT=5
t0=$(date +%s.%N)
kill -STOP "$rank1"
set +e
timeout 60 tail --pid=$mpirun_pid -f /dev/null
wait $mpirun_pid; rc=$?
set -e
kill -9 "$rank1" 2>/dev/null || true
t1=$(date +%s.%N)
secs=$(echo "$t1 - $t0" | bc)
echo "  mpirun exited with status $rc, $secs s after rank 1 was stopped (timeout 5 s); it said:"
grep "FERROLM_MPI_TIMEOUT" hang.log | sed 's/^/    /' | head -2
[ "$rc" -ne 0 ] || fail "the job did not fail after a rank hung"
(( $(echo "$secs < 30" | bc) )) || fail "the job took $secs s to end"
grep -q "rank 0 of 2: .*rank 1.* after 5 s (FERROLM_MPI_TIMEOUT)" hang.log \
    || fail "no message naming the hung rank: $(cat hang.log)"
# The stopped rank, woken to be killed, must not blame rank 0 for its own pause.
! grep -q "rank 1 of 2: .*FERROLM_MPI_TIMEOUT" hang.log || fail "the stopped rank blamed rank 0: $(cat hang.log)"

echo "== 5. a rank that differs from rank 0 is refused, naming the difference"
set +e
"${mpirun[@]}" -np 1 "$ferrolm" "${base[@]}" --steps 2 --run-dir bad1 : \
    -np 1 "$ferrolm" "${base[@]}" --steps 2 --run-dir bad1 --batch-size 5 > bad1.log 2>&1
rc1=$?
"${mpirun[@]}" -np 1 "$ferrolm" "${base[@]}" --steps 2 --run-dir bad2 : \
    -np 1 "$ferrolm" "${base[@]/train.npy/short.npy}" --steps 2 --run-dir bad2 > bad2.log 2>&1
rc2=$?
# Bucket sizes decide the messages: a rank with other buckets is refused too.
"${mpirun[@]}" -np 1 "$ferrolm" "${base[@]}" --steps 2 --run-dir bad3 : \
    -np 1 env FERROLM_MPI_BUCKET_MB=1 "$ferrolm" "${base[@]}" --steps 2 --run-dir bad3 > bad3.log 2>&1
rc3=$?
set -e
[ $rc3 -ne 0 ] && grep -q "gradient reduction: overlap on, buckets of 1 MiB.*here, overlap on, buckets of 25 MiB" bad3.log \
    || fail "a different bucket size was not refused by name: $(cat bad3.log)"
[ $rc1 -ne 0 ] && grep -q "config data.batch_size: 5 here, 4 on rank 0" bad1.log \
    || fail "a different batch size was not refused by name: $(cat bad1.log)"
[ $rc2 -ne 0 ] && grep -q "rank 1 differs from rank 0" bad2.log && grep -q "data.train" bad2.log \
    || fail "a different data file was not refused by name: $(cat bad2.log)"
grep -A2 "differs from rank 0" bad1.log | head -3 | sed 's/^/    /'
grep -A2 "differs from rank 0" bad2.log | head -3 | sed 's/^/    /'
[ ! -d bad1/checkpoints ] || fail "a refused job wrote checkpoints"
echo "mpi_check: all passed"
