"""``tf.train.Saver`` writing distnet's HDF5 checkpoints.

``saver.save(sess, "dir/model.ckpt", global_step=100)`` writes the HDF5
file ``dir/model.ckpt-100`` (the path TF1 returns; see docs/checkpoints.md
for the layout, ``distnet inspect`` reads it) and, as TF1, a text file
``dir/checkpoint`` naming the newest files, which ``latest_checkpoint`` and
``get_checkpoint_state`` read.  Variables are stored under their TF1 names
(``params/Variable_1``); a moving average's shadow
``<var>/ExponentialMovingAverage`` goes to ``ema/<var>``; the optimizer's
slots and iteration count, and the global step, are stored too.  Under
data parallelism only rank 0 writes, and a restore reads on rank 0 and
broadcasts.
"""
from __future__ import annotations

import os
import re
from typing import Any

import numpy as np

import distnet
from distnet.checkpoint import CheckpointState, load, write_checkpoint
from distnet.compat.v1.errors import FailedPreconditionError
from distnet.compat.v1.variables import Variable, global_variables
from distnet.errors import CheckpointError

_EMA_SUFFIX = "/ExponentialMovingAverage"


class NotFoundError(CheckpointError, KeyError):
    """A variable of the Saver is not in the checkpoint (TF1's ``tf.errors.NotFoundError``)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class Saver:
    """TF1's ``tf.train.Saver(var_list=None, max_to_keep=5)``.

    ``var_list``: None (all global variables), a list of variables, or a dict
    ``{name in the checkpoint: variable}`` (e.g. ``ema.variables_to_restore()``).
    """

    def __init__(self, var_list: Any = None, reshape: bool = False, sharded: bool = False, max_to_keep: int = 5,
                 keep_checkpoint_every_n_hours: float = 10000.0, name: str | None = None, restore_sequentially: bool = False,
                 saver_def: Any = None, builder: Any = None, defer_build: bool = False, allow_empty: bool = False,
                 write_version: Any = None, pad_step_number: bool = False, save_relative_paths: bool = False,
                 filename: Any = None):
        if var_list is None:
            var_list = global_variables()
        if isinstance(var_list, dict):
            mapping = dict(var_list)
        else:
            mapping = {}
            for v in var_list:
                if not isinstance(v, Variable):
                    raise TypeError(f"Saver: Expect: tf.Variables Actual: {v!r}")
                if v.op.name in mapping:
                    raise ValueError(f"At least two variables have the same name: {v.op.name}")
                mapping[v.op.name] = v
        if not mapping and not allow_empty:
            raise ValueError("No variables to save")
        self._map = dict(sorted(mapping.items()))
        self._max_to_keep = max_to_keep
        self._kept: list[str] = []

    # -- saving ------------------------------------------------------------------------
    def save(self, sess, save_path: str, global_step: Any = None, latest_filename: str | None = None,
             meta_graph_suffix: str = "meta", write_meta_graph: bool = True, write_state: bool = True,
             strip_default_attrs: bool = False, save_debug_info: bool = False) -> str:
        """Write the variables' values; returns the checkpoint's path (``save_path-<step>``).

        Under data parallelism every rank calls it: rank 0 writes, the others wait."""
        return self._save(sess, save_path, global_step=global_step, latest_filename=latest_filename,
                          write_state=write_state, collective=True)

    def _save(self, sess, save_path: str, *, global_step: Any = None, latest_filename: str | None = None,
              write_state: bool = True, collective: bool) -> str:
        """``save``; with ``collective=False`` rank 0 writes and no other rank takes part (a chief's
        CheckpointSaverHook, which runs on rank 0 alone)."""
        if global_step is not None:
            step = int(sess.run(global_step)) if not isinstance(global_step, (int, np.integer)) else int(global_step)
            path = f"{save_path}-{step}"
        else:
            step, path = None, save_path
        params, ema = {}, {}
        for ckpt_name, v in self._map.items():
            st = v._storage(sess)
            if st is None:
                raise FailedPreconditionError(f"Attempting to use uninitialized value {v.op.name} (in Saver.save)")
            if ckpt_name.endswith(_EMA_SUFFIX) and getattr(v, "_ema", None) is not None:
                ema[ckpt_name[:-len(_EMA_SUFFIX)]] = np.array(st.data, copy=True)
            else:
                params[ckpt_name] = np.array(st.data, copy=True)
        if step is None:
            gs = next((v for v in self._map.values() if v.op.name == "global_step"), None)
            step = int(gs._storage(sess).data) if gs is not None and gs._storage(sess) is not None else 0
        optimizer = _optimizer_state(sess)
        comm = sess.graph.multi_rank_comm()
        state = CheckpointState(params=params, ema=ema, step=max(step, 0), optimizer=optimizer,
                                world_size=comm.size if comm is not None else 1)
        directory = os.path.dirname(os.path.abspath(path))
        if comm is None or comm.rank == 0:
            os.makedirs(directory, exist_ok=True)
            write_checkpoint(path, state)
            self._kept.append(path)
            while self._max_to_keep and len(self._kept) > self._max_to_keep:
                old = self._kept.pop(0)
                if old != path and os.path.exists(old):
                    os.remove(old)
            if write_state:
                _write_state(directory, path, self._kept, latest_filename or "checkpoint")
        if comm is not None and collective:
            comm.barrier()
        return path

    # -- restoring ---------------------------------------------------------------------
    def restore(self, sess, save_path: str) -> None:
        """Assign the checkpoint's values to the variables (no initializer needed)."""
        if save_path is None:
            raise ValueError("Can't load save_path when it is None.")
        comm = sess.graph.multi_rank_comm()
        values = None
        if comm is None or comm.rank == 0:
            values = self._read(sess, save_path)
        if comm is not None:
            values = comm.bcast_object(values, root=0)
        if isinstance(values, Exception):
            raise values
        from distnet.compat.v1.session import _Run

        run = _Run(sess, {})
        arrays, optimizer = values
        for ckpt_name, v in self._map.items():
            v._store(run, distnet.constant(arrays[ckpt_name]))
        if optimizer is not None and optimizer.get("slots") and len(sess.graph._optimizers) == 1:
            # Loaded into the native optimizer before its next step (see train.Optimizer._step).
            sess.set_resource(("optimizer-state", sess.graph._optimizers[0]),
                              {"iterations": optimizer["iterations"], "slots": optimizer["slots"]})

    def _read(self, sess, save_path: str):
        try:
            state = load(save_path)
        except CheckpointError as err:
            if not os.path.exists(save_path):
                return NotFoundError(f"Failed to find any matching files for {save_path}: Expect: a path written by "
                                     "Saver.save (see tf.train.latest_checkpoint)")
            return err
        arrays = {}
        for ckpt_name, v in self._map.items():
            if ckpt_name in state.params:
                arr = state.params[ckpt_name]
            elif ckpt_name.endswith(_EMA_SUFFIX) and ckpt_name[:-len(_EMA_SUFFIX)] in state.ema:
                arr = state.ema[ckpt_name[:-len(_EMA_SUFFIX)]]
            else:
                return NotFoundError(f"Key {ckpt_name} not found in checkpoint {save_path} "
                                     f"(it holds {sorted(state.params)[:10]} and the averages of {sorted(state.ema)[:10]})")
            if tuple(arr.shape) != tuple(v.shape.as_list()):
                return CheckpointError(f"Assign requires shapes of both tensors to match: variable {v.op.name} "
                                       f"Expect: {v.shape.as_list()} Actual: {list(arr.shape)} in {save_path}")
            arrays[ckpt_name] = arr
        opt = state.optimizer if state.optimizer.get("slots") else None
        return arrays, opt

    def last_checkpoints(self) -> list:
        return list(self._kept)

    def as_saver_def(self):
        return None


def _optimizer_state(sess) -> dict:
    natives = [(key[1], value) for key, value in sess._resources.items()
               if isinstance(key, tuple) and key[0] == "optimizer" and value is not None]
    if len(natives) != 1:
        return {"name": "", "iterations": 0, "slots": {}, "hyper": {}}
    opt, native = natives[0]
    st = native.state_dict()
    if getattr(opt, "_applier", None) is not None:   # a DistributedOptimizer: full slots (ZeRO-1 gathers them)
        st = opt._applier._full_optimizer_state(sess, st)
    return {"name": type(native).__name__, "iterations": st["iterations"], "slots": st["slots"], "hyper": {}}


def _rel(directory: str, path: str) -> str:
    return os.path.relpath(path, directory) if os.path.dirname(os.path.abspath(path)) == directory else path


def _write_state(directory: str, newest: str, kept: list, filename: str) -> None:
    lines = [f'model_checkpoint_path: "{_rel(directory, newest)}"']
    lines += [f'all_model_checkpoint_paths: "{_rel(directory, p)}"' for p in kept]
    tmp = os.path.join(directory, f".{filename}.tmp-{os.getpid()}")
    with open(tmp, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(tmp, os.path.join(directory, filename))


class CheckpointState_:
    """What ``get_checkpoint_state`` returns (TF1's CheckpointState proto fields)."""

    def __init__(self, model_checkpoint_path: str, all_model_checkpoint_paths: list):
        self.model_checkpoint_path = model_checkpoint_path
        self.all_model_checkpoint_paths = all_model_checkpoint_paths

    def __repr__(self) -> str:
        return f'model_checkpoint_path: "{self.model_checkpoint_path}"'


def get_checkpoint_state(checkpoint_dir: str, latest_filename: str | None = None) -> CheckpointState_ | None:
    """The newest checkpoint and the kept ones named in ``checkpoint_dir/checkpoint``, or None."""
    fname = os.path.join(checkpoint_dir, latest_filename or "checkpoint")
    if not os.path.exists(fname):
        return None
    newest, kept = None, []
    with open(fname) as f:
        for line in f:
            m = re.match(r'\s*(model_checkpoint_path|all_model_checkpoint_paths):\s*"(.*)"\s*$', line)
            if not m:
                continue
            p = m.group(2)
            p = p if os.path.isabs(p) else os.path.join(checkpoint_dir, p)
            if m.group(1) == "model_checkpoint_path":
                newest = p
            else:
                kept.append(p)
    if newest is None:
        return None
    return CheckpointState_(newest, kept)


def latest_checkpoint(checkpoint_dir: str, latest_filename: str | None = None) -> str | None:
    """The newest checkpoint's path in ``checkpoint_dir``, or None."""
    st = get_checkpoint_state(checkpoint_dir, latest_filename)
    if st is None or not os.path.exists(st.model_checkpoint_path):
        return None
    return st.model_checkpoint_path


def checkpoint_exists(checkpoint_prefix: str) -> bool:
    return os.path.exists(checkpoint_prefix)
