"""No file left in /dev/shm after a killed job (distnet/distributed/shared_memory.py).

Each run has a private ``/dev/shm`` (a tmpfs in a mount namespace made with
``unshare``), so the files counted are this job's alone, whatever other
jobs on the machine do.  A driver inside the namespace starts
``distnet train -n 2``, SIGKILLs the launcher (or every process of the
job) at a random moment, waits until every process of the job has ended
and lists ``/dev/shm``.  Skipped, with the reason, only where a mount
namespace cannot be made (not root, no ``unshare``).
"""
from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.mpi, pytest.mark.slow]

REPO = Path(__file__).resolve().parent.parent
JOB = REPO / "examples" / "jobs" / "mlp.toml"

# Runs inside the namespace: argv = delay, mode ("launcher", "at_init" or "all"), job, run_dir, marker,
# then the job's extra settings (each given to --set).
DRIVER = r'''
import json, os, signal, subprocess, sys, time
delay, mode, job, run_dir, marker = float(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
extra = [a for kv in sys.argv[6:] for a in ("--set", kv)]
env = dict(os.environ, DISTNET_TEST_MARKER=marker)

def job_pids():
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                if f"DISTNET_TEST_MARKER={marker}".encode() not in f.read().split(b"\0"):
                    continue
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":   # ended, not reaped yet
                    continue
        except OSError:
            continue
        found.append(int(pid))
    return found

def steps():
    try:
        with open(os.path.join(run_dir, "metrics.jsonl")) as f:
            return sum('"kind":"step"' in line for line in f)
    except OSError:
        return 0

proc = subprocess.Popen([sys.executable, "-m", "distnet", "train", job, "-n", "2", "--run-dir", run_dir,
                         "--progress", "none", "--set", "train.steps=100000", "--set", "train.log_every=1",
                         "--set", "data.train_samples=1000", "--set", "data.test_samples=200", *extra],
                        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
time.sleep(delay)
if mode == "at_init":   # the moment MPICH creates its file: ranks inside MPI_Init
    start = time.monotonic()
    while not [n for n in os.listdir("/dev/shm") if n.startswith("mpich_shm_")] and time.monotonic() - start < 60:
        time.sleep(0.001)
at_kill = sorted(os.listdir("/dev/shm"))
pids = job_pids()
if mode == "all":
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
else:
    os.kill(proc.pid, signal.SIGKILL)
err = proc.communicate()[1].decode(errors="replace")
deadline = time.monotonic() + 120   # the launcher's guard waits stop_grace + 15 s for mpiexec
while job_pids() and time.monotonic() < deadline:
    time.sleep(0.05)
print(json.dumps({"at_kill": at_kill, "left": sorted(os.listdir("/dev/shm")), "alive": job_pids(),
                  "steps": steps(), "stderr": err[-2000:]}))
'''


def _namespace_reason() -> str | None:
    if shutil.which("unshare") is None:
        return "no unshare command (util-linux)"
    probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                            "mount -t tmpfs -o size=64m tmpfs /dev/shm"], capture_output=True, text=True,
                           timeout=30)
    if probe.returncode != 0:
        return f"cannot make a mount namespace with a private /dev/shm: {probe.stderr.strip()}"
    return None


def _kill_and_list(tmp_path: Path, delay: float, mode: str, *sets: str) -> dict:
    marker = f"{tmp_path.name}-{mode}-{delay:.3f}"
    command = (f"mount -t tmpfs -o size=256m tmpfs /dev/shm && exec {sys.executable} -c \"$0\" "
               f"{delay} {mode} {JOB} {tmp_path / marker} {marker} {' '.join(sets)}")
    done = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", command, DRIVER],
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def namespace():
    reason = _namespace_reason()
    if reason is not None:
        # A private /dev/shm takes a mount namespace (CAP_SYS_ADMIN; CI runs as root and has it);
        # without one the test would list a /dev/shm that other jobs on the machine write to, and
        # could pass or fail by their files. The reason is printed, not hidden.
        print(f"\n/dev/shm test skipped: {reason}")
        pytest.skip(reason)


@pytest.mark.parametrize("mode,seed,strategy", [("launcher", 1, "auto"), ("launcher", 2, "auto"), ("all", 3, "auto"),
                                               ("launcher", 4, "replicated"), ("all", 5, "replicated")])
def test_a_killed_job_leaves_no_file_in_dev_shm(namespace, tmp_path, mode, seed, strategy):
    """A SIGKILL of the launcher (the workers then stop through mpiexec) or of every process
    of the job at once (nothing runs MPI_Finalize), at a random moment: nothing stays.  Under
    ZeRO-1 (the default on 2 workers) and the replicated strategy, both through shared memory."""
    result = _kill_and_list(tmp_path, random.Random(seed).uniform(1.5, 8.0), mode, f"dist.strategy={strategy}")
    assert result["alive"] == [], result
    assert result["left"] == [], result


def test_a_launcher_killed_while_the_ranks_start_leaves_no_process_and_no_file(namespace, tmp_path):
    """Killed the moment MPICH creates its file: a rank inside MPI_Init cannot act on the
    SIGTERM mpiexec passes on, and hydra may wait for it forever; the launcher's guard
    (distnet/runner/guard.py) ends the job after the grace period and removes the file."""
    result = _kill_and_list(tmp_path, 0.0, "at_init")
    assert [n for n in result["at_kill"] if n.startswith("mpich_shm_")], result   # the moment was hit
    assert result["alive"] == [], result
    assert result["left"] == [], result


def test_the_segment_file_has_no_name_while_the_job_trains(namespace, tmp_path):
    """The reason nothing stays: once the ranks train, MPICH's segment (``mpich_shm_*``) is
    mapped by them but has no name in /dev/shm any more."""
    for delay in (6.0, 15.0):
        result = _kill_and_list(tmp_path, delay, "all")
        if result["steps"] > 0:
            break
    assert result["steps"] > 0, f"the job never trained within {delay} s: {result}"
    assert not [n for n in result["at_kill"] if n.startswith("mpich_shm_")], result
    assert result["left"] == [], result
