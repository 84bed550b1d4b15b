"""TF1's run-hook interface (``tf.train.SessionRunHook`` and the records it sees).

Apart from the monitored session that runs the hooks (monitored.py) and the
hooks themselves (hooks.py), so that both import it and neither imports the other.
"""
from __future__ import annotations

import collections


class SessionRunHook:
    """TF1's hook: override any of ``begin``, ``after_create_session``, ``before_run``,
    ``after_run``, ``end``."""

    def begin(self) -> None:
        """Before the graph is finalized: create the ops the hook needs."""

    def after_create_session(self, session, coord) -> None:
        """The session is created and the variables initialized or restored."""

    def before_run(self, run_context) -> SessionRunArgs | None:
        """Before each ``run``: fetches and feeds to add to the call."""
        return None

    def after_run(self, run_context, run_values) -> None:
        """After each ``run``: ``run_values.results`` holds the fetches of ``before_run``."""

    def end(self, session) -> None:
        """When the monitored session closes (not after an error other than end of input)."""


class SessionRunArgs(collections.namedtuple("SessionRunArgs", ["fetches", "feed_dict", "options"])):
    """What a hook's ``before_run`` adds to a ``run``: ``fetches`` (any nesting), ``feed_dict``."""

    def __new__(cls, fetches, feed_dict=None, options=None):
        return super().__new__(cls, fetches, feed_dict, options)


class SessionRunValues(collections.namedtuple("SessionRunValues", ["results", "options", "run_metadata"])):
    """What ``after_run`` sees: ``results``, the values of the hook's fetches."""


class SessionRunContext:
    """The ``run`` being made: ``original_args`` (the caller's fetches and feeds),
    ``session``, and ``request_stop()``."""

    def __init__(self, original_args: SessionRunArgs, session):
        self._original_args = original_args
        self._session = session
        self._stop_requested = False

    @property
    def original_args(self) -> SessionRunArgs:
        return self._original_args

    @property
    def session(self):
        return self._session

    @property
    def stop_requested(self) -> bool:
        return self._stop_requested

    def request_stop(self) -> None:
        """Ask the monitored session to stop: ``should_stop()`` is True after this run."""
        self._stop_requested = True
