"""TF1's session-run hooks (``tf.train.StopAtStepHook``, ``LoggingTensorHook``,
``CheckpointSaverHook``, ...) and Horovod's ``BroadcastGlobalVariablesHook``.

Each hook owns what it opens (its summary writer) and talks to the session
only through the hook interface of :mod:`distnet.compat.v1.monitored`.  The
global step the hooks fetch is read after the caller's fetches (a run
computes its fetches in order), so it already counts the step just taken;
the hooks that act on a step read it once more, as TF1's do, and act on
that value.
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from distnet.compat.v1.graph import Tensor, get_default_graph
from distnet.compat.v1.misc import logging
from distnet.compat.v1.session_run_hook import SessionRunArgs, SessionRunHook


class NanLossDuringTrainingError(RuntimeError):
    """The loss watched by a :class:`NanTensorHook` became NaN."""

    def __str__(self) -> str:
        return "NaN loss during training."


class SecondOrStepTimer:
    """Triggers every ``every_secs`` seconds or every ``every_steps`` steps (exactly one)."""

    def __init__(self, every_secs: float | None = None, every_steps: int | None = None):
        if every_secs is None and every_steps is None:
            raise ValueError("Either every_secs or every_steps should be provided.")
        if every_secs is not None and every_steps is not None:
            raise ValueError("Can not provide both every_secs and every_steps.")
        self._every_secs, self._every_steps = every_secs, every_steps
        self.reset()

    def reset(self) -> None:
        self._last_time, self._last_step = None, None

    def should_trigger_for_step(self, step: int) -> bool:
        if self._last_step is None:
            return True
        if self._last_step == step:
            return False
        if self._every_secs is not None:
            return time.time() >= self._last_time + self._every_secs
        return step >= self._last_step + self._every_steps

    def update_last_triggered_step(self, step: int) -> tuple:
        """``(seconds, steps)`` since the last trigger (``(None, None)`` the first time)."""
        now = time.time()
        elapsed = (None, None) if self._last_time is None else (now - self._last_time, step - self._last_step)
        self._last_time, self._last_step = now, step
        return elapsed

    def last_triggered_step(self) -> int | None:
        return self._last_step


def _global_step_tensor(hook: str) -> Tensor:
    from distnet.compat.v1.train import get_global_step

    gs = get_global_step()
    if gs is None:
        raise RuntimeError(f"Global step should be created to use {hook}: Expect: "
                           "tf.train.get_or_create_global_step() and minimize(loss, global_step=...)")
    return gs


def _comm():
    return get_default_graph().multi_rank_comm()


def _rank0_decides(comm, flag: bool, buf: np.ndarray) -> bool:
    """Rank 0's ``flag`` on every rank, sent in ``buf`` (a hook's one-int array, so a decision
    every step is one small Bcast, not a pickled object)."""
    buf[0] = bool(flag)
    comm.bcast_(buf, root=0)
    return bool(buf[0])


class StopAtStepHook(SessionRunHook):
    """Requests a stop when the global step reaches ``last_step``, or ``num_steps``
    after the step the session started at (exactly one of the two)."""

    def __init__(self, num_steps: int | None = None, last_step: int | None = None):
        if num_steps is None and last_step is None:
            raise ValueError("One of num_steps or last_step must be specified.")
        if num_steps is not None and last_step is not None:
            raise ValueError("Only one of num_steps or last_step can be specified.")
        if num_steps is not None and num_steps < 0:
            raise ValueError(f"num_steps: Expect: >= 0 Actual: {num_steps}")
        self._num_steps, self._last_step = num_steps, last_step

    def begin(self) -> None:
        self._gs = _global_step_tensor("StopAtStepHook")

    def after_create_session(self, session, coord) -> None:
        step = int(session.run(self._gs))
        if self._last_step is None:
            self._last_step = step + self._num_steps

    def before_run(self, run_context):
        return SessionRunArgs(self._gs)

    def after_run(self, run_context, run_values) -> None:
        if int(run_values.results) >= self._last_step:
            run_context.request_stop()


class NanTensorHook(SessionRunHook):
    """Raises :class:`NanLossDuringTrainingError` (or, with ``fail_on_nan_loss=False``,
    requests a stop) when ``loss_tensor`` is NaN."""

    def __init__(self, loss_tensor, fail_on_nan_loss: bool = True):
        self._loss, self._fail = loss_tensor, fail_on_nan_loss

    def before_run(self, run_context):
        return SessionRunArgs(self._loss)

    def after_run(self, run_context, run_values) -> None:
        if np.isnan(run_values.results):
            message = "Model diverged with loss = NaN."
            if self._fail:
                logging.error(message)
                raise NanLossDuringTrainingError
            logging.warning(message)
            run_context.request_stop()


class LoggingTensorHook(SessionRunHook):
    """Logs (``tf.logging.info``) the values of ``tensors`` (a dict ``{tag: tensor or name}`` or a
    list) every ``every_n_iter`` runs or ``every_n_secs`` seconds, the first run included, and
    at the end when ``at_end``; ``formatter(values)`` makes the line.  Each rank logs its own values."""

    def __init__(self, tensors, every_n_iter: int | None = None, every_n_secs: float | None = None,
                 at_end: bool = False, formatter=None):
        if not at_end and (every_n_iter is None) == (every_n_secs is None):
            raise ValueError("either at_end and/or exactly one of every_n_iter and every_n_secs must be provided.")
        if every_n_iter is not None and every_n_iter <= 0:
            raise ValueError(f"invalid every_n_iter={every_n_iter}.")
        if isinstance(tensors, dict):
            self._order = sorted(tensors)
        else:
            self._order = list(tensors)
            tensors = {t: t for t in tensors}
        self._tensors = tensors
        self._timer = (None if every_n_iter is None and every_n_secs is None
                       else SecondOrStepTimer(every_secs=every_n_secs, every_steps=every_n_iter))
        self._at_end, self._formatter = at_end, formatter

    def begin(self) -> None:
        g = get_default_graph()
        if self._timer is not None:
            self._timer.reset()
        self._iter = 0
        self._current = {tag: g.as_graph_element(t) for tag, t in self._tensors.items()}

    def before_run(self, run_context):
        self._trigger = self._timer is not None and self._timer.should_trigger_for_step(self._iter)
        return SessionRunArgs(self._current) if self._trigger else None

    def _log(self, values: dict) -> None:
        elapsed = self._timer.update_last_triggered_step(self._iter)[0] if self._timer is not None else None
        if self._formatter is not None:
            logging.info(self._formatter(values))
            return
        with np.printoptions(suppress=True):
            line = ", ".join(f"{tag} = {values[tag]!s}" for tag in self._order)
        logging.info(f"{line} ({elapsed:.3f} sec)" if elapsed is not None else line)

    def after_run(self, run_context, run_values) -> None:
        if self._trigger:
            self._log(run_values.results)
        self._iter += 1

    def end(self, session) -> None:
        if self._at_end:
            self._log(session.run(self._current))


def _writer_for(output_dir: str | None, summary_writer: Any):
    from distnet.compat.v1.summary import FileWriter

    if summary_writer is not None:
        return summary_writer, False
    if output_dir:
        return FileWriter(output_dir), True
    return None, False


class StepCounterHook(SessionRunHook):
    """Logs and writes the summary ``global_step/sec`` every ``every_n_steps`` steps
    (or ``every_n_secs`` seconds)."""

    def __init__(self, every_n_steps: int | None = 100, every_n_secs: float | None = None,
                 output_dir: str | None = None, summary_writer: Any = None):
        if (every_n_steps is None) == (every_n_secs is None):
            raise ValueError("exactly one of every_n_steps and every_n_secs should be provided.")
        self._timer = SecondOrStepTimer(every_steps=every_n_steps, every_secs=every_n_secs)
        self._output_dir, self._given_writer = output_dir, summary_writer

    def begin(self) -> None:
        self._writer, self._owns_writer = _writer_for(self._output_dir, self._given_writer)
        self._gs = _global_step_tensor("StepCounterHook")
        self._tag = f"{self._gs.op.name}/sec"

    def before_run(self, run_context):
        return SessionRunArgs(self._gs)

    def after_run(self, run_context, run_values) -> None:
        step = int(run_values.results)
        if not self._timer.should_trigger_for_step(step):
            return
        secs, steps = self._timer.update_last_triggered_step(step)
        if secs is None or secs <= 0:
            return
        rate = steps / secs
        if self._writer is not None:
            from distnet.compat.v1.summary import Summary

            self._writer.add_summary(Summary([("scalar", self._tag, float(rate))]), step)
        logging.info("%s: %g", self._tag, rate)

    def end(self, session) -> None:
        if self._writer is not None:
            self._writer.close() if self._owns_writer else self._writer.flush()


class SummarySaverHook(SessionRunHook):
    """Runs ``summary_op`` (default the scaffold's, i.e. ``merge_all()``) every ``save_steps``
    steps (or ``save_secs`` seconds), the first run included, and writes it at the global step.

    Under data parallelism it runs on every rank (``MonitoredTrainingSession`` sees to it);
    a rank without ``output_dir`` runs the summaries and writes nothing.  One given to
    ``MonitoredTrainingSession`` as a chief-only hook runs on rank 0 alone: its summaries
    are then rank 0's values (no all-reduce)."""

    def __init__(self, save_steps: int | None = None, save_secs: float | None = None, output_dir: str | None = None,
                 summary_writer: Any = None, scaffold: Any = None, summary_op: Any = None):
        if (scaffold is None) == (summary_op is None):
            raise ValueError("Exactly one of scaffold or summary_op must be provided.")
        self._timer = SecondOrStepTimer(every_secs=save_secs, every_steps=save_steps)
        self._by_secs = save_secs is not None
        self._output_dir, self._given_writer = output_dir, summary_writer
        self._scaffold, self._summary_op = scaffold, summary_op
        self._decision = np.zeros(1, np.int32)

    def begin(self) -> None:
        self._writer, self._owns_writer = _writer_for(self._output_dir, self._given_writer)
        self._gs = _global_step_tensor("SummarySaverHook")
        self._next_step = None

    def _op(self):
        op = self._summary_op if self._summary_op is not None else self._scaffold.summary_op
        if isinstance(op, (list, tuple)):
            from distnet.compat.v1.summary import merge

            op = merge(op) if op else None
        return op

    def before_run(self, run_context):
        return self._before_run(run_context, rank_local=False)

    def _before_run(self, run_context, rank_local: bool):
        """``rank_local``: the hook runs on this rank alone (a chief-only hook; see monitored.py)."""
        self._request = self._next_step is None or self._timer.should_trigger_for_step(self._next_step)
        comm = _comm()
        if comm is not None and self._by_secs and not rank_local:
            # Time differs between ranks: rank 0 decides, so every rank runs the summaries together.
            self._request = _rank0_decides(comm, self._request, self._decision)
        fetches = {"global_step": self._gs}
        if self._request and self._op() is not None:
            fetches["summary"] = self._op()
        return SessionRunArgs(fetches)

    def after_run(self, run_context, run_values) -> None:
        step = int(run_values.results["global_step"])
        if self._request:
            self._timer.update_last_triggered_step(step)
            if self._writer is not None and "summary" in run_values.results:
                self._writer.add_summary(run_values.results["summary"], step)
        self._next_step = step + 1

    def end(self, session) -> None:
        if self._writer is not None:
            self._writer.close() if self._owns_writer else self._writer.flush()


class CheckpointSaverHook(SessionRunHook):
    """Saves a checkpoint ``checkpoint_dir/model.ckpt-<step>`` when the session starts, every
    ``save_steps`` steps (or ``save_secs`` seconds) and at the end (distnet's HDF5 format).

    Under data parallelism rank 0 writes.  A hook of your own may run on rank 0 alone
    (``chief_only_hooks``): it saves without the other ranks (all hold the same values).
    The hook ``MonitoredTrainingSession`` makes runs on every rank and saves with all of
    them (``Saver.save``), so state that only all ranks together hold (ZeRO-1's sharded
    optimizer slots) is gathered; with ``save_secs`` rank 0 decides when."""

    #: Whether every rank runs this hook (:class:`EveryRankCheckpointSaverHook`) or one may run alone.
    _on_every_rank = False

    def __init__(self, checkpoint_dir: str, save_secs: float | None = None, save_steps: int | None = None,
                 saver: Any = None, checkpoint_basename: str = "model.ckpt", scaffold: Any = None,
                 listeners: Any = None, save_graph_def: bool = True):
        import os

        if saver is not None and scaffold is not None:
            raise ValueError("You cannot provide both saver and scaffold.")
        self._timer = SecondOrStepTimer(every_secs=save_secs, every_steps=save_steps)
        self._dir, self._path = checkpoint_dir, os.path.join(checkpoint_dir, checkpoint_basename)
        self._saver, self._scaffold = saver, scaffold
        self._listeners = list(listeners or [])
        self._by_secs = save_secs is not None
        self._decision = np.zeros(1, np.int32)

    def begin(self) -> None:
        self._gs = _global_step_tensor("CheckpointSaverHook")
        for listener in self._listeners:
            listener.begin()

    def _get_saver(self):
        if self._saver is not None:
            return self._saver
        if self._scaffold is not None and self._scaffold.saver is not None:
            return self._scaffold.saver
        from distnet.compat.v1.graph import GraphKeys

        found = get_default_graph().get_collection(GraphKeys.SAVERS)
        if not found:
            from distnet.compat.v1.saver import Saver

            found = [Saver()]
        self._saver = found[0]
        return self._saver

    def _save(self, session, step: int) -> bool:
        for listener in self._listeners:
            listener.before_save(session, step)
        comm = _comm()
        if comm is not None and self._on_every_rank:
            self._get_saver().save(session, self._path, global_step=step)
        elif comm is None or comm.rank == 0:
            self._get_saver()._save(session, self._path, global_step=step, collective=False)
        if comm is None or comm.rank == 0:
            logging.info("Saving checkpoints for %d into %s.", step, self._path)
        stop = False
        for listener in self._listeners:
            stop = bool(listener.after_save(session, step)) or stop
        return stop

    def after_create_session(self, session, coord) -> None:
        step = int(session.run(self._gs))
        self._save(session, step)
        self._timer.update_last_triggered_step(step)

    def before_run(self, run_context):
        return SessionRunArgs(self._gs)

    def after_run(self, run_context, run_values) -> None:
        step = int(run_values.results)
        trigger = self._timer.should_trigger_for_step(step)
        comm = _comm()
        if comm is not None and self._on_every_rank and self._by_secs:
            trigger = _rank0_decides(comm, trigger, self._decision)   # time differs between ranks: rank 0 decides
        if trigger:
            self._timer.update_last_triggered_step(step)
            if self._save(run_context.session, step):
                run_context.request_stop()

    def end(self, session) -> None:
        step = int(session.run(self._gs))
        if step != self._timer.last_triggered_step():
            self._save(session, step)
        for listener in self._listeners:
            listener.end(session, step)


class EveryRankCheckpointSaverHook(CheckpointSaverHook):
    """The ``CheckpointSaverHook`` ``MonitoredTrainingSession`` puts on every rank: all ranks
    save together (``Saver.save``), and with ``save_secs`` rank 0 decides when."""

    _on_every_rank = True


class CheckpointSaverListener:
    """Called around each save of a :class:`CheckpointSaverHook`; ``after_save`` returning True stops."""

    def begin(self) -> None:
        pass

    def before_save(self, session, global_step_value) -> None:
        pass

    def after_save(self, session, global_step_value) -> bool | None:
        return None

    def end(self, session, global_step_value) -> None:
        pass


class FinalOpsHook(SessionRunHook):
    """Runs ``final_ops`` when the session ends; their values are ``final_ops_values``."""

    def __init__(self, final_ops, final_ops_feed_dict=None):
        self._ops, self._feed = final_ops, final_ops_feed_dict
        self._values = None

    @property
    def final_ops_values(self):
        return self._values

    def end(self, session) -> None:
        if self._ops is not None:
            self._values = session.run(self._ops, feed_dict=self._feed)


class FeedFnHook(SessionRunHook):
    """Feeds ``feed_fn()`` (a dict) to every run."""

    def __init__(self, feed_fn):
        self._feed_fn = feed_fn

    def before_run(self, run_context):
        return SessionRunArgs(fetches=None, feed_dict=self._feed_fn())


class BroadcastGlobalVariablesHook(SessionRunHook):
    """Horovod's hook: once the session is created, every global variable takes rank
    ``root_rank``'s value (put it in ``hooks``, on every rank)."""

    def __init__(self, root_rank: int = 0, device: str = ""):
        self._root = int(root_rank)
        self._op = None

    def begin(self) -> None:
        from distnet.compat.v1.distributed import broadcast_global_variables

        if self._op is None or self._op.graph is not get_default_graph():
            self._op = broadcast_global_variables(self._root)

    def after_create_session(self, session, coord) -> None:
        session.run(self._op)
