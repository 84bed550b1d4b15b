#!/usr/bin/env bash
# Entry point of the distnet cluster image (docker/Dockerfile, docker/compose.yaml).
#
# Usage: entrypoint.sh worker
#        entrypoint.sh launcher [JOB] [distnet train options...]
#        entrypoint.sh keys | sshd-config DIR | hostfile | known-hosts FILE...
#        entrypoint.sh check-run-dir [distnet train options...]
#        entrypoint.sh mpijob-worker | mpijob-launcher [JOB] [options...]
#        entrypoint.sh COMMAND...          (anything else runs as given, e.g. distnet eval)
#
# worker    makes sure the cluster's ssh key pair exists (keys), authorizes its
#           public key, creates this container's own host key, publishes the
#           host key on the shared volume, and runs sshd as the non-root user
#           (port $DISTNET_SSH_PORT, keys only, no root, no passwords;
#           configuration from `sshd-config`) until stopped, when it withdraws
#           the published host key.
# launcher  waits for the workers (hostfile), trusts their published host keys
#           (known-hosts), checks that ssh reaches each of them, then runs
#           `distnet train [JOB] [options] $DISTNET_EXTRA_ARGS --hostfile FILE`
#           as the non-root user: the ranks run on the workers only.
#
# mpijob-worker, mpijob-launcher
#           the same two roles in a Kubeflow MPIJob (launch/mpijob.yaml): the
#           MPI Operator makes the key pair and mounts it (id_rsa,
#           authorized_keys) at $DISTNET_MPIJOB_SSH (default
#           /home/distnet/.mpijob-ssh, the job's sshAuthMountPath), and writes
#           the hostfile $DISTNET_MPIJOB_HOSTFILE (/etc/mpi/hostfile).  The
#           worker runs sshd on that authorized_keys (StrictModes off: the
#           files are a read-only Secret mount owned by root); the launcher
#           trusts the workers' host keys on first use (they are made at
#           start-up and known to nobody) and runs distnet train on the
#           operator's hostfile.
# keys         the per-cluster key pair, generated at start-up into
#              $DISTNET_CLUSTER_DIR/ssh (directory 0700, private key 0600),
#              never in the image; the first container to get the lock makes it.
# sshd-config  writes DIR/sshd_config and DIR/ssh_host_ed25519_key (0600).
# check-run-dir  refuses (exit 1) a --run-dir that holds an earlier run unless
#              --resume is given: distnet would start at step 0 and append to
#              its metrics.  The launcher runs it first.
# hostfile     prints the workers' hostfile: the addresses the service name
#              $DISTNET_WORKER_SERVICE resolves to (Docker's DNS gives one per
#              replica), once at least $DISTNET_WORKERS are there and their
#              number has not changed for $DISTNET_SETTLE seconds; gives up
#              after $DISTNET_WAIT_TIMEOUT seconds.
#
# Environment (defaults): DISTNET_CLUSTER_DIR (/cluster), DISTNET_WORKERS (1),
# DISTNET_SLOTS (1, workers per container), DISTNET_WORKER_SERVICE (worker),
# DISTNET_SSH_PORT (2222), DISTNET_SETTLE (5), DISTNET_WAIT_TIMEOUT (300),
# DISTNET_EXTRA_ARGS (more distnet train options, e.g. --resume).
set -euo pipefail

CLUSTER_DIR=${DISTNET_CLUSTER_DIR:-/cluster}
KEY_DIR="$CLUSTER_DIR/ssh"
HOSTKEY_DIR="$CLUSTER_DIR/hostkeys"
SSH_PORT=${DISTNET_SSH_PORT:-2222}
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

say() { echo "entrypoint: $*" >&2; }
die() { say "$*"; exit 1; }

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }

check_count() {  # NAME VALUE
    case "$2" in
        ''|*[!0-9]*) die "$1 expects a non-negative integer, got '$2'" ;;
    esac
}

not_root() {
    if [ "$(id -u)" = 0 ]; then
        die "the $1 runs as the non-root user of the image (USER distnet), not as root"
    fi
}

# -- the cluster key pair --------------------------------------------------------
ensure_keys() {
    # private files for the keys only: the ranks started later keep the
    # image's umask, so the run files they write stay readable (0644)
    local saved_umask
    saved_umask=$(umask)
    umask 077
    mkdir -p "$KEY_DIR"
    chmod 700 "$KEY_DIR"
    local lock="$KEY_DIR/.lock" waited=0
    until mkdir "$lock" 2>/dev/null; do  # mkdir is atomic: one container generates
        sleep 0.1
        waited=$((waited + 1))
        if [ "$waited" -gt 300 ]; then
            die "waited 30 s for the key lock $lock (remove it if no container is starting)"
        fi
    done
    if [ ! -s "$KEY_DIR/id_ed25519" ] || [ ! -s "$KEY_DIR/id_ed25519.pub" ]; then
        rm -f "$KEY_DIR/id_ed25519" "$KEY_DIR/id_ed25519.pub"
        ssh-keygen -q -t ed25519 -N '' -C "distnet-cluster" -f "$KEY_DIR/id_ed25519" \
            || { rmdir "$lock"; die "ssh-keygen failed"; }
    fi
    chmod 600 "$KEY_DIR/id_ed25519"
    chmod 644 "$KEY_DIR/id_ed25519.pub"
    rmdir "$lock"
    umask "$saved_umask"
}

# -- sshd, keys only ----------------------------------------------------------------
write_sshd_config() {  # DIR [AUTHORIZED_KEYS_FILE STRICT_MODES]
    local dir=$1 keys=${2:-.ssh/authorized_keys} strict=${3:-yes} user
    user=$(id -un)
    umask 077
    mkdir -p "$dir"
    if [ ! -s "$dir/ssh_host_ed25519_key" ]; then
        ssh-keygen -q -t ed25519 -N '' -C "distnet-host" -f "$dir/ssh_host_ed25519_key"
    fi
    chmod 600 "$dir/ssh_host_ed25519_key"
    cat > "$dir/sshd_config" <<EOF
# Written by entrypoint.sh at start-up: sshd for hydra's remote start.
Port $SSH_PORT
HostKey $dir/ssh_host_ed25519_key
PidFile $dir/sshd.pid
AuthorizedKeysFile $keys
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitEmptyPasswords no
PermitRootLogin no
AllowUsers $user
UsePAM no
StrictModes $strict
PermitUserEnvironment no
X11Forwarding no
AllowTcpForwarding no
AllowAgentForwarding no
PermitTunnel no
ClientAliveInterval 10
ClientAliveCountMax 3
LogLevel INFO
EOF
    echo "$dir/sshd_config"
}

my_address() {
    getent ahostsv4 "$(hostname)" | awk 'NR == 1 { print $1 }'
}

run_worker() {
    not_root worker
    ensure_keys
    local sshd_dir="$HOME/.sshd" address config
    mkdir -p "$HOME/.ssh" "$HOSTKEY_DIR"
    chmod 700 "$HOME/.ssh"
    # hydra only runs commands: no pty, no forwarding for the cluster key
    echo "restrict $(cat "$KEY_DIR/id_ed25519.pub")" > "$HOME/.ssh/authorized_keys"
    chmod 600 "$HOME/.ssh/authorized_keys"
    config=$(write_sshd_config "$sshd_dir")
    address=$(my_address)
    [ -n "$address" ] || die "cannot find this container's address (getent ahostsv4 $(hostname))"
    local published="$HOSTKEY_DIR/$address.pub"
    cp "$sshd_dir/ssh_host_ed25519_key.pub" "$published.tmp.$$"
    mv -f "$published.tmp.$$" "$published"
    say "worker $address: sshd on port $SSH_PORT (keys only)"
    # sshd as a child, not exec'd: a stopped worker withdraws its host key,
    # so the shared volume holds the keys of the running workers only.
    /usr/sbin/sshd -D -e -f "$config" &
    local sshd=$!
    trap "rm -f '$published'; kill -TERM $sshd 2>/dev/null" TERM INT
    local status=0
    wait "$sshd" || status=$?
    # after a signal `wait` returns early: let sshd finish
    while kill -0 "$sshd" 2>/dev/null; do wait "$sshd" || status=$?; done
    rm -f "$published"
    return "$status"
}

# -- discovering the workers ----------------------------------------------------------
discover() {
    getent ahostsv4 "${DISTNET_WORKER_SERVICE:-worker}" | awk '{ print $1 }' | sort -u
}

wait_for_workers() {
    local want=${DISTNET_WORKERS:-1} settle=${DISTNET_SETTLE:-5} timeout=${DISTNET_WAIT_TIMEOUT:-300}
    check_count DISTNET_WORKERS "$want"
    check_count DISTNET_SETTLE "$settle"
    check_count DISTNET_WAIT_TIMEOUT "$timeout"
    local start=$SECONDS last="" stable_since=$SECONDS found count=0
    while :; do
        found=$(discover || true)
        count=$(printf '%s' "$found" | grep -c . || true)
        if [ "$found" != "$last" ]; then
            last=$found
            stable_since=$SECONDS
        fi
        if [ "$count" -ge "$want" ] && [ $((SECONDS - stable_since)) -ge "$settle" ]; then
            break
        fi
        if [ $((SECONDS - start)) -ge "$timeout" ]; then
            die "found $count worker(s) of service '${DISTNET_WORKER_SERVICE:-worker}' after ${timeout} s, expected at least $want (DISTNET_WORKERS)"
        fi
        sleep 1
    done
    "$HERE/make-hostfile.sh" --slots "${DISTNET_SLOTS:-1}" $found
}

write_known_hosts() {  # HOSTFILE OUT: "[addr]:port key" for every worker with a published key
    local hostfile=$1 out=$2 host key
    : > "$out.tmp"
    while IFS= read -r line; do
        host=${line%%:*}
        key="$HOSTKEY_DIR/$host.pub"
        if [ -s "$key" ]; then
            echo "[$host]:$SSH_PORT $(awk '{ print $1, $2 }' "$key")" >> "$out.tmp"
        fi
    done < "$hostfile"
    mv -f "$out.tmp" "$out"
}

run_launcher() {
    not_root launcher
    # shellcheck disable=SC2086  # DISTNET_EXTRA_ARGS is a list of options
    check_run_dir "$@" ${DISTNET_EXTRA_ARGS:-}
    ensure_keys
    mkdir -p "$HOME/.ssh"
    chmod 700 "$HOME/.ssh"
    cat > "$HOME/.ssh/config" <<EOF
Host *
    Port $SSH_PORT
    IdentityFile $KEY_DIR/id_ed25519
    IdentitiesOnly yes
    UserKnownHostsFile $HOME/.ssh/known_hosts
    StrictHostKeyChecking yes
    BatchMode yes
    ConnectTimeout 5
    LogLevel ERROR
EOF
    chmod 600 "$HOME/.ssh/config"
    local hostfile="$HOME/hostfile" tries=0 host ok
    say "waiting for at least ${DISTNET_WORKERS:-1} worker(s)"
    wait_for_workers > "$hostfile"
    say "hostfile: $(tr '\n' ' ' < "$hostfile")"
    # A worker publishes its host key when it starts; an old key of a reused
    # address is replaced then.  Retry until ssh reaches every worker.
    while :; do
        write_known_hosts "$hostfile" "$HOME/.ssh/known_hosts"
        ok=1
        while IFS= read -r line; do
            host=${line%%:*}
            ssh -n "$host" true 2>/dev/null || { ok=0; break; }
        done < "$hostfile"
        [ "$ok" = 1 ] && break
        tries=$((tries + 1))
        [ "$tries" -lt 60 ] || die "cannot ssh to worker $host after 60 s"
        sleep 1
    done
    # shellcheck disable=SC2086  # DISTNET_EXTRA_ARGS is a list of options
    exec distnet train "$@" ${DISTNET_EXTRA_ARGS:-} --hostfile "$hostfile"
}

# Refuse to train afresh into a run directory that holds a run: distnet would
# start at step 0 and append to the old metrics.  ARGS: distnet train options.
check_run_dir() {
    local run_dir="" resume=0 previous=""
    for arg in "$@"; do
        case "$previous" in --run-dir) run_dir=$arg ;; esac
        case "$arg" in
            --resume) resume=1 ;;
            --run-dir=*) run_dir=${arg#--run-dir=} ;;
        esac
        previous=$arg
    done
    [ -n "$run_dir" ] && [ "$resume" = 0 ] || return 0
    if [ -e "$run_dir/metrics.jsonl" ] || [ -n "$(ls -A "$run_dir/checkpoints" 2>/dev/null)" ]; then
        die "run directory $run_dir holds an earlier run: continue it with DISTNET_EXTRA_ARGS=--resume, or delete it (docker compose down -v deletes the runs volume)"
    fi
}

# -- Kubeflow MPIJob: keys and hostfile from the MPI Operator --------------------------
MPIJOB_SSH=${DISTNET_MPIJOB_SSH:-/home/distnet/.mpijob-ssh}

run_mpijob_worker() {
    not_root worker
    [ -s "$MPIJOB_SSH/authorized_keys" ] \
        || die "no $MPIJOB_SSH/authorized_keys: set the MPIJob's sshAuthMountPath to $MPIJOB_SSH (or DISTNET_MPIJOB_SSH)"
    local config
    config=$(write_sshd_config "$HOME/.sshd" "$MPIJOB_SSH/authorized_keys" no)
    say "worker $(hostname): sshd on port $SSH_PORT (the operator's key only)"
    exec /usr/sbin/sshd -D -e -f "$config"
}

run_mpijob_launcher() {
    not_root launcher
    local hostfile=${DISTNET_MPIJOB_HOSTFILE:-/etc/mpi/hostfile}
    [ -s "$MPIJOB_SSH/id_rsa" ] \
        || die "no $MPIJOB_SSH/id_rsa: set the MPIJob's sshAuthMountPath to $MPIJOB_SSH (or DISTNET_MPIJOB_SSH)"
    [ -s "$hostfile" ] || die "no hostfile $hostfile: the MPI Operator writes it (or set DISTNET_MPIJOB_HOSTFILE)"
    # shellcheck disable=SC2086  # DISTNET_EXTRA_ARGS is a list of options
    check_run_dir "$@" ${DISTNET_EXTRA_ARGS:-}
    mkdir -p "$HOME/.ssh"
    chmod 700 "$HOME/.ssh"
    cat > "$HOME/.ssh/config" <<EOF
Host *
    Port $SSH_PORT
    IdentityFile $MPIJOB_SSH/id_rsa
    IdentitiesOnly yes
    StrictHostKeyChecking no
    UserKnownHostsFile /dev/null
    BatchMode yes
    ConnectTimeout 5
    LogLevel ERROR
EOF
    chmod 600 "$HOME/.ssh/config"
    # shellcheck disable=SC2086  # DISTNET_EXTRA_ARGS is a list of options
    exec distnet train "$@" ${DISTNET_EXTRA_ARGS:-} --hostfile "$hostfile"
}

case "${1:-}" in
    -h|--help|'') usage ;;
    worker) shift; run_worker "$@" ;;
    launcher) shift; run_launcher "$@" ;;
    keys) ensure_keys; echo "$KEY_DIR/id_ed25519" ;;
    sshd-config) [ $# -eq 2 ] || die "sshd-config expects a directory"; write_sshd_config "$2" ;;
    hostfile) wait_for_workers ;;
    known-hosts) [ $# -eq 3 ] || die "known-hosts expects HOSTFILE OUT"; write_known_hosts "$2" "$3" ;;
    check-run-dir) shift; check_run_dir "$@" ;;
    mpijob-worker) shift; run_mpijob_worker "$@" ;;
    mpijob-launcher) shift; run_mpijob_launcher "$@" ;;
    *) exec "$@" ;;
esac
