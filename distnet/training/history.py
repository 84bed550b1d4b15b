"""``History``: what :meth:`distnet.training.trainer.Trainer.fit` returns, as Keras's ``fit`` does.

It is the list of the run's raw records (one per step, one per evaluation,
in the order they happened; also ``history.records``) and, as Keras users
expect, ``history.history``: a dict of lists, one list per metric.
"""
from __future__ import annotations


class History(list):
    """The run's records, with Keras's ``history`` view.

    ``history["loss"]`` (and ``"accuracy"``, ``"mae"``, ``"lr"``, ...) has one entry per
    *training step* (every step is recorded); ``history["val_loss"]``, ``"test_accuracy"``,
    ``"ema_val_loss"``, ... have one entry per *evaluation* (every ``eval_every`` steps and at
    the end).  ``history["step"]`` gives the step of each training entry and
    ``history["eval_step"]`` that of each evaluation.  After an early stop with
    ``restore_best_weights`` the last evaluation is of the restored weights (its
    record holds ``restored_step``, the best step): ``history["val_loss"][-1]`` is theirs.

    Example:
      >>> h = trainer.fit()                          # doctest: +SKIP
      >>> h.history["loss"][-1], h.history["val_loss"][-1]   # doctest: +SKIP
      >>> h.records[0]["step"]                       # doctest: +SKIP
      1
    """

    @property
    def records(self) -> list[dict]:
        """The raw records (steps and evaluations), as logged."""
        return list(self)

    @property
    def history(self) -> dict[str, list]:
        """``{metric: [value, ...]}``: step metrics per step, evaluation metrics per evaluation."""
        out: dict[str, list] = {}
        for record in self:
            is_eval = "loss" not in record
            for key, value in record.items():
                if key == "step":
                    key = "eval_step" if is_eval else "step"
                out.setdefault(key, []).append(value)
        return out
