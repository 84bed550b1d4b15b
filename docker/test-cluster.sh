#!/usr/bin/env bash
# The Docker cluster, tested for real: engine, image, launcher and workers.
#
# Usage: docker/test-cluster.sh [--keep-engine]
#
#   --keep-engine  leave running a dockerd that this script started
#
# Steps (each prints its name and time; a failure names its step):
#   engine      docker/install-engine.sh when root (docker.io, Compose v2 and
#               buildx from Debian's packages, if missing); start dockerd when
#               none answers, and stop it again at the end, by its PID
#   base        python:3.11-slim: present, pulled, or, when no registry can be
#               reached, made by docker/make-base-image.sh (debootstrap)
#   build       the project image, built once (no dangling image left); the
#               host's CA bundle goes in as a build secret, never into a layer
#   reference   the short job with `distnet train -n 2` outside Docker
#   2x1         launcher + 2 workers of 1 rank: exit 0, final checkpoint
#               bitwise equal to the reference, run files 0644 and uid 1000
#   guard       a second `up` into the same run without --resume is refused;
#               `--user root` is refused
#   1x2         1 worker of 2 ranks: exit 0, bitwise equal to the reference
#   stop        `docker compose stop launcher` during a longer job: every
#               process of the cluster runs as uid 1000; the job's exit status
#               and newest checkpoint; with the stop protocol (an `end` record
#               after the stop) the checkpoint must be at the stop step,
#               otherwise the check says it could not be made; then
#               `--resume` finishes the job from the newest checkpoint
#   scale       `up --scale worker=3`: 3 ranks; the stopped workers withdrew
#               their published host keys
#   mpijob      the entry point's MPIJob roles (launch/mpijob.yaml) with what
#               the MPI Operator provides laid out by hand in plain Docker: its
#               ECDSA key pair as a read-only, root-owned mount at
#               sshAuthMountPath, its hostfile at /etc/mpi/hostfile; exit 0 and
#               the reference's bits (Kubernetes itself is not run)
#   down        `down -v` leaves no container, volume or network
#
# Environment: DISTNET_PYTHON  the Python for the reference run (default:
#                              .venv/bin/python of the repository, else python3)
#              DISTNET_CA_BUNDLE  CA bundle for pip inside the build (default:
#                              /etc/ssl/certs/ca-certificates.crt when present)
#              DISTNET_TEST_PROJECT  compose project name (default distnet-test;
#                              its containers and volumes are removed)
set -euo pipefail
set -E  # the ERR trap names the failed step inside functions too

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }

keep_engine=0
case "${1:-}" in
    -h|--help) usage; exit 0 ;;
    --keep-engine) keep_engine=1 ;;
    '') ;;
    *) echo "test-cluster: unknown argument '$1' (see --help)" >&2; exit 2 ;;
esac

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
PROJECT=${DISTNET_TEST_PROJECT:-distnet-test}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/distnet-docker-test.XXXXXX")
C=(docker compose -f "$REPO/docker/compose.yaml" -p "$PROJECT")
if [ -z "${DISTNET_CA_BUNDLE:-}" ] && [ -s /etc/ssl/certs/ca-certificates.crt ]; then
    export DISTNET_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
fi
if [ -n "${DISTNET_PYTHON:-}" ]; then
    PY=$DISTNET_PYTHON
elif [ -x "$REPO/.venv/bin/python" ]; then
    PY=$REPO/.venv/bin/python
else
    PY=python3
fi
# Start-up of the launcher: 2 s of a stable worker count is plenty here.
export DISTNET_SETTLE=2
unset DISTNET_WORKERS DISTNET_SLOTS DISTNET_EXTRA_ARGS DISTNET_THREADS

current="setup"
step_start=$SECONDS
timings=()
dockerd_pid=""
brought_up=0

say() { echo "test-cluster: $*"; }
step() {
    [ "$current" = setup ] || timings+=("$(printf '%-10s %4d s' "$current" $((SECONDS - step_start)))")
    current=$1
    step_start=$SECONDS
    say "== $1: $2"
}
fail() {
    say "FAILED at step '$current': $*"
    exit 1
}
on_error() { fail "command failed (exit $1, line $2): $3"; }
trap 'on_error $? $LINENO "$BASH_COMMAND"' ERR

cleanup() {
    local status=$?
    trap - ERR
    if [ "$brought_up" = 1 ] && [ "$status" != 0 ]; then
        say "logs of the last launcher:"
        "${C[@]}" logs --no-color --tail 30 launcher 2>&1 | sed 's/^/    /' || true
    fi
    if [ "$brought_up" = 1 ]; then
        "${C[@]}" down -v --remove-orphans > /dev/null 2>&1 || true
    fi
    remove_mpijob > /dev/null 2>&1 || true
    if [ -n "$dockerd_pid" ] && [ "$keep_engine" = 0 ]; then
        kill -TERM "$dockerd_pid" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 0.2; done
        if kill -0 "$dockerd_pid" 2>/dev/null; then
            say "dockerd ($dockerd_pid) still running 20 s after SIGTERM; killing it"
            kill -KILL "$dockerd_pid" 2>/dev/null || true
        fi
    fi
    rm -rf "$WORK"
    [ "$current" = setup ] || timings+=("$(printf '%-10s %4d s' "$current" $((SECONDS - step_start)))")
    if [ ${#timings[@]} -gt 0 ]; then
        say "step times:"
        printf '    %s\n' "${timings[@]}"
    fi
    if [ "$status" = 0 ]; then
        say "all steps passed in $SECONDS s"
    fi
    exit "$status"
}
trap cleanup EXIT

# -- helpers -----------------------------------------------------------------------
up() {  # [ENV=VALUE...] -- [up options]: up until the launcher exits; its status
    local envs=()
    while [ "$1" != -- ]; do envs+=("$1"); shift; done
    shift
    brought_up=1
    env ${envs[@]+"${envs[@]}"} "${C[@]}" up --exit-code-from launcher "$@" > "$WORK/up.log" 2>&1
}
in_volume() {  # COMMAND...: run in a fresh launcher container with the volumes
    "${C[@]}" run --rm --no-deps -T launcher "$@"
}
copy_run() {  # DEST: the run directory out of the volume
    rm -rf "$1"
    "${C[@]}" cp launcher:/runs/mlp "$1" > /dev/null 2>&1 \
        || fail "docker compose cp launcher:/runs/mlp failed"
}
. "$REPO/launch/test-lib.bash"   # same_checkpoint, metric, newest_checkpoint_step

MPIJOB="$PROJECT-mpijob"
remove_mpijob() {  # the plain-Docker stand-in for an MPIJob's pods
    docker rm -f "$MPIJOB-launcher" "$MPIJOB-worker-0" "$MPIJOB-worker-1" > /dev/null 2>&1 || true
    docker network rm "$MPIJOB" > /dev/null 2>&1 || true
    docker volume rm "$MPIJOB-runs" > /dev/null 2>&1 || true
}

SHORT=(--set train.steps=60 --set checkpoint.every=20)
LONG=(--set train.steps=2000 --set checkpoint.every=100)

# -- engine ------------------------------------------------------------------------------
step engine "Docker engine, Compose v2 and buildx"
if [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null 2>&1; then
    "$HERE/install-engine.sh" || fail "could not install the engine (docker/install-engine.sh)"
fi
[[ $(docker compose version --short 2>/dev/null) =~ ^v?2\. ]] \
    || fail "Docker Compose v2 is required (docker compose version); v1 cannot read compose.yaml"
docker buildx version > /dev/null 2>&1 || fail "docker buildx is required (the build uses BuildKit)"
if docker info > /dev/null 2>&1; then
    say "using the running Docker engine"
else
    command -v dockerd > /dev/null || fail "no Docker engine answers and dockerd is not installed"
    [ "$(id -u)" = 0 ] || fail "no Docker engine answers; starting dockerd needs root"
    dockerd > "$WORK/dockerd.log" 2>&1 &
    dockerd_pid=$!
    for _ in $(seq 150); do
        docker info > /dev/null 2>&1 && break
        kill -0 "$dockerd_pid" 2>/dev/null || { tail -20 "$WORK/dockerd.log"; fail "dockerd exited at start"; }
        sleep 0.2
    done
    docker info > /dev/null 2>&1 || { tail -20 "$WORK/dockerd.log"; fail "dockerd did not answer within 30 s"; }
    say "started dockerd (PID $dockerd_pid)"
fi
"${C[@]}" down -v --remove-orphans > /dev/null 2>&1 || true  # a previous run's leftovers

# -- base image ------------------------------------------------------------------------
step base "python:3.11-slim"
if docker image inspect python:3.11-slim > /dev/null 2>&1; then
    say "python:3.11-slim is present"
elif timeout 300 docker pull -q python:3.11-slim > /dev/null 2>&1; then
    say "pulled python:3.11-slim"
else
    say "no registry reachable: making python:3.11-slim from Debian's packages"
    if ! command -v debootstrap > /dev/null && [ "$(id -u)" = 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap > /dev/null \
            || fail "apt-get install debootstrap failed"
    fi
    "$HERE/make-base-image.sh" || fail "docker/make-base-image.sh failed"
fi

# -- build ---------------------------------------------------------------------------------
step build "the project image, once"
dangling_before=$(docker images -q -f dangling=true | wc -l)
previous=$(docker image inspect -f '{{.Id}}' distnet:latest 2>/dev/null || true)
"${C[@]}" build > "$WORK/build.log" 2>&1 || { tail -30 "$WORK/build.log"; fail "docker compose build failed"; }
built=$(grep -c 'naming to .*distnet:latest' "$WORK/build.log" || true)
[ "$built" = 1 ] || fail "expected the image built once, the build log names distnet:latest $built times"
# A changed image leaves its predecessor untagged: that one is expected.
replaced=0
if [ -n "$previous" ] && [ "$previous" != "$(docker image inspect -f '{{.Id}}' distnet:latest)" ]; then
    replaced=1
fi
dangling_after=$(docker images -q -f dangling=true | wc -l)
[ "$dangling_after" -le $((dangling_before + replaced)) ] \
    || fail "the build left $((dangling_after - dangling_before - replaced)) more dangling image(s)"
if [ -n "${DISTNET_CA_BUNDLE:-}" ]; then
    # the secret reached no layer: the image holds no line of the bundle's last certificate
    marker=$(grep -v -- '-----' "$DISTNET_CA_BUNDLE" | tail -2 | head -1)
    if [ -n "$marker" ] && docker save distnet:latest | grep -a -q -F -- "$marker"; then
        fail "the CA bundle given as a build secret is inside the image"
    fi
fi
VERSIONS='from importlib.metadata import version; print(*(version(p) for p in ("numpy", "mpi4py", "mpich")))'
image_versions=$(docker run --rm --entrypoint python distnet:latest -c "$VERSIONS")
say "image: numpy, mpi4py, mpich $image_versions"

# -- reference ---------------------------------------------------------------------------
step reference "the job with distnet train -n 2 outside Docker ($PY)"
host_versions=$("$PY" -c "$VERSIONS")
[ "$host_versions" = "$image_versions" ] \
    || fail "bitwise comparison needs the same numpy/mpi4py/mpich: image $image_versions, $PY $host_versions"
embedded=$("$PY" -c 'from distnet.data.builtin import EMBEDDED_DIR; print(EMBEDDED_DIR)')
# The image holds the embedded Fashion-MNIST subset only: the reference reads the same.
(cd "$WORK" && OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 timeout 300 \
    "$PY" -m distnet train "$REPO/examples/jobs/mlp.toml" -n 2 --run-dir "$WORK/reference" \
    --progress none "${SHORT[@]}" --set "data.path=$embedded" > "$WORK/reference.log" 2>&1) \
    || { tail -20 "$WORK/reference.log"; fail "the reference run outside Docker failed"; }
[ -f "$WORK/reference/checkpoints/ckpt-00000060.h5" ] || fail "the reference run wrote no checkpoint at step 60"

# -- 2 workers x 1 rank -----------------------------------------------------------------
step 2x1 "launcher and 2 workers of 1 rank"
up "DISTNET_EXTRA_ARGS=${SHORT[*]}" -- || fail "up exited $? (expected 0); see the launcher's log below"
copy_run "$WORK/run-2x1"
[ "$(metric "$WORK/run-2x1/metrics.jsonl" start world_size)" = 2 ] || fail "expected 2 ranks"
same_checkpoint "$WORK/reference/checkpoints/ckpt-00000060.h5" "$WORK/run-2x1/checkpoints/ckpt-00000060.h5" \
    || fail "the final checkpoint differs from the reference run"
modes=$(in_volume sh -c 'cd /runs/mlp && stat -c "%a %u %n" metrics.jsonl job.toml checkpoints/*' | sort -u)
bad=$(printf '%s\n' "$modes" | awk '$1 != "644" || $2 != "1000"')
[ -z "$bad" ] || fail "run files not 0644 or not owned by uid 1000: $bad"

# -- guards --------------------------------------------------------------------------------
step guard "the same run without --resume; --user root"
if up "DISTNET_EXTRA_ARGS=${SHORT[*]}" --; then
    fail "a second up into /runs/mlp without --resume succeeded"
fi
grep -q "holds an earlier run" "$WORK/up.log" || fail "the refusal does not say why: $(tail -3 "$WORK/up.log")"
if "${C[@]}" run --rm --no-deps -T --user root launcher launcher > "$WORK/root.log" 2>&1; then
    fail "the launcher started as root"
fi
grep -q "not as root" "$WORK/root.log" || fail "the root refusal does not say why: $(cat "$WORK/root.log")"

# -- 1 worker x 2 ranks -------------------------------------------------------------------
step 1x2 "1 worker of 2 ranks"
"${C[@]}" down -v > /dev/null 2>&1
up DISTNET_WORKERS=1 DISTNET_SLOTS=2 "DISTNET_EXTRA_ARGS=${SHORT[*]}" -- \
    || fail "up exited $? (expected 0); see the launcher's log below"
copy_run "$WORK/run-1x2"
[ "$(metric "$WORK/run-1x2/metrics.jsonl" start world_size)" = 2 ] || fail "expected 2 ranks"
same_checkpoint "$WORK/reference/checkpoints/ckpt-00000060.h5" "$WORK/run-1x2/checkpoints/ckpt-00000060.h5" \
    || fail "the final checkpoint differs from the reference run"

# -- stop and resume ------------------------------------------------------------------------
step stop "docker compose stop launcher, then --resume"
"${C[@]}" down -v > /dev/null 2>&1
brought_up=1
DISTNET_EXTRA_ARGS="${LONG[*]}" "${C[@]}" up -d > "$WORK/up.log" 2>&1 || fail "up -d failed"
reached=0
for _ in $(seq 240); do  # up to 60 s for the first periodic checkpoint (step 100)
    reached=$("${C[@]}" exec -T launcher sh -c 'tail -n 1 /runs/mlp/metrics.jsonl 2>/dev/null' \
              | sed -n 's/.*"step":\([0-9]*\).*/\1/p' || true)
    [ "${reached:-0}" -ge 150 ] && break
    sleep 0.25
done
[ "${reached:-0}" -ge 150 ] || fail "the job did not reach step 150 within 60 s"
ranks=0
for c in $("${C[@]}" ps -q); do
    docker top "$c" -eo pid,uid,args > "$WORK/top" || fail "docker top $c failed"
    uids=$(awk 'NR > 1 { print $2 }' "$WORK/top" | sort -u | tr '\n' ' ')
    [ "$uids" = "1000 " ] || fail "container $c runs processes as uid(s) $uids, expected 1000 only"
    # the ranks: python running distnet's CLI under hydra's proxy (the launcher starts the workers
    # with distnet.runner.launcher.WORKER_ENTRY, `python -c "import sys ..."`; docker top cuts the
    # line short, so its start is what is matched; not mpiexec's own command line)
    ranks=$((ranks + $(awk 'NR > 1 && $3 ~ /\/python[0-9.]*$/ && (/ -m distnet train / || / -c import sys/)' \
                           "$WORK/top" | wc -l)))
done
[ "$ranks" = 2 ] || { cat "$WORK/top" >&2; fail "expected 2 ranks running in the cluster, found $ranks"; }
stop_start=$SECONDS
"${C[@]}" stop launcher > /dev/null 2>&1
stop_status=$(docker inspect -f '{{.State.ExitCode}}' "$("${C[@]}" ps -aq launcher)")
say "stopped after $((SECONDS - stop_start)) s, exit status $stop_status"
copy_run "$WORK/run-stop"
last_step=$(sed -n 's/.*"step":\([0-9]*\).*/\1/p' "$WORK/run-stop/metrics.jsonl" | tail -1)
end_step=$(metric "$WORK/run-stop/metrics.jsonl" end step)
[ "$(metric "$WORK/run-stop/metrics.jsonl" end status)" != completed ] \
    || fail "the job had completed before the stop (step $end_step): nothing was stopped"
newest=$(newest_checkpoint_step "$WORK/run-stop")
if [ -n "$end_step" ]; then
    [ "$newest" = "$end_step" ] \
        || fail "the job recorded its end at step $end_step but the newest checkpoint is at step $newest"
    say "checkpoint at the stop step $end_step"
else
    say "NOT CHECKED: no stop protocol in this tree (no end record after SIGTERM; exit $stop_status):" \
        "newest checkpoint at step $newest, last metrics at step $last_step"
fi
[ "$newest" != none ] || fail "no checkpoint to resume from (the job ran to step $last_step)"
up "DISTNET_EXTRA_ARGS=${LONG[*]} --resume" -- || fail "the resumed job exited $? (expected 0)"
copy_run "$WORK/run-resumed"
[ "$(metric "$WORK/run-resumed/metrics.jsonl" start resume)" = True ] || fail "the second start is not a resume"
[ "$(metric "$WORK/run-resumed/metrics.jsonl" end step)" = 2000 ] || fail "the resumed job did not reach step 2000"
first_resumed=$("$PY" - "$WORK/run-resumed/metrics.jsonl" <<'EOF'
import json
import sys
records = [json.loads(line) for line in open(sys.argv[1])]
starts = [i for i, r in enumerate(records) if r.get("kind") == "start"]
print(next(r["step"] for r in records[starts[-1]:] if r.get("kind") == "step"))
EOF
)
[ "$first_resumed" = $((newest + 1)) ] \
    || fail "the resumed job started at step $first_resumed, expected $((newest + 1)) (after checkpoint $newest)"
say "resumed from step $newest to 2000"

# -- scale ---------------------------------------------------------------------------------
step scale "up --scale worker=3"
"${C[@]}" down -v > /dev/null 2>&1
up DISTNET_WORKERS=3 "DISTNET_EXTRA_ARGS=${SHORT[*]}" -- --scale worker=3 \
    || fail "up exited $? (expected 0); see the launcher's log below"
copy_run "$WORK/run-3"
[ "$(metric "$WORK/run-3/metrics.jsonl" start world_size)" = 3 ] || fail "expected 3 ranks"
left=$(in_volume sh -c 'ls /cluster/hostkeys' | tr '\n' ' ')
[ -z "$left" ] || fail "stopped workers left their host keys published: $left"

# -- the MPIJob roles --------------------------------------------------------------------------
step mpijob "mpijob-worker / mpijob-launcher with the operator's keys and hostfile"
"${C[@]}" down -v > /dev/null 2>&1
remove_mpijob
# What the operator mounts: an ECDSA P-521 key as id_rsa, its public half as
# id_rsa.pub and authorized_keys, read-only files owned by root.
mkdir -p "$WORK/mpijob-ssh"
ssh-keygen -q -t ecdsa -b 521 -m PEM -N '' -C '' -f "$WORK/mpijob-ssh/id_rsa"
cp "$WORK/mpijob-ssh/id_rsa.pub" "$WORK/mpijob-ssh/authorized_keys"
chmod 644 "$WORK/mpijob-ssh"/*
chmod 755 "$WORK/mpijob-ssh"
printf '%s\n' "$MPIJOB-worker-0:1" "$MPIJOB-worker-1:1" > "$WORK/mpijob-hostfile"
chmod 644 "$WORK/mpijob-hostfile"
docker network create --internal "$MPIJOB" > /dev/null
docker volume create "$MPIJOB-runs" > /dev/null
pod_env=(-e OMP_NUM_THREADS=1 -e OPENBLAS_NUM_THREADS=1 -e MKL_NUM_THREADS=1
         -e MPIR_CVAR_CH4_CMA_ENABLE=0 -e UCX_TLS=tcp,self
         -e HYDRA_HOST_FILE=/etc/mpi/hostfile -e "HYDRA_LAUNCH_EXTRA_ARGS=-o ConnectionAttempts=10")
[ -z "${OPENBLAS_CORETYPE:-}" ] || pod_env+=(-e "OPENBLAS_CORETYPE=$OPENBLAS_CORETYPE")
[ -z "${OPENBLAS_L2_SIZE:-}" ] || pod_env+=(-e "OPENBLAS_L2_SIZE=$OPENBLAS_L2_SIZE")
mounts=(-v "$WORK/mpijob-ssh:/home/distnet/.mpijob-ssh:ro" -v "$MPIJOB-runs:/runs"
        -v "$WORK/mpijob-hostfile:/etc/mpi/hostfile:ro")
for i in 0 1; do
    docker run -d --name "$MPIJOB-worker-$i" --hostname "$MPIJOB-worker-$i" --network "$MPIJOB" \
        --shm-size 1g "${mounts[@]}" "${pod_env[@]}" distnet:latest mpijob-worker > /dev/null
done
for i in 0 1; do  # the readiness probe: sshd listening
    # The log is read whole before it is searched: under pipefail, `docker logs | grep -q` fails
    # when grep exits at the first match while docker logs is still writing (SIGPIPE).
    log=""
    for _ in $(seq 240); do   # up to 60 s on a loaded machine
        log=$(docker logs "$MPIJOB-worker-$i" 2>&1)
        [[ $log == *"Server listening"* ]] && break
        sleep 0.25
    done
    [[ $log == *"Server listening"* ]] || fail "worker $i's sshd did not start: $(tail -3 <<< "$log")"
done
if ! docker run --name "$MPIJOB-launcher" --network "$MPIJOB" "${mounts[@]}" "${pod_env[@]}" \
        distnet:latest mpijob-launcher examples/jobs/mlp.toml --run-dir /runs/mlp --progress none \
        "${SHORT[@]}" > "$WORK/mpijob.log" 2>&1; then
    tail -15 "$WORK/mpijob.log"
    fail "the MPIJob launcher failed"
fi
rm -rf "$WORK/run-mpijob"
docker cp "$MPIJOB-worker-0:/runs/mlp" "$WORK/run-mpijob" > /dev/null
[ "$(metric "$WORK/run-mpijob/metrics.jsonl" start world_size)" = 2 ] || fail "expected 2 ranks"
same_checkpoint "$WORK/reference/checkpoints/ckpt-00000060.h5" "$WORK/run-mpijob/checkpoints/ckpt-00000060.h5" \
    || fail "the final checkpoint differs from the reference run"
remove_mpijob

# -- down -v --------------------------------------------------------------------------------
step down "down -v leaves nothing"
"${C[@]}" down -v > /dev/null 2>&1
label="label=com.docker.compose.project=$PROJECT"
rest="$(docker ps -aq -f "$label")$(docker volume ls -q -f "$label")$(docker network ls -q -f "$label")"
[ -z "$rest" ] || fail "down -v left: $rest"
brought_up=0
