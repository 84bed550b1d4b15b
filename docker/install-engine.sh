#!/usr/bin/env bash
# Install what the Docker cluster needs on a Debian machine, from Debian's
# packages only: the engine (docker.io: dockerd, containerd, runc), Compose v2
# and buildx.  Whatever is already there is left alone.
#
# Usage: docker/install-engine.sh [--dry-run]
#        docker/install-engine.sh --print-mirror
#
#   --dry-run       say what would be installed, install nothing
#   --print-mirror  print this machine's Debian mirror (from its apt sources)
#
# Debian 12 packages the engine but only Compose v1 (1.29, which cannot read
# docker/compose.yaml) and no buildx.  Debian 13's docker-compose (2.26) and
# docker-buildx (0.13) need nothing newer than Debian 12's libc, so they are
# downloaded from the same mirror with a private apt configuration (this
# machine's sources are not changed) and installed as files.  Set
# DISTNET_NEWER_SUITE to take them from another suite (default: trixie).
# Needs root and apt-get; starts nothing (docker/test-cluster.sh starts dockerd).
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }
say() { echo "install-engine: $*" >&2; }
die() { say "$*"; exit 1; }

# The first non-security Debian mirror of this machine's apt sources. Each awk reads its files
# itself and stops at the first match: a pipe into `grep -m1` would, under pipefail, fail
# whenever grep exits before the writer has finished (SIGPIPE).
print_mirror() {
    local m
    m=$(awk 'FNR == 1 { uri = "" } /^URIs:/ { uri = $2 }
             /^Suites:/ && uri != "" && $0 !~ /security/ { print uri; exit }' \
            /etc/apt/sources.list.d/*.sources 2>/dev/null) || true
    [ -n "$m" ] || m=$(awk '$1 == "deb" && $0 !~ /security/ {
                              for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) { print $i; exit } }' \
                          /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null) || true
    [ -n "$m" ] && echo "$m"
}

dry_run=0
case "${1:-}" in
    -h|--help) usage; exit 0 ;;
    --print-mirror) print_mirror || die "no Debian mirror found in /etc/apt/sources*"; exit 0 ;;
    --dry-run) dry_run=1 ;;
    '') ;;
    *) die "unknown argument '$1' (see --help)" ;;
esac

compose_v2() { [[ $(docker compose version --short 2>/dev/null) =~ ^v?2\. ]]; }
have_buildx() { docker buildx version >/dev/null 2>&1; }

apt_install=()
command -v dockerd >/dev/null 2>&1 || apt_install+=(docker.io)
command -v docker >/dev/null 2>&1 || apt_install+=(docker-cli)
newer=()
compose_v2 || newer+=(docker-compose)
have_buildx || newer+=(docker-buildx)
if [ ${#apt_install[@]} -eq 0 ] && [ ${#newer[@]} -eq 0 ]; then
    say "dockerd, docker compose v2 and buildx are installed"
    exit 0
fi
if [ "$dry_run" = 1 ]; then
    say "would install: ${apt_install[*]:-} ${newer[*]:+${newer[*]} (from ${DISTNET_NEWER_SUITE:-trixie})}"
    exit 0
fi
[ "$(id -u)" = 0 ] || die "installing packages needs root; missing: ${apt_install[*]:-} ${newer[*]:-}"
command -v apt-get >/dev/null 2>&1 || die "no apt-get: install Docker, Compose v2 and buildx by hand"
export DEBIAN_FRONTEND=noninteractive

if [ ${#apt_install[@]} -gt 0 ]; then
    say "apt-get install ${apt_install[*]}"
    apt-get install -y -qq --no-install-recommends "${apt_install[@]}" > /dev/null \
        || { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${apt_install[@]}" > /dev/null; } \
        || die "apt-get install ${apt_install[*]} failed"
fi

if [ ${#newer[@]} -gt 0 ]; then
    suite=${DISTNET_NEWER_SUITE:-trixie}
    mirror=$(print_mirror) || die "no Debian mirror found in /etc/apt/sources* to fetch ${newer[*]} from"
    keyring=/usr/share/keyrings/debian-archive-keyring.gpg
    [ -f "$keyring" ] || die "$keyring is missing (apt-get install debian-archive-keyring)"
    work=$(mktemp -d /var/tmp/distnet-apt.XXXXXX)
    trap 'rm -rf "$work"' EXIT
    mkdir -p "$work/lists/partial" "$work/archives/partial"
    echo "deb [signed-by=$keyring] $mirror $suite main" > "$work/sources.list"
    # A private apt: its own source list, package lists and cache.
    private=(-o "Dir::Etc::SourceList=$work/sources.list" -o "Dir::Etc::SourceParts=$work/none"
             -o "Dir::State::Lists=$work/lists" -o "Dir::Cache::Archives=$work/archives"
             -o "Dir::Cache::pkgcache=" -o "Dir::Cache::srcpkgcache=" -o "APT::Sandbox::User=root")
    say "fetching ${newer[*]} from $suite"
    apt-get "${private[@]}" update -qq > "$work/update.log" 2>&1 \
        || { cat "$work/update.log" >&2; die "apt-get update of $suite failed"; }
    (cd "$work" && apt-get "${private[@]}" download "${newer[@]}" > "$work/download.log" 2>&1) \
        || { cat "$work/download.log" >&2; die "downloading ${newer[*]} from $suite failed"; }
    say "installing $(cd "$work" && echo *.deb)"
    apt-get install -y -qq --no-install-recommends "$work"/*.deb > /dev/null \
        || die "installing ${newer[*]} from $suite failed"
fi
compose_v2 || die "docker compose v2 is still missing after the install"
have_buildx || die "docker buildx is still missing after the install"
say "ready: $(docker compose version), buildx $(docker buildx version | awk '{ print $2 }')"
