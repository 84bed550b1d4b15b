"""Distributed primitives: communicators, the sharded sampler, the gradient
synchroniser, consistency checks, the abort hook and the watchdog.

Importing this package never imports mpi4py; only
``get_communicator("mpi")`` (or ``"auto"`` under an MPI launcher) does.

Launching: ``mpiexec -n N python script.py`` with the MPICH (hydra) mpiexec of
the ``mpich`` wheel (next to the Python executable in a virtual environment).
On one machine it needs no network and no flags, also as root: hydra starts
the ranks with its fork launcher, they find each other through PMI file
descriptors and talk through shared memory (checked in a network namespace
with no interface up).  Set ``OMP_NUM_THREADS=1`` (and ``OPENBLAS_/MKL_``)
per rank so ranks do not oversubscribe the cores.
"""
from distnet.distributed.abort import CollectiveError, install_abort_hook
from distnet.distributed.communicator import Communicator, Request, block_counts, get_communicator, launched_world_size
from distnet.distributed.consistency import (
    DivergenceChecker, NonFiniteGuard, NonFiniteWarning, broadcast_arrays, broadcast_variables,
    check_parameters_agree, check_same_variables, parameter_checksums, variable_specs,
)
from distnet.distributed.grad_sync import GradientSynchronizer, SyncResult
from distnet.distributed.sampler import ShardBatch, ShardSampler
from distnet.distributed.single import SingleCommunicator
from distnet.distributed.watchdog import STALL_EXIT_CODE, Watchdog

__all__ = [
    "CollectiveError", "Communicator", "Request", "DivergenceChecker", "GradientSynchronizer", "NonFiniteGuard",
    "NonFiniteWarning", "STALL_EXIT_CODE", "ShardBatch", "ShardSampler", "SingleCommunicator", "SyncResult",
    "Watchdog", "block_counts", "broadcast_arrays", "broadcast_variables", "check_parameters_agree",
    "check_same_variables", "get_communicator", "install_abort_hook", "launched_world_size",
    "parameter_checksums", "variable_specs",
]
