"""The one lifecycle (distnet/runner/lifecycle.py): every phase x event, with explicit times."""
from __future__ import annotations

import signal
import threading

import pytest

from distnet.runner.lifecycle import DUPLICATE_WINDOW, Action, Lifecycle, Phase

INT, TERM = signal.SIGINT, signal.SIGTERM
STARTUP = "SIGINT during start-up (before the first step: nothing to save)"
GRACE = "the stop did not finish within 30 s of SIGINT"


def starting():
    return Lifecycle(30.0)


def running():
    life = Lifecycle(30.0)
    assert life.begin() is None
    return life


def stopping_by_signal():
    life = running()
    assert life.signal(INT, now=100.0).action is Action.STOP
    return life


def stopping_by_request():
    life = running()
    life.request(INT)
    return life


def aborting_at_startup():
    life = starting()
    assert life.signal(INT, now=100.0).action is Action.ABORT
    return life


def aborting_again():
    life = stopping_by_signal()
    assert life.signal(INT, now=105.0).action is Action.ABORT
    return life


def aborting_after_grace():
    life = stopping_by_signal()
    assert life.grace_over().action is Action.ABORT
    return life


STATES = {"starting": (starting, Phase.STARTING), "running": (running, Phase.RUNNING),
          "stopping-signal": (stopping_by_signal, Phase.STOPPING),
          "stopping-request": (stopping_by_request, Phase.STOPPING),
          "aborting-startup": (aborting_at_startup, Phase.ABORTING),
          "aborting-again": (aborting_again, Phase.ABORTING),
          "aborting-grace": (aborting_after_grace, Phase.ABORTING)}

# Events: a SIGINT 0.5 s after the first counted one (a repeat within the window), one 5 s
# after (a second request), a request for SIGTERM from code, training begins, the grace is over.
EVENTS = {"signal-soon": lambda life: life.signal(INT, now=100.5),
          "signal-later": lambda life: life.signal(INT, now=105.0),
          "request": lambda life: life.request(TERM),
          "begin": lambda life: life.begin(),
          "grace": lambda life: life.grace_over()}

# (state, event) -> (action returned or None, why or None, phase after)
TABLE = {
    ("starting", "signal-soon"): (Action.ABORT, STARTUP, Phase.ABORTING),
    ("starting", "signal-later"): (Action.ABORT, STARTUP, Phase.ABORTING),
    ("starting", "request"): (None, None, Phase.STARTING),
    ("starting", "begin"): (None, None, Phase.RUNNING),
    ("starting", "grace"): (Action.ABORT, GRACE, Phase.ABORTING),
    ("running", "signal-soon"): (Action.STOP, "", Phase.STOPPING),
    ("running", "signal-later"): (Action.STOP, "", Phase.STOPPING),
    ("running", "request"): (None, None, Phase.STOPPING),
    ("running", "begin"): (None, None, Phase.RUNNING),
    ("running", "grace"): (Action.ABORT, GRACE, Phase.ABORTING),
    ("stopping-signal", "signal-soon"): (Action.REPEAT, "", Phase.STOPPING),
    ("stopping-signal", "signal-later"): (Action.ABORT, "SIGINT again", Phase.ABORTING),
    ("stopping-signal", "request"): (None, None, Phase.STOPPING),
    ("stopping-signal", "begin"): (Action.STOP, "", Phase.STOPPING),
    ("stopping-signal", "grace"): (Action.ABORT, GRACE, Phase.ABORTING),
    ("stopping-request", "signal-soon"): (Action.STOP, "", Phase.STOPPING),
    ("stopping-request", "signal-later"): (Action.STOP, "", Phase.STOPPING),
    ("stopping-request", "request"): (None, None, Phase.STOPPING),
    ("stopping-request", "begin"): (Action.STOP, "", Phase.STOPPING),
    ("stopping-request", "grace"): (Action.ABORT, GRACE, Phase.ABORTING),
    ("aborting-startup", "signal-soon"): (Action.REPEAT, "", Phase.ABORTING),
    ("aborting-startup", "signal-later"): (Action.ABORT, "SIGINT again", Phase.ABORTING),
    ("aborting-startup", "request"): (None, None, Phase.ABORTING),
    ("aborting-startup", "begin"): (Action.ABORT, STARTUP, Phase.ABORTING),
    ("aborting-startup", "grace"): (Action.ABORT, GRACE, Phase.ABORTING),
    ("aborting-again", "signal-soon"): (Action.REPEAT, "", Phase.ABORTING),
    ("aborting-again", "signal-later"): (Action.ABORT, "SIGINT again", Phase.ABORTING),
    ("aborting-again", "request"): (None, None, Phase.ABORTING),
    ("aborting-again", "begin"): (None, None, Phase.ABORTING),
    ("aborting-again", "grace"): (Action.ABORT, GRACE, Phase.ABORTING),
    ("aborting-grace", "signal-soon"): (Action.ABORT, GRACE, Phase.ABORTING),
    ("aborting-grace", "signal-later"): (Action.ABORT, GRACE, Phase.ABORTING),
    ("aborting-grace", "request"): (None, None, Phase.ABORTING),
    ("aborting-grace", "begin"): (None, None, Phase.ABORTING),
    ("aborting-grace", "grace"): (Action.ABORT, GRACE, Phase.ABORTING),
}


def test_the_table_covers_every_phase_and_event():
    assert set(TABLE) == {(s, e) for s in STATES for e in EVENTS}
    assert {phase for _, phase in STATES.values()} == set(Phase)


@pytest.mark.parametrize("state, event", sorted(TABLE))
def test_every_phase_and_event(state, event):
    make, phase = STATES[state]
    life = make()
    assert life.phase is phase
    action, why, after = TABLE[state, event]
    decision = EVENTS[event](life)
    if action is None:
        assert decision is None
    else:
        assert decision.action is action and decision.why == why
    assert life.phase is after
    if event == "request":   # a request from code is carried by the stop, never counted
        assert life.signum == TERM


def test_a_start_up_abort_stays_decided_until_training_would_begin():
    life = aborting_at_startup()
    assert life.aborted_at_startup
    life.signal(INT, now=105.0)   # a second request changes nothing about it
    assert life.aborted_at_startup and life.begin().action is Action.ABORT
    assert not aborting_again().aborted_at_startup and not aborting_after_grace().aborted_at_startup


def test_sigterm_outranks_sigint_but_the_first_signal_is_kept():
    life = stopping_by_signal()
    assert life.signal(TERM, now=100.2).action is Action.REPEAT
    assert (life.signum, life.first, life.first_at, life.received) == (TERM, INT, 100.0, 2)
    life.request(INT)   # a weaker request does not lower it
    assert life.signum == TERM
    assert life.grace_over().why == "the stop did not finish within 30 s of SIGTERM"


def test_the_window_is_measured_from_the_first_counted_signal():
    life = stopping_by_signal()
    assert life.signal(INT, now=100.0 + DUPLICATE_WINDOW * 0.99).action is Action.REPEAT
    assert life.signal(INT, now=100.0 + DUPLICATE_WINDOW).action is Action.ABORT


def test_the_launcher_starts_running():
    life = Lifecycle(45.0, phase=Phase.RUNNING)
    first = life.signal(TERM, now=1.0)
    assert (first.action, first.signum, life.phase) == (Action.STOP, TERM, Phase.STOPPING)
    assert life.signal(INT, now=9.0).why == "SIGINT again"


def test_only_one_caller_ends_the_process():
    life = aborting_again()
    results = []
    threads = [threading.Thread(target=lambda: results.append(life.claim_end())) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * 7 + [True]
