"""``CheckpointManager``: a directory of numbered checkpoints.

* Finished files are named ``ckpt-<step, 8+ digits>.h5``; a file being
  written is ``.ckpt-<step>.h5.tmp-<pid>`` (a hidden name that never matches
  the finished pattern), so :meth:`CheckpointManager.latest` never returns a
  half-written file.
* A new checkpoint is written, renamed, then re-read and verified (structure,
  fletcher32, SHA-256) before the oldest beyond ``max_to_keep`` is deleted.
* When the writer's manager starts, temporary files left by a killed writer
  are removed.
* :meth:`CheckpointManager.restore_latest` falls back to the previous good
  file when the newest is corrupt, with a :class:`CheckpointWarning` naming
  the file and the error.

Keras' ``ModelCheckpoint`` / TF's ``tf.train.CheckpointManager`` are the
models: ``max_to_keep`` counts finished checkpoints, the newest is the one
with the highest step.
"""
from __future__ import annotations

import logging
import os
import re
import warnings
from typing import Any, Mapping

from distnet.checkpoint.reader import load
from distnet.checkpoint.state import (
    CheckpointMismatchError, CheckpointState, CheckpointWarning, ema_params,
)
from distnet.checkpoint.writer import fsync_directory, resolve_writer, write_checkpoint
from distnet.errors import CheckpointError, InvalidArgumentError

logger = logging.getLogger(__name__)

_FINISHED = re.compile(r"^ckpt-(\d{8,})\.h5$")
_TEMPORARY = re.compile(r"^\.ckpt-\d+\.h5\.tmp-\d+$")


def checkpoint_name(step: int) -> str:
    """File name of the checkpoint of global step ``step`` (``ckpt-00000100.h5``)."""
    return f"ckpt-{int(step):08d}.h5"


class CheckpointManager:
    """Keeps the last ``max_to_keep`` checkpoints of a job in ``directory``.

    Args:
        directory: where the files live (created by the writer if missing).
        max_to_keep: finished checkpoints to keep (>= 1), or None for all.
        is_writer: whether this process writes (rank 0); other processes
            only read, and their :meth:`save` does nothing.
        comm: a communicator; when given, its rank 0 is the writer.
        verify: re-read and verify each new file before deleting old ones.
    Example:
        >>> mgr = CheckpointManager("runs/job/ckpt", max_to_keep=3, comm=comm)
        >>> mgr.save(state)                      # rank 0 writes, others return None
        >>> state = mgr.restore_latest(expected_from(params))
    """

    def __init__(self, directory: str | os.PathLike, max_to_keep: int | None = 5,
                 is_writer: bool = True, *, comm: Any = None, verify: bool = True):
        if max_to_keep is not None and (isinstance(max_to_keep, bool) or not isinstance(max_to_keep, int)
                                        or max_to_keep < 1):
            raise InvalidArgumentError(f"max_to_keep: Expect: an int >= 1 or None Actual: {max_to_keep!r}")
        self.directory = os.path.abspath(os.fspath(directory))
        self.max_to_keep = max_to_keep
        self.is_writer = resolve_writer(comm, is_writer)
        self.verify = bool(verify)
        #: Temporary files removed when this manager started (writer only).
        self.removed_temporary: list[str] = []
        if self.is_writer:
            os.makedirs(self.directory, exist_ok=True)
            self._remove_stale_temporary()

    # -- listing -----------------------------------------------------------
    def checkpoints(self) -> list[str]:
        """Finished checkpoint paths, oldest (lowest step) first."""
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return []
        found = []
        for name in names:
            m = _FINISHED.match(name)
            if m:
                found.append((int(m.group(1)), os.path.join(self.directory, name)))
        return [p for _, p in sorted(found)]

    def latest(self) -> str | None:
        """Path of the newest finished checkpoint, or None when there is none."""
        found = self.checkpoints()
        return found[-1] if found else None

    def _remove_stale_temporary(self) -> None:
        for name in sorted(os.listdir(self.directory)):
            if _TEMPORARY.match(name):
                path = os.path.join(self.directory, name)
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    continue
                self.removed_temporary.append(path)
                logger.warning("removed stale temporary checkpoint %s (left by a killed writer)", path)

    # -- writing -----------------------------------------------------------
    def save(self, state: CheckpointState) -> str | None:
        """Write ``state`` as ``ckpt-<step>.h5``, verify it, then delete the
        oldest files beyond ``max_to_keep``.

        Returns:
            The new file's path on the writer, None elsewhere.
        Raises:
            CheckpointError: writing or verification failed; the previous
                checkpoints are all kept (a file that failed verification is
                removed).
        """
        if not self.is_writer:
            return None
        if not isinstance(state, CheckpointState):
            raise InvalidArgumentError(f"state: Expect: a CheckpointState Actual: {type(state).__name__}")
        os.makedirs(self.directory, exist_ok=True)
        path = os.path.join(self.directory, checkpoint_name(state.step))
        write_checkpoint(path, state, is_writer=True)
        if self.verify:
            try:
                load(path, allow_nonfinite=True)   # the file's integrity; its values are load()'s business
            except CheckpointError as err:
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass
                raise CheckpointError(f"checkpoint {path} failed verification after writing and was "
                                      f"removed; older checkpoints are kept: {err}") from err
        self._rotate(path)
        return path

    def _rotate(self, just_written: str) -> None:
        found = self.checkpoints()
        newer = found[found.index(just_written) + 1:] if just_written in found else []
        if newer:
            # e.g. a run resumed from an older file after a corrupt newest one
            warnings.warn(f"saved {just_written}, but newer checkpoints exist ({', '.join(newer)}): "
                          "latest() still returns the newest", CheckpointWarning, stacklevel=3)
        if self.max_to_keep is None:
            return
        doomed = found[:-self.max_to_keep] if len(found) > self.max_to_keep else []
        doomed = [p for p in doomed if p != just_written]  # never the file just saved
        for path in doomed:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        if doomed:
            fsync_directory(self.directory)

    # -- reading -----------------------------------------------------------
    def restore(self, path: str | os.PathLike, expected: Mapping[str, Any] | None = None) -> CheckpointState:
        """Load one checkpoint (see :func:`distnet.checkpoint.load`)."""
        return load(path, expected)

    def restore_latest(self, expected: Mapping[str, Any] | None = None) -> CheckpointState | None:
        """Load the newest good checkpoint (see :meth:`latest_good`), or None."""
        found = self.latest_good(expected)
        return found[1] if found is not None else None

    def latest_good(self, expected: Mapping[str, Any] | None = None) -> tuple[str, CheckpointState] | None:
        """Load the newest good checkpoint.

        A newest file that is corrupt, unreadable or holds NaN/inf is
        reported with a :class:`CheckpointWarning` (naming the file and the
        error) and the previous one is tried.  A file that is intact but does
        not match ``expected`` is not a reason to fall back: that error is raised.

        Returns:
            ``(path, state)``, or None when the directory holds no checkpoint.
        Raises:
            CheckpointMismatchError: the newest readable file does not match
                the model.
            CheckpointError: every checkpoint is unusable (each file's
                problem listed).
        """
        found = self.checkpoints()
        if not found:
            return None
        problems = []
        for path in reversed(found):
            try:
                return path, load(path, expected)
            except CheckpointMismatchError:
                raise
            except CheckpointError as err:
                problems.append(f"{path}: {err}")
                warnings.warn(f"skipping unusable checkpoint {path}: {err}", CheckpointWarning,
                              stacklevel=2)
        raise CheckpointError(f"no usable checkpoint in {self.directory}; every file failed: "
                              + "; ".join(problems))


def export_weights(path_in: str | os.PathLike, path_out: str | os.PathLike, use_ema: bool = True,
                   *, strict: bool = True) -> str:
    """Write a params-only checkpoint for evaluation or export.

    # TF1: evaluation restores ``ema.variables_to_restore()``, i.e. the shadow
    # values under the variables' own names; the exported file does the same:
    # its /params hold the shadows, and it has no /ema, no optimizer slots and
    # no RNG state (step, epoch, config text, metrics and data identity are kept).

    Args:
        path_in: a checkpoint.
        path_out: the file to write (atomically).
        use_ema: put the EMA shadows in place of the trained weights.
        strict: with ``use_ema``, every parameter must have a shadow.
    Returns:
        The absolute path written.
    Example:
        >>> export_weights("ckpt/ckpt-00001000.h5", "model-ema.h5")
    """
    state = load(path_in)
    params = ema_params(state, strict=strict) if use_ema else state.params
    out = CheckpointState(params=dict(params), step=state.step, epoch=state.epoch,
                          position=state.position, world_size=state.world_size,
                          config_text=state.config_text, metrics=dict(state.metrics),
                          data=dict(state.data), conv_algorithms=dict(state.conv_algorithms))
    write_checkpoint(path_out, out, is_writer=True)
    return os.path.abspath(os.fspath(path_out))
