"""HDF5 checkpoints: parameters, optimizer slots, EMA shadows and the job's
state, written atomically by one rank and verified on load.

Layout (see docs/checkpoints.md)::

    /                 @format @sha256
    /params/<name>    trained weights, e.g. /params/conv2d/kernel
    /ema/<name>       EMA shadow weights (may be empty)
    /optimizer        @name @iterations @hyper
    /optimizer/<slot>/<name>   e.g. /optimizer/m/dense/kernel
    /state            @format_version @distnet_version @step @epoch @position
                      @world_size @config_text @rng @metrics @data (format 2)
                      @conv_algorithms (format 3)
"""
from distnet.checkpoint.manager import CheckpointManager, checkpoint_name, export_weights
from distnet.checkpoint.reader import load, verify
from distnet.checkpoint.state import (
    FORMAT_VERSION, READABLE_VERSIONS, CheckpointMismatchError, CheckpointState, CheckpointWarning,
    CorruptCheckpointError, NonFiniteCheckpointError, UnsafeCheckpointError, ema_params, expected_from,
)
from distnet.checkpoint.writer import compute_digest, write_checkpoint

#: Short alias: ``distnet.checkpoint.save(path, state)``.
save = write_checkpoint

__all__ = [
    "CheckpointManager", "CheckpointMismatchError", "CheckpointState", "CheckpointWarning",
    "CorruptCheckpointError", "FORMAT_VERSION", "NonFiniteCheckpointError", "READABLE_VERSIONS",
    "UnsafeCheckpointError", "checkpoint_name",
    "compute_digest", "ema_params", "expected_from", "export_weights", "load", "save",
    "verify", "write_checkpoint",
]
