"""Stopping on signals, restarts and run directories (distnet/training/stop.py, distnet/runner/restart.py).

The multi-worker tests run real jobs (``distnet train -n N`` through the
launcher, or ``mpiexec -n N`` directly) and deliver a signal at a random
moment of training; benchmarks/stop_signals.py repeats the same runs many
times.  Every stopped job must exit 130 / 143, leave one checkpoint at the
step every rank stopped after (its data position the next unseen sample),
an ``end`` record and no process; and ``--resume`` must give bitwise the
per-step losses and the final weights of an uninterrupted run.
"""
from __future__ import annotations

import importlib
import os
import random
import re
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import pytest

from stop_util import check_stopped, descendants, newest_checkpoint, ranks_of, records, run_and_signal, \
    step_losses

import distnet
from distnet.runner import exit_status
from distnet.jobs.cli import main
from distnet.errors import TrainingStopped
from distnet.training.stop import TERM_WEIGHT, decode, encode

STEPS = 1500
BATCH = 100
SAMPLES = 1000
JOB = f"""\
name = "stoptest"
seed = 3

[[model.layers]]
type = "flatten"

[[model.layers]]
type = "dense"
units = 128
activation = "relu"

[[model.layers]]
type = "dropout"
rate = 0.2

[[model.layers]]
type = "dense"
units = 10

[optimizer]
name = "momentum"
learning_rate = 0.05
momentum = 0.9

[ema]
decay = 0.99

[data]
name = "fashion_mnist"
train_samples = {SAMPLES}
test_samples = 200

[train]
batch_size = {BATCH}
steps = {STEPS}
eval_every = 500
log_every = 100

[checkpoint]
every = 100
max_to_keep = 2

[dist]
stall_timeout = 30
"""


@pytest.fixture(scope="module")
def job(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("job") / "stoptest.toml"
    path.write_text(JOB)
    return path


@pytest.fixture(scope="module")
def reference(job, tmp_path_factory):
    """Uninterrupted runs, one per world size, made when first asked for."""
    runs: dict = {}

    def get(workers: int, steps: int = STEPS):
        if (workers, steps) not in runs:
            run_dir = tmp_path_factory.mktemp(f"ref{workers}") / "run"
            argv = [sys.executable, "-m", "distnet", "train", str(job), "--run-dir", str(run_dir),
                    "--progress", "none", "--set", f"train.steps={steps}"] + \
                (["-n", str(workers)] if workers > 1 else [])
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=300)
            assert proc.returncode == 0, proc.stderr
            path, state = newest_checkpoint(run_dir)
            assert state.step == steps
            runs[workers, steps] = (step_losses(run_dir), state)
        return runs[workers, steps]

    return get


def assert_same_state(a, b) -> None:
    """Bitwise the same weights, EMA shadows and optimizer slots."""
    for table in ("params", "ema"):
        x, y = getattr(a, table), getattr(b, table)
        assert sorted(x) == sorted(y)
        for name in x:
            assert np.array_equal(x[name], y[name]), f"{table}/{name} differs"
    for slot, values in a.optimizer["slots"].items():
        for name, arr in values.items():
            assert np.array_equal(arr, b.optimizer["slots"][slot][name]), f"slot {slot}/{name} differs"


def resume_and_compare(job, run_dir, workers, reference, steps: int = STEPS) -> None:
    argv = [sys.executable, "-m", "distnet", "train", str(job), "--run-dir", str(run_dir), "--progress", "plain",
            "--resume", "--set", f"train.steps={steps}"] + (["-n", str(workers)] if workers > 1 else [])
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "distnet: resuming from" in proc.stdout and "ckpt-" in proc.stdout, proc.stdout
    losses, final = reference(workers, steps)
    got = step_losses(run_dir)
    assert sorted(got) == list(range(1, steps + 1))
    diff = [s for s in got if got[s] != losses[s]]
    assert not diff, f"per-step losses differ from the uninterrupted run at steps {diff[:5]}"
    assert_same_state(newest_checkpoint(run_dir)[1], final)


# -- a signal at a random moment, the stop, and an exact resume -----------------------
CASES = [("launcher", kind, n) for kind in ("launcher-int", "launcher-term", "rank-term", "group-int")
         for n in (2, 3)]
CASES += [("launcher", "all-term", 2), ("mpiexec", "rank-term", 3), ("mpiexec", "launcher-term", 2)]


@pytest.mark.mpi
@pytest.mark.slow
@pytest.mark.parametrize("via, kind, workers", CASES)
def test_a_signal_stops_every_rank_after_one_step_and_resume_is_exact(job, reference, tmp_path, via, kind,
                                                                       workers):
    rng = random.Random(f"{via}{kind}{workers}{time.time()}")
    run_dir = tmp_path / "run"
    run = run_and_signal(kind, job, run_dir, workers, rng, via=via)
    outcome, detail = check_stopped(run, run_dir, SAMPLES, BATCH)
    assert outcome == "ok", f"{outcome}: {detail}\n{run.stderr[-2000:]}"
    # The steps taken before the stop are the uninterrupted run's, bit for bit.
    losses, _ = reference(workers)
    assert all(loss == losses[s] for s, loss in step_losses(run_dir).items())
    resume_and_compare(job, run_dir, workers, reference)


@pytest.mark.slow
def test_one_process_stops_after_a_step_and_resume_is_exact(job, reference, tmp_path):
    kind = "launcher-term"   # SIGINT in one process: the in-process tests below
    run_dir = tmp_path / "run"
    steps = 600   # one process: no forwarding delay, and slower steps
    run = run_and_signal(kind, job, run_dir, 1, random.Random(kind), "--set", f"train.steps={steps}", via="single")
    outcome, detail = check_stopped(run, run_dir, SAMPLES, BATCH)
    assert outcome == "ok", f"{outcome}: {detail}\n{run.stderr[-2000:]}"
    assert "distnet: interrupted: stopped by" in run.stderr
    resume_and_compare(job, run_dir, 1, reference, steps)


@pytest.mark.mpi
def test_a_signal_during_start_up_exits_cleanly(job, tmp_path):
    run_dir = tmp_path / "run"
    run = run_and_signal("startup-int", job, run_dir, 2, random.Random(0), min_delay=0.2, max_delay=0.4)
    outcome, detail = check_stopped(run, run_dir, SAMPLES, BATCH)
    assert outcome == "ok", f"{outcome}: {detail}\n{run.stderr[-2000:]}"


@pytest.mark.parametrize("via", ["single", "launcher"])
def test_a_signal_while_the_job_starts_exits_cleanly(job, tmp_path, via):
    """SIGINT at random moments of the start-up — one process's imports of numpy and
    MPI, the job, the data, its first steps; or the launcher's own start-up and
    mpiexec's — 130 every time, never a traceback.  The first 0.12 s are Python's
    own start-up, before any of distnet's code runs."""
    rng = random.Random(f"startup{via}{time.time()}")
    for k in range(8):
        run_dir = tmp_path / f"run{k}"
        run = run_and_signal("startup-int", job, run_dir, 1 if via == "single" else 2, rng, via=via,
                             min_delay=0.12, max_delay=0.6, early=True)
        outcome, detail = check_stopped(run, run_dir, SAMPLES, BATCH)
        assert outcome == "ok", f"run {k}: {outcome}: {detail}\n{run.stderr[-2000:]}"


@pytest.mark.parametrize("then", ["begin_training", "end_startup"])
def test_a_start_up_signal_whose_exception_python_could_not_raise_still_ends_the_process(then, capsys):
    """Python may run a handler inside a finalizer or a weakref callback (the import
    system's, while numpy loads): its exception is then only printed.  The signal
    stays recorded; nothing is printed; training (or the launcher) does not start."""
    from distnet.training.stop import StopSignals

    before = sys.unraisablehook
    with StopSignals() as signals:
        class Finalized:
            def __del__(self):
                signals._handle(signal.SIGINT, None)   # raises TrainingStopped where it cannot propagate

        Finalized()
        assert signals.signum == signal.SIGINT
        with pytest.raises(TrainingStopped) as stopped:
            getattr(signals, then)()
    assert stopped.value.code == 130 and stopped.value.aborted and "during start-up" in stopped.value.reason
    assert capsys.readouterr().err == ""
    assert sys.unraisablehook is before


def test_a_start_up_abort_decided_by_the_reading_thread_keeps_the_first_step_from_running():
    """With several ranks a thread reads the signals; when it has decided to abort a
    start-up, the main thread arriving at training must not take (and log) a step first."""
    from distnet.training.stop import StopSignals

    signals = StopSignals()
    assert signals._note(signal.SIGINT)[1].endswith("during start-up (before the first step: nothing to save)")
    with pytest.raises(TrainingStopped) as stopped:
        signals.begin_training()
    assert stopped.value.code == 130 and stopped.value.aborted
    # A signal that arrives once training has begun asks for a stop after the step instead.
    later = StopSignals(say=lambda message: None)
    later.begin_training()
    assert later._note(signal.SIGINT) is None and later.signum == signal.SIGINT
    later.uninstall()


def test_an_unraisable_error_of_another_kind_is_still_reported():
    from distnet.training.stop import StopSignals

    seen = []
    before, sys.unraisablehook = sys.unraisablehook, seen.append
    try:
        with StopSignals():
            class Finalized:
                def __del__(self):
                    raise ValueError("not ours")

            Finalized()
    finally:
        sys.unraisablehook = before
    assert [type(u.exc_value) for u in seen] == [ValueError]


def test_a_start_up_signal_during_an_import_ends_the_process_only_after_the_import(tmp_path, monkeypatch):
    """An exception raised into an import leaves the module half loaded (numpy's C
    extension then cannot be loaded again): the end waits for the import to finish."""
    from distnet.training.stop import StopSignals

    name = f"signalled_while_imported_{os.getpid()}"
    (tmp_path / f"{name}.py").write_text("import os, signal\nos.kill(os.getpid(), signal.SIGINT)\n"
                                        "for _ in range(200000):\n    pass\nLOADED = True\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        with StopSignals() as signals:
            with pytest.raises(TrainingStopped) as stopped:
                importlib.import_module(name)
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:   # the held end arrives within milliseconds
                    time.sleep(0.001)
            assert signals.signum == signal.SIGINT
        assert stopped.value.code == 130 and stopped.value.aborted and "during start-up" in stopped.value.reason
        assert sys.modules[name].LOADED    # the import ran to its end
        assert stopped.value.__traceback__.tb_next is not None   # raised here, after the import
        assert all(f.f_code.co_filename != str(tmp_path / f"{name}.py")
                   for f, _ in traceback.walk_tb(stopped.value.__traceback__))
    finally:
        sys.modules.pop(name, None)


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_before_the_command_has_its_handlers_ends_it_with_its_status_and_one_line(sig, code):
    """The entry's first statement: a signal while distnet's modules are imported."""
    program = ("from distnet.runner.startup_signals import end_at_once_on_signals\n"
               "end_at_once_on_signals()\n"
               f"import os, time\nos.kill(os.getpid(), {int(sig)})\ntime.sleep(30)\n")
    proc = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60)
    assert proc.returncode == code
    assert proc.stderr.splitlines() == [f"distnet: {signal.Signals(sig).name} during start-up (before the first "
                                        "step: nothing to save): stopped at once (no checkpoint)"]


@pytest.mark.mpi
def test_a_killed_launcher_takes_its_job_with_it(job, tmp_path):
    run_dir = tmp_path / "run"
    run = run_and_signal("launcher-kill", job, run_dir, 2, random.Random(1), "--set", "train.steps=100000")
    outcome, detail = check_stopped(run, run_dir, SAMPLES, BATCH)
    assert outcome == "ok", f"{outcome}: {detail}\n{run.stderr[-2000:]}"
    # Nothing writes into the run directory any more.
    before = (run_dir / "metrics.jsonl").stat().st_size
    time.sleep(1.0)
    assert (run_dir / "metrics.jsonl").stat().st_size == before


# -- supervised restarts ---------------------------------------------------------------
def _start(job, run_dir, *extra) -> subprocess.Popen:
    argv = [sys.executable, "-m", "distnet", "train", str(job), "-n", "2", "--run-dir", str(run_dir),
            "--progress", "none", *extra]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def _kill_a_rank_after(proc, run_dir, step: int, rng, timeout: float = 60.0) -> None:
    """SIGKILL one rank once the current attempt has logged ``step`` (its ranks are the live ones)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        recs = records(run_dir)
        restarts = [i for i, r in enumerate(recs) if r.get("kind") == "restart"]
        since = recs[restarts[-1] + 1:] if restarts else recs
        ranks = ranks_of(descendants(proc.pid))
        if len(ranks) == 2 and any(r.get("kind") == "step" and r["step"] >= step for r in since):
            os.kill(rng.choice(ranks), signal.SIGKILL)
            return
        time.sleep(0.01)
    pytest.fail(f"the job never reached step {step} with two ranks")


def _finish(proc, timeout: float = 120.0) -> tuple[int, str]:
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        _, err = proc.communicate()
        pytest.fail(f"the job did not finish within {timeout} s\n{err[-2000:]}")
    return proc.returncode, err


@pytest.mark.mpi
@pytest.mark.slow
def test_a_killed_rank_is_restarted_from_the_checkpoint_and_ends_bitwise_equal(job, reference, tmp_path):
    run_dir = tmp_path / "run"
    rng = random.Random(7)
    proc = _start(job, run_dir, "--max-restarts", "2")
    try:
        _kill_a_rank_after(proc, run_dir, 100 + rng.randrange(150), rng)
    finally:
        code, err = _finish(proc)
    assert code == 0, err[-3000:]
    assert "was killed by SIGKILL; restarting (attempt 2 of 3) from ckpt-" in err, err[-3000:]
    restarts = [r for r in records(run_dir) if r.get("kind") == "restart"]
    assert len(restarts) == 1 and "killed by SIGKILL" in restarts[0]["after"]
    losses, final = reference(2)
    got = step_losses(run_dir)
    assert sorted(got) == list(range(1, STEPS + 1)) and all(got[s] == losses[s] for s in got)
    assert_same_state(newest_checkpoint(run_dir)[1], final)
    # The restarted job trained the steps after the checkpoint again: each is logged once.
    recs = records(run_dir)
    assert [r["step"] for r in recs if r.get("kind") == "step"] == list(range(1, STEPS + 1))
    evals = [r["step"] for r in recs if r.get("kind") == "eval"]
    assert evals == sorted(set(evals)) and evals[-1] == STEPS


@pytest.mark.mpi
@pytest.mark.slow
def test_the_restart_budget_runs_out(job, tmp_path):
    run_dir = tmp_path / "run"
    rng = random.Random(8)
    proc = _start(job, run_dir, "--max-restarts", "1", "--set", "train.steps=100000")
    try:
        _kill_a_rank_after(proc, run_dir, 120, rng)
        _kill_a_rank_after(proc, run_dir, 230, rng)   # in the restarted job (it resumes at 100 or 200)
    finally:
        code, err = _finish(proc)
    assert code == exit_status.FAILED
    assert "restarting (attempt 2 of 2)" in err
    assert "the restart budget (1) is used up: giving up; exit status 1 (training failed)" in err, err[-3000:]


def test_a_failure_before_the_first_step_is_not_restarted(tmp_path, monkeypatch):
    from distnet.runner.launcher import LaunchOutcome
    from distnet.runner.restart import supervise

    calls, said = [], []

    def fail(args, settings):
        calls.append(args)
        return LaunchOutcome(code=1, raw=9, failure="rank 1 (pid 5 on here) was killed by SIGKILL")

    code = supervise(["train", "job.toml"], max_restarts=3, run_dir=tmp_path, launch=fail, say=said.append)
    assert code == 1 and len(calls) == 1
    assert "before completing a step" in said[0]


def test_restarts_leave_out_a_host_that_keeps_failing(tmp_path):
    from distnet.runner.launcher import LaunchOutcome, LaunchSettings
    from distnet.runner.restart import supervise

    hosts = tmp_path / "hosts"
    hosts.write_text("a:2\nb:2\nc:1\n")
    calls, said, step = [], [], [0]

    def attempt(args, settings):
        calls.append((list(args), settings.hostfile, Path(settings.hostfile).read_text()))
        assert (settings.entry, settings.stop_grace) == (("-c", "x"), 30.0 + 15.0)   # the same settings
        step[0] += 10
        with open(tmp_path / "metrics.jsonl", "a") as f:   # progress in every attempt
            f.write(f'{{"kind":"step","step":{step[0]},"loss":1.0}}\n')
        if len(calls) <= 2:
            return LaunchOutcome(code=1, raw=9, failure="rank 2 (pid 5 on b) was killed by SIGKILL",
                                 failed_host="b")
        return LaunchOutcome(code=0, raw=0)

    code = supervise(["train", "job.toml"], LaunchSettings(hostfile=hosts, entry=("-c", "x")), first_args=["--overwrite"], max_restarts=3,
                     min_workers=3, run_dir=tmp_path, launch=attempt, say=said.append)
    assert code == 0 and len(calls) == 3
    assert calls[0][0][-1] == "--overwrite" and calls[1][0][-1] == calls[2][0][-1] == "--resume-if-any"
    assert "b:" in calls[1][2] and calls[2][2] == "a:2\nc:1\n"   # left out after its second failure
    assert "without host b" in said[1]
    restarts = [r for r in records(tmp_path) if r.get("kind") == "restart"]
    assert [r["left_out_host"] for r in restarts] == [None, "b"]


# -- Trainer.fit() from Python ----------------------------------------------------------
def _tiny_trainer(tmp_path, callbacks=(), steps=40):
    from distnet.data import load_dataset
    from distnet.jobs.job import SubsetDataset

    train, _ = load_dataset("fashion_mnist")
    model = distnet.Sequential([distnet.layers.Flatten(), distnet.layers.Dense(10)], seed=0)
    return distnet.Trainer(model, "sparse_softmax_cross_entropy", distnet.optimizers.Momentum(0.05, 0.9),
                           SubsetDataset(train, 300), global_batch_size=50, steps=steps,
                           checkpoint_dir=str(tmp_path / "ckpt"), callbacks=list(callbacks),
                           ema=distnet.ExponentialMovingAverage(0.9))


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_fit_stops_after_the_step_that_carries_the_signal(tmp_path, sig):
    def send(trainer, record):
        if record["step"] == 5:
            os.kill(os.getpid(), sig)   # during step 5's callbacks: step 6 carries it

    previous = signal.getsignal(sig)
    trainer = _tiny_trainer(tmp_path, [send])
    with pytest.raises(TrainingStopped) as info:
        trainer.fit()
    stop = info.value
    assert (stop.code, stop.signal, stop.step, stop.aborted) == (128 + sig, sig, 6, False)
    from distnet.checkpoint import load

    state = load(stop.checkpoint)
    assert (state.step, state.epoch, state.position) == (6, 1, 0)   # 300 samples, 50 a step: epoch 1 begins
    assert signal.getsignal(sig) is previous   # fit() gave the handlers back


def test_request_stop_from_a_callback(tmp_path):
    trainer = _tiny_trainer(tmp_path, [lambda t, r: r["step"] == 7 and t.request_stop()])
    with pytest.raises(TrainingStopped) as info:
        trainer.fit()
    assert (info.value.code, info.value.step) == (130, 8)
    with pytest.raises(distnet.InvalidArgumentError, match="running fit"):
        trainer.request_stop()


def test_a_second_signal_aborts_at_once(tmp_path):
    from distnet.training.stop import DUPLICATE_WINDOW

    def send(trainer, record):
        if record["step"] == 2:
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)   # the same request delivered twice: no abort
            time.sleep(DUPLICATE_WINDOW + 0.1)
            os.kill(os.getpid(), signal.SIGINT)   # a second Ctrl-C, before step 3 could end the stop

    trainer = _tiny_trainer(tmp_path, [send])
    with pytest.raises(TrainingStopped) as info:
        trainer.fit()
    assert info.value.aborted and info.value.code == 130 and "SIGINT again" in info.value.reason
    assert not (tmp_path / "ckpt").exists() or not list((tmp_path / "ckpt").glob("ckpt-*.h5"))


def test_the_grace_period_aborts_a_stop_that_takes_too_long(tmp_path):
    def send(trainer, record):
        if record["step"] == 2:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1.5)   # a step far longer than the grace

    trainer = _tiny_trainer(tmp_path, [send])
    with pytest.raises(TrainingStopped) as info:
        trainer.fit(stop_grace=0.5)
    assert info.value.aborted and info.value.code == 143 and "within 0.5 s" in info.value.reason


@pytest.mark.mpi
@pytest.mark.parametrize("workers", [2, 3])
def test_fit_under_mpiexec_stops_every_rank_at_one_step(tmp_path, workers):
    """SIGTERM to the last rank only, from its own callback: every rank stops after the next step."""
    from mpi_util import run_mpi

    run = run_mpi("stop_fit.py", workers, str(tmp_path / "ckpt"), timeout=120)
    assert run.returncode == 143, run.describe()
    assert run.values("stopped") == ["step 6 code 143"] * workers, run.describe()
    from distnet.checkpoint import load

    state = load(tmp_path / "ckpt" / "ckpt-00000006.h5")
    assert (state.step, state.epoch, state.position) == (6, 1, 0)


# -- the stop scalar, statuses, run directories, bad checkpoints --------------------------
def test_stop_scalar_decodes_to_the_agreed_signal():
    assert encode(None) == 0 and decode(0.0) is None
    assert decode(encode(signal.SIGINT) * 3) == signal.SIGINT
    assert decode(encode(signal.SIGTERM) + 2 * encode(signal.SIGINT)) == signal.SIGTERM
    # 4095 ranks' SIGTERMs and SIGINTs stay exact in float32.
    total = np.float32(4095 * TERM_WEIGHT) + np.float32(4095)
    assert float(total) == 4095 * TERM_WEIGHT + 4095 and decode(float(total)) == signal.SIGTERM


def test_exit_status_table():
    assert (exit_status.OK, exit_status.FAILED, exit_status.BAD_INPUT, exit_status.STALLED,
            exit_status.SIGINT, exit_status.SIGTERM) == (0, 1, 2, 3, 130, 143)
    assert [exit_status.from_mpiexec(c) for c in (0, 1, 2, 3, 130, 143, 9, 15, 139, 255)] == \
        [0, 1, 2, 3, 130, 143, 1, 1, 1, 1]
    # One table, the same in README.md and the docs, with every status of the code's.
    root = Path(__file__).parent.parent
    tables = {}
    for doc in ("README.md", "docs/jobs.md", "docs/stopping.md"):
        lines = (root / doc).read_text().splitlines()
        tables[doc] = [line for line in lines if re.match(r"^\| \d+ \| ", line)]
    assert tables["README.md"] == tables["docs/jobs.md"] == tables["docs/stopping.md"]
    assert [int(line.split("|")[1]) for line in tables["README.md"]] == sorted(exit_status.MEANING)


TINY = """\
name = "tiny"
seed = 1
[[model.layers]]
type = "flatten"
[[model.layers]]
type = "dense"
units = 10
[optimizer]
name = "adam"
learning_rate = 0.01
[data]
name = "fashion_mnist"
train_samples = 200
test_samples = 100
[train]
batch_size = 50
steps = 4
log_every = 1
"""


def _errors(err: str) -> list[str]:
    """stderr's lines but the machine's advice (a BLAS warning some machines print)."""
    return [line for line in err.strip().splitlines() if not line.startswith("distnet: warning:")]


def _train(capsys, job, run_dir, *extra):
    code = main(["train", str(job), "--run-dir", str(run_dir), "--progress", "plain", *extra])
    out, err = capsys.readouterr()
    return code, out, err


def test_run_directory_guards(capsys, tmp_path):
    job = tmp_path / "job.toml"
    job.write_text(TINY)
    run_dir = tmp_path / "run"
    code, out, err = _train(capsys, job, run_dir, "--resume")
    assert code == 2 and "--resume: no checkpoint in" in err and len(_errors(err)) == 1
    code, out, err = _train(capsys, job, run_dir, "--resume-if-any")
    assert code == 0 and "no checkpoint in" in out and "starting from step 0" in out
    code, out, err = _train(capsys, job, run_dir)
    assert code == 2 and "holds checkpoints of an earlier run (newest ckpt-00000004.h5)" in err
    assert "--resume continues that run, --overwrite starts it again" in err
    code, out, err = _train(capsys, job, run_dir, "--resume", "--set", "train.steps=6")
    assert code == 0 and "resuming from" in out and "ckpt-00000004.h5: step 4, epoch 1" in out
    code, out, err = _train(capsys, job, run_dir, "--overwrite")
    assert code == 0, err
    steps = [r["step"] for r in records(run_dir) if r["kind"] == "step"]
    assert steps == [1, 2, 3, 4]   # the earlier run's metrics are gone
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["ckpt-00000004.h5"]
    code, out, err = _train(capsys, job, run_dir, "--overwrite", "--resume")
    assert code == 2 and "not allowed with argument" in err


def test_a_global_batch_larger_than_the_dataset_is_an_error(capsys, tmp_path):
    job = tmp_path / "job.toml"
    job.write_text(TINY)
    code, out, err = _train(capsys, job, tmp_path / "run", "--set", "train.batch_size=500")
    assert code == 2
    assert "train.batch_size: Expect: at most the 200 training samples Actual: 500" in err   # the job's key


def _nan_checkpoint(tmp_path) -> Path:
    from distnet.checkpoint import CheckpointState, write_checkpoint
    from distnet.jobs.config import parse_job

    cfg = parse_job(TINY)
    kernel = np.zeros((784, 10), np.float32)
    kernel[3, 4] = np.nan
    state = CheckpointState(params={"dense/kernel": kernel, "dense/bias": np.zeros(10, np.float32)},
                            ema={"dense/kernel": np.zeros((784, 10), np.float32)},
                            optimizer={"name": "Adam", "iterations": 3,
                                       "slots": {"m": {"dense/kernel": np.full((784, 10), np.inf, np.float32)}},
                                       "hyper": {}},
                            step=3, config_text=cfg.to_toml())
    path = tmp_path / "checkpoints" / "ckpt-00000003.h5"
    path.parent.mkdir(parents=True)
    write_checkpoint(path, state)
    return path


def test_a_checkpoint_holding_nan_is_refused_by_name(capsys, tmp_path):
    path = _nan_checkpoint(tmp_path)
    for command in (["eval", str(path)], ["inspect", str(path)]):
        code = main(command)
        _, err = capsys.readouterr()
        assert code == 2
        assert "holds NaN/inf in params/dense/kernel (1 of 7840 values), optimizer/m/dense/kernel " \
               "(7840 of 7840 values)" in err and "--allow-nonfinite" in err
        assert len(_errors(err)) == 1
    code = main(["inspect", str(path), "--allow-nonfinite"])
    out, _ = capsys.readouterr()
    assert code == 0 and "step            3" in out
    # Resuming passes over it to an older good checkpoint; with none, it says why.
    from distnet.checkpoint import CheckpointManager, CheckpointWarning

    with pytest.warns(CheckpointWarning, match="holds NaN/inf"), \
            pytest.raises(distnet.CheckpointError, match="no usable checkpoint.*holds NaN/inf"):
        CheckpointManager(path.parent, is_writer=False).latest_good()


def test_errors_of_several_lines_print_as_one(capsys, monkeypatch):
    import distnet.jobs.job

    def fail(*args, **kwargs):
        raise distnet.CheckpointError("checkpoint x.h5 does not match the model:\n  - missing a\n  - extra b")

    monkeypatch.setattr(distnet.jobs.job, "run_train", fail)
    code = main(["train", "--set", "train.steps=1", "--run-dir", "unused"])
    _, err = capsys.readouterr()
    assert code == 2
    assert err.strip().splitlines()[-1] == \
        "distnet: error: checkpoint x.h5 does not match the model:; - missing a; - extra b"


def _step_epochs(recs) -> dict[int, int]:
    return {r["step"]: r["epoch"] for r in recs if r.get("kind") == "step"}


def test_resuming_at_the_last_step_says_there_is_nothing_to_train(capsys, tmp_path):
    job = tmp_path / "job.toml"
    job.write_text(TINY + "eval_every = 2\n")
    run_dir = tmp_path / "run"
    code, out, err = _train(capsys, job, run_dir)
    assert code == 0, err
    before = records(run_dir)
    ckpt = run_dir / "checkpoints" / "ckpt-00000004.h5"
    stamp = ckpt.stat().st_mtime_ns
    for extra in ((), ("--set", "train.steps=3")):    # at the target, and past it
        code, out, err = _train(capsys, job, run_dir, "--resume", *extra)
        target = 3 if extra else 4
        said = (f"distnet: nothing to train: the checkpoint is at step 4, the target is {target}; "
                "raise train.steps to train more")
        assert code == 0 and said in out, out + err
        assert "nothing to train" in out.split(said)[1] and "completed" not in out   # the summary's status
        new = records(run_dir)[len(before):]
        assert [r["kind"] for r in new] == ["start", "resume", "end"]      # no evaluation, no step
        assert new[-1]["status"] == "nothing_to_train" and new[-1]["reason"] == said[len("distnet: "):]
        before = records(run_dir)
    assert ckpt.stat().st_mtime_ns == stamp                              # nor a checkpoint written
    code, out, err = _train(capsys, job, run_dir, "--resume", "--progress", "none")
    assert code == 0 and out.strip().endswith("raise train.steps to train more")   # said with --progress none too


def test_every_record_has_the_epoch_of_its_step_also_after_a_resume(capsys, tmp_path):
    job = tmp_path / "job.toml"
    job.write_text(TINY + "eval_every = 2\n")                     # 4 steps per epoch
    run_dir = tmp_path / "run"
    assert _train(capsys, job, run_dir)[0] == 0
    code, out, err = _train(capsys, job, run_dir, "--resume", "--set", "train.steps=10")
    assert code == 0, err
    recs = records(run_dir)
    epochs = _step_epochs(recs)
    assert epochs == {s: (s - 1) // 4 for s in range(1, 11)}
    evals = [(r["step"], r["epoch"]) for r in recs if r["kind"] == "eval"]
    assert evals == [(s, epochs[s]) for s in (2, 4, 6, 8, 10)]       # step 4 is epoch 0, step 8 epoch 1
    resume = next(r for r in recs if r["kind"] == "resume")
    assert (resume["step"], resume["epoch"], resume["resumes_at_epoch"], resume["position"]) == (4, 0, 1, 0)
    # A stop after the last step of an epoch: its record says that step's epoch, not the next one's.
    from distnet.training.hooks.metrics_log import MetricsLog
    from distnet.training.metrics import MetricsLogger

    stopped = tmp_path / "stopped"
    trainer = _tiny_trainer(tmp_path, [lambda t, r: r["step"] == 5 and t.request_stop()])   # 6 steps an epoch
    trainer.add_hook(MetricsLog(MetricsLogger(stopped, progress="none")))
    with pytest.raises(TrainingStopped):
        trainer.fit()
    recs = records(stopped)
    stop = next(r for r in recs if r["kind"] == "stop")
    assert (stop["step"], stop["epoch"]) == (6, _step_epochs(recs)[6]) == (6, 0)


def test_a_killed_run_resumed_logs_each_step_once(tmp_path):
    """SIGKILL a training process after it logged steps past its newest checkpoint, then
    resume: the steps trained again replace the earlier records (and a line cut by the kill)."""
    job = tmp_path / "job.toml"
    job.write_text(TINY.replace("steps = 4", "steps = 100000") + "eval_every = 8\n[checkpoint]\nevery = 10\n")
    run_dir = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "distnet", "train", str(job), "--run-dir", str(run_dir),
                             "--progress", "none"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            steps = [r["step"] for r in records(run_dir) if r.get("kind") == "step"]
            if steps and steps[-1] >= 25 and steps[-1] % 10 >= 3:   # a few steps past a checkpoint
                break
            time.sleep(0.005)
        proc.kill()
    finally:
        proc.wait(timeout=60)
    killed_at = max(r["step"] for r in records(run_dir) if r.get("kind") == "step")
    newest = newest_checkpoint(run_dir)[1].step
    assert killed_at > newest, (killed_at, newest)                     # steps to be trained again
    target = killed_at + 7
    proc = subprocess.run([sys.executable, "-m", "distnet", "train", str(job), "--run-dir", str(run_dir),
                           "--progress", "plain", "--resume", "--set", f"train.steps={target}"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert f"records an earlier attempt logged after step {newest} removed from the metrics log" in proc.stdout
    recs = records(run_dir)
    assert [r["step"] for r in recs if r["kind"] == "step"] == list(range(1, target + 1))
    evals = [r["step"] for r in recs if r["kind"] == "eval"]
    assert evals == sorted(set(evals)) and evals[-1] == target
    resume = next(r for r in recs if r["kind"] == "resume")
    assert resume["step"] == newest and resume["dropped_records"] >= killed_at - newest
    epochs = _step_epochs(recs)
    assert all(r["epoch"] == epochs[r["step"]] for r in recs if r["kind"] == "eval")
