#!/usr/bin/env bash
# launch/slurm.sbatch on a real one-machine SLURM cluster (slurmctld, slurmd
# and munged from Debian's packages, started here and stopped at the end).
#
# Usage: launch/test-slurm.sh
#
# Steps (each prints its name and time; a failure names its step):
#   install    slurmctld, slurmd, slurm-client and munge, when root and missing
#   start      munged, then slurmctld and slurmd with a configuration of
#              their own (one node, this machine's cores, loopback only, no
#              cgroups), each stopped again at the end by its PID
#   train      `sbatch -N1 --ntasks-per-node=2 launch/slurm.sbatch` with a
#              short job: it completes, with checkpoints, on 2 ranks, and its
#              final checkpoint equals `distnet train -n 2` outside SLURM
#              bitwise (hydra starts its proxy with srun)
#   cancel     a longer job, then `scancel --signal=TERM --full` once it has
#              a checkpoint: with the stop protocol (an `end` record) the
#              newest checkpoint must be at the stop step, otherwise the check
#              says it could not be made
#   resume     `sbatch ... --resume` continues from the newest checkpoint to
#              the end
#
# Runs as root (the daemons, and the jobs as the submitting user).
# Environment: DISTNET_PYTHON  the Python of the jobs (default: .venv/bin/python
#                              of the repository, else python3)
set -euo pipefail
set -E  # the ERR trap names the failed step inside functions too

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }
case "${1:-}" in
    -h|--help) usage; exit 0 ;;
    '') ;;
    *) echo "test-slurm: unknown argument '$1' (see --help)" >&2; exit 2 ;;
esac

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
if [ -n "${DISTNET_PYTHON:-}" ]; then
    PY=$DISTNET_PYTHON
elif [ -x "$REPO/.venv/bin/python" ]; then
    PY=$REPO/.venv/bin/python
else
    PY=$(command -v python3)
fi
WORK=$(mktemp -d "${TMPDIR:-/tmp}/distnet-slurm-test.XXXXXX")
chmod 755 "$WORK"
export SLURM_CONF="$WORK/slurm.conf"
unset SLURM_JOB_ID SLURM_JOB_NODELIST

current=setup
step_start=$SECONDS
timings=()
pids=()

say() { echo "test-slurm: $*"; }
step() {
    [ "$current" = setup ] || timings+=("$(printf '%-8s %4d s' "$current" $((SECONDS - step_start)))")
    current=$1
    step_start=$SECONDS
    say "== $1: $2"
}
fail() { say "FAILED at step '$current': $*"; exit 1; }
trap 'fail "command failed (exit $?, line $LINENO): $BASH_COMMAND"' ERR

cleanup() {
    local status=$? pid i
    trap - ERR
    if [ "$status" != 0 ]; then
        for f in "$WORK"/slurmctld.log "$WORK"/slurmd.log "$WORK"/job-*.out; do
            [ -f "$f" ] || continue
            say "last lines of $(basename "$f"):"
            tail -15 "$f" | sed 's/^/    /'
        done
    fi
    command -v scancel > /dev/null && [ -f "$SLURM_CONF" ] && scancel --full --signal=KILL -u "$(id -un)" 2>/dev/null || true
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do  # slurmd, slurmctld, munged: last started first
        pid=${pids[$i]}
        kill -TERM "$pid" 2>/dev/null || continue
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
    [ "$current" = setup ] || timings+=("$(printf '%-8s %4d s' "$current" $((SECONDS - step_start)))")
    if [ ${#timings[@]} -gt 0 ]; then
        say "step times:"
        printf '    %s\n' "${timings[@]}"
    fi
    [ "$status" != 0 ] || say "all steps passed in $SECONDS s"
    exit "$status"
}
trap cleanup EXIT

. "$REPO/launch/test-lib.bash"   # same_checkpoint, metric, newest_checkpoint_step
job_state() {  # JOBID: PENDING, RUNNING, COMPLETED, FAILED, CANCELLED...
    scontrol show job "$1" 2>/dev/null | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p'
}
wait_job() {  # JOBID SECONDS: until the job has ended; prints its state
    local state=""
    for _ in $(seq $(($2 * 4))); do
        state=$(job_state "$1")
        case "$state" in PENDING|RUNNING|CONFIGURING|COMPLETING|SUSPENDED|'') ;; *) break ;; esac
        sleep 0.25
    done
    echo "$state"
}
submit() {  # RUN_DIR [distnet train options]: sbatch the wrapper, print the job id
    local run_dir=$1
    shift
    (cd "$WORK" && sbatch --parsable --nodes=1 --ntasks-per-node=2 --time=10 \
        --output="$WORK/job-%j.out" --export="ALL,DISTNET=$PY -m distnet" \
        "$REPO/launch/slurm.sbatch" "$REPO/examples/jobs/mlp.toml" --run-dir "$run_dir" \
        --progress plain --set "data.path=$EMBEDDED" "$@")
}

SHORT=(--set train.steps=60 --set checkpoint.every=20)
LONG=(--set train.steps=2000 --set checkpoint.every=100)

# -- install --------------------------------------------------------------------------
step install "slurmctld, slurmd, munge"
[ "$(id -u)" = 0 ] || fail "runs as root: it starts munged, slurmctld and slurmd"
missing=()
for pair in slurmctld:slurmctld slurmd:slurmd sbatch:slurm-client munged:munge; do
    command -v "${pair%%:*}" > /dev/null 2>&1 || missing+=("${pair#*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
    say "apt-get install ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" > "$WORK/apt.log" 2>&1 \
        || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
             --no-install-recommends "${missing[@]}" > "$WORK/apt.log" 2>&1; } \
        || { tail "$WORK/apt.log"; fail "apt-get install ${missing[*]} failed"; }
fi
EMBEDDED=$("$PY" -c 'from distnet.data.builtin import EMBEDDED_DIR; print(EMBEDDED_DIR)')

# -- start ---------------------------------------------------------------------------------
step start "munged, slurmctld, slurmd"
[ -s /etc/munge/munge.key ] || fail "/etc/munge/munge.key is missing (the munge package makes it)"
if munge -n 2>/dev/null | unmunge > /dev/null 2>&1; then
    say "using the running munged"
else
    install -d -o munge -g munge -m 0755 /run/munge
    runuser -u munge -- /usr/sbin/munged --foreground > "$WORK/munged.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 50); do munge -n 2>/dev/null | unmunge > /dev/null 2>&1 && break; sleep 0.1; done
    munge -n | unmunge > /dev/null 2>&1 || { cat "$WORK/munged.log"; fail "munged does not answer"; }
fi
node=$(hostname -s)
cpus=$(nproc)
mkdir -p "$WORK/state" "$WORK/spool"
cat > "$SLURM_CONF" <<EOF
# One-machine cluster for launch/test-slurm.sh: loopback only, no cgroups.
ClusterName=distnet-test
SlurmctldHost=$node(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$WORK/state
SlurmdSpoolDir=$WORK/spool
SlurmctldPidFile=$WORK/slurmctld.pid
SlurmdPidFile=$WORK/slurmd.pid
SlurmctldLogFile=$WORK/slurmctld.log
SlurmdLogFile=$WORK/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
KillWait=30
MinJobAge=600
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus State=UNKNOWN
PartitionName=test Nodes=$node Default=YES MaxTime=30 State=UP
EOF
slurmctld -D -f "$SLURM_CONF" > "$WORK/slurmctld.out" 2>&1 &
pids+=($!)
slurmd -D -f "$SLURM_CONF" > "$WORK/slurmd.out" 2>&1 &
pids+=($!)
state=""
for _ in $(seq 120); do
    state=$(sinfo -h -n "$node" -o %t 2>/dev/null || true)
    [ "$state" = idle ] && break
    sleep 0.25
done
[ "$state" = idle ] || { cat "$WORK"/slurm*.out; fail "node $node is '${state:-unknown}', not idle, 30 s after start"; }
say "node $node idle with $cpus CPUs"

# -- train -------------------------------------------------------------------------------------
step train "sbatch launch/slurm.sbatch, 2 tasks"
job=$(submit "$WORK/runs/short" "${SHORT[@]}")
state=$(wait_job "$job" 240)
[ "$state" = COMPLETED ] || fail "job $job ended $state: $(tail -5 "$WORK/job-$job.out" 2>/dev/null)"
[ "$(metric "$WORK/runs/short/metrics.jsonl" start world_size)" = 2 ] || fail "expected 2 ranks"
[ "$(metric "$WORK/runs/short/metrics.jsonl" end status)" = completed ] || fail "no completed end record"
[ -f "$WORK/runs/short/checkpoints/ckpt-00000060.h5" ] || fail "no checkpoint at step 60"
(cd "$WORK" && timeout 300 "$PY" -m distnet train "$REPO/examples/jobs/mlp.toml" -n 2 \
    --run-dir "$WORK/runs/reference" --progress none --set "data.path=$EMBEDDED" "${SHORT[@]}" \
    > "$WORK/reference.log" 2>&1) || { tail "$WORK/reference.log"; fail "the reference run failed"; }
same_checkpoint "$WORK/runs/reference/checkpoints/ckpt-00000060.h5" "$WORK/runs/short/checkpoints/ckpt-00000060.h5" \
    || fail "the final checkpoint differs from distnet train -n 2 outside SLURM"

# -- cancel --------------------------------------------------------------------------------------
step cancel "scancel --signal=TERM --full during a longer job"
job=$(submit "$WORK/runs/long" "${LONG[@]}")
reached=0
for _ in $(seq 480); do  # up to 120 s for the first periodic checkpoint (step 100)
    reached=$(tail -n 1 "$WORK/runs/long/metrics.jsonl" 2>/dev/null | sed -n 's/.*"step":\([0-9]*\).*/\1/p' || true)
    [ "${reached:-0}" -ge 150 ] && break
    case "$(job_state "$job")" in PENDING|RUNNING|CONFIGURING|'') ;; *) break ;; esac
    sleep 0.25
done
[ "${reached:-0}" -ge 150 ] || fail "job $job did not reach step 150 (state $(job_state "$job"))"
# hydra starts its proxy as a job step (srun), not by ssh
steps=$(squeue -h -s -j "$job" -o %i 2>/dev/null | grep -v -c -e '\.batch$' -e '\.extern$' || true)
[ "${steps:-0}" -ge 1 ] || fail "no srun step in job $job: hydra did not start its proxy through SLURM"
say "step $reached, $steps srun step(s) besides the batch script; scancel --signal=TERM --full $job"
scancel --signal=TERM --full "$job"
state=$(wait_job "$job" 90)
case "$state" in PENDING|RUNNING|CONFIGURING|COMPLETING|'') fail "job $job still $state 90 s after SIGTERM" ;; esac
last_step=$(sed -n 's/.*"step":\([0-9]*\).*/\1/p' "$WORK/runs/long/metrics.jsonl" | tail -1)
end_step=$(metric "$WORK/runs/long/metrics.jsonl" end step)
newest=$(newest_checkpoint_step "$WORK/runs/long")
say "job $job ended $state ($(scontrol show job "$job" | sed -n 's/.* ExitCode=\([0-9:]*\).*/exit \1/p'))"
[ "$(metric "$WORK/runs/long/metrics.jsonl" end status)" != completed ] \
    || fail "the job had completed before the signal: nothing was stopped"
if [ -n "$end_step" ]; then
    [ "$newest" = "$end_step" ] || fail "the job ended at step $end_step but its newest checkpoint is at step $newest"
    say "checkpoint at the stop step $end_step"
else
    say "NOT CHECKED: no stop protocol in this tree (no end record after SIGTERM):" \
        "newest checkpoint at step $newest, last metrics at step $last_step"
fi
[ "$newest" != none ] || fail "no checkpoint to resume from"
left=$(pgrep -f -- "--run-dir $WORK/runs/long" || true)
[ -z "$left" ] || fail "processes of the cancelled job are still running: $left"

# -- resume ----------------------------------------------------------------------------------------
step resume "sbatch ... --resume"
job=$(submit "$WORK/runs/long" "${LONG[@]}" --resume)
state=$(wait_job "$job" 300)
[ "$state" = COMPLETED ] || fail "the resumed job $job ended $state: $(tail -5 "$WORK/job-$job.out" 2>/dev/null)"
[ "$(metric "$WORK/runs/long/metrics.jsonl" start resume)" = True ] || fail "the second start is not a resume"
[ "$(metric "$WORK/runs/long/metrics.jsonl" end step)" = 2000 ] || fail "the resumed job did not reach step 2000"
first=$("$PY" - "$WORK/runs/long/metrics.jsonl" <<'EOF'
import json
import sys
records = [json.loads(line) for line in open(sys.argv[1])]
start = max(i for i, r in enumerate(records) if r.get("kind") == "start")
print(next(r["step"] for r in records[start:] if r.get("kind") == "step"))
EOF
)
[ "$first" = $((newest + 1)) ] || fail "the resumed job started at step $first, expected $((newest + 1))"
say "resumed from step $newest to 2000"
