#!/usr/bin/env bash
# Train on N workers on this machine: a thin wrapper around `distnet train -n N`.
#
# Usage: launch/local.sh [-n N] [--dry-run] [JOB] [distnet train options...]
#
#   -n N        number of workers (default: the number of cores, nproc)
#   --dry-run   print the distnet command instead of running it
#   JOB         the TOML job file (default: distnet's built-in job)
#
# Everything else goes to `distnet train` unchanged (--set KEY=VALUE, --resume,
# --run-dir DIR, --progress ...).  distnet then runs mpiexec (MPICH's hydra from
# the mpich wheel) with one BLAS/OpenMP thread pool per worker sized
# cores // N; see distnet/runner/launcher.py and launch/README.md.
#
# Examples:
#   launch/local.sh -n 4 examples/jobs/mlp.toml
#   launch/local.sh -n 2 examples/jobs/conv2.toml --resume
#
# Environment: DISTNET  the command to run distnet (default: `distnet`, else
#                       `python3 -m distnet`)
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }

workers=""
dry_run=0
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        -n|--np)
            [ $# -ge 2 ] || { echo "local.sh: $1 needs a number of workers" >&2; exit 2; }
            workers=$2; shift 2 ;;
        -n=*|--np=*) workers=${1#*=}; shift ;;
        --dry-run) dry_run=1; shift ;;
        --hostfile|--hostfile=*)
            echo "local.sh: runs on this machine only; use launch/hostfile.sh for a hostfile" >&2
            exit 2 ;;
        *) args+=("$1"); shift ;;
    esac
done
if [ -z "$workers" ]; then
    workers=$(nproc 2>/dev/null || getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)
fi
case "$workers" in
    ''|*[!0-9]*|0) echo "local.sh: -n expects a number of workers >= 1, got '$workers'" >&2; exit 2 ;;
esac

if [ -n "${DISTNET:-}" ]; then
    read -r -a distnet <<< "$DISTNET"
elif command -v distnet >/dev/null 2>&1; then
    distnet=(distnet)
else
    distnet=(python3 -m distnet)
fi
cmd=("${distnet[@]}" train ${args[@]+"${args[@]}"} -n "$workers")
if [ "$dry_run" = 1 ]; then
    printf '%q ' "${cmd[@]}"; echo
    exit 0
fi
exec "${cmd[@]}"
