"""No hangs: a failing, killed, stopped, looping or disagreeing rank ends the
whole job with a non-zero status, the error printed once, and no process
left behind (the harness scans /proc).  Each MPI test prints the time from
the failure to the end of the job (``pytest -s`` shows it).

The in-process part covers the decisions themselves: the non-finite guard,
the divergence checker, the variable-spec check and the abort hook's
single-process behaviour."""
from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest

from distnet.distributed import (
    CollectiveError, DivergenceChecker, NonFiniteGuard, NonFiniteWarning, SingleCommunicator, Watchdog,
    check_parameters_agree, check_same_variables, parameter_checksums, variable_specs,
)
from distnet.errors import InvalidArgumentError
from distnet.tensor import Variable
from mpi_util import mpi_env, run_mpi

STALL = 5.0            # the watchdog's stall timeout in these tests (seconds)
EXIT_LIMIT = 10.0      # an exception or a kill must end the job within this
STALL_SLACK = 4.0      # detection after STALL, turns between ranks, abort


# -- in process ---------------------------------------------------------------
def test_non_finite_guard_skips_then_raises_after_k_in_a_row():
    guard = NonFiniteGuard(max_consecutive=3, rank=0)
    decisions = []
    with pytest.warns(NonFiniteWarning, match="step 1"):
        decisions.append(guard.check(False, 1))
    decisions.append(guard.check(True, 2))           # resets the run
    with pytest.warns(NonFiniteWarning):
        decisions += [guard.check(False, 3), guard.check(False, 4)]
    assert decisions == [False, True, False, False]
    with pytest.raises(CollectiveError, match=r"3 consecutive steps \(last: step 5\)"):
        guard.check(False, 5)
    assert guard.skipped == 4


def test_non_finite_guard_warns_on_rank_zero_only():
    guard = NonFiniteGuard(max_consecutive=2, rank=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert guard.check(False, 0) is False


@pytest.mark.parametrize("k", [0, -1, 1.5, True])
def test_non_finite_guard_rejects_bad_limits(k):
    with pytest.raises(InvalidArgumentError, match="max_consecutive"):
        NonFiniteGuard(max_consecutive=k)


def test_checksums_see_a_one_ulp_change_and_name_the_variable():
    a = [Variable(np.ones(3, np.float32), name="b"), Variable(np.ones(2, np.float32), name="a")]
    before = parameter_checksums(a)
    assert [c[0] for c in before] == ["a", "b"]
    a[0].data[1] = np.nextafter(np.float32(1), np.float32(2))
    after = parameter_checksums(a)
    assert before[0] == after[0] and before[1][2] != after[1][2]


class FakeWorld(SingleCommunicator):
    """Pretends to be rank 0 of a world whose other ranks sent ``others``."""

    def __init__(self, others):
        super().__init__()
        self.others = others
        self.size = 1 + len(others)

    def allgather_object(self, obj):
        return [obj] + list(self.others)


def test_divergence_names_the_first_differing_variable_in_sorted_order():
    mine = [Variable(np.zeros(2, np.float32), name=n) for n in ("z/w", "m/w", "a/w")]
    theirs = [Variable(np.zeros(2, np.float32), name=n) for n in ("z/w", "m/w", "a/w")]
    theirs[0].data[0] = 1.0   # z/w
    theirs[1].data[0] = 1.0   # m/w: first in sorted order
    comm = FakeWorld([parameter_checksums(theirs)])
    with pytest.raises(CollectiveError, match=r"at step 40: first differing variable \(sorted order\) is 'm/w'"):
        DivergenceChecker(comm, mine, every=20).maybe_check(40)
    assert DivergenceChecker(comm, mine, every=20).maybe_check(41) is False
    check_parameters_agree(FakeWorld([parameter_checksums(mine)]), mine)   # identical: no error


def test_variable_spec_mismatch_lists_who_has_what():
    mine = [Variable(np.zeros((2, 2), np.float32), name="k"), Variable(np.zeros(2, np.float32), name="b")]
    other = [Variable(np.zeros((2, 3), np.float32), name="k"), Variable(np.zeros(2, np.float64), name="c")]
    comm = FakeWorld([variable_specs(other)])
    with pytest.raises(CollectiveError) as err:
        check_same_variables(comm, mine)
    msg = str(err.value)
    assert "'k': rank 0 has (2, 2) float32, rank 1 has (2, 3) float32" in msg
    assert "'b': rank 0 has (2,) float32, rank 1 has no such variable" in msg
    assert "'c': rank 0 has no such variable, rank 1 has (2,) float64" in msg
    check_same_variables(FakeWorld([variable_specs(list(reversed(mine)))]), mine)


def test_duplicate_variable_names_are_refused():
    vs = [Variable([1.0], name="w"), Variable([2.0], name="w")]
    with pytest.raises(InvalidArgumentError, match=r"Found duplicates: \['w'\]"):
        check_same_variables(SingleCommunicator(), vs)


def test_watchdog_is_inert_for_a_world_of_one_and_validates():
    with Watchdog(SingleCommunicator(), stall_timeout=0.1) as wd:
        wd.beat(3)
    with pytest.raises(InvalidArgumentError, match="stall_timeout"):
        Watchdog(SingleCommunicator(), stall_timeout=0)


def _diagnosis(peer_states, heard_ago, my_call="allreduce", my_wait=12.0, my_step=3, timeout=10.0):
    """What rank 0 of a 3-rank world diagnoses from its peers' last heartbeats.

    ``peer_states``: per peer (rank 1, 2), ``(step, call name or "", finished)``;
    ``heard_ago``: seconds since each peer's last heartbeat arrived.
    """
    from distnet.distributed import watchdog as w
    wd = Watchdog(SingleCommunicator(), stall_timeout=timeout)   # a world of one: no thread
    now = 1000.0
    wd.comm = FakeWorld([None, None])
    wd.comm.calls.name, wd.comm.calls.since = my_call, now - my_wait
    wd.step = my_step
    peers = [1, 2]
    state = {p: np.array([st, 0.0, w._CALLS.index(call), 0.0, w._FINISHED_STATE if done else w._RUNNING])
             for p, (st, call, done) in zip(peers, peer_states)}
    last_seen = {p: now - ago for p, ago in zip(peers, heard_ago)}
    return wd._diagnose(now, peers, last_seen, state)


def test_watchdog_names_the_rank_whose_heartbeats_stopped_inside_the_collective():
    # Every rank entered allreduce at step 3; then rank 2's link went down.
    # Its last heartbeat says it waits too: still, it is the one to name.
    msg = _diagnosis([(3, "allreduce", False), (3, "allreduce", False)], heard_ago=[0.3, 8.0])
    assert msg is not None and msg.startswith("rank 2 silent since step 3 for 8.0 s"), msg
    assert "different collectives" not in msg


@pytest.mark.parametrize("call", ["allreduce", "iallreduce", "alltoall", "reduce_scatter", "allgather"])
def test_watchdog_waits_for_a_fading_peer_before_blaming_the_collective(call):
    # All in the same collective and all heard from: not yet a diagnosis ...
    assert _diagnosis([(3, call, False), (3, call, False)], heard_ago=[0.3, 0.5], my_call=call) is None
    # ... until twice the stall timeout: then the collective itself is stuck.
    msg = _diagnosis([(3, call, False), (3, call, False)], heard_ago=[0.3, 0.5], my_wait=21.0, my_call=call)
    assert f"every rank has waited in {call} at step 3 for more than 20 s" in msg
    assert "the collective does not complete" in msg


def test_every_collective_a_communicator_enters_has_a_heartbeat_code():
    import re
    from pathlib import Path

    from distnet.distributed import watchdog as w

    src = Path(w.__file__).parent
    entered = {m for f in src.glob("*.py") for m in re.findall(r'calls\.enter\("([a-z_]+)"\)', f.read_text())}
    assert entered and entered <= set(w._CALLS), sorted(entered - set(w._CALLS))


@pytest.mark.parametrize("peer_states, words", [
    ([(3, "allreduce", False), (3, "bcast", False)], "(the ranks called different collectives)"),
    ([(3, "allreduce", False), (4, "allreduce", False)], "rank 2 in allreduce at step 4"),
    ([(3, "allreduce", False), (3, "", False)], "rank 2 silent since step 3"),
    ([(3, "allreduce", False), (5, "", True)], "rank 2 finished at step 5"),
])
def test_watchdog_diagnoses_from_heartbeats(peer_states, words):
    msg = _diagnosis(peer_states, heard_ago=[0.3, 0.3])
    assert msg is not None and words in msg, msg


def test_watchdog_says_nothing_before_the_timeout():
    assert _diagnosis([(3, "allreduce", False), (3, "", False)], heard_ago=[0.3, 0.3], my_wait=9.0) is None


@pytest.mark.parametrize("code, words", [
    ("raise ValueError('bad thing')", "[rank 0] ValueError: bad thing"),
    ("import threading; t = threading.Thread(target=lambda: 1 / 0, name='w'); t.start(); t.join(); "
     "import time; time.sleep(5); print('survived')", "[rank 0] ZeroDivisionError"),
])
def test_abort_hook_in_a_single_process(code, words):
    res = subprocess.run([sys.executable, "-c", "import distnet.distributed as d; "
                          "d.install_abort_hook(d.SingleCommunicator())\n" + code],
                         capture_output=True, text=True, timeout=30, env=mpi_env())
    assert res.returncode == 1
    assert words in res.stderr and "survived" not in res.stdout
    assert res.stderr.count("Traceback") == 1


# -- real MPI -----------------------------------------------------------------
def fail_time(run) -> float:
    """Seconds from the injected failure to the end of the job (printed)."""
    stamps = run.values("FAIL_AT")
    assert len(stamps) == 1, run.describe()
    took = run.end_time - float(stamps[0])
    print(f"\n{' '.join(run.cmd[1:3])} fail.py {' '.join(run.cmd[5:-1])}: exit status {run.returncode}, "
          f"{took:.2f} s from the failure to the end of the job")
    return took


def launch(mode, nprocs, bad, stall=0.0, timeout=60):
    args = [mode, bad] + ([stall] if stall else [])
    return run_mpi("fail.py", nprocs, *args, timeout=timeout)


@pytest.mark.mpi
@pytest.mark.parametrize("nprocs", [2, 3])
def test_clean_run_with_watchdog_exits_zero_with_identical_parameters(nprocs):
    run = launch("none", nprocs, 0, STALL)
    assert run.returncode == 0, run.describe()
    done = run.values("DONE")
    assert len(done) == nprocs and len({d.split()[1] for d in done}) == 1, run.describe()
    assert "watchdog" not in run.stderr


@pytest.mark.mpi
@pytest.mark.parametrize("mode, nprocs, bad", [("raise", 3, 1), ("raise", 2, 0), ("raise_thread", 2, 1)])
def test_exception_on_one_rank_ends_the_job(mode, nprocs, bad):
    run = launch(mode, nprocs, bad)
    took = fail_time(run)
    assert run.returncode != 0, run.describe()
    assert took < EXIT_LIMIT, run.describe()
    assert run.stderr.count("RuntimeError: injected failure") == 1, run.describe()
    assert run.stderr.count("Traceback (most recent call last)") == 1, run.describe()
    assert f"[rank {bad}] unhandled exception" in run.stderr, run.describe()
    assert not run.values("DONE"), run.describe()


@pytest.mark.mpi
def test_sigkill_of_one_rank_ends_the_job():
    run = launch("kill", 3, 2)
    took = fail_time(run)
    assert run.returncode != 0, run.describe()
    assert took < EXIT_LIMIT, run.describe()
    # hydra reports the killed rank once (its banner goes to stdout).
    assert run.output.count("BAD TERMINATION OF ONE OF YOUR APPLICATION PROCESSES") == 1, run.describe()
    assert "Killed (signal 9)" in run.output, run.describe()
    assert not run.values("DONE"), run.describe()


@pytest.mark.mpi
@pytest.mark.parametrize("mode, nprocs, bad, words", [
    ("stop", 3, 1, "rank 1 silent since step 3 for"),
    ("loop", 2, 0, "rank 0 silent since step 3 for"),
    ("steps", 2, 1, "rank 0 waits in allreduce at step 9"),
])
def test_watchdog_catches_a_rank_that_stops_answering(mode, nprocs, bad, words):
    run = launch(mode, nprocs, bad, STALL)
    took = fail_time(run)
    assert run.returncode != 0, run.describe()
    assert STALL - 1.0 < took < STALL + STALL_SLACK, run.describe()
    assert run.stderr.count("distnet watchdog:") == 1, run.describe()
    assert words in run.stderr, run.describe()
    if mode == "steps":
        assert "rank 1 finished at step 8: the ranks ran a different number of steps" in run.stderr


@pytest.mark.mpi
def test_mismatched_variables_fail_on_every_rank_printed_once():
    run = launch("variables", 3, 2)
    took = fail_time(run)
    assert run.returncode != 0 and took < EXIT_LIMIT, run.describe()
    assert run.stderr.count("ranks built different variables") == 1, run.describe()
    assert "'dense/kernel': rank 0 has (4, 3) float32, rank 1 has (4, 3) float32, rank 2 has (4, 5) float32" \
        in run.stderr, run.describe()
    assert "'extra/w': rank 0 has no such variable" in run.stderr


@pytest.mark.mpi
def test_divergent_parameters_are_caught_at_the_next_check():
    run = launch("diverge", 2, 1)
    took = fail_time(run)
    assert run.returncode != 0 and took < EXIT_LIMIT, run.describe()
    assert run.stderr.count("parameters diverged") == 1, run.describe()
    assert "parameters diverged at step 4: first differing variable (sorted order) is 'dense/kernel'" \
        in run.stderr, run.describe()


@pytest.mark.mpi
def test_nan_on_one_rank_every_rank_skips_the_same_steps_then_aborts():
    run = launch("nan", 3, 1)
    took = fail_time(run)
    assert run.returncode != 0 and took < EXIT_LIMIT, run.describe()
    skipped = {}
    for line in run.values("SKIP"):
        rank, step = map(int, line.split())
        skipped.setdefault(rank, []).append(step)
    assert skipped == {r: [2, 5, 6] for r in range(3)}, run.describe()
    assert run.stderr.count("non-finite gradients or loss at 3 consecutive steps (last: step 7)") == 1, \
        run.describe()
    assert run.stderr.count("NonFiniteWarning") == 3, run.describe()   # steps 2, 5, 6, rank 0 only
