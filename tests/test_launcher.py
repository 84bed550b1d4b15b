"""The MPI launcher: hostfile parsing, the mpiexec command, threads, signals, failures."""
from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from distnet.runner import launcher
from distnet.errors import ConfigError, DistnetError, InvalidArgumentError
from distnet.runner.launcher import (
    Host, HostfileError, build_mpiexec_command, launch, parse_hostfile, ranks_per_host,
)

SCRIPT = Path(__file__).parent / "mpi_scripts_multihost" / "allreduce_check.py"
REPO = Path(__file__).resolve().parent.parent


def _mpiexec_or_skip() -> str:
    # mpiexec comes with the mpich wheel, a dependency: this only skips in an
    # environment installed without it (never in CI).
    try:
        return launcher.find_mpiexec()
    except launcher.LaunchError as exc:
        pytest.skip(f"no mpiexec: {exc}")


def _processes_with(marker: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in cmdline:
            found.append(int(entry))
    return found


def _clean_env() -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PMI_", "HYDRA_", "OMP_", "OPENBLAS_", "MKL_"))}
    env["PYTHONUNBUFFERED"] = "1"
    return env


# ---------------------------------------------------------------- hostfiles

def test_hostfile_mpich_openmpi_comments_and_defaults(tmp_path):
    f = tmp_path / "hosts"
    f.write_text("# cluster\nnode1:2\n\n  node2 slots=4   # OpenMPI style\n10.0.0.7\n")
    assert parse_hostfile(f) == [Host("node1", 2), Host("node2", 4), Host("10.0.0.7", 1)]


@pytest.mark.parametrize("content, lineno, words", [
    ("node1:2\nnode2:zero\n", 2, "slots: Expect: an integer >= 1 Actual: 'zero'"),
    ("node1:0\n", 1, "Actual: '0'"),
    ("node1 slots=3 extra\n", 1, "Expect: 'host'"),
    ("node1 max_slots=3\n", 1, "Expect: 'host'"),
    ("a\n\nbad/host:2\n", 3, "host: Expect: a host name or address"),
    (":4\n", 1, "host: Expect: a host name or address"),
    ("node1:1\n# x\nnode1:2\n", 3, "already listed on line 1"),
])
def test_malformed_hostfile_names_file_and_line(tmp_path, content, lineno, words):
    f = tmp_path / "hosts.txt"
    f.write_text(content)
    with pytest.raises(HostfileError) as info:
        parse_hostfile(f)
    message = str(info.value)
    assert f"{f}:{lineno}:" in message
    assert words in message
    assert isinstance(info.value, ConfigError) and isinstance(info.value, DistnetError)


def test_missing_and_empty_hostfiles(tmp_path):
    with pytest.raises(HostfileError, match="does not exist"):
        parse_hostfile(tmp_path / "nope")
    empty = tmp_path / "empty"
    empty.write_text("# only a comment\n\n")
    with pytest.raises(HostfileError, match="lists no host") as info:
        parse_hostfile(empty)
    assert str(empty) in str(info.value)


def test_ranks_per_host_fills_slots_in_order_and_wraps():
    hosts = [Host("a", 2), Host("b", 1), Host("c", 3)]
    assert ranks_per_host(hosts, 1) == [1, 0, 0]
    assert ranks_per_host(hosts, 3) == [2, 1, 0]
    assert ranks_per_host(hosts, 6) == [2, 1, 3]
    assert ranks_per_host(hosts, 8) == [4, 1, 3]


# ---------------------------------------------------------------- the command

def test_local_command_and_thread_split():
    argv, env = build_mpiexec_command(["train", "job.toml"], num_workers=4, mpiexec="MPX",
                                      python="PY", env={"KEEP": "1"}, cores=8)
    assert argv == ["MPX", "-n", "4", "-genvall", "PY", "-m", "distnet", "train", "job.toml"]
    assert env == {"KEEP": "1", "OMP_NUM_THREADS": "2", "OPENBLAS_NUM_THREADS": "2",
                   "MKL_NUM_THREADS": "2"}


def test_threads_at_least_one_and_explicit_setting_wins():
    _, env = build_mpiexec_command([], num_workers=4, mpiexec="M", python="P", cores=2, env={})
    assert env["OMP_NUM_THREADS"] == "1" and env["MKL_NUM_THREADS"] == "1"
    _, env = build_mpiexec_command([], num_workers=2, mpiexec="M", python="P", cores=8,
                                   env={"OMP_NUM_THREADS": "3"})
    # one variable set sizes the unset pools too, whatever this machine's cores
    assert (env["OMP_NUM_THREADS"], env["OPENBLAS_NUM_THREADS"], env["MKL_NUM_THREADS"]) \
        == ("3", "3", "3")
    _, env = build_mpiexec_command([], num_workers=2, mpiexec="M", python="P", cores=8,
                                   env={"OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "2"})
    assert (env["OMP_NUM_THREADS"], env["OPENBLAS_NUM_THREADS"], env["MKL_NUM_THREADS"]) \
        == ("1", "1", "2")
    _, env = build_mpiexec_command([], num_workers=2, mpiexec="M", python="P", cores=8,
                                   env={"OMP_NUM_THREADS": ""})  # empty is unset
    assert env["OMP_NUM_THREADS"] == "4" and env["MKL_NUM_THREADS"] == "4"


def test_env_defaults_to_ours_and_is_not_modified(monkeypatch):
    monkeypatch.setenv("DISTNET_LAUNCHER_PROBE", "x")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    given = {"A": "1"}
    _, env = build_mpiexec_command([], num_workers=1, mpiexec="M", python="P", env=given)
    assert given == {"A": "1"} and env["A"] == "1" and "DISTNET_LAUNCHER_PROBE" not in env
    _, env = build_mpiexec_command([], num_workers=1, mpiexec="M", python="P")
    assert env["DISTNET_LAUNCHER_PROBE"] == "x"
    assert "OMP_NUM_THREADS" not in os.environ


def test_hostfile_command_converts_openmpi_and_uses_ssh_or_agent(tmp_path):
    f = tmp_path / "hosts"
    f.write_text("10.1.0.1 slots=2\n10.1.0.2:2\n")
    argv, env = build_mpiexec_command(["train"], hostfile=f, mpiexec="M", python="P",
                                      cores=4, env={})
    assert argv == ["M", "-n", "4", "-hosts", "10.1.0.1:2,10.1.0.2:2", "-launcher", "ssh",
                    "-genvall", "P", "-m", "distnet", "train"]
    assert env["OMP_NUM_THREADS"] == "2"
    argv, env = build_mpiexec_command(["train"], hostfile=f, num_workers=3, mpiexec="M",
                                      python="P", cores=4, env={}, launcher_exec="/x/agent",
                                      iface="eth1")
    assert argv[:10] == ["M", "-n", "3", "-hosts", "10.1.0.1:2,10.1.0.2:2", "-launcher", "ssh",
                         "-launcher-exec", "/x/agent", "-iface"]
    assert argv[10] == "eth1"
    assert env["UCX_NET_DEVICES"] == "eth1" and env["FI_TCP_IFACE"] == "eth1"
    assert env["OMP_NUM_THREADS"] == "2"  # 2 ranks on the busiest host


def test_hydra_launcher_variable_replaces_ssh(tmp_path):
    f = tmp_path / "hosts"
    f.write_text("n1:4\n")
    argv, env = build_mpiexec_command(["train"], hostfile=f, mpiexec="M", python="P", cores=4,
                                      env={"HYDRA_LAUNCHER": "slurm"})
    assert "-launcher" not in argv and env["HYDRA_LAUNCHER"] == "slurm"
    assert env["OMP_NUM_THREADS"] == "1"


@pytest.mark.parametrize("kwargs, words", [
    ({"num_workers": 0}, "num_workers: Expect: >= 1 Actual: 0"),
    ({"num_workers": -2}, "Actual: -2"),
    ({"num_workers": 2.0}, "Expect: an integer"),
    ({"num_workers": True}, "Expect: an integer"),
    ({}, "got neither"),
    ({"num_workers": 2, "launcher_exec": "agent"}, "needs a hostfile"),
    ({"num_workers": 2, "iface": "eth0; rm"}, "interface name"),
    ({"num_workers": 2, "cores": 0}, "cores: Expect: >= 1"),
])
def test_bad_arguments(kwargs, words):
    with pytest.raises(InvalidArgumentError, match=words.replace("(", r"\(")):
        build_mpiexec_command(["train"], mpiexec="M", python="P", **kwargs)


@pytest.mark.parametrize("args", [["train", "-n", "2"], ["train", "--np", "2"],
                                  ["train", "--hostfile", "h"]])
def test_program_args_must_not_relaunch(args):
    with pytest.raises(InvalidArgumentError, match="launch workers again"):
        build_mpiexec_command(args, num_workers=2, mpiexec="M", python="P")


def test_program_args_string_rejected():
    with pytest.raises(InvalidArgumentError, match="list of arguments"):
        build_mpiexec_command("train job.toml", num_workers=2, mpiexec="M", python="P")


def test_find_mpiexec_prefers_the_one_beside_python(tmp_path, monkeypatch):
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "python").write_text("")
    (fake / "mpiexec").write_text("#!/bin/sh\n")
    (fake / "mpiexec").chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(fake / "python"))
    assert launcher.find_mpiexec() == str(fake / "mpiexec")
    (fake / "mpiexec").unlink()
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(launcher.LaunchError, match="pip install mpich"):
        launcher.find_mpiexec()


# ---------------------------------------------------------------- the plan, from one settings object

def test_plan_builds_argv_and_env_from_settings_and_starts_nothing(tmp_path, monkeypatch):
    def no_process(*args, **kwargs):
        raise AssertionError("the plan started a process")

    monkeypatch.setattr(subprocess, "Popen", no_process)
    hosts = tmp_path / "hosts"
    hosts.write_text("n1:3\nn2:1\n")
    settings = launcher.LaunchSettings(hostfile=hosts, mpiexec="/nowhere/mpiexec", python="/py",
                                       entry=("-c", "code"), cores=6, iface="ib0", launcher_exec="agent",
                                       env={"KEEP": "1"})
    built = launcher.plan(["x", "y"], settings)
    assert built.argv == ["/nowhere/mpiexec", "-n", "4", "-hosts", "n1:3,n2:1", "-launcher", "ssh",
                          "-launcher-exec", "agent", "-iface", "ib0", "-genvall", "/py", "-c", "code", "x", "y"]
    assert built.env == {"KEEP": "1", "UCX_NET_DEVICES": "ib0", "FI_TCP_IFACE": "ib0", "OMP_NUM_THREADS": "2",
                         "OPENBLAS_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}   # 6 cores, 3 ranks on n1
    assert settings.env == {"KEEP": "1"}
    # The same plan as the options one by one.
    assert build_mpiexec_command(["x", "y"], hostfile=hosts, mpiexec="/nowhere/mpiexec", python="/py",
                                 entry=("-c", "code"), cores=6, iface="ib0", launcher_exec="agent",
                                 env={"KEEP": "1"}) == (built.argv, built.env)


def test_settings_check_their_graces_and_launch_job_takes_one_form():
    with pytest.raises(InvalidArgumentError, match="stop_grace: Expect: a number of seconds > 0 Actual: 0"):
        launcher.LaunchSettings(num_workers=1, stop_grace=0)
    with pytest.raises(InvalidArgumentError, match="settings or options one by one"):
        launcher.launch_job(["x"], launcher.LaunchSettings(num_workers=1), num_workers=2)
    with pytest.raises(TypeError):
        launcher.LaunchSettings(workers=2)


def test_launch_job_runs_the_plan_of_its_settings(tmp_path):
    fake = tmp_path / "mpiexec"
    fake.write_text(f"#!{sys.executable}\nimport os, sys\n"
                    f"print(' '.join(sys.argv[1:]), os.environ['OMP_NUM_THREADS'], flush=True)\n")
    fake.chmod(0o755)
    out, err = io.BytesIO(), io.BytesIO()
    settings = launcher.LaunchSettings(num_workers=2, mpiexec=str(fake), python="P", cores=6, env=_clean_env())
    outcome = launcher.launch_job(["a", "b"], settings, stdout=out, stderr=err)
    assert (outcome.code, outcome.raw, outcome.signal, outcome.failure) == (0, 0, None, None)
    assert out.getvalue() == b"-n 2 -genvall P -m distnet a b 3\n" and err.getvalue() == b""


# ---------------------------------------------------------------- running mpiexec

@pytest.mark.mpi
def test_launch_runs_ranks_passes_env_and_returns_zero():
    mpiexec = _mpiexec_or_skip()
    env = _clean_env()
    env["DISTNET_TEST_HOST"] = "here"
    out, err = io.BytesIO(), io.BytesIO()
    code = launch(["3"], num_workers=2, entry=[str(SCRIPT)], env=env, cores=4,
                  mpiexec=mpiexec, stdout=out, stderr=err)
    text = out.getvalue().decode()
    assert code == 0, err.getvalue().decode()
    assert "step 2 sum 5" in text  # (0+2) + (1+2)
    assert "ok rank 0" in text and "ok rank 1" in text
    # environment passed through, and 4 cores // 2 ranks on this host
    assert text.count("on here threads 2") == 2


@pytest.mark.mpi
def test_launch_returns_a_failed_rank_status():
    mpiexec = _mpiexec_or_skip()
    bad = ["-c", "import sys; from mpi4py import MPI; "
                 "sys.exit(4 if MPI.COMM_WORLD.rank == 1 else 0)"]
    err = io.BytesIO()
    code = launch([], num_workers=2, entry=bad, env=_clean_env(), mpiexec=mpiexec,
                  stdout=io.BytesIO(), stderr=err)
    # 4 is no status of the table: a failure, said in one line.
    assert code == 1, err.getvalue().decode()
    assert "distnet launch: a rank ended with status 4" in err.getvalue().decode()


@pytest.mark.mpi
def test_a_killed_rank_leaves_no_shared_memory_file_behind():
    """A rank killed by SIGKILL never removes MPICH's files in /dev/shm (measured:
    one 1-3 MB file per such job); the launcher does, after the job."""
    mpiexec = _mpiexec_or_skip()
    killed = ["-c", "import os, signal, time; from mpi4py import MPI; MPI.COMM_WORLD.Barrier(); "
                    "MPI.COMM_WORLD.rank == 1 and os.kill(os.getpid(), signal.SIGKILL); time.sleep(30)"]
    before = launcher.shm_files()
    err = io.BytesIO()
    code = launch([], num_workers=2, entry=killed, env=_clean_env(), mpiexec=mpiexec,
                  stdout=io.BytesIO(), stderr=err)
    assert code != 0
    assert launcher.shm_files() - before == set(), err.getvalue().decode()
    assert b"distnet launch: removed 1 shared-memory file(s)" in err.getvalue()
    # The killed rank is named, with its host and the signal; the status is the table's 1.
    assert code == 1
    assert re.search(r"distnet launch: rank 1 \(pid \d+ on \S+\) was killed by SIGKILL; exit status 1 "
                     r"\(training failed\)", err.getvalue().decode()), err.getvalue().decode()


FAKE_HUNG_MPIEXEC = """\
import signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
signal.signal(signal.SIGINT, signal.SIG_IGN)
print("=   BAD TERMINATION OF ONE OF YOUR APPLICATION PROCESSES", flush=True)
time.sleep(600)
"""


def test_mpiexec_hung_after_a_failure_is_stopped(tmp_path):
    # hydra waiting forever for an unreachable host's proxy, played by a script
    fake = tmp_path / "mpiexec"
    fake.write_text(f"#!{sys.executable}\n{FAKE_HUNG_MPIEXEC}")
    fake.chmod(0o755)
    err = io.BytesIO()
    start = time.monotonic()
    code = launch(["x"], num_workers=1, mpiexec=str(fake), env=_clean_env(),
                  failure_grace=0.5, stdout=io.BytesIO(), stderr=err)
    elapsed = time.monotonic() - start
    assert code != 0
    assert "did not finish within 0.5 s after a rank failed" in err.getvalue().decode()
    assert elapsed < 10  # grace, then SIGTERM (ignored) for 0.5 s, then SIGKILL


FAKE_MPIEXEC_LOSING_A_PROXY = """\
import signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
quick = subprocess.Popen([sys.executable, "-c", "import sys, time; time.sleep(1); sys.exit(3)"])
slow = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
quick.wait()  # one host's proxy is gone; the other host never answers
time.sleep(600)
"""


# Process leftovers are found by scanning /proc (no psutil dependency): Linux only,
# as are CI and the MPI wheel we test with.
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
def test_mpiexec_hung_after_a_proxy_ended_is_stopped(tmp_path):
    fake = tmp_path / "mpiexec"
    fake.write_text(f"#!{sys.executable}\n{FAKE_MPIEXEC_LOSING_A_PROXY}")
    fake.chmod(0o755)
    err = io.BytesIO()
    code = launch(["x"], num_workers=1, mpiexec=str(fake), env=_clean_env(),
                  failure_grace=0.5, stdout=io.BytesIO(), stderr=err)
    assert code != 0
    assert "after a rank failed" in err.getvalue().decode()


def test_healthy_job_is_not_stopped(tmp_path):
    # children that end together with mpiexec are a normal end
    fake = tmp_path / "mpiexec"
    fake.write_text(f"#!{sys.executable}\nimport subprocess, sys, time\n"
                    f"ps = [subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(1.5)'])"
                    f" for _ in range(2)]\n"
                    f"[p.wait() for p in ps]\nprint('finished', flush=True)\n")
    fake.chmod(0o755)
    out, err = io.BytesIO(), io.BytesIO()
    code = launch(["x"], num_workers=1, mpiexec=str(fake), env=_clean_env(),
                  failure_grace=0.5, stdout=out, stderr=err)
    assert code == 0, err.getvalue()
    assert out.getvalue() == b"finished\n" and err.getvalue() == b""


@pytest.mark.parametrize("grace", [0, -1.0, True, "10"])
def test_bad_grace(grace):
    with pytest.raises(InvalidArgumentError, match="failure_grace"):
        launch(["x"], num_workers=1, mpiexec="M", python="P", failure_grace=grace)


def test_leftover_shared_memory_files_are_removed_unless_mapped_or_older(tmp_path):
    import mmap

    old, left, live = (tmp_path / f"mpich_shm_{h}_0" for h in ("0a0a", "1b1b", "2c2c"))
    other = tmp_path / "mpich_shar_tmp123"   # not the per-job pattern: never touched
    old.write_bytes(b"x" * 10)
    before = launcher.shm_files(str(tmp_path))
    assert before == {old.name}
    for f in (left, live, other):
        f.write_bytes(b"y" * 4096)
    with open(live, "r+b") as fh, mmap.mmap(fh.fileno(), 4096) as mapping:   # a live job's file
        assert live.name in launcher.mapped_files(str(tmp_path))
        assert launcher.remove_leftover_shm(before, str(tmp_path)) == (1, 4096)
        assert mapping[:1] == b"y"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([old.name, live.name, other.name])
    assert launcher.remove_leftover_shm(before, str(tmp_path)) == (1, 4096)   # unmapped now: removed
    assert launcher.remove_leftover_shm(before, str(tmp_path)) == (0, 0)


LAUNCH_IN_CHILD = """\
import sys
from distnet.runner.launcher import launch
sys.exit(launch([sys.argv[2]], num_workers=2, entry=[sys.argv[1]], stop_grace=20))
"""

RANK_WAITS = """\
import sys, time
from mpi4py import MPI
print(f"ready {MPI.COMM_WORLD.rank}", flush=True)
time.sleep(120)
"""


@pytest.mark.mpi
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_is_forwarded_and_every_rank_stops(tmp_path, sig):
    _mpiexec_or_skip()
    script = tmp_path / "wait.py"
    script.write_text(RANK_WAITS)
    marker = f"--marker-{uuid.uuid4().hex}"
    env = _clean_env()
    child = subprocess.Popen([sys.executable, "-c", LAUNCH_IN_CHILD, str(script), marker],
                             env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             start_new_session=True)
    try:
        ready = b""
        deadline = time.monotonic() + 30
        while ready.count(b"ready") < 2 and time.monotonic() < deadline:
            line = child.stdout.readline()
            if not line:
                break
            ready += line
        assert ready.count(b"ready") == 2, ready
        start = time.monotonic()
        shm_before = launcher.shm_files()
        child.send_signal(sig)  # only the launcher: it must pass it on
        code = child.wait(timeout=30)
        assert time.monotonic() - start < 25
        assert code != 0
        time.sleep(0.5)
        assert _processes_with(marker) == []
        # the killed ranks' MPICH files in /dev/shm were removed by the launcher
        assert launcher.shm_files() - shm_before == set()
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
        for pid in _processes_with(marker):
            os.kill(pid, signal.SIGKILL)
