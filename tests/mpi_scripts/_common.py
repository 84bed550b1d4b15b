"""Helpers shared by the scripts that tests run under mpiexec."""
from __future__ import annotations

import sys


def script_args() -> list:
    """``sys.argv[1:]`` without the test harness's marker argument."""
    return [a for a in sys.argv[1:] if not a.startswith("--distnet-test-marker=")]


def expect(condition: bool, message: str) -> None:
    """Raise (not assert: scripts also run under ``python -O``) when a check fails."""
    if not condition:
        raise RuntimeError(f"check failed: {message}")


def say(line: str) -> None:
    """Print one line in a single write, so lines of different ranks do not
    interleave (``print`` writes the text and the newline separately)."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def plant_in_gradients(trainer, at_step: int, mutate) -> None:
    """Make rank 0 hand the synchroniser changed gradients once, at ``at_step``:
    ``mutate(grads)`` edits copies of them in place (a NaN, a huge value...).
    A skipped step does not advance the step, so it is planted only once."""
    original = trainer.sync.sync
    planted: list = []

    def sync(grads, *args, **kwargs):
        if trainer.comm.rank == 0 and trainer.step == at_step and not planted:
            planted.append(True)
            import numpy as np

            grads = [np.array(g, copy=True) for g in grads]
            mutate(grads)
        return original(grads, *args, **kwargs)

    trainer.sync.sync = sync
