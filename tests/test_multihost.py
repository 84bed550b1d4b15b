"""Jobs across hosts, played by network namespaces (see tests/netns.py).

Three namespaces joined by a bridge stand for three machines (10.201.0.1-3,
addresses that exist only inside them).  Jobs go through the hostfile path of
the launcher, with a remote-start agent that enters the host's namespace
where ssh would log in to the machine.  What makes MPICH use the network
between them (all of them found by trying, documented in launch/README.md):

* the hostfile lists addresses: the namespaces share ``/etc/hosts`` and the
  host name, so names would not tell them apart;
* ``mpiexec`` itself runs inside the first host's namespace, so the proxies
  can reach its control port; hydra starts the proxy of a host whose
  address is local by fork, the others through the agent;
* ``HYDRA_IFACE=eth0`` (``-iface``) binds hydra's traffic to the host link;
* ``UCX_TLS=tcp,self`` and ``UCX_NET_DEVICES=eth0``: UCX (the default netmod
  of the mpich wheel) sees one kernel and would otherwise use shared memory
  between "hosts" -- a cut link then changes nothing.  The switch's port
  counters check that the data did cross the links.

Skipped, with the reason printed, only where namespaces cannot be made (not
root, no ``ip``).  The namespaces are deleted at the end, also on failure.
"""
from __future__ import annotations

import glob
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import netns  # noqa: E402  (test helper beside this file)

pytestmark = [pytest.mark.mpi, pytest.mark.slow]

REPO = Path(__file__).resolve().parent.parent
SCRIPT = Path(__file__).parent / "mpi_scripts_multihost" / "allreduce_check.py"
JOB = REPO / "examples" / "jobs" / "mlp.toml"
SHORT = ["--set", "train.steps=8", "--set", "train.batch_size=60", "--set", "train.eval_every=8",
         "--set", "train.log_every=1"]
CUT_WITHIN = 60.0


@pytest.fixture(scope="module")
def cluster():
    # Network namespaces need root and iproute2; CI runs as root and .ci/run
    # installs iproute2, so the multi-host tests run there.
    reason = netns.unavailable_reason()
    if reason is not None:
        print(f"\nmulti-host test skipped: {reason}")
        pytest.skip(reason)
    c = netns.NetnsCluster(3)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture(scope="module")
def files(cluster, tmp_path_factory):
    d = tmp_path_factory.mktemp("multihost")
    return {"dir": d, "hostfile": cluster.write_hostfile(d / "hosts"),
            "agent": cluster.write_agent(d / "agent.sh")}


def _env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PMI_", "HYDRA_", "UCX_", "FI_", "OMP_", "OPENBLAS_", "MKL_"))}
    env.update(PYTHONUNBUFFERED="1", UCX_TLS="tcp,self", UCX_NET_DEVICES="eth0",
               UCX_LOG_LEVEL="error")
    env.update(extra)
    return env


def _run(cmd, env, timeout=120.0) -> subprocess.CompletedProcess:
    proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"{cmd} did not finish in {timeout} s\n{out}\n{err}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _steps(run_dir: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if r["kind"] == "step"]


def _last_checkpoint_params(run_dir: Path) -> dict:
    import h5py

    path = sorted(glob.glob(str(run_dir / "checkpoints" / "*.h5")))[-1]
    params = {}
    with h5py.File(path, "r") as f:
        f["params"].visititems(lambda name, obj: params.__setitem__(name, obj[()])
                               if isinstance(obj, h5py.Dataset) else None)
    return params


LAUNCH_SCRIPT = """\
import sys
from distnet.runner.launcher import launch
hostfile, agent, script, *args = sys.argv[1:]
sys.exit(launch(args, hostfile=hostfile, launcher_exec=agent, iface="eth0", entry=[script],
                failure_grace=2))
"""


def test_allreduce_crosses_the_links(cluster, files):
    before = [cluster.port_bytes(i) for i in range(3)]
    r = _run(cluster.in_host(0) + [sys.executable, "-c", LAUNCH_SCRIPT, str(files["hostfile"]),
                                   str(files["agent"]), str(SCRIPT), "20"],
             _env(DISTNET_TEST_IFACE="eth0"))
    assert r.returncode == 0, r.stdout + r.stderr
    # (hydra may join the ranks' lines: match, do not split)
    where = sorted(re.findall(r"rank \d of 3 on (\S+?) threads", r.stdout))
    assert where == cluster.addresses  # one rank in each namespace
    assert "step 19 sum 60" in r.stdout  # 3*19 + 0+1+2
    assert all(f"ok rank {k}" in r.stdout for k in range(3))
    # 20 all-reduces of 8 kB: every host's link carried them (not shared memory)
    moved = [cluster.port_bytes(i) - b for i, b in zip(range(3), before)]
    assert min(moved) > 100_000, moved


def test_training_across_hosts_matches_single_process(cluster, files):
    single, multi = files["dir"] / "single", files["dir"] / "multi"
    base = [sys.executable, "-m", "distnet", "train", str(JOB), *SHORT, "--progress", "plain"]
    r1 = _run(base + ["--run-dir", str(single)], _env())
    assert r1.returncode == 0, r1.stdout + r1.stderr
    before = cluster.port_bytes(2)
    # the user's command, with the agent chosen through hydra's environment variable
    r3 = _run(cluster.in_host(0) + base + ["--hostfile", str(files["hostfile"]),
                                           "--run-dir", str(multi)],
              _env(HYDRA_LAUNCHER_EXEC=str(files["agent"]), HYDRA_IFACE="eth0"))
    assert r3.returncode == 0, r3.stdout + r3.stderr
    assert "on 3 rank(s)" in r3.stdout + r3.stderr
    assert cluster.port_bytes(2) - before > 1_000_000  # gradients crossed host 3's link
    s1, s3 = _steps(single), _steps(multi)
    assert [r["step"] for r in s1] == [r["step"] for r in s3] == list(range(1, 9))
    np.testing.assert_allclose([r["loss"] for r in s3], [r["loss"] for r in s1], rtol=1e-5)
    p1, p3 = _last_checkpoint_params(single), _last_checkpoint_params(multi)
    assert sorted(p1) == sorted(p3) and len(p1) == 6
    for name in p1:
        np.testing.assert_allclose(p3[name], p1[name], rtol=1e-4, atol=1e-6, err_msg=name)


def _wait_for_step(run_dir: Path, step: int, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"job ended before step {step} with status {proc.returncode}:\n"
                                 f"{proc.stdout.read()}")
        try:
            if any(r["step"] >= step for r in _steps(run_dir)):
                return
        except (FileNotFoundError, json.JSONDecodeError):
            pass
        time.sleep(0.2)
    raise AssertionError(f"no step {step} within {timeout} s")


def _cut_mid_run(cluster, cmd, env, run_dir: Path | None, ready) -> dict:
    """Start ``cmd`` in host 1, cut host 3's link once ``ready(proc)``, time the end."""
    proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        ready(proc)
        cluster.cut(2)
        cut_at = time.monotonic()
        try:
            out, _ = proc.communicate(timeout=CUT_WITHIN + 30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
        took = time.monotonic() - cut_at
        # The cut-off host's ranks end on their own (their watchdog): give them
        # up to 15 s more, within the 60 s promised from the cut.
        deadline = time.monotonic() + min(15.0, max(1.0, CUT_WITHIN - took))
        while cluster.pids() and time.monotonic() < deadline:
            time.sleep(0.2)
        left = cluster.pids()
        return {"code": proc.returncode, "took": took, "output": out, "left": left}
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        cluster.close_processes()
        cluster.restore(2)


@pytest.fixture(scope="module")
def cut_allreduce(cluster, files):
    cmd = cluster.in_host(0) + [sys.executable, "-c", LAUNCH_SCRIPT, str(files["hostfile"]),
                                str(files["agent"]), str(SCRIPT), "100000", "0.02", "4"]

    def ready(proc):
        line = ""
        while not line.startswith("step 20 "):
            line = proc.stdout.readline()
            if not line:
                raise AssertionError("job ended before step 20")

    return _cut_mid_run(cluster, cmd, _env(), None, ready)


def test_cut_link_ends_an_mpi_job_and_every_process(cut_allreduce):
    r = cut_allreduce
    assert r["code"] != 0, r["output"]
    assert r["took"] < CUT_WITHIN, r
    assert "stalled for 4 s" in r["output"]
    assert r["left"] == [], r


@pytest.fixture(scope="module")
def cut_training(cluster, files):
    run_dir = files["dir"] / "cut"
    cmd = cluster.in_host(0) + [
        sys.executable, "-m", "distnet", "train", str(JOB), "--hostfile", str(files["hostfile"]),
        "--set", "train.steps=100000", "--set", "train.batch_size=60", "--set",
        "train.log_every=1", "--set", "dist.stall_timeout=10", "--run-dir", str(run_dir),
        "--progress", "plain"]
    env = _env(HYDRA_LAUNCHER_EXEC=str(files["agent"]), HYDRA_IFACE="eth0")
    return _cut_mid_run(cluster, cmd, env, run_dir,
                        lambda proc: _wait_for_step(run_dir, 3, proc, timeout=60))


def test_cut_link_stops_training_with_a_clear_error(cut_training):
    r = cut_training
    assert r["code"] != 0, r["output"]
    assert r["took"] < CUT_WITHIN, r
    assert "rank 2 silent since step" in r["output"], r["output"]


def test_cut_link_leaves_no_training_process(cut_training):
    assert cut_training["left"] == [], cut_training


EQUIVALENCE = Path(__file__).parent / "mpi_scripts" / "train_equivalence.py"


def test_hierarchical_across_two_hosts_of_two_ranks_matches_single_process(cluster, files):
    """2 hosts x 2 ranks: the hierarchical strategy sums inside each host through
    shared memory and all-reduces each block between the hosts; the result
    equals one process within float32 rounding, and it moves fewer bytes over
    the hosts' links than ZeRO-1 across all four ranks."""
    d = files["dir"]
    hostfile = d / "hosts2x2"
    hostfile.write_text("".join(f"{a}:2\n" for a in cluster.addresses[:2]))
    single = d / "eq_single.npz"
    r1 = _run([sys.executable, str(EQUIVALENCE), str(single)], _env())
    assert r1.returncode == 0, r1.stdout + r1.stderr
    moved, results = {}, {}
    for strategy in ("hierarchical", "zero1"):
        out = d / f"eq_{strategy}.npz"
        before = cluster.port_bytes(1)
        r = _run(cluster.in_host(0) + [sys.executable, "-c", LAUNCH_SCRIPT, str(hostfile), str(files["agent"]),
                                       str(EQUIVALENCE), str(out), "--strategy", strategy], _env())
        assert r.returncode == 0, r.stdout + r.stderr
        assert "size 4" in r.stdout, r.stdout
        moved[strategy] = cluster.port_bytes(1) - before
        results[strategy] = dict(np.load(out))
    want = dict(np.load(single))
    for strategy, got in results.items():
        weights = [k for k in want if k.startswith(("param:", "ema:"))]
        assert len(weights) == 12
        diff = max(float(np.max(np.abs(got[k] - want[k]))) for k in weights)
        print(f"{strategy}, 2 hosts x 2 ranks vs 1 process: max |difference| {diff:.3g}; "
              f"host 2's link carried {moved[strategy] / 1e6:.2f} MB")
        assert diff < 1e-5, strategy
        np.testing.assert_allclose(got["losses"], want["losses"], rtol=1e-5, atol=1e-6)
    assert moved["hierarchical"] > 0
    assert moved["hierarchical"] < moved["zero1"], moved
    # Several hosts with several ranks each: "auto" takes the hierarchical strategy.
    out = d / "eq_auto.npz"
    r = _run(cluster.in_host(0) + [sys.executable, "-c", LAUNCH_SCRIPT, str(hostfile), str(files["agent"]),
                                   str(EQUIVALENCE), str(out), "--strategy", "auto", "--report-strategy"], _env())
    assert r.returncode == 0, r.stdout + r.stderr
    assert "strategy hierarchical" in r.stdout, r.stdout


DETERMINISTIC = Path(__file__).parent / "mpi_scripts" / "deterministic_strategies.py"


def test_deterministic_mode_across_two_hosts_of_two_ranks_equals_one_process_bitwise(cluster, files):
    """2 hosts x 2 ranks in deterministic mode: hierarchical (shared memory inside each host,
    each block all-reduced between the hosts), ZeRO-1 and replicated end with the bits of one
    process: every checkpoint array, every step loss, every evaluation (plain and EMA)."""
    d = files["dir"]
    hostfile = d / "hosts2x2_det"
    hostfile.write_text("".join(f"{a}:2\n" for a in cluster.addresses[:2]))
    single = d / "det_single.npz"
    r1 = _run([sys.executable, str(DETERMINISTIC), str(single)], _env())
    assert r1.returncode == 0, r1.stdout + r1.stderr
    out = d / "det_2x2.npz"
    r = _run(cluster.in_host(0) + [sys.executable, "-c", LAUNCH_SCRIPT, str(hostfile), str(files["agent"]),
                                   str(DETERMINISTIC), str(out), "--strategies", "hierarchical,zero1,replicated"],
             _env(), timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "strategy hierarchical machines 2 size 4" in r.stdout, r.stdout
    want, got = dict(np.load(single)), dict(np.load(out))
    assert len(want) == 28 and len(got) == 3 * 28
    differ = [k for k in got if got[k].tobytes() != want["replicated:" + k.split(":", 1)[1]].tobytes()]
    assert not differ, f"2 hosts x 2 ranks differ from 1 process: {differ}"


def _kill_workers_in(cluster, index: int) -> int:
    """SIGKILL the training workers running in host ``index``'s namespace; returns how many."""
    killed = 0
    out = subprocess.run(["ip", "netns", "pids", cluster.namespace_of(cluster.addresses[index])],
                         capture_output=True, text=True, timeout=30).stdout
    for pid in map(int, out.split()):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(b"hydra" in part for part in cmd[:1]) or not any(b"train" == part for part in cmd):
            continue
        try:
            os.kill(pid, signal.SIGKILL)
            killed += 1
        except ProcessLookupError:
            pass
    return killed


def _since_last_restart(run_dir: Path) -> list[dict]:
    try:
        rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    except (FileNotFoundError, json.JSONDecodeError):
        return []
    starts = [i for i, r in enumerate(rows) if r["kind"] == "start"]
    return rows[starts[-1]:] if starts else []


def test_deterministic_supervised_restart_with_fewer_workers_equals_one_process(cluster, files):
    """3 workers (host 1: 2, host 2: 1) in deterministic mode; host 2's worker is killed twice, so
    the supervisor leaves host 2 out (--min-workers 2) and the job ends on 2 workers from its
    newest checkpoint: the final checkpoint has the bits of an uninterrupted 1-process run."""
    d = files["dir"]
    hostfile = d / "hosts2_1"
    hostfile.write_text(f"{cluster.addresses[0]}:2\n{cluster.addresses[1]}:1\n")
    job = ["train", str(JOB), "--deterministic", "--set", "train.steps=60", "--set", "train.batch_size=30",
           "--set", "data.train_samples=300", "--set", "data.test_samples=50", "--set", "train.eval_every=1000",
           "--set", "train.log_every=1", "--set", "checkpoint.every=5", "--progress", "plain"]
    single, multi = d / "restart_single", d / "restart_multi"
    r1 = _run([sys.executable, "-m", "distnet", *job, "--run-dir", str(single)], _env(), timeout=300)
    assert r1.returncode == 0, r1.stdout + r1.stderr
    cmd = cluster.in_host(0) + [sys.executable, "-m", "distnet", *job, "--hostfile", str(hostfile),
                                "--max-restarts", "2", "--min-workers", "2", "--run-dir", str(multi)]
    proc = subprocess.Popen(cmd, env=_env(HYDRA_LAUNCHER_EXEC=str(files["agent"]), HYDRA_IFACE="eth0"), cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        # Kill host 2's worker after step 7 of the first attempt (a checkpoint at 5 exists), and
        # after step 12 of the restarted one (it resumed at 5; progress, so it is restarted again).
        for attempt, past in enumerate((7, 12)):
            deadline = time.monotonic() + 120
            while True:
                assert proc.poll() is None, f"the job ended early ({proc.returncode}):\n{proc.stdout.read()}"
                assert time.monotonic() < deadline, f"attempt {attempt + 1} never reached step {past}"
                rows = _since_last_restart(multi)
                steps = [r["step"] for r in rows if r["kind"] == "step"]
                if rows and rows[0].get("world_size") == 3 and steps and max(steps) >= past and \
                        sum(1 for r in _since_all(multi) if r["kind"] == "start") == attempt + 1:
                    if _kill_workers_in(cluster, 1):
                        break
                time.sleep(0.05)
        out, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        cluster.close_processes()
    assert proc.returncode == 0, out
    assert "without host" in out, out
    starts = [r for r in _since_all(multi) if r["kind"] == "start"]
    assert [r["world_size"] for r in starts] == [3, 3, 2], starts
    r = _run([sys.executable, "-m", "distnet", "compare", str(single), str(multi)], _env())
    assert r.returncode == 0 and "bitwise equal" in r.stdout, r.stdout + r.stderr
    assert "step 60, 2 worker(s)" in r.stdout, r.stdout


def _since_all(run_dir: Path) -> list[dict]:
    try:
        return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    except (FileNotFoundError, json.JSONDecodeError):
        return []
