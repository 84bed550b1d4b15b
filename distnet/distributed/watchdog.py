"""Catch a rank that stops answering without dying.

A rank killed outright is noticed by the launcher (MPICH's hydra ends the
job).  A rank that is stopped (SIGSTOP), stuck in an endless loop, or that
left the training loop early while the others wait for it, is not: the others
wait in their next collective forever.  :class:`Watchdog` turns that into an
abort naming the rank and the step.

Design (one daemon thread per rank, on a duplicated communicator, so its
messages never mix with the job's):

* the training loop calls :meth:`Watchdog.beat(step) <Watchdog.beat>` once a step;
* every ``interval`` seconds the thread sends each peer a heartbeat with
  non-blocking point-to-point messages: the last step, how long ago it was
  beaten, whether the rank is waiting in a collective (read from the
  communicator's :class:`~distnet.distributed.communicator.CallState`) and whether
  it has finished;
* a peer whose heartbeats stop for longer than ``stall_timeout`` is *silent*
  (stopped, or hung in native code);
* when this rank has waited in one collective for longer than
  ``stall_timeout``, a peer that is alive but not in a collective is *busy*
  (an endless loop), a peer that has finished ran fewer steps, and if all
  wait the ranks called different collectives;
* the rank that sees it tells its peers it is aborting, prints ``rank K
  silent since step S for T s`` (or the other diagnosis) and aborts the
  world.  Ranks take turns by rank order (``TURN`` seconds apart) and stand
  down when a peer announced its abort, so the message is printed once.

A beat wakes the thread, so a new step reaches the peers at once (at most
one heartbeat per ``MIN_GAP`` seconds): a rank that stalls is reported with
the step it last reached.

Heartbeats are exchanged between every pair of ranks: N*(N-1) tiny messages
per interval, fine for the tens of ranks distnet targets.  It needs
``MPI_THREAD_MULTIPLE`` (the thread level the MPI communicator asks for by default).

Choosing ``stall_timeout``: it must exceed the longest phase in which one
rank works while the others wait for it in a collective (rank 0 writing a
checkpoint, an evaluation on uneven shards) and any stretch in which the
heartbeat thread cannot get the GIL (a long native call that keeps it).
The default, 120 s, is generous; tests use about 5 s.

The message on abort goes to stderr; the exit status is :data:`distnet.runner.exit_status.STALLED`.
"""
from __future__ import annotations

import threading
import time

import numpy as np

from distnet.distributed.communicator import Communicator
from distnet.runner import exit_status
from distnet.errors import InvalidArgumentError

_TAG = 7411
TURN = 1.0          # seconds between the ranks' turns to report a stall
MIN_GAP = 0.05      # seconds between two heartbeats woken by beats
_RUNNING, _FINISHED_STATE, _ABORTING = 0.0, 1.0, 2.0
# Codes on the wire: append only (a code's meaning must not change).
_CALLS = ("", "allreduce", "bcast", "barrier", "allgather_object", "bcast_object",
          "reduce_scatter", "allgather", "iallreduce", "alltoall", "split_local", "shared_window", "split")
# payload: step, seconds since the last beat, call code, seconds in the call, finished
_STEP, _BEAT_AGE, _CALL, _CALL_AGE, _FINISHED = range(5)


class Watchdog:
    """Abort the job when a rank stalls for longer than ``stall_timeout``.

    Constructing it is collective (it duplicates the communicator) and starts
    the thread: every rank must create its watchdog at the same point, and
    :meth:`stop` it when leaving the training loop (normally or not), before
    any further collective that other ranks may not join.  With a world of
    size 1 it does nothing.

    Args:
        comm: the job's communicator.
        stall_timeout: seconds of silence before the job is aborted (> 0).
        interval: seconds between heartbeats; default ``min(1, timeout / 10)``.
    Example:
        >>> with Watchdog(comm, stall_timeout=120) as wd:
        ...     for step in range(steps):
        ...         wd.beat(step)
        ...         train_step()
    """

    def __init__(self, comm: Communicator, stall_timeout: float = 120.0, interval: float | None = None) -> None:
        if isinstance(stall_timeout, bool) or not isinstance(stall_timeout, (int, float)) or not stall_timeout > 0:
            raise InvalidArgumentError(f"stall_timeout: Expect: seconds > 0 Actual: {stall_timeout!r}")
        self.comm = comm
        self.stall_timeout = float(stall_timeout)
        self.interval = float(interval) if interval is not None else min(1.0, self.stall_timeout / 10)
        if not self.interval > 0:
            raise InvalidArgumentError(f"interval: Expect: seconds > 0 Actual: {interval!r}")
        self.step = 0
        self._beat_time = time.monotonic()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.report: str | None = None   # the diagnosis, set just before aborting
        if comm.size == 1:
            return
        comm.require_threads("Watchdog")
        # Heartbeats on a communicator of their own: they never match the job's messages.
        self._wcomm = comm.dup()
        self._thread = threading.Thread(target=self._run, name="distnet-watchdog", daemon=True)
        self._thread.start()

    # -- called by the training loop ---------------------------------------
    def start(self) -> "Watchdog":
        """No-op kept for symmetry with :meth:`stop`: the thread starts with
        the constructor (which is the collective part).  Returns ``self``."""
        return self

    def beat(self, step: int) -> None:
        """Say that this rank reached ``step`` (call once per step, any thread)."""
        self.step = int(step)
        self._beat_time = time.monotonic()
        self._wake.set()

    def stop(self) -> None:
        """Tell the peers this rank has finished, and stop the thread."""
        if self._thread is None or self._stop.is_set():
            return
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=5 * self.interval + 2.0)

    def __enter__(self) -> "Watchdog":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- the thread ----------------------------------------------------------
    def _payload(self, now: float, state: float) -> np.ndarray:
        calls = self.comm.calls
        name = calls.name
        code = _CALLS.index(name) if name in _CALLS else (len(_CALLS) if name else 0)
        return np.array([self.step, now - self._beat_time, code,
                         now - calls.since if name else 0.0, state])

    def _run(self) -> None:
        wcomm, me, size = self._wcomm, self.comm.rank, self.comm.size
        peers = [p for p in range(size) if p != me]
        start = time.monotonic()
        last_seen = {p: start for p in peers}
        state = {p: np.zeros(5) for p in peers}
        recv_bufs = {p: np.zeros(5) for p in peers}
        send_bufs = {p: np.zeros(5) for p in peers}
        recv_reqs = {p: wcomm.irecv_(recv_bufs[p], source=p, tag=_TAG) for p in peers}
        send_reqs: dict = {p: None for p in peers}
        peer_aborting_since = None

        def send_all(payload):
            for p in peers:
                # At most one heartbeat in flight per peer: a stopped peer
                # cannot make us queue messages without bound.
                if send_reqs[p] is None or send_reqs[p].test():
                    send_bufs[p][:] = payload
                    send_reqs[p] = wcomm.isend_(send_bufs[p], dest=p, tag=_TAG)

        while True:
            finishing = self._stop.is_set()
            now = time.monotonic()
            for p in peers:
                while recv_reqs[p].test():
                    state[p][:] = recv_bufs[p]
                    last_seen[p] = now
                    if state[p][_FINISHED] == _ABORTING and peer_aborting_since is None:
                        peer_aborting_since = now
                    recv_reqs[p] = wcomm.irecv_(recv_bufs[p], source=p, tag=_TAG)
            if finishing:
                # Say we finished: wait (briefly) for the last heartbeat in flight first.
                self._drain(send_reqs, peers)
                send_all(self._payload(now, _FINISHED_STATE))
                break
            send_all(self._payload(now, _RUNNING))
            problem = self._diagnose(now, peers, last_seen, state)
            # A peer is already aborting the job: stand down (unless it failed to).
            if problem is not None and (peer_aborting_since is None
                                        or now - peer_aborting_since > self.stall_timeout):
                self.report = problem
                send_all(self._payload(now, _ABORTING))
                self.comm.abort(exit_status.STALLED, f"distnet watchdog: {problem}; aborting the job "
                                                 f"(stall_timeout {self.stall_timeout:g} s)")
                return
            self._wake.wait(self.interval)
            self._wake.clear()
            self._stop.wait(MIN_GAP)
        # Finished: let the last heartbeat go out, withdraw our receives.
        self._drain(send_reqs, peers)
        for p in peers:
            recv_reqs[p].cancel()
            recv_reqs[p].wait()

    @staticmethod
    def _drain(send_reqs: dict, peers: list, patience: float = 1.0) -> None:
        deadline = time.monotonic() + patience
        for p in peers:
            while send_reqs[p] is not None and not send_reqs[p].test() and time.monotonic() < deadline:
                time.sleep(0.01)

    def _all_waiting(self, now: float, peers: list, last_seen: dict, state: dict,
                     my_call: str, my_wait: float) -> tuple:
        """Diagnose a stall in which every rank reports waiting in a collective.

        Returns ``(problem or None, culprits)``.  Three cases:

        * a peer's heartbeats have stopped (for longer than a few intervals):
          that peer is named -- its link is down or it was stopped inside the
          collective.  The heartbeats it sent before say it was waiting too, so
          without this case the stall would be blamed on mismatched calls;
        * the ranks wait in different collectives, or at different steps: a
          program error, reported at once;
        * they all wait in the same one and every peer is still heard from:
          the collective itself does not complete (a network fault that spares
          the heartbeats).  Reported after twice the stall timeout, which
          leaves a peer whose heartbeats are about to stop the time to be
          named instead.
        """
        timeout = self.stall_timeout
        names = {p: _CALLS[int(state[p][_CALL])] if state[p][_CALL] < len(_CALLS) else "?" for p in peers}
        where = ", ".join([f"rank {self.comm.rank} in {my_call} at step {self.step}"]
                          + [f"rank {p} in {names[p]} at step {int(state[p][_STEP])}" for p in peers])
        quiet = [p for p in peers if now - last_seen[p] > 3 * self.interval + 0.5]
        if quiet:
            p = max(quiet, key=lambda q: now - last_seen[q])
            return (f"rank {p} silent since step {int(state[p][_STEP])} for {now - last_seen[p]:.1f} s "
                    f"(no heartbeat while every rank waits in {my_call} at step {self.step} for "
                    f"{my_wait:.1f} s: its link is down, or it was stopped)"), quiet
        if any(names[p] != my_call or int(state[p][_STEP]) != self.step for p in peers):
            return (f"every rank has waited in a collective for more than {timeout:g} s: {where} "
                    f"(the ranks called different collectives)"), []
        if my_wait > 2 * timeout:
            return (f"every rank has waited in {my_call} at step {self.step} for more than {2 * timeout:g} s "
                    f"and every rank is still heard from: the collective does not complete "
                    f"(a network fault between the ranks?)"), []
        return None, []

    def _diagnose(self, now: float, peers: list, last_seen: dict, state: dict) -> str | None:
        timeout, me = self.stall_timeout, self.comm.rank
        calls = self.comm.calls
        my_call = calls.name
        my_wait = now - calls.since if my_call else 0.0
        culprits: list = []
        over = -1.0
        problem = None
        silent = [p for p in peers if state[p][_FINISHED] != _FINISHED_STATE and now - last_seen[p] > timeout]
        if silent:
            p = silent[0]
            culprits = silent
            over = now - last_seen[p] - timeout
            problem = (f"rank {p} silent since step {int(state[p][_STEP])} for {now - last_seen[p]:.1f} s "
                       f"(no heartbeat: stopped, or hung outside Python)")
        elif my_call and my_wait > timeout:
            over = my_wait - timeout
            busy = [p for p in peers if state[p][_FINISHED] != _FINISHED_STATE and state[p][_CALL] == 0]
            done = [p for p in peers if state[p][_FINISHED] == _FINISHED_STATE]
            if busy:
                p = busy[0]
                culprits = busy
                age = state[p][_BEAT_AGE] + (now - last_seen[p])
                if now - last_seen[p] > 3 * self.interval + 0.5:
                    why = f"no heartbeat for {now - last_seen[p]:.1f} s: stopped, or hung outside Python"
                else:
                    why = f"alive but has not joined {my_call}: an endless loop or a step longer than the stall timeout"
                problem = f"rank {p} silent since step {int(state[p][_STEP])} for {age:.1f} s ({why})"
            elif done:
                p = done[0]
                problem = (f"rank {me} waits in {my_call} at step {self.step} for {my_wait:.1f} s but rank {p} "
                           f"finished at step {int(state[p][_STEP])}: the ranks ran a different number of steps")
            else:
                problem, culprits = self._all_waiting(now, peers, last_seen, state, my_call, my_wait)
        if problem is None:
            return None
        # Ranks that can see the problem take turns, TURN seconds apart, by rank.
        watchers = [r for r in range(self.comm.size) if r not in culprits]
        turn = watchers.index(me) if me in watchers else len(watchers)
        return problem if over >= TURN * turn else None
