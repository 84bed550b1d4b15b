"""Data parallelism: the communicator every collective goes through, the
sharded sampler, the strategies that synchronise a step, consistency checks,
the abort hook, the watchdog, and :func:`init`, which sets a process up.

Importing this package never loads MPI; only
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
from distnet.distributed.layout import FlatLayout
from distnet.distributed.process import init
from distnet.distributed.sampler import ShardBatch, ShardSampler
from distnet.distributed.single import SingleCommunicator
from distnet.distributed.strategies import Strategy, SyncResult, all_strategies
from distnet.distributed.strategies.replicated import Replicated
from distnet.distributed.strategies.zero1 import Zero1
from distnet.distributed.watchdog import Watchdog

__all__ = [
    "CollectiveError", "Communicator", "Request", "DivergenceChecker", "FlatLayout", "NonFiniteGuard",
    "NonFiniteWarning", "Replicated", "ShardBatch", "ShardSampler", "SingleCommunicator", "Strategy",
    "SyncResult", "Watchdog", "block_counts", "broadcast_arrays", "broadcast_variables", "check_parameters_agree",
    "check_same_variables", "get_communicator", "init", "install_abort_hook", "launched_world_size",
    "all_strategies", "parameter_checksums", "variable_specs", "Zero1",
]
