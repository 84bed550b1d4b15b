"""A training run's state as a checkpoint: assembled from the running job, restored into it, and
given to every rank (rank 0 reads, the others receive).

The Trainer and its hooks (checkpointing, keep-best) call these; the arrays cross
ranks in sorted-name order through the buffer broadcast.
"""
from __future__ import annotations

import numpy as np

from distnet.checkpoint.state import CheckpointState
from distnet.errors import CheckpointError


def assemble(*, variables, optimizer, strategy, ema, sampler, seed: int, world_size: int, config_text: str,
             data: dict, metrics: dict, conv_algorithms: dict | None = None) -> CheckpointState:
    """The full training state (same on every rank).

    A collective (every rank calls it): the strategy gathers what each rank
    holds of the slots and shadows into full arrays, so the state is the same
    whichever strategy wrote it.
    """
    opt_state = optimizer.state_dict()
    slots = {s: strategy.full_state(table) for s, table in opt_state["slots"].items()}
    shadows = strategy.full_state(ema.state_dict()) if ema is not None else {}
    return CheckpointState(
        params={v.name: v.numpy() for v in variables},
        ema=shadows,
        optimizer={"name": type(optimizer).__name__, "iterations": int(opt_state["iterations"]),
                   "slots": slots, "hyper": {}},
        step=int(optimizer.iterations),
        epoch=sampler.epoch,
        position=sampler.position,
        rng={"seed": seed},
        world_size=world_size,
        config_text=config_text,
        data=data,
        metrics=metrics,
        conv_algorithms=dict(conv_algorithms or {}),
    )


def restore(state: CheckpointState, *, variables, optimizer, strategy, ema, sampler) -> None:
    """Load ``state`` (already identical on every rank) into the job."""
    by_name = {v.name: v for v in variables}
    with strategy.writing_params():
        for name, arr in state.params.items():
            by_name[name].assign(arr)
    # Full arrays keyed by name (whatever world size wrote them) -> what this rank holds.
    slots = {s: strategy.local_state(table) for s, table in state.optimizer["slots"].items()}
    shadows = strategy.local_state(state.ema) if state.ema else state.ema
    optimizer.load_state_dict({"iterations": state.optimizer["iterations"], "slots": slots})
    if ema is not None and shadows:
        ema.load_state_dict(shadows)
    sampler.set_position(int(state.epoch), int(state.position))


def read_latest(comm, manager, variables) -> tuple[str | None, CheckpointState | None]:
    """Rank 0 reads the newest good checkpoint of ``manager`` (None: checkpoints off) and
    every rank receives it; ``(file, state)`` or ``(None, None)`` when there is none.

    Raises:
        CheckpointError: rank 0 could not read one (raised on every rank, agreed).
    """
    found, error = None, None
    if comm.rank == 0 and manager is not None:
        expected = {v.name: (v.shape, v.dtype) for v in variables}
        try:
            found = manager.latest_good(expected)
        except CheckpointError as exc:
            error = str(exc)
    if comm.size > 1:
        # Rank 0's error is every rank's: the others must not wait for a state that never comes.
        error = comm.bcast_object(error, root=0)
    if error is not None:
        exc = CheckpointError(error)
        exc.agreed_by_all_ranks = True
        raise exc
    state = broadcast_state(comm, found[1] if found is not None else None)
    return (found[0] if found is not None else None), state


def broadcast_state(comm, state):
    """Give every rank rank 0's CheckpointState (or None): metadata as a small
    object, arrays through the buffer broadcast (one buffer per dtype)."""
    if comm.size == 1:
        return state
    from distnet.distributed import broadcast_arrays

    def arrays_of(st) -> dict:
        out = {f"params/{k}": v for k, v in st.params.items()}
        out.update({f"ema/{k}": v for k, v in st.ema.items()})
        for slot, table in st.optimizer["slots"].items():
            out.update({f"slots/{slot}/{k}": v for k, v in table.items()})
        return out

    meta = None
    if comm.rank == 0 and state is not None:
        meta = {"specs": {k: (v.shape, v.dtype.str) for k, v in arrays_of(state).items()},
                "optimizer": {k: v for k, v in state.optimizer.items() if k != "slots"},
                "slot_names": sorted(state.optimizer["slots"]),
                "scalars": {k: getattr(state, k) for k in ("step", "epoch", "position", "rng", "world_size",
                                                            "config_text", "metrics", "data",
                                                            "conv_algorithms", "format_version")}}
    meta = comm.bcast_object(meta, root=0)
    if meta is None:
        return None
    if comm.rank == 0:
        arrays = {k: np.ascontiguousarray(v) for k, v in arrays_of(state).items()}
    else:
        arrays = {k: np.empty(shape, dtype=np.dtype(dt)) for k, (shape, dt) in meta["specs"].items()}
    broadcast_arrays(comm, arrays, root=0)
    params = {k[len("params/"):]: v for k, v in arrays.items() if k.startswith("params/")}
    ema = {k[len("ema/"):]: v for k, v in arrays.items() if k.startswith("ema/")}
    slots = {slot: {k[len(f"slots/{slot}/"):]: v for k, v in arrays.items() if k.startswith(f"slots/{slot}/")}
             for slot in meta["slot_names"]}
    return CheckpointState(params=params, ema=ema, optimizer={**meta["optimizer"], "slots": slots},
                           **meta["scalars"])
