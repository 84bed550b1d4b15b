"""Supervised restarts: relaunch a failed job of workers from its newest checkpoint.

The model is ``torchrun --max-restarts``: the launcher owns the job; when a
rank dies or the job aborts (an exception, a watchdog stall, a killed
process, a lost host) hydra ends the other ranks, and :func:`supervise`
names the failure, then relaunches the whole job with ``--resume-if-any``:
every rank continues from the newest checkpoint that loads.  A restart from
a checkpoint on the same number of workers replays exactly the steps the
uninterrupted job would have taken (same data order, same dropout masks,
same reductions): the final parameters are bitwise the same.

Rules:

* the budget (``max_restarts``) counts relaunches of the whole job;
* a job that ends with 0, 2 (bad input) or 130 / 143 (stopped by a signal)
  is never restarted; nor one that failed before completing a step in this
  attempt (its next attempt would fail the same way);
* each restart appends a ``{"kind": "restart", "attempt": 2, "of": 3, ...}``
  record to the run's ``metrics.jsonl`` (no rank is running then), and says
  the same on one line: ``distnet launch: rank 1 (pid 5127 on node2) was
  killed by SIGKILL; restarting (attempt 2 of 3) from ckpt-00000200.h5``
  (attempts count the first launch; no "exit status" line before it: the job
  goes on);
* with a hostfile and ``min_workers``, a host whose ranks failed twice is
  left out while the remaining hosts have at least ``min_workers`` slots:
  the job goes on with fewer workers (a checkpoint resumes on any number).
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Callable, Sequence

from distnet.runner import exit_status
from distnet.runner.launcher import Host, LaunchOutcome, LaunchSettings, failure_line, launch_job, \
    parse_hostfile

#: Seconds the launcher waits beyond the workers' stop grace before it stops mpiexec itself.
LAUNCHER_MARGIN = 15.0
#: Failures of one host after which ``min_workers`` may leave it out.
HOST_FAILURES = 2


def last_logged_step(run_dir: str | os.PathLike | None) -> int | None:
    """The highest step in ``run_dir/metrics.jsonl``, 0 with none, None when the file cannot be read."""
    if run_dir is None:
        return None
    from distnet.training.metrics import last_step

    return last_step(run_dir)


def newest_checkpoint(directory: str | os.PathLike | None) -> str | None:
    from distnet.checkpoint import CheckpointManager

    if directory is None:
        return None
    return CheckpointManager(directory, is_writer=False).latest()


def append_record(run_dir: str | os.PathLike | None, record: dict) -> None:
    """Add one record to the run's metrics.jsonl (between attempts: no rank writes it then)."""
    if run_dir is None:
        return
    path = Path(run_dir) / "metrics.jsonl"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"kind": "restart", "time": time.time(), **record}, separators=(",", ":")) + "\n")
    except OSError:
        pass   # a run directory only the workers' hosts see: the message on stderr remains


def drop_host(hosts: Sequence[Host], failures: Counter, min_workers: int | None) -> tuple[list[Host], str | None]:
    """Leave out a host that failed :data:`HOST_FAILURES` times, if the others keep ``min_workers`` slots."""
    if min_workers is None:
        return list(hosts), None
    for host in hosts:
        if failures[host.name] >= HOST_FAILURES:
            rest = [h for h in hosts if h.name != host.name]
            if rest and sum(h.slots for h in rest) >= min_workers:
                return rest, host.name
    return list(hosts), None


def supervise(worker_args: Sequence[str], settings: LaunchSettings | None = None, *,
              first_args: Sequence[str] = (), max_restarts: int = 0, min_workers: int | None = None,
              run_dir: str | os.PathLike | None = None, checkpoint_dir: str | os.PathLike | None = None,
              stop_grace: float = 30.0, launch: Callable[..., LaunchOutcome] = launch_job,
              say: Callable[[str], None] | None = None) -> int:
    """Run ``distnet <worker_args>`` on the workers; relaunch it after a failure, up to ``max_restarts`` times.

    Args:
        worker_args: the workers' ``distnet`` arguments (``["train", JOB, ...]``).
        settings: how to launch (:class:`distnet.runner.launcher.LaunchSettings`): its
            ``num_workers`` and ``hostfile`` are the first attempt's (default: the defaults).
        first_args: added to the first attempt only (``--resume``, ``--overwrite``);
            every restart adds ``--resume-if-any``.
        max_restarts: relaunches allowed (0: none).
        min_workers: with a hostfile, the fewest workers to go on with after
            leaving out a host that keeps failing (None: never leave one out).
        run_dir, checkpoint_dir: the job's, to see its progress and to record restarts.
        stop_grace: the workers' grace for a signalled stop; the launcher waits
            longer before it stops mpiexec itself.
        launch: what runs one attempt, ``launch(args, settings) -> LaunchOutcome`` (tests replace it).
        say: where notices go (default: stderr).
    Returns:
        the job's exit status (:mod:`distnet.runner.exit_status`).
    """
    say = say or (lambda text: print(text, file=sys.stderr, flush=True))
    settings = settings if settings is not None else LaunchSettings()
    hostfile = settings.hostfile
    hosts = parse_hostfile(hostfile) if hostfile is not None else None
    failures: Counter = Counter()
    restarts = 0
    extra = list(first_args)
    with tempfile.TemporaryDirectory(prefix="distnet-hosts-") as tmp:
        current_hostfile = hostfile
        workers = settings.num_workers
        while True:
            before = last_logged_step(run_dir)
            # With restarts, the launcher's "exit status" line waits for the decision below.
            attempt = replace(settings, num_workers=workers, hostfile=current_hostfile,
                              stop_grace=stop_grace + LAUNCHER_MARGIN,
                              announce_failure=settings.announce_failure and max_restarts == 0)
            outcome = launch([*worker_args, *extra], attempt)
            code = outcome.code
            if code in exit_status.FINAL or max_restarts == 0:
                if max_restarts and outcome.failure is not None and code not in exit_status.DONE_OR_STOPPED:
                    say(failure_line(outcome.failure, code, outcome.hydra_log))
                return code
            after = last_logged_step(run_dir)
            why = outcome.failure or f"the job failed with status {code} ({exit_status.MEANING[code]})"
            meaning = f"exit status {code} ({exit_status.MEANING[code]})"
            where = f" (mpiexec's own messages: {outcome.hydra_log})" if outcome.hydra_log else ""
            if restarts >= max_restarts:
                say(f"distnet launch: {why}; the restart budget ({max_restarts}) is used up: giving up; "
                    f"{meaning}{where}")
                return code
            if before is not None and after is not None and after <= before:
                say(f"distnet launch: {why} before completing a step (last step {after}): not restarted "
                    f"(it would fail the same way); {meaning}{where}")
                return code
            restarts += 1
            left_out = None
            if hosts is not None and outcome.failed_host is not None:
                failures[outcome.failed_host] += 1
                hosts, left_out = drop_host(hosts, failures, min_workers)
                if left_out is not None:
                    slots = sum(h.slots for h in hosts)
                    workers = min(workers, slots) if workers is not None else None
                    current_hostfile = os.path.join(tmp, f"hosts-{restarts}")
                    Path(current_hostfile).write_text("".join(f"{h.name}:{h.slots}\n" for h in hosts))
            ckpt = newest_checkpoint(checkpoint_dir)
            # Attempts count the first launch, in the record and on the console alike.
            number, of = restarts + 1, max_restarts + 1
            append_record(run_dir, {"attempt": number, "of": of, "after": why,
                                    "status": code, "last_step": after, "checkpoint": ckpt,
                                    "left_out_host": left_out})
            say(f"distnet launch: {why}; restarting (attempt {number} of {of}) from "
                + (os.path.basename(ckpt) if ckpt else "step 0 (no checkpoint yet)")
                + (f" without host {left_out}" if left_out else "") + where)
            extra = ["--resume-if-any"]
