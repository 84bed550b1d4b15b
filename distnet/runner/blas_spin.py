"""How long OpenBLAS's idle threads spin: set for distnet's own processes before numpy loads.

After each matrix product, OpenBLAS's worker threads spin (yielding) for
``2**28`` TSC cycles, about a tenth of a second, waiting for the next one
before they sleep.  A step's products come closer together than that, so in a
rank of several threads a worker never sleeps: it holds a core for the whole
step, and the rank's own threads (the element-wise passes over chunks,
:mod:`distnet.distributed.chunk_threads`; the FFT convolution's frequencies)
run beside it on a fraction of that core and gain nothing over one thread.
Spinning ``2**20`` cycles (a few tenths of a millisecond), a worker still
catches the next product of a run of them, and sleeps between runs.  Shorter
spins cost the small products of an MLP a wake-up each; benchmarks/README.md
has the figures.

OpenBLAS reads the variable once, when numpy loads it, so it must be set
before: the ``distnet`` command does it first thing (its workers inherit
it); a program of your own that trains on several threads per process sets
it in its environment (``OPENBLAS_THREAD_TIMEOUT=20 python train.py``).
This module imports nothing heavy, so the command can use it before numpy.
"""
from __future__ import annotations

import os
from typing import MutableMapping

#: OpenBLAS's variable: its idle workers spin ``2**value`` cycles (OpenBLAS clamps it to 4..30; default 28).
VARIABLE = "OPENBLAS_THREAD_TIMEOUT"
#: The value distnet's processes run with.
SPIN = 20
#: Up to this value the workers sleep soon enough for the rank's own threads to have the cores.
BRIEF = 20


def spin_briefly(environ: MutableMapping[str, str] | None = None) -> None:
    """Set :data:`VARIABLE` to :data:`SPIN` in ``environ`` (default ``os.environ``) unless it is set."""
    environ = os.environ if environ is None else environ
    if not environ.get(VARIABLE):
        environ[VARIABLE] = str(SPIN)


def spins_briefly(environ: MutableMapping[str, str] | None = None) -> bool:
    """Whether this process's environment has OpenBLAS's idle workers sleep soon (:data:`VARIABLE` <= :data:`BRIEF`).

    Example:
      >>> spins_briefly({"OPENBLAS_THREAD_TIMEOUT": "18"}), spins_briefly({})
      (True, False)
    """
    environ = os.environ if environ is None else environ
    try:
        return int(environ.get(VARIABLE, "")) <= BRIEF
    except ValueError:
        return False
