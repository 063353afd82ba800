#!/usr/bin/env bash
# Data-parallel training launched by Slurm's srun, end to end on this machine (CI runs it after
# tools/mpi_check.sh). It starts a one-node Slurm cluster of its own (munged, slurmctld, slurmd,
# from Debian's slurm-wlm; config, spool and logs in a temp dir, SLURM_CONF pointing there), then:
#  1. `srun -n 2 --mpi=pmix ferrolm train` gives bitwise the parameters of one process with
#     --grad-accum 2 (Open MPI's ranks wired up by Slurm's PMIx, no mpirun);
#  2. srun without its MPI plugin (--mpi=none) is refused, naming the fix;
#  3. kill -9 of one task ends the whole step within seconds, and an srun --resume continues.
# Usage: tools/slurm_check.sh [path/to/ferrolm built with --features mpi]
# Needs root (the daemons run as root here) and the packages slurm-wlm and munge.
set -euo pipefail
ferrolm=$(realpath "${1:-target/release/ferrolm}")
fail() { echo "slurm_check: FAILED: $*" >&2; exit 1; }
command -v slurmctld >/dev/null || fail "slurmctld not found: apt-get install slurm-wlm munge"
work=$(mktemp -d)
conf=$work/etc/slurm.conf
cleanup() {
    [ -f "$work/slurmctld.pid" ] && kill "$(cat "$work/slurmctld.pid")" 2>/dev/null
    [ -f "$work/slurmd.pid" ] && kill "$(cat "$work/slurmd.pid")" 2>/dev/null
    sleep 0.5; rm -rf "$work"
}
trap cleanup EXIT

echo "== a one-node Slurm cluster in $work"
mkdir -p "$work/etc" "$work/ctld" "$work/d" "$work/log"
[ -f /etc/munge/munge.key ] || /usr/sbin/mungekey --create
mkdir -p /run/munge && chown munge:munge /run/munge /etc/munge/munge.key 2>/dev/null || true
pgrep -x munged >/dev/null || su -s /bin/sh munge -c /usr/sbin/munged || /usr/sbin/munged --force
host=$(hostname -s)
cpus=$(nproc)
cat > "$conf" <<CONF
ClusterName=ferrolm-check
SlurmctldHost=$host
SlurmctldPort=16817
SlurmdPort=16818
SlurmUser=root
AuthType=auth/munge
MpiDefault=pmix
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
StateSaveLocation=$work/ctld
SlurmdSpoolDir=$work/d
SlurmctldPidFile=$work/slurmctld.pid
SlurmdPidFile=$work/slurmd.pid
SlurmctldLogFile=$work/log/slurmctld.log
SlurmdLogFile=$work/log/slurmd.log
NodeName=$host CPUs=$cpus State=UNKNOWN
PartitionName=check Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE
CONF
export SLURM_CONF=$conf
slurmctld -f "$conf"
slurmd -f "$conf"
for _ in $(seq 100); do sinfo -h -o %t 2>/dev/null | grep -q idle && break; sleep 0.2; done
sinfo -h -o %t | grep -q idle || fail "the Slurm node did not come up: $(tail -5 "$work"/log/*.log)"
srun=(srun --overcommit -n 2 --cpus-per-task 1 --mpi=pmix)

cd "$work"
"$ferrolm" quickstart --corpus-only all.txt --corpus-mb 1 >/dev/null
"$ferrolm" tokenizer train --input all.txt --vocab-size 512 --special-token '<|endoftext|>' --out tok >/dev/null
"$ferrolm" tokenizer encode --tokenizer tok --input all.txt --output train.npy >/dev/null
base=(train --train train.npy --valid train.npy --tokenizer tok --no-progress
      --set model.vocab_size=512 --set model.d_model=64 --set model.n_heads=4 --set model.d_ff=172
      --set model.n_layers=2 --set model.context_length=32 --set data.batch_size=4 --set eval.batches=2
      --set schedule.warmup_steps=2 --set schedule.cosine_steps=6)
final() { ls -d "$1"/checkpoints/step-* | tail -n 1; }

echo "== 1. srun -n 2 == one process with --grad-accum 2, bitwise"
"$ferrolm" "${base[@]}" --threads 1 --steps 4 --grad-accum 2 --run-dir one 2>/dev/null
"${srun[@]}" "$ferrolm" "${base[@]}" --steps 4 --run-dir sr > sr.log 2>&1 || fail "srun training failed: $(cat sr.log)"
cmp "$(final one)/model.safetensors" "$(final sr)/model.safetensors" || fail "srun -n 2 differs from --grad-accum 2"
echo "  one/ == sr/ (model.safetensors bitwise)"

echo "== 2. srun without its MPI plugin (--mpi=none) is refused, naming the fix"
set +e
srun --overcommit -n 2 --cpus-per-task 1 --mpi=none "$ferrolm" "${base[@]}" --steps 2 --run-dir nompi > nompi.log 2>&1
rc=$?
set -e
[ $rc -ne 0 ] && grep -q -- "--mpi=pmix" nompi.log || fail "srun --mpi=none was not refused: $(cat nompi.log)"
[ ! -d nompi/checkpoints ] || fail "a refused job wrote checkpoints"
grep -m1 "launcher started" nompi.log | sed 's/^/    /'

echo "== 3. kill -9 of one task ends the step within seconds; srun --resume continues"
long=("${base[@]}" --set schedule.cosine_steps=100000 --steps 100000 --checkpoint-every 20 --run-dir killed)
"${srun[@]}" "$ferrolm" "${long[@]}" > kill.log 2>&1 &
srun_pid=$!
for _ in $(seq 600); do [ -d killed/checkpoints/step-000000040 ] && break; sleep 0.1; done
[ -d killed/checkpoints/step-000000040 ] || fail "no checkpoint after a minute: $(cat kill.log)"
task1=""
for p in $(pgrep -f "$ferrolm train"); do
    if tr '\0' '\n' < /proc/$p/environ 2>/dev/null | grep -qx SLURM_PROCID=1; then task1=$p; fi
done
[ -n "$task1" ] || fail "task 1 not found"
t0=$(date +%s.%N)
kill -9 "$task1"
set +e
timeout 60 tail --pid=$srun_pid -f /dev/null
wait $srun_pid; rc=$?
set -e
secs=$(echo "$(date +%s.%N) - $t0" | bc)
echo "  srun exited with status $rc, $secs s after the kill; it said:"
grep -i -E "killed|abort|cancel" kill.log | sed 's/^/    /' | head -4
[ "$rc" -ne 0 ] || fail "the step did not fail after a task was killed"
(( $(echo "$secs < 15" | bc) )) || fail "the step took $secs s to end"
last=$(basename "$(final killed)")
target=$(( 10#${last#step-} + 20 ))
"${srun[@]}" "$ferrolm" train --run-dir killed --resume --steps "$target" --no-progress > resume.log 2>&1 \
    || fail "resume after the kill failed: $(cat resume.log)"
grep -q "\"step\":$target" killed/metrics.jsonl || fail "the resumed run did not reach step $target"
echo "  resumed from $last to step $target"
echo "slurm_check: all passed"
