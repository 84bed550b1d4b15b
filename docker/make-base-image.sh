#!/usr/bin/env bash
# Build a local stand-in for the `python:3.11-slim` base image from Debian's
# packages, for a Docker host that reaches no image registry.
#
# Usage: docker/make-base-image.sh [--tag TAG] [--suite SUITE] [--mirror URL] [--workdir DIR]
#
#   --tag TAG      image to create (default python:3.11-slim, so that
#                  docker/Dockerfile builds unchanged)
#   --suite SUITE  Debian release (default bookworm: its python3 is 3.11)
#   --mirror URL   Debian mirror (default: the first Debian mirror of this
#                  machine's apt sources; debootstrap's own default otherwise)
#   --workdir DIR  where the root file system is made (default: a temporary
#                  directory, removed at the end)
#
# Steps: `debootstrap --variant=minbase` of SUITE with python3, python3-venv
# and ca-certificates into a folder; a virtual environment in /opt/python
# (python, pip; first on PATH, as /usr/local/bin is in the official image);
# `docker import` of the folder with PATH and CMD set.  Nothing of this
# machine is copied in but the mirror's address in /etc/apt/sources.list.
# Needs root (debootstrap), debootstrap and a running Docker engine.
#
# Example:
#   docker/make-base-image.sh && docker compose -f docker/compose.yaml build
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }
say() { echo "make-base-image: $*" >&2; }
die() { say "$*"; exit 1; }

tag=python:3.11-slim
suite=bookworm
mirror=""
workdir=""
while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --tag|--suite|--mirror|--workdir)
            [ $# -ge 2 ] || die "$1 needs a value (see --help)"
            case "$1" in
                --tag) tag=$2 ;; --suite) suite=$2 ;; --mirror) mirror=$2 ;; --workdir) workdir=$2 ;;
            esac
            shift 2 ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
done

[ "$(id -u)" = 0 ] || die "debootstrap needs root; run it as root (sudo $0)"
command -v debootstrap >/dev/null || die "debootstrap is not installed (apt-get install debootstrap)"
docker info >/dev/null 2>&1 || die "no Docker engine answers 'docker info'; start dockerd first"

if [ -z "$mirror" ]; then
    mirror=$("$(dirname "$0")/install-engine.sh" --print-mirror 2>/dev/null || true)
fi

cleanup_dir=""
if [ -z "$workdir" ]; then
    workdir=$(mktemp -d /var/tmp/distnet-base.XXXXXX)
    cleanup_dir=$workdir
fi
cleanup() { [ -z "$cleanup_dir" ] || rm -rf --one-file-system "$cleanup_dir"; }
trap cleanup EXIT
root="$workdir/rootfs"
[ ! -e "$root" ] || die "$root exists already; give another --workdir or remove it"

say "debootstrap $suite into $root${mirror:+ from $mirror}"
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    "$suite" "$root" ${mirror:+"$mirror"} > "$workdir/debootstrap.log" 2>&1 \
    || { tail -20 "$workdir/debootstrap.log" >&2; die "debootstrap failed (log above)"; }

version=$(chroot "$root" python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
case "$tag" in
    python:"$version"*) ;;
    python:*) die "$suite's python3 is $version, which does not match the tag $tag" ;;
esac
chroot "$root" python3 -m venv /opt/python \
    || die "python3 -m venv failed inside the new root file system"
# An image is smaller without the package lists and caches.
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb

say "docker import as $tag"
tar -C "$root" --numeric-owner -c . | docker import \
    --change 'ENV PATH=/opt/python/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    - "$tag" > /dev/null
docker run --rm "$tag" sh -c 'python --version && pip --version' >&2 \
    || die "the imported image $tag does not run python and pip"
say "made $tag"
