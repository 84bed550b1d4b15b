"""Can the launcher reach every host of a hostfile?  Asked before any worker starts.

hydra starts its proxy on each host of a hostfile with ``ssh HOST ...``;
when one cannot be reached it prints raw ``[mpiexec@...]`` lines, waits, and
the job ends with status 255 that names nobody.  :func:`check_hosts_reachable`
asks each host first, the way hydra would and all at once: ``ssh -o
BatchMode=yes -o ConnectTimeout=T HOST true`` (no password prompt; a host key
not known yet fails here as it would for hydra), or the remote-start agent
given instead of ssh (``HYDRA_LAUNCHER_EXEC`` or ``LaunchSettings.launcher_exec``,
called like ssh).  The hosts hydra starts by fork are not asked: this
machine's name, ``localhost`` and any name or address that resolves to a
loopback or a local address.  With another hydra launcher
(``HYDRA_LAUNCHER=slurm``, ...) nothing is asked: the scheduler places the
workers.

``distnet train --hostfile FILE`` and ``distnet train --check --hostfile FILE``
call it; an unreachable host is bad input (exit status 2), named on one line
with what to do.
"""
from __future__ import annotations

import ipaddress
import os
import socket
import subprocess
from concurrent.futures import ThreadPoolExecutor
from typing import Mapping, Sequence

from distnet.errors import ConfigError
from distnet.runner.launcher import Host

#: Seconds ssh may take to connect to a host (its ``ConnectTimeout``).
CONNECT_TIMEOUT = 5.0


class HostUnreachableError(ConfigError):
    """A hostfile's host that the remote start (ssh or its agent) cannot reach."""


def is_local(name: str) -> bool:
    """True when hydra would start ``name``'s proxy here by fork: a loopback or local address, or this machine."""
    if name in ("localhost", socket.gethostname(), socket.getfqdn()):
        return True
    try:
        infos = socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError):
        return False   # not resolvable here: not this machine (ssh may still know it by its config)
    for family, _, _, _, address in infos:
        ip = ipaddress.ip_address(address[0].split("%", 1)[0])
        if ip.is_loopback:
            return True
        try:   # an address of one of this machine's interfaces can be bound to
            with socket.socket(family, socket.SOCK_STREAM) as s:
                s.bind((address[0], 0))
            return True
        except OSError:
            continue
    return False


def check_hosts_reachable(hosts: Sequence[Host | str], *, env: Mapping[str, str] | None = None,
                          launcher_exec: str | None = None, ssh: Sequence[str] = ("ssh",),
                          timeout: float = CONNECT_TIMEOUT, source: str = "hostfile") -> None:
    """Ask every remote host of a hostfile to run ``true``, as hydra will start it; all at once.

    Args:
        hosts: the hostfile's hosts (:func:`~distnet.runner.launcher.parse_hostfile`) or names.
        env: the environment the launch will have (default ``os.environ``): its
            ``HYDRA_LAUNCHER`` / ``HYDRA_LAUNCHER_EXEC`` choose how hydra starts proxies.
        launcher_exec: the remote-start agent used instead of ssh (hydra's ``-launcher-exec``).
        ssh: the ssh command (with options of its own, e.g. ``("ssh", "-F", "config")``).
        timeout: seconds each host gets to connect.
        source: where the hosts come from, for the message (``"hostfile hosts.txt"``).
    Raises:
        HostUnreachableError: one or more hosts did not answer; the message names each
            with the reason the remote start gave, and says what to do.
    Example:
        >>> check_hosts_reachable(["localhost", "127.0.0.1"])   # this machine: nothing asked
    """
    env = os.environ if env is None else env
    if env.get("HYDRA_LAUNCHER", "ssh") != "ssh":
        return   # slurm, manual ...: the scheduler places the workers, not ssh
    agent = launcher_exec or env.get("HYDRA_LAUNCHER_EXEC")
    names = [h.name if isinstance(h, Host) else str(h) for h in hosts]
    remote = [n for n in dict.fromkeys(names) if not is_local(n)]
    if not remote:
        return
    if agent:
        command = [agent]
    else:
        command = [*ssh, "-o", "BatchMode=yes", "-o", f"ConnectTimeout={max(1, round(timeout))}"]
    with ThreadPoolExecutor(max_workers=min(16, len(remote))) as pool:
        answers = list(pool.map(lambda n: _ask(command, n, timeout), remote))
    failed = [(n, why) for n, why in zip(remote, answers) if why is not None]
    if not failed:
        return
    how = f"the agent {agent!r}" if agent else "ssh"
    named = "; ".join(f"{n} ({why})" for n, why in failed)
    first = failed[0][0]
    try_it = f"{agent} {first} true" if agent else f"ssh -o BatchMode=yes {first} true"
    raise HostUnreachableError(
        f"{source}: {how} cannot reach {named}; nothing was started. Check that `{try_it}` works from "
        f"here without a password, or remove the host from the hostfile")


def _ask(command: Sequence[str], name: str, timeout: float) -> str | None:
    """None when ``name`` ran ``true``; else why not, in the remote start's words (one line)."""
    try:
        done = subprocess.run([*command, name, "true"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, timeout=timeout + 5.0)
    except subprocess.TimeoutExpired:
        return f"no answer within {timeout + 5.0:g} s"
    except OSError as exc:
        return f"cannot run {command[0]!r}: {exc.strerror}"
    if done.returncode == 0:
        return None
    lines = [line.strip() for line in done.stderr.decode(errors="replace").splitlines() if line.strip()]
    return lines[-1] if lines else f"exit status {done.returncode}"
