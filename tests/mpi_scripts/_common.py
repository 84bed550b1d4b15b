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
