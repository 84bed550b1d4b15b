"""Launch and failure messages in distnet's words (distnet/runner/: hydra_output, launcher, restart, reachable).

The real runs start ``distnet train -n 2`` as a user would, kill a rank at a
random step and read what the console shows and what the run directory holds.
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from distnet.runner import exit_status
from distnet.runner.hydra_output import HydraLog, LineSorter, is_hydra_line
from distnet.runner.launcher import LaunchOutcome, LaunchSettings
from distnet.runner.restart import supervise

JOB = """\
name = "msgs"
seed = 3

[[model.layers]]
type = "flatten"

[[model.layers]]
type = "dense"
units = 32
activation = "relu"

[[model.layers]]
type = "dense"
units = 10

[optimizer]
name = "momentum"
learning_rate = 0.05
momentum = 0.9

[data]
name = "fashion_mnist"
train_samples = 1000
test_samples = 200

[train]
batch_size = 100
steps = 400
eval_every = 400
log_every = 1

[checkpoint]
every = 20
max_to_keep = 1
"""

BANNER = (b"\n===================================================================================\n"
          b"=   BAD TERMINATION OF ONE OF YOUR APPLICATION PROCESSES\n"
          b"=   PID 3569 RUNNING AT vm\n=   EXIT CODE: 9\n=   CLEANING UP REMAINING PROCESSES\n"
          b"=   YOU CAN IGNORE THE BELOW CLEANUP MESSAGES\n"
          b"===================================================================================\n"
          b"YOUR APPLICATION TERMINATED WITH THE EXIT STRING: Killed (signal 9)\n"
          b"This typically refers to a problem with your application.\n"
          b"Please see the FAQ page for debugging suggestions\n")


# -- sorting mpiexec's lines from the workers' ----------------------------------------------
def test_hydra_lines_go_to_the_log_and_the_workers_lines_stay():
    worker = b"step 12/400 | epoch 1 | loss 0.53\r\nstep 13/400 | epoch 1 | loss 0.52\n"
    hydra = b"[mpiexec@vm] Sending Ctrl-C to processes as requested\n[mpiexec@vm] Press Ctrl-C again to force abort\n"
    sorter = LineSorter()
    console, log = sorter.feed(worker + BANNER + hydra + b"distnet: job stopped\n")
    assert console == worker + b"\n" + b"distnet: job stopped\n"
    assert log == BANNER[1:] + hydra
    assert sorter.flush() == b""


def test_sorting_does_not_depend_on_how_the_stream_is_cut():
    stream = b"step 1\r" + BANNER + b"[proxy:0:0@vm] HYD_pmcd_pmip_control_cmd_cb\n[prox" + b"ied]\nok\n"
    whole = LineSorter().feed(stream)
    sorter, console, log = LineSorter(), b"", b""
    for i in range(len(stream)):
        c, h = sorter.feed(stream[i:i + 1])
        console, log = console + c, log + h
    assert (console, log) == whole
    assert console == b"step 1\r\n[proxied]\nok\n"   # "[prox" told apart once "ied" came


def test_a_line_start_that_cannot_tell_yet_is_held_then_a_progress_bar_passes_at_once():
    sorter = LineSorter()
    assert sorter.feed(b"[mpi") == (b"", b"")
    assert sorter.feed(b"x] not hydra's\n") == (b"[mpix] not hydra's\n", b"")
    assert sorter.feed(b"\rstep 3/9 |###") == (b"\rstep 3/9 |###", b"")
    assert sorter.feed(b"[mpiexec@") == (b"[mpiexec@", b"")   # the rest of the bar's line
    assert sorter.feed(b"\n[mpiexe") == (b"\n", b"")
    assert sorter.flush() == b"[mpiexe"   # a stream that ends mid-line keeps its bytes
    assert is_hydra_line(b"[proxy:0:1@node2] got", False) is True
    assert is_hydra_line(b"[pro", False) is None and is_hydra_line(b"[pro", True) is False
    assert is_hydra_line(b"distnet launch: x", False) is False


def test_the_log_is_made_at_its_first_line(tmp_path):
    log = HydraLog(tmp_path / "run" / "launch.log")
    assert log.write(b"") and not log.path.exists() and not log.used
    assert log.write(b"=   EXIT CODE: 9\n") and log.used
    log.close()
    text = log.path.read_text()
    assert text.startswith("--- distnet launch, ") and text.endswith("=   EXIT CODE: 9\n")
    blocked = tmp_path / "file"
    blocked.write_text("")
    assert not HydraLog(blocked / "launch.log").write(b"x\n")   # the caller shows the lines then


# -- restart messages ----------------------------------------------------------------------
def test_with_restarts_the_launcher_leaves_the_last_word_to_the_restart_decision(tmp_path):
    seen, said = [], []

    def attempt(args, settings):
        seen.append(settings.announce_failure)
        with open(tmp_path / "metrics.jsonl", "a") as f:
            f.write(f'{{"kind":"step","step":{10 * len(seen)},"loss":1.0}}\n')
        if len(seen) == 1:
            return LaunchOutcome(code=1, raw=9, failure="rank 1 (pid 5 on vm) was killed by SIGKILL",
                                 hydra_log="runs/x/launch.log")
        return LaunchOutcome(code=2, raw=2, failure="rank 0 (pid 6 on vm) exited with status 2")

    code = supervise(["train", "job.toml"], LaunchSettings(num_workers=2), max_restarts=2, run_dir=tmp_path,
                     launch=attempt, say=said.append)
    assert code == exit_status.BAD_INPUT and seen == [False, False]
    assert said == ["distnet launch: rank 1 (pid 5 on vm) was killed by SIGKILL; restarting (attempt 2 of 3) "
                    "from step 0 (no checkpoint yet) (mpiexec's own messages: runs/x/launch.log)",
                    "distnet launch: rank 0 (pid 6 on vm) exited with status 2; exit status 2 (bad input)"]
    record = [json.loads(line) for line in open(tmp_path / "metrics.jsonl") if '"restart"' in line]
    assert [(r["attempt"], r["of"]) for r in record] == [(2, 3)]
    # Without restarts the launcher says it itself, as before.
    seen.clear()
    supervise(["train", "job.toml"], LaunchSettings(num_workers=2), max_restarts=0, run_dir=tmp_path,
              launch=attempt, say=said.append)
    assert seen == [True]


# -- real runs -----------------------------------------------------------------------------
def _ranks(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            for tid in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{tid}/children") as f:
                    todo += [int(c) for c in f.read().split()]
            with open(f"/proc/{p}/environ", "rb") as f:
                if any(kv.startswith(b"PMI_RANK=") for kv in f.read().split(b"\0")):
                    found.append(p)
        except OSError:
            continue
    return found


def _steps(run_dir: Path) -> int:
    try:
        with open(run_dir / "metrics.jsonl") as f:
            lines = [json.loads(line) for line in f]
    except (OSError, ValueError):
        return 0
    restarts = [i for i, r in enumerate(lines) if r.get("kind") == "restart"]
    return sum(r.get("kind") == "step" for r in lines[restarts[-1] + 1 if restarts else 0:])


def _train_and_kill_a_rank(tmp_path: Path, seed: int, *extra: str, timeout: float = 150.0):
    job = tmp_path / "job.toml"
    job.write_text(JOB)
    run_dir = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "distnet", "train", str(job), "-n", "2", "--run-dir",
                             str(run_dir), "--progress", "plain", *extra], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    rng = random.Random(seed)
    at = 25 + rng.randrange(20)   # after the first checkpoint (every 20)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            ranks = _ranks(proc.pid)
            if len(ranks) == 2 and _steps(run_dir) >= at:
                os.kill(rng.choice(ranks), signal.SIGKILL)
                break
            time.sleep(0.02)
        else:
            pytest.fail(f"the job never reached step {at} with two ranks")
        out, err = proc.communicate(timeout=timeout)
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace"), run_dir


MPI_WORDS = ("BAD TERMINATION", "YOU CAN IGNORE THE BELOW CLEANUP MESSAGES", "EXIT STRING", "[mpiexec@",
             "[proxy:", "Please see the FAQ page")


@pytest.mark.mpi
@pytest.mark.slow
def test_a_restart_is_told_once_in_distnet_words_as_its_record_says(tmp_path):
    code, out, err, run_dir = _train_and_kill_a_rank(tmp_path, 11, "--max-restarts", "2")
    console = out + err
    assert code == 0, console[-3000:]
    assert not [w for w in MPI_WORDS if w in console], console[-3000:]
    # One line says what failed and that the job restarts; no "exit status" line before it.
    lines = [line for line in err.splitlines() if line.startswith("distnet launch:")]
    assert len(lines) == 1, err[-3000:]
    assert "was killed by SIGKILL; restarting (attempt 2 of 3) from ckpt-" in lines[0], lines
    assert "exit status" not in err and "training failed" not in err, err[-3000:]
    log = run_dir / "launch.log"
    assert lines[0].endswith(f"(mpiexec's own messages: {log})"), lines
    assert "BAD TERMINATION" in log.read_text()
    records = [json.loads(line) for line in open(run_dir / "metrics.jsonl")]
    assert [(r["attempt"], r["of"]) for r in records if r["kind"] == "restart"] == [(2, 3)]


@pytest.mark.mpi
@pytest.mark.slow
def test_verbose_launch_shows_mpiexecs_lines_and_the_failure_line_ends_the_run(tmp_path):
    code, out, err, run_dir = _train_and_kill_a_rank(tmp_path, 12, "--verbose-launch")
    assert code == exit_status.FAILED
    assert "BAD TERMINATION" in out + err
    assert err.rstrip().splitlines()[-1].endswith("was killed by SIGKILL; exit status 1 (training failed)"), err
    assert not (run_dir / "launch.log").exists()


# -- unreachable hosts named before launching ------------------------------------------------
def test_this_machine_is_never_asked(tmp_path):
    import socket

    from distnet.runner.reachable import check_hosts_reachable, is_local

    assert is_local("localhost") and is_local("127.0.0.1") and is_local("::1") and is_local(socket.gethostname())
    assert not is_local("nonexistent.invalid")
    # ssh that cannot even run: not called for this machine's names
    check_hosts_reachable(["localhost", "127.0.0.1", socket.gethostname()], ssh=(str(tmp_path / "no-ssh"),))


def test_a_host_that_does_not_resolve_is_named_with_what_to_do():
    from distnet.runner.reachable import HostUnreachableError, check_hosts_reachable

    with pytest.raises(HostUnreachableError) as info:
        check_hosts_reachable(["localhost", "nonexistent.invalid"], env={}, source="hostfile hosts.txt")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("hostfile hosts.txt: ssh cannot reach nonexistent.invalid (ssh: Could not resolve "
                              "hostname nonexistent.invalid"), message
    assert "`ssh -o BatchMode=yes nonexistent.invalid true`" in message and "localhost" not in message


def test_a_closed_port_is_named_and_hydra_launchers_other_than_ssh_are_left_alone(tmp_path):
    from distnet.runner.reachable import HostUnreachableError, check_hosts_reachable

    config = tmp_path / "ssh_config"   # "closedhost" is this machine on a port nobody listens on
    config.write_text("Host closedhost\n    HostName 127.0.0.1\n    Port 1\n")
    with pytest.raises(HostUnreachableError, match=r"cannot reach closedhost \(.*Connection refused\)"):
        check_hosts_reachable(["closedhost"], env={}, ssh=("ssh", "-F", str(config)))
    check_hosts_reachable(["closedhost"], env={"HYDRA_LAUNCHER": "slurm"}, ssh=("ssh", "-F", str(config)))


def test_the_remote_start_agent_is_asked_instead_of_ssh(tmp_path):
    from distnet.runner.reachable import HostUnreachableError, check_hosts_reachable

    agent = tmp_path / "agent"
    agent.write_text("#!/bin/sh\ncase \"$1\" in up) exec \"$2\" ;; *) echo \"agent: unknown host '$1'\" >&2; "
                     "exit 255 ;; esac\n")
    agent.chmod(0o755)
    check_hosts_reachable(["up"], env={"HYDRA_LAUNCHER_EXEC": str(agent)})
    with pytest.raises(HostUnreachableError) as info:
        check_hosts_reachable(["up", "down"], launcher_exec=str(agent), env={})
    assert f"the agent '{agent}' cannot reach down (agent: unknown host 'down')" in str(info.value)
    assert "up (" not in str(info.value)


@pytest.mark.parametrize("check", [False, True])
def test_train_with_an_unreachable_host_exits_2_naming_it_before_anything_starts(tmp_path, check):
    job = tmp_path / "job.toml"
    job.write_text(JOB)
    hosts = tmp_path / "hosts"
    hosts.write_text("localhost:1\nnonexistent.invalid:1\n")
    run_dir = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "distnet", "train", str(job), "--hostfile", str(hosts),
                           "--run-dir", str(run_dir), *(["--check"] if check else [])],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == exit_status.BAD_INPUT, done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"distnet: error: hostfile {hosts}: ssh cannot reach nonexistent.invalid (ssh: Could not "
                           f"resolve hostname nonexistent.invalid"), line
    assert line.endswith("nothing was started. Check that `ssh -o BatchMode=yes nonexistent.invalid true` works "
                         "from here without a password, or remove the host from the hostfile"), line
    assert not run_dir.exists()
