"""``tf.train.MonitoredTrainingSession``: a session that initializes or
restores the variables, runs hooks around every ``run``, and knows when to
stop.

::

    hooks = [tf.train.StopAtStepHook(last_step=1000),
             tf.train.LoggingTensorHook({"loss": loss}, every_n_iter=100)]
    with tf.train.MonitoredTrainingSession(checkpoint_dir="ckpt", hooks=hooks) as sess:
        while not sess.should_stop():
            sess.run(train_op, feed_dict=...)

The life of a monitored session (TF1's):

1. every hook's ``begin()`` (hooks may still add ops), then the graph is
   finalized;
2. the session is created: the newest checkpoint of ``checkpoint_dir`` is
   restored (distnet's checkpoint format, see saver.py), else the global
   variables are initialized; then the local variables are initialized;
   every hook's ``after_create_session(session, coord)``;
3. each ``run(fetches, feed_dict)``: the hooks' ``before_run`` add fetches
   and feeds to the same call; ``after_run`` sees their values and may
   ``request_stop()``, after which ``should_stop()`` is True;
4. on leaving the ``with`` block (or ``close()``) every hook's ``end(session)``,
   then the session closes and the graph is unfinalized.  An
   ``OutOfRangeError`` (input exhausted) or ``StopIteration`` raised by a
   ``run`` ends the ``with`` block quietly, as in TF1.

Under data parallelism (a ``DistributedOptimizer`` in the graph, N ranks) a
Horovod-style program passes ``is_chief=(rank == 0)`` and a checkpoint
directory on rank 0 only.  Then every rank restores the checkpoint rank 0
found (read on rank 0 and broadcast) or initializes from rank 0's values;
checkpoints and summaries are saved on every rank at the same steps (rank 0
decides when they go by seconds) and written by rank 0 (a scalar of fed
data is global, see summary.py).
"""
from __future__ import annotations

from typing import Any

from distnet.compat.v1.errors import OutOfRangeError
from distnet.compat.v1.graph import GraphKeys, get_default_graph
from distnet.compat.v1.session import Session

from distnet.compat.v1.session_run_hook import (  # noqa: F401  (tf.train's names)
    SessionRunArgs, SessionRunContext, SessionRunHook, SessionRunValues,
)

# -- what the session is made of -----------------------------------------------------------

class Scaffold:
    """The ops a monitored session needs, made when it starts if not given: ``init_op``
    (global variables), ``local_init_op``, ``summary_op`` (``merge_all``), ``saver``."""

    def __init__(self, init_op=None, init_feed_dict=None, init_fn=None, ready_op=None,
                 ready_for_local_init_op=None, local_init_op=None, summary_op=None, saver=None, copy_from_scaffold=None):
        self.init_op, self.init_feed_dict, self.init_fn = init_op, init_feed_dict, init_fn
        self.ready_op, self.ready_for_local_init_op = ready_op, ready_for_local_init_op
        self.local_init_op, self.summary_op, self.saver = local_init_op, summary_op, saver
        self._finalized = False

    def finalize(self) -> Scaffold:
        """Make the missing ops (once), then finalize the graph."""
        from distnet.compat.v1.saver import Saver
        from distnet.compat.v1.summary import merge_all
        from distnet.compat.v1.variables import (
            global_variables,
            global_variables_initializer,
            local_variables_initializer,
        )

        if self._finalized:
            return self
        g = get_default_graph()
        if self.init_op is None:
            found = g.get_collection(GraphKeys.INIT_OP)
            self.init_op = found[0] if found else global_variables_initializer()
        if self.local_init_op is None:
            found = g.get_collection(GraphKeys.LOCAL_INIT_OP)
            self.local_init_op = found[0] if found else local_variables_initializer()
        if self.summary_op is None:
            found = g.get_collection(GraphKeys.SUMMARY_OP)
            self.summary_op = found[0] if found else merge_all()
        if self.saver is None:
            found = g.get_collection(GraphKeys.SAVERS)
            self.saver = found[0] if found else (Saver() if global_variables() else None)
        g.finalize()
        self._finalized = True
        return self


class ChiefSessionCreator:
    """Creates the session: restores the newest checkpoint of ``checkpoint_dir``
    (or ``checkpoint_filename_with_path``), else runs the scaffold's ``init_op``
    and ``init_fn``; then its ``local_init_op``."""

    def __init__(self, scaffold: Scaffold | None = None, master: str = "", config: Any = None,
                 checkpoint_dir: str | None = None, checkpoint_filename_with_path: str | None = None):
        self._scaffold = scaffold or Scaffold()
        self._checkpoint_dir = checkpoint_dir
        self._checkpoint_path = checkpoint_filename_with_path

    def _newest_checkpoint(self, graph) -> str | None:
        from distnet.compat.v1.saver import latest_checkpoint

        comm = graph.multi_rank_comm()
        path = None
        if comm is None or comm.rank == 0:
            path = self._checkpoint_path or (latest_checkpoint(self._checkpoint_dir) if self._checkpoint_dir else None)
        if comm is not None:
            # Every rank restores what rank 0 found (Saver.restore reads on rank 0 and broadcasts).
            path = comm.bcast_object(path, root=0)
        return path

    def create_session(self) -> Session:
        scaffold = self._scaffold.finalize()
        graph = get_default_graph()
        sess = Session(graph=graph)
        path = self._newest_checkpoint(graph)
        if path is not None:
            if scaffold.saver is None:
                raise ValueError(f"A checkpoint {path} was found but the graph has no variables to restore")
            scaffold.saver.restore(sess, path)
        else:
            sess.run(scaffold.init_op, feed_dict=scaffold.init_feed_dict)
            if scaffold.init_fn is not None:
                scaffold.init_fn(scaffold, sess)
        if scaffold.local_init_op is not None:
            sess.run(scaffold.local_init_op)
        return sess


#: A worker's variables are its own here (there is no shared parameter server): it makes
#: them as the chief does; under data parallelism they take rank 0's values.
WorkerSessionCreator = ChiefSessionCreator


# -- the monitored session ------------------------------------------------------------------

_HOOK_METHODS = ("begin", "after_create_session", "before_run", "after_run", "end")


def _check_hooks(hooks: list) -> list:
    for h in hooks:
        missing = [m for m in _HOOK_METHODS if not callable(getattr(h, m, None))]
        if missing:
            raise TypeError(f"MonitoredSession: hooks: Expect: tf.train.SessionRunHook objects (with "
                            f"{', '.join(_HOOK_METHODS)}) Actual: a {type(h).__name__} without {', '.join(missing)}")
    return hooks


class _ChiefOnlySummaries(SessionRunHook):
    """A ``SummarySaverHook`` given as a chief-only hook under data parallelism: it runs on
    rank 0 alone, so it decides by its own clock and its summaries are rank 0's values
    (the session runs them with ``rank_local``). Wraps the caller's hook, which is left as given."""

    def __init__(self, hook):
        self._hook = hook
        self.requested = False

    def begin(self):
        self._hook.begin()

    def after_create_session(self, session, coord):
        self._hook.after_create_session(session, coord)

    def before_run(self, run_context):
        args = self._hook._before_run(run_context, rank_local=True)
        self.requested = self._hook._request
        return args

    def after_run(self, run_context, run_values):
        self._hook.after_run(run_context, run_values)

    def end(self, session):
        self._hook.end(session)


class _MonitoredSession:
    def __init__(self, session_creator, hooks, should_recover: bool = True):
        self._hooks = _check_hooks(list(hooks or []))
        self._graph = get_default_graph()
        self._was_finalized = self._graph.finalized
        for h in self._hooks:
            h.begin()
        self._sess = session_creator.create_session()
        self._should_stop = False
        self._closed = False
        for h in self._hooks:
            h.after_create_session(self._sess, None)

    @property
    def graph(self):
        return self._graph

    def should_stop(self) -> bool:
        return self._should_stop or self._closed

    def run(self, fetches, feed_dict=None, options=None, run_metadata=None):
        """``fetches`` and the hooks' fetches in one call (the caller's first)."""
        if self._closed:
            raise RuntimeError("Run called on a closed MonitoredSession")
        context = SessionRunContext(SessionRunArgs(fetches, feed_dict), self._sess)
        extra, feeds = {}, dict(feed_dict or {})
        for i, h in enumerate(self._hooks):
            args = h.before_run(context)
            if args is None:
                continue
            if not isinstance(args, SessionRunArgs):
                raise TypeError(f"{type(h).__name__}.before_run: Expect: a tf.train.SessionRunArgs or None "
                                f"Actual: {type(args).__name__}")
            if args.fetches is not None:
                extra[i] = args.fetches
            for k, v in (args.feed_dict or {}).items():
                if k in feeds:
                    raise RuntimeError(f"Same tensor is fed by a SessionRunHook and user: {getattr(k, 'name', k)}")
                feeds[k] = v
        # A chief-only summary hook's summaries run on rank 0 alone: no all-reduce could meet a partner.
        rank_local = any(isinstance(h, _ChiefOnlySummaries) and h.requested for h in self._hooks)
        try:
            results = self._sess._run({"caller": fetches, "hooks": extra}, feed_dict=feeds or None,
                                      rank_local=rank_local)
        except (OutOfRangeError, StopIteration):
            self._should_stop = True
            raise
        for i, h in enumerate(self._hooks):
            h.after_run(context, SessionRunValues(results["hooks"].get(i), options, run_metadata))
        if context.stop_requested:
            self._should_stop = True
        return results["caller"]

    def run_step_fn(self, step_fn):
        """``step_fn(step_context)``: ``step_context.run_with_hooks(...)``, ``.session``, ``.request_stop()``."""
        return step_fn(_StepContext(self))

    def close(self) -> None:
        self._close(None)

    def _close(self, exception_type) -> None:
        if self._closed:
            return
        try:
            if exception_type is None:
                for h in self._hooks:
                    h.end(self._sess)
        finally:
            self._closed = True
            self._sess.close()
            if not self._was_finalized:
                self._graph._finalized = False

    def __enter__(self):
        return self

    def __exit__(self, exception_type, exception_value, traceback):
        if exception_type is not None and issubclass(exception_type, (OutOfRangeError, StopIteration)):
            exception_type = None
        self._close(exception_type)
        return exception_type is None


class _StepContext:
    def __init__(self, monitored: _MonitoredSession):
        self._monitored = monitored

    @property
    def session(self):
        return self._monitored._sess

    def run_with_hooks(self, *args, **kwargs):
        return self._monitored.run(*args, **kwargs)

    def request_stop(self) -> None:
        self._monitored._should_stop = True


class MonitoredSession(_MonitoredSession):
    """TF1's ``tf.train.MonitoredSession(session_creator=None, hooks=None)``."""

    def __init__(self, session_creator=None, hooks=None, stop_grace_period_secs: int = 120):
        super().__init__(session_creator or ChiefSessionCreator(), hooks)


class SingularMonitoredSession(_MonitoredSession):
    """TF1's ``tf.train.SingularMonitoredSession``: a chief's session; ``raw_session()`` is the session."""

    def __init__(self, hooks=None, scaffold=None, master: str = "", config: Any = None,
                 checkpoint_dir: str | None = None, stop_grace_period_secs: int = 120,
                 checkpoint_filename_with_path: str | None = None):
        creator = ChiefSessionCreator(scaffold=scaffold, checkpoint_dir=checkpoint_dir,
                                      checkpoint_filename_with_path=checkpoint_filename_with_path)
        super().__init__(creator, hooks)

    def raw_session(self) -> Session:
        return self._sess


class _UseDefault:
    def __repr__(self) -> str:
        return "USE_DEFAULT"


USE_DEFAULT = _UseDefault()


def MonitoredTrainingSession(master: str = "", is_chief: bool = True, checkpoint_dir: str | None = None,
                             scaffold: Scaffold | None = None, hooks=None, chief_only_hooks=None,
                             save_checkpoint_secs: Any = USE_DEFAULT, save_summaries_steps: Any = USE_DEFAULT,
                             save_summaries_secs: Any = USE_DEFAULT, config: Any = None,
                             stop_grace_period_secs: int = 120, log_step_count_steps: int = 100,
                             max_wait_secs: int = 7200, save_checkpoint_steps: Any = USE_DEFAULT,
                             summary_dir: str | None = None) -> MonitoredSession:
    """TF1's training session: ``hooks`` (and on the chief ``chief_only_hooks``) and, on the chief,
    a checkpoint every ``save_checkpoint_secs`` (default 600) or ``save_checkpoint_steps``, summaries
    every ``save_summaries_steps`` (default 100) and a step counter every ``log_step_count_steps``
    in ``summary_dir`` (default ``checkpoint_dir``)."""
    from distnet.compat.v1 import hooks as _hooks

    if save_summaries_steps is USE_DEFAULT and save_summaries_secs is USE_DEFAULT:
        save_summaries_steps, save_summaries_secs = 100, None
    save_summaries_steps = None if save_summaries_steps is USE_DEFAULT else save_summaries_steps
    save_summaries_secs = None if save_summaries_secs is USE_DEFAULT else save_summaries_secs
    if save_checkpoint_secs is USE_DEFAULT and save_checkpoint_steps is USE_DEFAULT:
        save_checkpoint_secs, save_checkpoint_steps = 600, None
    save_checkpoint_secs = None if save_checkpoint_secs is USE_DEFAULT else save_checkpoint_secs
    save_checkpoint_steps = None if save_checkpoint_steps is USE_DEFAULT else save_checkpoint_steps

    graph = get_default_graph()
    comm = graph.multi_rank_comm()
    scaffold = scaffold or Scaffold()
    chief_hooks = list(chief_only_hooks or [])
    if comm is not None:
        # They run on this rank only: a summary hook's summaries are this rank's values.
        chief_hooks = [_ChiefOnlySummaries(h) if isinstance(h, _hooks.SummarySaverHook) else h for h in chief_hooks]
    all_hooks = chief_hooks + list(hooks or []) if is_chief else list(hooks or [])
    summary_dir = summary_dir or checkpoint_dir
    summaries = bool(save_summaries_steps and save_summaries_steps > 0) or bool(save_summaries_secs and
                                                                             save_summaries_secs > 0)
    if comm is not None:
        # Summaries of fed data are all-reduced when run: every rank saves them at the same steps,
        # when rank 0 has somewhere to write them (only rank 0 writes).
        rank0_dir = comm.bcast_object(summary_dir if is_chief or comm.rank == 0 else None, root=0)
        if rank0_dir and summaries:
            all_hooks.append(_hooks.SummarySaverHook(scaffold=scaffold, save_steps=save_summaries_steps,
                                                     save_secs=save_summaries_secs,
                                                     output_dir=rank0_dir if comm.rank == 0 else None))
    elif is_chief and summary_dir and summaries:
        all_hooks.append(_hooks.SummarySaverHook(scaffold=scaffold, save_steps=save_summaries_steps,
                                                 save_secs=save_summaries_secs, output_dir=summary_dir))
    if is_chief and summary_dir and log_step_count_steps and log_step_count_steps > 0:
        all_hooks.append(_hooks.StepCounterHook(output_dir=summary_dir, every_n_steps=log_step_count_steps))
    saves = bool(save_checkpoint_secs or save_checkpoint_steps)
    if comm is not None:
        # Every rank saves with rank 0 (Saver.save gathers what only all ranks hold), into rank 0's directory.
        rank0_ckpt = comm.bcast_object(checkpoint_dir if is_chief or comm.rank == 0 else None, root=0)
        if rank0_ckpt and saves:
            all_hooks.append(_hooks.EveryRankCheckpointSaverHook(rank0_ckpt, save_steps=save_checkpoint_steps,
                                                                 save_secs=save_checkpoint_secs, scaffold=scaffold))
    elif is_chief and checkpoint_dir and saves:
        all_hooks.append(_hooks.CheckpointSaverHook(checkpoint_dir, save_steps=save_checkpoint_steps,
                                                    save_secs=save_checkpoint_secs, scaffold=scaffold))
    creator = ChiefSessionCreator(scaffold=scaffold, checkpoint_dir=checkpoint_dir if is_chief else None)
    return MonitoredSession(session_creator=creator, hooks=all_hooks)
