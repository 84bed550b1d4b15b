"""The progress display of ``Trainer.fit(verbose=...)`` when the run keeps no metrics log."""
from __future__ import annotations

from distnet.training.hooks.metrics_log import MetricsLog


class Progress(MetricsLog):
    """Shows steps and evaluations on rank 0, as Keras's ``fit(verbose=...)``; writes no file.

    Args:
        verbose: 1 a bar on a terminal (lines otherwise), 2 lines.
        print_every: a line every this many steps.
        is_main: whether this rank shows anything (rank 0).
    """

    def __init__(self, verbose: int | str, print_every: int, is_main: bool) -> None:
        from distnet.training.metrics import MetricsLogger

        super().__init__(MetricsLogger(None, is_main=is_main, progress="plain" if verbose == 2 else "auto",
                                       print_every=print_every, tensorboard=False))
