"""Network namespaces that act as separate hosts for the multi-host test.

:class:`NetnsCluster` builds, on this one machine::

    <p>h1 (10.201.0.1/24, eth0) ─┐
    <p>h2 (10.201.0.2/24, eth0) ─┼─ bridge br0 in namespace <p>sw (no address)
    <p>h3 (10.201.0.3/24, eth0) ─┘

Every address lives inside a namespace created here; the machine's own
namespace gets no interface and no address, so nothing can leave for a real
network.  Each host's ``eth0`` is one end of a veth pair whose other end
(``<p>v1`` ...) is a port of the bridge: :meth:`NetnsCluster.cut` sets that
port down, like a cable pulled at the switch (the host's own ``eth0`` stays
up, so its packets are silently lost).

:meth:`NetnsCluster.write_agent` writes the remote-start agent that hydra
calls where it would call ssh (``AGENT [ssh options] HOST COMMAND``): it
maps the host's address to its namespace and runs the command there with
``ip netns exec``.  The hosts share this machine's file system, users and
``/etc/hosts``, so the hostfile uses addresses, never names.

:meth:`NetnsCluster.close` kills every process left in the namespaces and
deletes them; it is safe to call twice and on a half-built cluster.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

SUBNET = "10.201.0"


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True, timeout=30)


def unavailable_reason() -> str | None:
    """Why namespaces cannot be made here (not root, no ``ip``...), or None."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "the 'ip' command (iproute2) is not installed"
    probe = f"dnprobe{uuid.uuid4().hex[:8]}"
    made = _ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"'ip netns add' failed: {made.stderr.strip()}"
    try:
        veth = _ip("-n", probe, "link", "add", "a0", "type", "veth", "peer", "name", "b0",
                   check=False)
        if veth.returncode != 0:
            return f"cannot create veth pairs: {veth.stderr.strip()}"
        bridge = _ip("-n", probe, "link", "add", "br0", "type", "bridge", check=False)
        if bridge.returncode != 0:
            return f"cannot create a bridge: {bridge.stderr.strip()}"
    finally:
        _ip("netns", "del", probe, check=False)
    return None


class NetnsCluster:
    """``n_hosts`` namespaces on one bridge; use as a context manager or call close()."""

    def __init__(self, n_hosts: int = 3) -> None:
        if not 1 <= n_hosts <= 9:
            raise ValueError(f"n_hosts must be in 1..9, got {n_hosts}")
        self.prefix = f"dn{uuid.uuid4().hex[:5]}"
        self.switch = f"{self.prefix}sw"
        self.hosts = [f"{self.prefix}h{i}" for i in range(1, n_hosts + 1)]
        self.addresses = [f"{SUBNET}.{i}" for i in range(1, n_hosts + 1)]
        self.ports = [f"{self.prefix}v{i}" for i in range(1, n_hosts + 1)]
        self._made: list[str] = []
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    def _build(self) -> None:
        _ip("netns", "add", self.switch)
        self._made.append(self.switch)
        _ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.switch, "link", "set", "br0", "up")
        for ns, addr, port in zip(self.hosts, self.addresses, self.ports):
            _ip("netns", "add", ns)
            self._made.append(ns)
            # both ends are created inside the switch namespace, then one moves to the host
            _ip("-n", self.switch, "link", "add", port, "type", "veth", "peer", "name", "eth0")
            _ip("-n", self.switch, "link", "set", "eth0", "netns", ns)
            _ip("-n", self.switch, "link", "set", port, "master", "br0", "up")
            _ip("-n", ns, "addr", "add", f"{addr}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            _ip("-n", ns, "link", "set", "lo", "up")

    def __enter__(self) -> "NetnsCluster":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def namespace_of(self, address: str) -> str:
        return self.hosts[self.addresses.index(address)]

    def write_hostfile(self, path: Path, slots: int = 1) -> Path:
        path.write_text("".join(f"{a}:{slots}\n" for a in self.addresses))
        return path

    def write_agent(self, path: Path) -> Path:
        """The ssh stand-in: ``AGENT [-opts] ADDRESS COMMAND...`` runs COMMAND in ADDRESS's namespace."""
        cases = "".join(f"    {a}) ns={ns} ;;\n" for a, ns in zip(self.addresses, self.hosts))
        path.write_text(
            "#!/bin/sh\n"
            "# Remote-start agent for hydra (-launcher-exec): like ssh, but the 'host'\n"
            "# is a network namespace on this machine.\n"
            "while [ $# -gt 0 ]; do\n"
            "    case \"$1\" in -*) shift ;; *) break ;; esac   # ssh options (-x ...)\n"
            "done\n"
            "host=$1; shift\n"
            "case \"$host\" in\n"
            f"{cases}"
            "    *) echo \"agent: unknown host '$host'\" >&2; exit 255 ;;\n"
            "esac\n"
            "exec ip netns exec \"$ns\" sh -c \"$*\"\n")
        path.chmod(0o755)
        return path

    def in_host(self, index: int) -> list[str]:
        """Command prefix that runs a program in host ``index`` (0-based)."""
        return ["ip", "netns", "exec", self.hosts[index]]

    def cut(self, index: int) -> None:
        """Pull host ``index``'s cable at the switch."""
        _ip("-n", self.switch, "link", "set", self.ports[index], "down")

    def restore(self, index: int) -> None:
        """Plug host ``index``'s cable back in; forget the neighbours that failed meanwhile."""
        _ip("-n", self.switch, "link", "set", self.ports[index], "up")
        deadline = time.monotonic() + 10
        while "NO-CARRIER" in _ip("-n", self.hosts[index], "link", "show", "eth0").stdout:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.hosts[index]}: eth0 has no carrier 10 s after restore")
            time.sleep(0.05)
        # ARP entries that failed during the cut answer "No route to host" until they expire
        for ns in self.hosts:
            _ip("-n", ns, "neigh", "flush", "all")

    def port_bytes(self, index: int) -> int:
        """Bytes received plus sent on host ``index``'s switch port."""
        out = _ip("-n", self.switch, "-j", "-s", "link", "show", "dev", self.ports[index]).stdout
        stats = json.loads(out)[0]["stats64"]
        return int(stats["rx"]["bytes"]) + int(stats["tx"]["bytes"])

    def pids(self) -> list[int]:
        """Processes still running in any host namespace."""
        found: list[int] = []
        for ns in self._made:
            out = _ip("netns", "pids", ns, check=False).stdout
            found += [int(p) for p in out.split()]
        return found

    def close_processes(self) -> None:
        """Kill every process still running in the namespaces."""
        for _ in range(3):
            left = self.pids()
            if not left:
                break
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.2)

    def close(self) -> None:
        """Kill what is left in the namespaces, then delete them (idempotent)."""
        self.close_processes()
        for ns in reversed(self._made):
            _ip("netns", "del", ns, check=False)
        self._made = []
