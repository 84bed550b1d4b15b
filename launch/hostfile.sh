#!/usr/bin/env bash
# Train on the machines of a hostfile, reached by ssh: a thin wrapper around
# `distnet train --hostfile FILE`.
#
# Usage: launch/hostfile.sh HOSTFILE [-n N] [--check-ssh] [--dry-run] [JOB]
#                           [distnet train options...]
#
#   HOSTFILE     one machine per line: `host` or `host:slots` (MPICH), or
#                `host slots=N` (OpenMPI); `#` starts a comment.  Use
#                addresses where the machines cannot resolve each other's names.
#   -n N         number of workers (default: one per slot)
#   --check-ssh  first check that every host answers `ssh -o BatchMode=yes`
#   --dry-run    print the distnet command instead of running it
#   JOB          the TOML job file (default: distnet's built-in job)
#
# Needs, on every machine: the same Python environment at the same path as
# here (distnet, mpi4py, mpich), passwordless ssh from this machine, and the
# job file and data at the same paths.  Hydra starts its proxy on each host
# with ssh; set HYDRA_LAUNCHER_EXEC=AGENT to use another agent, called like
# ssh.  Run directories and checkpoints are written by rank 0 (on the first
# host): put them on a shared file system to resume from anywhere.
#
# Example:
#   printf 'node1:4\nnode2:4\n' > hosts
#   launch/hostfile.sh hosts --check-ssh examples/jobs/conv2.toml --set train.epochs=2
#
# Environment: DISTNET  the command to run distnet (default: `distnet`, else
#                       `python3 -m distnet`)
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }

case "${1:-}" in
    -h|--help) usage; exit 0 ;;
    '') echo "hostfile.sh: expected a HOSTFILE first (see --help)" >&2; exit 2 ;;
esac
hostfile=$1; shift
if [ ! -f "$hostfile" ]; then
    echo "hostfile.sh: hostfile '$hostfile' does not exist" >&2
    exit 2
fi
workers=()
check_ssh=0
dry_run=0
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        -n|--np)
            [ $# -ge 2 ] || { echo "hostfile.sh: $1 needs a number of workers" >&2; exit 2; }
            workers=(-n "$2"); shift 2 ;;
        --check-ssh) check_ssh=1; shift ;;
        --dry-run) dry_run=1; shift ;;
        *) args+=("$1"); shift ;;
    esac
done

if [ "$check_ssh" = 1 ]; then
    # the host of each line: comment removed, first field, ':slots' removed
    hosts=$(sed -e 's/#.*//' "$hostfile" | awk 'NF { print $1 }' | sed 's/:[0-9]*$//')
    failed=0
    for host in $hosts; do
        if ssh -o BatchMode=yes -o ConnectTimeout=5 "$host" true; then
            echo "ssh $host: ok"
        else
            echo "hostfile.sh: cannot ssh to '$host' without a password" >&2
            failed=1
        fi
    done
    [ "$failed" = 0 ] || exit 1
fi

if [ -n "${DISTNET:-}" ]; then
    read -r -a distnet <<< "$DISTNET"
elif command -v distnet >/dev/null 2>&1; then
    distnet=(distnet)
else
    distnet=(python3 -m distnet)
fi
cmd=("${distnet[@]}" train ${args[@]+"${args[@]}"} --hostfile "$hostfile" ${workers[@]+"${workers[@]}"})
if [ "$dry_run" = 1 ]; then
    printf '%q ' "${cmd[@]}"; echo
    exit 0
fi
exec "${cmd[@]}"
