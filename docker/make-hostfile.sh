#!/usr/bin/env bash
# Write an MPICH hostfile (`host:slots` lines) from a list of names or addresses.
#
# Usage: make-hostfile.sh [--slots N] [--output FILE] [HOST...]
#
#   HOST...        worker names or IPv4 addresses; read from standard input
#                  (whitespace separated) when none is given
#   --slots N      workers per host (default 1)
#   --output FILE  write there (atomically) instead of standard output
#
# Hosts are de-duplicated and sorted (addresses numerically), so every start
# of the cluster gives the same rank order for the same workers.  A host that
# is not a plain name or address is refused: the file is read by mpiexec.
#
# Example:
#   make-hostfile.sh --slots 2 10.5.0.3 10.5.0.2   # -> 10.5.0.2:2 and 10.5.0.3:2
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }

slots=1
output=""
hosts=()
while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --slots)
            [ $# -ge 2 ] || { echo "make-hostfile: --slots needs a number" >&2; exit 2; }
            slots=$2; shift 2 ;;
        --output)
            [ $# -ge 2 ] || { echo "make-hostfile: --output needs a file" >&2; exit 2; }
            output=$2; shift 2 ;;
        --) shift; hosts+=("$@"); break ;;
        -*) echo "make-hostfile: unknown option '$1' (see --help)" >&2; exit 2 ;;
        *) hosts+=("$1"); shift ;;
    esac
done
case "$slots" in
    ''|*[!0-9]*|0) echo "make-hostfile: --slots expects an integer >= 1, got '$slots'" >&2; exit 2 ;;
esac
if [ ${#hosts[@]} -eq 0 ] && [ ! -t 0 ]; then
    read -r -d '' -a hosts || true
fi
if [ ${#hosts[@]} -eq 0 ]; then
    echo "make-hostfile: no host given; expected names or addresses as arguments or on stdin" >&2
    exit 2
fi
for host in "${hosts[@]}"; do
    if ! [[ "$host" =~ ^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$ ]]; then
        echo "make-hostfile: '$host' is not a host name or IPv4 address" >&2
        exit 2
    fi
done

lines=$(printf '%s\n' "${hosts[@]}" | sort -u | sort -t . -k1,1 -k2,2n -k3,3n -k4,4n \
        | awk -v s="$slots" '{ print $0 ":" s }')
if [ -z "$output" ]; then
    printf '%s\n' "$lines"
else
    tmp="$output.tmp.$$"
    printf '%s\n' "$lines" > "$tmp"
    mv -f "$tmp" "$output"
fi
