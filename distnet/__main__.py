"""``python -m distnet`` and the ``distnet`` command (pyproject's console script).

A signal may come at any moment of the start-up: the handlers that end the
process cleanly go in before anything else is imported.  OpenBLAS's idle
threads get their brief spin before numpy loads (distnet/runner/blas_spin.py).
"""
import sys

from distnet.runner.blas_spin import spin_briefly
from distnet.runner.startup_signals import end_at_once_on_signals


def main() -> int:
    end_at_once_on_signals()
    spin_briefly()
    from distnet.jobs.cli import main as run

    return run()


if __name__ == "__main__":
    sys.exit(main())
