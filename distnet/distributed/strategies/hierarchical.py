"""Hierarchical data parallelism: ZeRO-1 inside each machine, one all-reduce per block across machines.

On several machines with several ranks each, the network is the scarce
resource.  Replicated and ZeRO-1 reduce every rank's gradients between all
ranks, so each machine sends its bytes once per rank on it.  Here:

1. inside a machine the ranks sum their gradients through shared memory,
   each local rank r summing block r of every local rank's buffer (ZeRO-1's
   shared-memory path, :mod:`distnet.distributed.strategies.zero1`);
2. local rank r all-reduces its block with the local rank r of every other
   machine (one communicator per local rank): each machine puts its whole
   gradient on the network once, split among its ranks, which send in
   parallel;
3. the sample count, the scalars and the finite flags ride one small
   all-reduce over every rank, so every rank takes the same decision;
4. local rank r updates block r (its optimizer slots and EMA shadows cover
   1/L of the weights, L ranks per machine), writing the weights every rank
   of the machine views; a barrier stands for the all-gather.

Every machine computes the same update of every block, so the weights agree
across machines without another message.  ``compression="float16"`` sends
step 2 as float16 (:mod:`distnet.distributed.compression`); the sums inside
a machine stay float32.  Checkpoints hold full arrays, as with the others.

It needs the same number of ranks on every machine and room in ``/dev/shm``
for the weights and the local ranks' gradients.  ``"auto"`` chooses it when
the job spans several machines with several ranks each.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

import numpy as np

from distnet.distributed.communicator import Communicator
from distnet.distributed.compression import COMPRESSION, check_compression, make_compressor
from distnet.distributed.strategies.zero1 import Zero1
from distnet.errors import InvalidArgumentError


class Hierarchical(Zero1):
    """ZeRO-1 through shared memory inside each machine, an all-reduce of each block across machines.

    Example:
        >>> s = Hierarchical(comm, variables, scalar_names=("loss_sum",))
        >>> s.machines, s.group.size     # e.g. 2 machines x 2 ranks
        (2, 2)
    """

    name = "hierarchical"
    options = (COMPRESSION,)   # across machines; inside one, shared memory always
    job_defaults = MappingProxyType({})   # not ZeRO-1's: shared memory is how it works inside a machine

    def __init__(self, comm: Communicator, variables: Sequence, scalar_names: Sequence[str] = (),
                 compression: str = "none") -> None:
        Hierarchical.check_options({"compression": compression}, comm)
        self._local = comm.split_local()
        sizes = comm.allgather_object(self._local.size)
        if len(set(sizes)) != 1:
            self._local.free()
            raise InvalidArgumentError(
                f"strategy 'hierarchical': Expect: the same number of ranks on every machine "
                f"Actual: {sorted(set(sizes))} ranks per machine (use strategy 'zero1' or 'replicated')")
        # Ranks with the same local rank, one per machine, ordered by machine.
        self.cross = comm.split(self._local.rank, comm.rank)
        self.machines = self.cross.size
        self.cross_compression = compression
        self.cross_compressor = make_compressor(compression, self.cross, None)
        super().__init__(comm, variables, scalar_names, shared_memory=self._local.size > 1)

    @classmethod
    def check_options(cls, options: Mapping[str, Any], comm: Communicator, optimizer=None) -> dict:
        opts = super(Zero1, cls).check_options(options, comm, optimizer)
        opts["compression"] = check_compression(opts["compression"], "compression")
        return opts

    @classmethod
    def preference(cls, comm: Communicator, optimizer, options: Mapping[str, Any]) -> int | None:
        # Several machines with several ranks each (the same number): it puts each machine's
        # bytes on the network once where the flat strategies put each rank's, and it measured
        # faster there (docs/scaling.md).  A collective, called alike on every rank.
        if comm.size < 4:
            return None
        local = comm.split_local()
        try:
            per_machine = comm.allgather_object(local.size)
        finally:
            local.free()
        if len(set(per_machine)) == 1 and 1 < per_machine[0] < comm.size:
            return 2
        return None

    def _shard_group(self, comm: Communicator) -> Communicator:
        return self._local

    def _across_groups(self, block: np.ndarray) -> None:
        if self.machines == 1:
            return
        if self.cross_compressor is not None:
            self.cross_compressor.allreduce_(block)
        else:
            self.cross.allreduce_(block)

    def close(self) -> None:
        """Free the shared windows and the two communicators (a collective)."""
        if self._closed:
            return
        super().close()
        self.cross.free()
        self._local.free()
