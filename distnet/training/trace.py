"""A per-rank timeline of training, as Chrome trace events (``distnet train --trace``).

Each rank records spans — reading the data, forward, backward, the
regularization, the reduce, the update (optimizer, EMA, weights made whole),
evaluation, checkpoints — and, through its communicator, every blocking
collective it waits in: on a rank that waits for a slower one, the wait is a
long collective span while the straggler is still in its backward.  Each
rank writes ``trace/rank-<r>.json`` in the run directory when training ends;
:func:`merge` (``distnet trace RUN``) joins them into one ``trace.json``
that Perfetto (ui.perfetto.dev) and ``chrome://tracing`` open: one process
per rank, one thread per kind of work, the step (and bytes) in each event's
``args``.

Clocks: every rank takes its time origin right after a barrier at start-up,
so events of different ranks line up to within that barrier's skew.

When tracing is off the trainer holds :data:`OFF`, whose spans cost one
method call that returns a shared do-nothing context.
"""
from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path

#: Thread ids of the kinds of work, in the order a step does them.
KINDS = {"step": 0, "data": 1, "forward": 2, "backward": 3, "regularization": 4, "reduce": 5,
         "update": 6, "evaluate": 7, "checkpoint": 8, "collective": 9}


class Tracer:
    """Records spans of one rank and writes them as trace events.

    Args:
        directory: where ``rank-<r>.json`` goes (created on :meth:`close`).
        comm: the job's communicator: its rank names the process, a barrier
            aligns the clocks, and its collectives are recorded.
    """

    def __init__(self, directory: str | os.PathLike, comm) -> None:
        self.directory = Path(directory)
        self.rank = comm.rank
        self.events: list[dict] = []
        self._comm = comm
        self._step = 0
        comm.barrier()
        self._origin = time.perf_counter()
        # The communicator times its calls with time.monotonic(): where that clock's zero is on ours.
        self._monotonic_to_us = (time.perf_counter() - time.monotonic() - self._origin) * 1e6
        comm.calls.observer = self._collective

    def _now_us(self) -> float:
        return (time.perf_counter() - self._origin) * 1e6

    def set_step(self, step: int) -> None:
        """The step the following spans belong to."""
        self._step = int(step)

    @contextlib.contextmanager
    def span(self, kind: str, **args):
        """Record the block as one event of ``kind`` (one of :data:`KINDS`)."""
        start = self._now_us()
        try:
            yield
        finally:
            self.events.append({"name": kind, "ph": "X", "ts": start, "dur": self._now_us() - start,
                                "pid": self.rank, "tid": KINDS[kind], "args": {"step": self._step, **args}})

    def _collective(self, name: str, since: float, until: float) -> None:
        self.events.append({"name": name, "ph": "X", "ts": since * 1e6 + self._monotonic_to_us,
                            "dur": (until - since) * 1e6,
                            "pid": self.rank, "tid": KINDS["collective"], "args": {"step": self._step}})

    def write(self) -> Path:
        """Write this rank's file (everything recorded so far); returns its path."""
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"rank-{self.rank}.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps({"traceEvents": self.events}), encoding="utf-8")
        os.replace(tmp, path)
        return path

    def close(self) -> Path:
        """Stop recording collectives and write this rank's file."""
        if self._comm.calls.observer == self._collective:
            self._comm.calls.observer = None
        return self.write()


class _Off:
    """The tracer of an untraced run: every span is the same do-nothing context."""

    _null = contextlib.nullcontext()

    def set_step(self, step: int) -> None:
        pass

    def span(self, kind: str, **args):
        return self._null

    def write(self) -> None:
        return None

    def close(self) -> None:
        return None


#: The tracer when tracing is off.
OFF = _Off()


def merge(run_dir: str | os.PathLike, out: str | os.PathLike | None = None) -> tuple[Path, dict]:
    """Join the ranks' ``trace/rank-*.json`` of ``run_dir`` into one trace file.

    Returns:
        ``(path written, {rank: number of events})``.
    Raises:
        FileNotFoundError: with what to do, when the run has no trace.
    """
    run_dir = Path(run_dir)
    files = sorted((run_dir / "trace").glob("rank-*.json"), key=lambda p: int(p.stem.split("-")[1]))
    if not files:
        raise FileNotFoundError(f"{run_dir}: Expect: trace/rank-*.json from `distnet train ... --trace` "
                                f"Actual: no trace files in {run_dir / 'trace'}")
    events: list[dict] = []
    counts = {}
    for f in files:
        rank = int(f.stem.split("-")[1])
        mine = json.loads(f.read_text(encoding="utf-8"))["traceEvents"]
        counts[rank] = len(mine)
        events.append({"name": "process_name", "ph": "M", "pid": rank, "args": {"name": f"rank {rank}"}})
        events.append({"name": "process_sort_index", "ph": "M", "pid": rank, "args": {"sort_index": rank}})
        for kind, tid in KINDS.items():
            events.append({"name": "thread_name", "ph": "M", "pid": rank, "tid": tid, "args": {"name": kind}})
            events.append({"name": "thread_sort_index", "ph": "M", "pid": rank, "tid": tid,
                           "args": {"sort_index": tid}})
        events.extend(mine)
    path = Path(out) if out is not None else run_dir / "trace.json"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"traceEvents": events, "displayTimeUnit": "ms"}), encoding="utf-8")
    os.replace(tmp, path)
    return path, counts
