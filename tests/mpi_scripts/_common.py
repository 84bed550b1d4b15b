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
    """Make rank 0 change its gradients once, at ``at_step``, after backward
    wrote them into the strategy's buffer and before the reduce:
    ``mutate(grads)`` edits the buffer's views in place (a NaN, a huge value...).
    A skipped step does not advance the step, so it is planted only once."""
    original = trainer.strategy.reduce
    planted: list = []

    def reduce(*args, **kwargs):
        if trainer.comm.rank == 0 and trainer.step == at_step and not planted:
            planted.append(True)
            mutate(list(trainer.strategy.grad_views()))
        return original(*args, **kwargs)

    trainer.strategy.reduce = reduce
