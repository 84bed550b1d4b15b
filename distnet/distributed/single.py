"""A world of one rank: every collective is the identity.  Never imports MPI."""
from __future__ import annotations

import os
import sys
from typing import Any, Sequence

import numpy as np

from distnet.distributed.communicator import (
    Communicator, check_buffer, check_counts, check_op, check_root,
)
from distnet.errors import InvalidArgumentError


class SingleCommunicator(Communicator):
    """Size 1, rank 0.  Arrays are validated as MPI would need them, so code
    that runs here also runs under :class:`~distnet.distributed.mpi.MPICommunicator`.

    Example:
        >>> comm = SingleCommunicator()
        >>> comm.allreduce_(np.ones(2))
        array([1., 1.])
    """

    def __init__(self) -> None:
        super().__init__()
        self.rank = 0
        self.size = 1

    def allreduce_(self, arr: np.ndarray, op: str = "sum") -> np.ndarray:
        check_op(op)
        return check_buffer(arr, "allreduce_")

    def bcast_(self, arr: np.ndarray, root: int = 0) -> np.ndarray:
        check_root(root, 1)
        return check_buffer(arr, "bcast_")

    def reduce_scatter(self, arr: np.ndarray, counts: Sequence[int] | None = None,
                       op: str = "sum") -> np.ndarray:
        check_op(op)
        check_buffer(arr, "reduce_scatter", writable=False)
        if arr.ndim != 1:
            raise InvalidArgumentError(f"reduce_scatter: Expect: a 1-d array Actual: shape {arr.shape}")
        check_counts(counts, arr.size, 1, "reduce_scatter")
        return arr.copy()

    def allgather(self, block: np.ndarray, counts: Sequence[int] | None = None) -> np.ndarray:
        check_buffer(block, "allgather", writable=False)
        if block.ndim != 1:
            raise InvalidArgumentError(f"allgather: Expect: a 1-d array Actual: shape {block.shape}")
        check_counts(counts if counts is not None else [block.size], block.size, 1, "allgather")
        return block.copy()

    def barrier(self) -> None:
        return None

    def allgather_object(self, obj: Any) -> list:
        return [obj]

    def bcast_object(self, obj: Any, root: int = 0) -> Any:
        check_root(root, 1)
        return obj

    def abort(self, code: int = 1, message: str = "") -> None:
        """Print ``message`` and end the process with ``code`` (no cleanup)."""
        if message:
            sys.stderr.write("".join(f"[rank 0] {line}\n" for line in message.rstrip("\n").split("\n")))
        sys.stderr.flush()
        sys.stdout.flush()
        os._exit(int(code) if code else 1)
