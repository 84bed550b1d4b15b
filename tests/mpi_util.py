"""Run a script under ``mpiexec -n N`` for a test, with a timeout.

A hang is a failure, never a pass: on timeout the whole process group of the
launcher is killed and the test fails with the output so far.  After every
run, no process of the job may be left: the helper scans ``/proc`` for the
unique marker argument it appended to the command line (and for the
launcher's process group), waits briefly for the launcher's clean-up, kills
whatever is left and fails.

mpiexec is the MPICH (hydra) one from the ``mpich`` wheel, found next to the
Python executable (a virtual environment's ``bin/``), else on ``PATH``.  It
needs no flags on one machine, as root and with no network: hydra forks the
ranks locally and they use shared memory.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).parent / "mpi_scripts"
MARKER_PREFIX = "--distnet-test-marker="


def find_mpiexec() -> str | None:
    """The mpiexec beside ``sys.executable``, else the one on PATH, else None."""
    here = Path(sys.executable).parent / "mpiexec"
    if here.exists():
        return str(here)
    return shutil.which("mpiexec")


def mpi_env(extra: dict | None = None) -> dict:
    """The environment for the ranks: one BLAS/OpenMP thread per rank, unbuffered output."""
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS",
                "NUMEXPR_NUM_THREADS"):
        env[var] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    # Do not let a launcher environment of the test runner leak into the job.
    for var in list(env):
        if var.startswith(("PMI_", "PMIX_", "OMPI_", "HYDRA_")):
            del env[var]
    env.update(extra or {})
    return env


@dataclass
class MPIRun:
    """Outcome of :func:`run_mpi`; ``end_time`` is ``time.time()`` at exit."""

    cmd: list
    returncode: int
    stdout: str
    stderr: str
    elapsed: float
    end_time: float

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def describe(self) -> str:
        return (f"command: {' '.join(self.cmd)}\nexit status {self.returncode} after {self.elapsed:.1f} s\n"
                f"--- stdout ---\n{self.stdout[-6000:]}\n--- stderr ---\n{self.stderr[-6000:]}")

    def values(self, key: str) -> list:
        """Values of the lines ``key value`` the ranks printed, in output order."""
        return [line.split(None, 1)[1] if " " in line else "" for line in self.stdout.splitlines()
                if line.split(None, 1)[:1] == [key]]


def _proc_cmdline(pid: str) -> list:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().decode(errors="replace").split("\0")
    except OSError:
        return []


def _proc_pgrp(pid: str) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
        return int(stat.rsplit(")", 1)[1].split()[2])
    except (OSError, IndexError, ValueError):
        return None


def job_processes(marker: str, pgid: int | None = None) -> list:
    """PIDs of live processes carrying ``marker`` in their command line or in
    process group ``pgid`` (zombies excluded)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    continue
        except (OSError, IndexError):
            continue
        if marker in _proc_cmdline(pid) or (pgid is not None and _proc_pgrp(pid) == pgid):
            found.append(int(pid))
    return found


def _kill_all(pids: list) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def run_mpi(script: str, nprocs: int, *args: str, timeout: float = 60.0, env: dict | None = None,
            leftover_grace: float = 5.0, prefix: tuple = ()) -> MPIRun:
    """Run ``mpiexec -n nprocs python tests/mpi_scripts/<script> args... MARKER``.

    Fails the calling test on timeout (after killing the job) or when a
    process of the job outlives the launcher by more than ``leftover_grace``
    seconds, and when there is no mpiexec or mpi4py.

    ``prefix`` goes before ``mpiexec`` (e.g. ``("unshare", "-n")``).

    Returns:
        an :class:`MPIRun` (the caller checks the exit status and output).
    """
    # mpi4py and mpich are dependencies of distnet: their absence is a broken
    # install, which must fail the MPI tests rather than skip them.
    mpiexec = find_mpiexec()
    if mpiexec is None:
        pytest.fail("no mpiexec beside the Python executable nor on PATH: Expect: `pip install mpich`")
    try:
        import mpi4py  # noqa: F401
    except ImportError as exc:
        pytest.fail(f"mpi4py cannot be imported ({exc}): Expect: `pip install mpi4py`")
    marker = f"{MARKER_PREFIX}{uuid.uuid4().hex}"
    cmd = [*prefix, mpiexec, "-n", str(nprocs), sys.executable, str(SCRIPTS / script), *map(str, args), marker]
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=mpi_env(env), start_new_session=True)
    pgid = proc.pid
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except OSError:
            pass
        _kill_all(job_processes(marker, pgid))
        out, err = proc.communicate()
        run = MPIRun(cmd, proc.returncode, out, err, time.monotonic() - start, time.time())
        pytest.fail(f"mpiexec did not finish within {timeout} s (a hang); job killed\n{run.describe()}")
    run = MPIRun(cmd, proc.returncode, out, err, time.monotonic() - start, time.time())
    deadline = time.monotonic() + leftover_grace
    left = job_processes(marker, pgid)
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = job_processes(marker, pgid)
    if left:
        details = {pid: " ".join(_proc_cmdline(str(pid)))[:200] for pid in left}
        _kill_all(left)
        pytest.fail(f"processes of the job left behind {leftover_grace} s after mpiexec exited: {details}\n"
                    f"{run.describe()}")
    return run


def run_script(script: str, tmp_path, name: str, *args, nprocs: int | None = None,
               timeout: float = 120.0) -> dict:
    """Run ``tests/mpi_scripts/<script> OUT.npz args...`` in one plain process
    (``nprocs`` None) or under ``mpiexec -n nprocs``; fail the test if it fails,
    else return the arrays it saved to ``tmp_path/<name>.npz``."""
    import numpy as np

    out = tmp_path / f"{name}.npz"
    if nprocs is None:
        proc = subprocess.run([sys.executable, str(SCRIPTS / script), str(out), *map(str, args)],
                              capture_output=True, text=True, timeout=timeout)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    else:
        run = run_mpi(script, nprocs, str(out), *map(str, args), timeout=timeout)
        assert run.returncode == 0, run.describe()
    return dict(np.load(out))


def differ_from_replicated(one: dict, got: dict, keys=None) -> list:
    """The keys of ``got`` (``"strategy:what"``, from :func:`run_script`) whose array is not
    bitwise ``one["replicated:what"]`` (another shape or other bytes)."""
    out = []
    for k in keys if keys is not None else got:
        ref = one[f"replicated:{k.split(':', 1)[1]}"]
        if ref.shape != got[k].shape or ref.tobytes() != got[k].tobytes():
            out.append(k)
    return out
