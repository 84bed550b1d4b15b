"""Turn a :class:`~distnet.jobs.config.JobConfig` into a model, an optimizer, data and a Trainer.

This is what ``distnet train`` and ``distnet eval`` run::

    cfg = load_job("examples/jobs/seed003_l2.toml")
    comm = get_communicator("auto")
    run_train(cfg, comm)                    # -> the trainer's history
    run_eval("runs/seed003_l2/checkpoints", use_ema=True)

Every builder validates what the job file could not (e.g. that a dataset
exists and is readable) and raises the package's own errors.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from distnet import registry
from distnet.jobs.config import JobConfig, check_world_size, parse_job, strategy_spec
from distnet.data.split import Subset
from distnet.jobs.schema import SECTIONS
from distnet.errors import CheckpointError, ConfigError, DataError, DistnetError, InvalidArgumentError

__all__ = ["build_model", "build_schedule", "build_optimizer", "build_ema", "load_data",
           "build_trainer", "run_train", "check_job", "CheckedJob", "check_run_dir", "check_writable_dir", "clear_run_dir", "run_eval", "evaluate",
           "load_checkpoint", "config_from_checkpoint", "checkpoint_dir", "SubsetDataset",
           "model_from_checkpoint", "data_banner", "named_test_data"]


# ---------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------

def build_layer(spec: dict):
    """One layer from its validated job-file table (``{"type": "dense", "units": 10, ...}``).

    Initializer and regularizer tables and activation names go to the layer
    as they are: the layer looks them up (``distnet.registry``).

    Returns:
        A ``distnet.layers`` layer.
    """
    component = registry.lookup("layer", spec["type"])
    opts = {}
    for key, value in spec.items():
        option = component.option(key)
        if option is not None:
            opts[key] = tuple(value) if option.type == registry.INT_OR_PAIR and isinstance(value, list) else value
    return component.make(opts)


def build_model(cfg: JobConfig):
    """The job's :class:`distnet.Sequential`, its weights drawn from ``cfg.seed``.

    The model is built lazily on its first call (or by the Trainer, from the
    dataset's image shape); every rank draws the same weights from the seed
    and the Trainer broadcasts rank 0's anyway.

    Example:
        >>> model = build_model(load_job(None))
    """
    from distnet.model.models import Sequential

    try:
        layer_list = [build_layer(spec) for spec in cfg.model.layers]
        return Sequential(layer_list, seed=cfg.seed)
    except InvalidArgumentError as exc:
        raise ConfigError(f"{cfg.source}: model: {exc}") from None


# ---------------------------------------------------------------------------
# Optimizer, schedule, EMA
# ---------------------------------------------------------------------------

def build_schedule(cfg: JobConfig):
    """The learning rate: a float, or a schedule ``step -> float`` (with warm-up).

    Warm-up follows optax/Goyal et al.: linear from 0 over ``warmup_steps``,
    then the schedule starts its own step count.
    """
    from distnet.model import schedules

    s = cfg.schedule
    component = registry.lookup("schedule", s.type)
    kwargs = component.kwargs(s.params)
    if component.info.get("uses_learning_rate", True):
        kwargs["learning_rate"] = cfg.optimizer.learning_rate
    lr: Any = component.obj(**kwargs)
    if s.warmup_steps:
        lr = schedules.warmup(lr, s.warmup_steps)
    return lr


def build_optimizer(cfg: JobConfig):
    """The job's optimizer, with its learning-rate schedule.

    ``optimizer.clip_norm`` is TF1's ``clip_by_global_norm`` (all gradients
    of a step rescaled together).

    Example:
        >>> opt = build_optimizer(load_job(None, ["optimizer.name=momentum"]))
    """
    component = registry.lookup("optimizer", cfg.optimizer.name)
    try:
        return component.obj(learning_rate=build_schedule(cfg), **component.kwargs(cfg.optimizer.params))
    except InvalidArgumentError as exc:
        raise ConfigError(f"{cfg.source}: optimizer/schedule: {exc}") from None


def build_ema(cfg: JobConfig):
    """An :class:`~distnet.ExponentialMovingAverage`, or ``None`` when ``[ema]`` is off."""
    if not cfg.ema.enabled:
        return None
    from distnet.model.moving_averages import ExponentialMovingAverage

    return ExponentialMovingAverage(cfg.ema.decay)


# ---------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------

class SubsetDataset(Subset):
    """The first ``n`` samples of a dataset (``data.train_samples`` / ``test_samples``)."""

    def __init__(self, base, n: int):
        n = min(int(n), len(base))
        super().__init__(base, np.arange(n), f"first {n}")


def _hdf5_pair(path: Path) -> tuple[Path, Path | None]:
    """The train file and its test file (``...train...h5`` -> ``...test...h5``) if it exists."""
    name = path.name
    if "train" in name:
        test = path.with_name(name.replace("train", "test"))
        if test.exists():
            return path, test
    return path, None


def load_data(cfg: JobConfig) -> tuple[Any, Any]:
    """The job's (train, test) datasets.

    ``data.name`` loads a named dataset (Fashion-MNIST: an installed copy or
    the embedded subset).  ``data.path`` is either a directory of IDX files
    (of ``data.name``'s dataset, default Fashion-MNIST), a directory holding
    ``*-train.h5`` and ``*-test.h5``, or one HDF5 file (its test split is the
    same name with ``train`` replaced by ``test``, when that file exists).

    Returns:
        ``(train, test)``; ``test`` may be ``None`` (no evaluation).

    Raises:
        DataError: missing or malformed files.
    """
    from distnet import data

    d = cfg.data
    name = d.name or "fashion_mnist"
    test = None
    from distnet.data.synthetic import SYNTHETIC_NAMES, load_synthetic

    if d.path is None and name in SYNTHETIC_NAMES:
        train, test = load_synthetic(name)
    elif d.path is None:
        train, test = data.load_dataset(name)
    else:
        path = Path(d.path)
        if path.is_dir():
            h5 = sorted(path.glob("*train*.h5"))
            if h5:
                train_file, test_file = _hdf5_pair(h5[0])
                train = data.HDF5Dataset(train_file)
                test = data.HDF5Dataset(test_file) if test_file is not None else None
            else:
                train, test = data.load_dataset(name, path)
        elif path.is_file():
            train_file, test_file = _hdf5_pair(path)
            train = data.HDF5Dataset(train_file)
            test = data.HDF5Dataset(test_file) if test_file is not None else None
        else:
            raise DataError(f"data.path: Expect: an HDF5 file or a directory Actual: nothing at {str(path)!r}")
    if d.train_samples is not None:
        train = SubsetDataset(train, d.train_samples)
    if test is not None and d.test_samples is not None:
        test = SubsetDataset(test, d.test_samples)
    if test is not None and test.num_classes != train.num_classes:
        raise DataError(f"data: the test split has {test.num_classes} classes, the train split "
                        f"{train.num_classes}")
    _check_output_units(cfg, train)
    return train, test


def _check_output_units(cfg: JobConfig, train) -> None:
    """The last layer's units: one per class, one per target (a regression), or one for
    ``sigmoid_cross_entropy`` (binary classes)."""
    last = cfg.model.layers[-1]
    i = len(cfg.model.layers) - 1
    if getattr(train, "target", "classes") == "values":
        width = int(np.prod(train.read([0])[1].shape[1:], dtype=np.int64))
        if last.get("units") != width:
            raise ConfigError(f"{cfg.source}: model.layers[{i}].units: the last layer gives one prediction "
                              f"per target: Expect: {width} Actual: {last.get('units')}")
        if registry.lookup("loss", cfg.loss.type).info.get("outputs") != "values":
            raise ConfigError(f"{cfg.source}: loss.type: the data have float targets (a regression): Expect: "
                              f"mean_squared_error, mean_absolute_error or huber Actual: {cfg.loss.type}")
        return
    if registry.lookup("loss", cfg.loss.type).name == "sigmoid_cross_entropy":
        if train.num_classes != 2 or last.get("units") != 1:
            raise ConfigError(f"{cfg.source}: model.layers[{i}].units: sigmoid_cross_entropy is for two classes "
                              f"with one output unit: Expect: 1 unit and 2 classes Actual: {last.get('units')} "
                              f"units and {train.num_classes} classes")
        return
    if registry.lookup("loss", cfg.loss.type).info.get("outputs") == "values":
        raise ConfigError(f"{cfg.source}: loss.type: {cfg.loss.type} is a regression loss but the data have "
                          f"integer class labels: Expect: sparse_softmax_cross_entropy (or sigmoid_cross_entropy "
                          f"for two classes)")
    num_classes = train.num_classes
    if last.get("units") != num_classes:
        raise ConfigError(f"{cfg.source}: model.layers[{i}].units: the last layer gives one logit "
                          f"per class: Expect: {num_classes} (the dataset's classes) Actual: {last.get('units')}")


# ---------------------------------------------------------------------------
# Trainer
# ---------------------------------------------------------------------------

def checkpoint_dir(cfg: JobConfig, run_dir: str | os.PathLike | None = None) -> str | None:
    """Where the job's checkpoints go: ``checkpoint.dir``, else ``RUN_DIR/checkpoints``.

    ``None`` when checkpoints are off (``checkpoint.every = 0`` or ``dir = ""``).
    """
    if cfg.checkpoint.every == 0:
        return None
    if cfg.checkpoint.dir is not None:
        return cfg.checkpoint.dir or None  # "" switches checkpoints off
    base = run_dir if run_dir is not None else cfg.run_dir
    return os.path.join(os.fspath(base), "checkpoints") if base is not None else None


def build_trainer(cfg: JobConfig, comm=None, run_dir: str | os.PathLike | None = None, *,
                  logger=None, data: tuple[Any, Any] | None = None, trace: str | None = None,
                  log_info: dict | None = None, model=None):
    """A :class:`distnet.training.trainer.Trainer` running ``cfg`` on ``comm``.

    Args:
        cfg: the validated job.
        comm: the communicator (default: ``get_communicator("auto")``).
        run_dir: overrides ``cfg.run_dir``.
        logger: a :class:`~distnet.training.metrics.MetricsLogger`, owned from here on by the
            trainer's metrics-log hook (which starts and closes it); default: none.
        data: ``(train, test)`` already loaded (default: :func:`load_data`).
        trace: a directory for every rank's timeline (:mod:`distnet.training.trace`), or None.
        log_info: extra fields of the log's ``start`` record.
        model: the job's model already built for the data (:func:`check_job`'s); default: :func:`build_model`.

    Returns:
        The trainer; call ``trainer.fit(resume=...)``.
    """
    from distnet.distributed import get_communicator
    from distnet.training.trainer import Trainer
    from distnet.training.hooks.metrics_log import MetricsLog

    comm = comm if comm is not None else get_communicator("auto")
    check_world_size(cfg, comm.size)
    train, test = data if data is not None else load_data(cfg)
    run_dir = os.fspath(run_dir) if run_dir is not None else cfg.run_dir
    t = cfg.train
    validation, hooks = None, []
    if cfg.data.validation is not None:
        from distnet.data import validation_split

        try:
            train, validation = validation_split(train, cfg.data.validation, cfg.seed)
        except InvalidArgumentError as exc:
            raise ConfigError(f"{cfg.source}: data.{exc}") from None
    if t.early_stopping is not None:
        from distnet.training.hooks.early_stopping import EarlyStopping

        es = t.early_stopping
        hooks.append(EarlyStopping(es["metric"], patience=es.get("patience", 0),
                                   min_delta=es.get("min_delta", 0.0), mode=es.get("mode", "auto"),
                                   restore_best_weights=es.get("restore_best_weights", False)))
    if cfg.checkpoint.keep_best is not None:
        from distnet.training.hooks.keep_best import KeepBest

        where = checkpoint_dir(cfg, run_dir)
        if where is None:
            raise ConfigError(f"{cfg.source}: checkpoint.keep_best: Expect: checkpoints on Actual: they are off")
        hooks.append(KeepBest(os.path.join(where, "best"), cfg.checkpoint.keep_best))
    if t.histograms_every:
        from distnet.training.hooks.histograms import Histograms

        hooks.append(Histograms(t.histograms_every))
    optimizer = build_optimizer(cfg)
    kwargs = trainer_keywords(cfg)   # every key declared with a Trainer keyword, as it is
    try:
        strategy, strategy_options = _strategy(cfg, comm, optimizer)
    except InvalidArgumentError as exc:
        raise ConfigError(f"{cfg.source}: dist.strategy: {exc}") from None
    kwargs.update(
        eval_data=test, validation_data=validation, hooks=hooks, ema=build_ema(cfg), seed=cfg.seed, comm=comm,
        checkpoint_dir=checkpoint_dir(cfg, run_dir), config_text=cfg.to_toml(), trace=trace,
        strategy=strategy, strategy_options=strategy_options,
        # The metrics-log hook owns the logger: it starts and closes it.
        logger=MetricsLog(logger, **(log_info or {})) if logger is not None else None,
    )
    try:
        return Trainer(model if model is not None else build_model(cfg), cfg.loss.type, optimizer, train,
                       **kwargs)
    except InvalidArgumentError as exc:
        raise ConfigError(f"{cfg.source}: {exc}") from None


def trainer_keywords(cfg: JobConfig) -> dict:
    """``{Trainer keyword: value}`` of every plain key declared with one (``Key.arg``)."""
    return {key.arg: getattr(getattr(cfg, name), key.name)
            for name, section in SECTIONS.items() for key in section.keys if key.arg}


def _strategy(cfg: JobConfig, comm, optimizer) -> tuple[str, dict]:
    """The strategy the job runs and the options it asked for, with the strategy's job defaults.

    ``"auto"`` is resolved here, among the strategies that take the options
    given, so that the chosen one's job defaults can apply.
    """
    from distnet.distributed.strategies import strategy_class

    name, asked = strategy_spec(cfg.dist.strategy)
    cls, _ = strategy_class(name, comm, optimizer, asked)
    return cls.name, {**cls.job_defaults, **asked}


def check_run_dir(cfg: JobConfig, run_dir: str | os.PathLike, *, resume: bool = False,
                  resume_if_any: bool = False, overwrite: bool = False) -> list[str]:
    """Refuse to mix two runs in one run directory; returns the checkpoints found.

    A directory holding checkpoints (or logged steps) of an earlier run needs
    ``resume`` (continue it), ``resume_if_any`` (continue it if there is one:
    what restarts use) or ``overwrite`` (start again: :func:`clear_run_dir`);
    ``resume`` with no checkpoint is an error too.

    Raises:
        ConfigError: naming the directory and the ways on.
    """
    from distnet.checkpoint import CheckpointManager
    from distnet.training.metrics import METRICS_FILE, last_step

    if sum(map(bool, (resume, resume_if_any, overwrite))) > 1:
        raise ConfigError("give one of --resume, --resume-if-any and --overwrite")
    ckdir = checkpoint_dir(cfg, run_dir)
    if (resume or resume_if_any) and ckdir is None:
        off = "checkpoint.every is 0" if cfg.checkpoint.every == 0 else 'checkpoint.dir is ""'
        raise ConfigError(f"{cfg.source}: --resume needs checkpoints, but {off} (off)")
    found = CheckpointManager(ckdir, is_writer=False).checkpoints() if ckdir is not None else []
    if resume and not found:
        raise ConfigError(f"--resume: no checkpoint in {ckdir} to continue from; train without --resume "
                          f"to start the run, or with --resume-if-any to continue only when there is one")
    if resume or resume_if_any or overwrite:
        return found
    logged = last_step(run_dir) != 0  # None (unreadable) counts as an earlier run's log too
    if found or logged:
        what = f"checkpoints of an earlier run (newest {os.path.basename(found[-1])})" if found \
            else f"the {METRICS_FILE} of an earlier run"
        raise ConfigError(f"run directory {run_dir} holds {what}: --resume continues that run, --overwrite "
                          f"starts it again (deleting its checkpoints and {METRICS_FILE}), or choose another "
                          f"--run-dir")
    return found


def check_writable_dir(path: str | os.PathLike, what: str = "run directory", *, keep: bool = False) -> None:
    """Refuse a directory distnet cannot create or write, by trying: the missing
    directories are made, a file is written and deleted in it; with ``keep=False``
    the directories made are removed again (``--check`` leaves nothing behind).

    Permission bits alone do not tell (root ignores them; a read-only file system
    or a regular file on the way refuses root too), so this writes.

    Raises:
        ConfigError: one line naming the directory and why.
    """
    import tempfile

    target = Path(os.path.expanduser(os.fspath(path)))
    made, probe = [], target
    while not probe.exists() and probe.parent != probe:   # the directories a run would make
        made.append(probe)
        probe = probe.parent
    try:
        for directory in reversed(made):
            directory.mkdir()
        if not target.is_dir():
            raise NotADirectoryError(f"{target} is not a directory")
        with tempfile.TemporaryFile(dir=target):
            pass
    except OSError as exc:
        reason = exc.strerror or str(exc)
        if isinstance(exc, NotADirectoryError) or (exc.filename and not Path(exc.filename).parent.is_dir()):
            blocker = next((p for p in (target, *target.parents) if p.exists() and not p.is_dir()), None)
            reason = f"{blocker} is a file, not a directory" if blocker is not None else reason
        raise ConfigError(f"{what} {path}: Expect: a directory distnet can create and write in Actual: "
                          f"{reason}; choose another ({'--run-dir DIR' if what == 'run directory' else 'checkpoint.dir'})") from None
    finally:
        if not keep:
            for directory in made:
                if directory.is_dir():
                    directory.rmdir()


def check_job(cfg: JobConfig, world_size: int = 1, run_dir: str | os.PathLike | None = None, *,
              resume: bool = False, resume_if_any: bool = False, overwrite: bool = False,
              writer: bool = True) -> tuple[Any, Any]:
    """Every refusal of a training run, checked before it trains: the ONE check that
    ``distnet train --check``, the launcher (before any worker starts) and every rank of
    the run (before its first collective) call, so that they cannot diverge.

    The job's own keys and their rules across keys were checked when it was parsed
    (:func:`distnet.jobs.config.parse_job`); this adds what needs the world, the disk
    and the data: the number of workers, the run directory (an earlier run in it,
    and that it can be created and written), the data (readable, one output unit per
    class, a validation split it can hold, a batch it can fill, image data for the
    augmentations) and that the model takes the data's samples.

    Args:
        world_size: the number of workers the job runs on.
        run_dir: overrides ``cfg.run_dir``.
        resume, resume_if_any, overwrite: as ``distnet train`` takes them (:func:`check_run_dir`).
        writer: this process writes the run directory (rank 0): only the writer checks it.

    Returns:
        A :class:`CheckedJob`: the job's datasets (:func:`load_data`) and its model, built
        for the data's samples (:func:`build_trainer` takes it: it is not built twice).
    Raises:
        ConfigError, DataError: one line naming the key, file or directory at fault.
    """
    run_dir = os.fspath(run_dir) if run_dir is not None else cfg.run_dir
    check_world_size(cfg, world_size)
    if writer:
        # Tried and left as found: a refused job leaves nothing behind (the run makes them later).
        check_writable_dir(run_dir)
        ckdir = checkpoint_dir(cfg, run_dir)
        if ckdir is not None:
            check_writable_dir(ckdir, "checkpoint directory")
        check_run_dir(cfg, run_dir, resume=resume, resume_if_any=resume_if_any, overwrite=overwrite)
    _check_strategy(cfg, world_size)
    train, test = load_data(cfg)
    return CheckedJob(train, test, _check_trainable(cfg, train))


class _PlannedWorld:
    """The size of a world not started yet: what a strategy's option check reads of a communicator."""

    def __init__(self, size: int) -> None:
        self.size, self.rank = size, 0


def _check_strategy(cfg: JobConfig, world_size: int) -> None:
    """The strategy's options as the strategy checks them, for ``world_size`` workers."""
    from distnet.distributed.strategies import all_strategies

    name, asked = strategy_spec(cfg.dist.strategy)
    known = all_strategies()
    takers = [cls for cls in known.values() if set(asked) <= set(cls.option_names())]
    if name != "auto":
        takers = [known[name]]
    elif not takers:
        raise ConfigError(f"{cfg.source}: dist.strategy: strategy 'auto': Expect: a strategy that takes the "
                          f"options {sorted(asked)} Actual: none among {sorted(known)}")
    if len(takers) == 1:   # "auto" among several: the one chosen checks them when it starts
        try:
            takers[0].check_options(asked, _PlannedWorld(world_size), build_optimizer(cfg))
        except InvalidArgumentError as exc:
            raise ConfigError(f"{cfg.source}: dist.strategy: {exc}") from None
    if asked.get("shared_memory") is True and world_size < 2:   # checked by ZeRO-1 when it starts
        raise ConfigError(f"{cfg.source}: dist.strategy: shared_memory=True: Expect: an MPI job of 2 or more "
                          f"ranks on one machine Actual: {world_size} rank(s)")


class CheckedJob(NamedTuple):
    """What :func:`check_job` found good: the datasets and the model built for them."""

    train: Any
    test: Any
    model: Any


def _check_trainable(cfg: JobConfig, train):
    """What the Trainer would refuse of the job's data, named by the job's keys; returns the model,
    built for the data's samples."""
    n = len(train)
    held = ""
    if cfg.data.validation is not None:
        from distnet.data import validation_split

        try:
            train, _ = validation_split(train, cfg.data.validation, cfg.seed)
        except InvalidArgumentError as exc:
            raise ConfigError(f"{cfg.source}: data.{exc}") from None
        held = f" left after [data] validation holds {n - len(train)} out"
    if cfg.train.batch_size > len(train):
        raise ConfigError(f"{cfg.source}: train.batch_size: Expect: at most the {len(train)} training samples"
                          f"{held} Actual: {cfg.train.batch_size} (every step would be the whole dataset)")
    shape = tuple(getattr(train, "image_shape", ()) or ())
    if (cfg.data.augment_padding or cfg.data.augment_flip) and len(shape) not in (2, 3):
        raise ConfigError(f"{cfg.source}: data.augment_padding/augment_flip: Expect: image data ([N, H, W] or "
                          f"[N, H, W, C]) Actual: samples of shape {shape}")
    model = build_model(cfg)
    try:
        model.build((None,) + shape)
    except DistnetError as exc:
        raise ConfigError(f"{cfg.source}: model: Expect: layers that take the data's samples of shape "
                          f"{shape} Actual: {exc}") from None
    return model


def clear_run_dir(cfg: JobConfig, run_dir: str | os.PathLike) -> list[str]:
    """Delete an earlier run's records (``--overwrite``): its checkpoints (``ckpt-*.h5``, the
    best ones in ``best/`` too), ``metrics.jsonl`` and TensorBoard event files; nothing else.
    Returns the files removed."""
    from distnet.checkpoint import CheckpointManager
    from distnet.training.metrics import METRICS_FILE

    ckdir = checkpoint_dir(cfg, run_dir)
    doomed = []
    if ckdir is not None:
        for where in (ckdir, os.path.join(ckdir, "best")):
            doomed += CheckpointManager(where, is_writer=False).checkpoints()
    metrics = Path(run_dir) / METRICS_FILE
    if metrics.is_file():
        doomed.append(str(metrics))
    doomed += [str(p) for p in sorted(Path(run_dir).glob("events.out.tfevents.*")) if p.is_file()]
    for path in doomed:
        os.unlink(path)
    return doomed


def run_train(cfg: JobConfig, comm=None, resume: bool = False, *,
              run_dir: str | os.PathLike | None = None, progress: str = "auto", trace: bool = False,
              resume_if_any: bool = False, overwrite: bool = False, signals=None) -> list[dict]:
    """Train the job: what ``distnet train`` runs on every rank.

    Rank 0 writes ``metrics.jsonl`` and shows progress; the others stay quiet.
    SIGINT / SIGTERM stop every rank after one agreed step, with a checkpoint
    there (:meth:`Trainer.fit`): :class:`~distnet.errors.TrainingStopped`
    propagates, and the ``end`` record says ``"interrupted"``.

    Args:
        cfg: the validated job.
        comm: the communicator (default: ``get_communicator("auto")``).
        resume: continue from the newest good checkpoint (an error if there is none).
        run_dir: overrides ``cfg.run_dir``.
        progress: ``"auto"``, ``"bar"``, ``"plain"`` or ``"none"``.
        trace: record every rank's timeline in ``RUN_DIR/trace`` (:mod:`distnet.training.trace`).
        resume_if_any: continue from the newest good checkpoint if there is one.
        overwrite: delete an earlier run's checkpoints and metrics first.
        signals: an installed :class:`distnet.training.stop.StopSignals` (default: ``fit`` installs one).

    Returns:
        The trainer's history (a list of dicts).
    Raises:
        ConfigError: the run directory holds an earlier run (:func:`check_run_dir`).
        TrainingStopped: a signal stopped training.
    """
    from distnet.distributed import get_communicator
    from distnet.training.metrics import MetricsLogger

    comm = comm if comm is not None else get_communicator("auto")
    run_dir = os.fspath(run_dir) if run_dir is not None else cfg.run_dir
    is_main = comm.rank == 0

    def start_up():   # only rank 0 writes (and may see) the run directory
        return check_job(cfg, comm.size, run_dir, resume=resume, resume_if_any=resume_if_any,
                         overwrite=overwrite, writer=is_main)

    checked = _agree(comm, start_up)
    data = (checked.train, checked.test)
    if overwrite and is_main:
        clear_run_dir(cfg, run_dir)
    resuming = bool(resume or resume_if_any)
    # Owned by the trainer's metrics-log hook from here on: it starts the log and closes it with the status.
    logger = MetricsLogger(run_dir, is_main=is_main, progress=progress, print_every=cfg.train.log_every,
                           checkpoint_dir=checkpoint_dir(cfg, run_dir) or "", tensorboard=cfg.train.tensorboard)
    logger.describe_job(cfg.to_toml())
    trainer = build_trainer(cfg, comm, run_dir, logger=logger, data=data, model=checked.model,
                            trace=os.path.join(run_dir, "trace") if trace else None,
                            log_info={"world_size": comm.size, "global_batch_size": cfg.train.batch_size,
                                      "job": cfg.name, "resume": resuming})
    if is_main:
        train, test = data
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        (Path(run_dir) / "job.toml").write_text(cfg.to_toml(), encoding="utf-8")
        logger.message(f"distnet: job {cfg.name!r} ({cfg.source}) on {comm.size} rank(s), "
                       f"{len(train)} training samples, "
                       f"{trainer.total_steps} steps of {cfg.train.batch_size}; run dir {run_dir}")
        for line in data_banner(train, test):
            logger.message(line)
    history = trainer.fit(resume=resuming, signals=signals, stop_grace=cfg.dist.stop_grace)
    trainer.close()   # a collective: frees the workers' shared memory
    return history


def data_banner(train, test) -> list[str]:
    """The banner's lines naming the data: files, sample count, digest (see distnet.data.identity)."""
    from distnet.data.identity import dataset_identity, describe

    lines = [f"  train data: {describe(dataset_identity(train))}"]
    lines.append(f"  test data:  {describe(dataset_identity(test))}" if test is not None
                 else "  test data:  none (no evaluation)")
    return lines


def _agree(comm, fn):
    """Run ``fn`` on every rank; if it raises a bad-input error on any rank, raise on all.

    The error raised carries ``agreed_by_all_ranks = True``.

    A file missing on one host must stop the whole job with one clear
    message, not leave the other ranks waiting in the trainer's first collective.
    """
    if comm.size == 1:
        return fn()
    result, error = None, None
    try:
        result = fn()
    except (ConfigError, DataError) as exc:
        error = (type(exc).__name__, str(exc))
    errors = comm.allgather_object(error)
    for rank, err in enumerate(errors):
        if err is not None:
            cls = DataError if err[0] == "DataError" else ConfigError
            exc = cls(err[1] if error is not None else f"rank {rank}: {err[1]}")
            exc.agreed_by_all_ranks = True  # every rank raises it: no abort needed
            raise exc
    return result


# ---------------------------------------------------------------------------
# Evaluation from a checkpoint
# ---------------------------------------------------------------------------

def load_checkpoint(path: str | os.PathLike, *, allow_nonfinite: bool = False) -> tuple[str, Any]:
    """Load a checkpoint file, or the newest good one in a directory.

    ``path`` may be a checkpoint file, a checkpoint directory or a run
    directory (holding ``checkpoints/``).  In a directory, a newest file that
    is corrupt (or holds NaN/inf) is skipped (with a warning) for the previous good one.
    ``allow_nonfinite`` reads a checkpoint holding NaN/inf (for inspection).

    Returns:
        ``(file, CheckpointState)``.

    Raises:
        CheckpointError: no checkpoint there, or none usable.
    """
    import warnings

    from distnet.checkpoint import CheckpointManager, CheckpointWarning, load

    p = Path(path)
    if p.is_file():
        return str(p), load(p, allow_nonfinite=allow_nonfinite)
    if not p.exists():
        raise CheckpointError(f"{p}: no such checkpoint file or directory")
    if (p / "checkpoints").is_dir():
        p = p / "checkpoints"
    found = CheckpointManager(p, is_writer=False).checkpoints()
    if not found:
        raise CheckpointError(f"{p}: no checkpoint (ckpt-<step>.h5) in this directory")
    problems = []
    for file in reversed(found):
        try:
            return file, load(file, allow_nonfinite=allow_nonfinite)
        except CheckpointError as exc:
            problems.append(f"{file}: {exc}")
            warnings.warn(f"skipping unusable checkpoint {file}: {exc}", CheckpointWarning, stacklevel=2)
    raise CheckpointError(f"{p}: no usable checkpoint; " + "; ".join(problems))


def config_from_checkpoint(state, where: str, overrides: list[str] | tuple[str, ...] = ()) -> JobConfig:
    """The :class:`JobConfig` stored in a checkpoint (its ``config_text``), with ``--set`` overrides.

    An override error is the user's (ConfigError); a stored job that is
    invalid as such makes the checkpoint unusable (CheckpointError).
    """
    if not state.config_text.strip():
        raise CheckpointError(f"{where}: the checkpoint stores no job configuration")
    try:
        return parse_job(state.config_text, f"{where} (stored job)", overrides)
    except ConfigError as exc:
        if str(exc).startswith("--set"):
            raise  # the user's override is wrong
        raise CheckpointError(f"{where}: its stored job configuration is invalid here: {exc} "
                              "(use --data or --set to point it elsewhere)") from None


def evaluate(model, dataset, loss: str = "sparse_softmax_cross_entropy", batch_size: int = 1000) -> dict:
    """Mean loss and accuracy of ``model`` on ``dataset`` (one process; :mod:`distnet.training.evaluation`).

    Returns:
        ``{"loss": float, "accuracy": float, "samples": int}``.
    """
    from distnet.model import losses
    from distnet.training.evaluation import evaluate as evaluate_model

    return evaluate_model(model, dataset, losses.get(loss, class_labels=True), batch_size=batch_size)


def run_eval(ckpt: str | os.PathLike, use_ema: bool = False, data: str | None = None,
             overrides: list[str] | tuple[str, ...] = (), *, allow_nonfinite: bool = False) -> dict:
    """Evaluate a checkpoint on its job's test split, or on the data named: what ``distnet eval`` runs.

    Args:
        ckpt: a checkpoint file, a checkpoint directory or a run directory
            (the newest good checkpoint is used).
        use_ema: evaluate with the EMA shadow weights instead of the trained ones.
        data: the data to evaluate on, whole (:func:`named_test_data`): a dataset's name
            (``fashion_mnist``, ``mnist``, ...; its test split), an HDF5 file, an IDX
            images file (its labels file beside it), or a directory of IDX files or
            holding a ``*test*.h5``.  Default: the test split of the job stored in the checkpoint.
        overrides: ``--set`` items applied to the stored job (e.g. ``data.test_samples=500``:
            the first 500 test samples, also of ``data``).

    Returns:
        ``{"checkpoint", "step", "weights", "loss", "accuracy", "samples", "data", "data_digest",
        "same_data_as_training"}`` (the last ``None`` when the checkpoint does not
        say which test data training used).

    Warns:
        DataMismatchWarning: the job's test data is not the one training evaluated on
            (the full dataset installed since, another file at its path), when the user
            did not name other data (``data``, ``--set data.path`` or ``data.name``).
    """
    from distnet.data.identity import dataset_identity, describe, same_data

    path, state = load_checkpoint(ckpt, allow_nonfinite=allow_nonfinite)
    # With data named, the stored job's data.path (perhaps of another machine) is not looked at.
    cfg = config_from_checkpoint(state, path, list(overrides) + (['data.path=""'] if data is not None else []))
    asked = {item.split("=", 1)[0].strip() for item in overrides}
    if data is not None:
        test = named_test_data(data, cfg, state)
        if "data.test_samples" in asked:   # the stored job's subset is its own; the user's applies
            test = SubsetDataset(test, cfg.data.test_samples)
    else:
        _, test = load_data(cfg)
        if test is None:
            raise DataError(f"{cfg.data.path}: the job has no test split to evaluate on (a file named like "
                            "its training file with 'train' replaced by 'test'): name one with --data TEST_FILE")
    model = model_from_checkpoint(path, state, cfg, test.image_shape, use_ema=use_ema)
    identity = dataset_identity(test)
    if data is None and not asked & {"data.path", "data.name"}:
        _warn_if_other_data(state, path, overrides, asked, test, identity)
    result = evaluate(model, test, cfg.loss.type)
    return {"checkpoint": path, "step": state.step, "weights": "ema" if use_ema else "trained", **result,
            "data": describe(identity), "data_digest": identity["digest"],
            "same_data_as_training": same_data(state.data.get("test"), identity)}


def named_test_data(data: str, cfg: JobConfig, state=None):
    """The dataset ``distnet eval --data`` names, whole (no ``test_samples`` of the stored job).

    Args:
        data: a dataset's name (its test split), an HDF5 file (that file, whatever its name),
            an IDX images file (with the labels file named like it beside it:
            ``...-images-idx3-ubyte`` -> ``...-labels-idx1-ubyte``), or a directory of the four
            IDX files (their test split) or holding one ``*test*.h5``.
        cfg: the stored job (its ``data.name`` says whose IDX files a directory holds).
        state: the checkpoint (its training data's class count labels an IDX pair).

    Raises:
        DataError: nothing usable there; the message says what was expected.
    """
    from distnet import data as datasets
    from distnet.data.synthetic import SYNTHETIC_NAMES, load_synthetic

    name = data.replace("-", "_").lower()
    if name in SYNTHETIC_NAMES:
        return load_synthetic(name).test
    if name in ("fashion_mnist", "mnist"):
        return datasets.load_dataset(name).test
    p = Path(data)
    if p.is_dir():
        tests = sorted(p.glob("*test*.h5"))
        if len(tests) == 1:
            return datasets.HDF5Dataset(tests[0])
        if tests:
            raise DataError(f"--data {data}: Expect: one *test*.h5 in the directory Actual: {len(tests)} "
                            f"({', '.join(t.name for t in tests)}): name the file")
        return datasets.load_dataset(cfg.data.name or "fashion_mnist", p).test
    if not p.is_file():
        raise DataError(f"--data: Expect: a dataset name (fashion_mnist, mnist, "
                        f"{', '.join(SYNTHETIC_NAMES)}), an HDF5 file, an IDX images file or a directory "
                        f"Actual: nothing at {data!r}")
    with open(p, "rb") as fh:
        head = fh.read(8)
    if head == b"\x89HDF\r\n\x1a\n":
        return datasets.HDF5Dataset(p)
    from distnet.jobs.predict import labels_beside
    from distnet.data.idx import read_idx_pair

    labels_file = labels_beside(p)
    if labels_file is None:
        actual = (f"no {p.name.replace('images-idx3', 'labels-idx1')} beside it" if "images-idx3" in p.name
                  else "a labels file: name its images file (...-images-idx3-ubyte)" if "labels-idx1" in p.name
                  else "neither")
        raise DataError(f"--data {data}: Expect: an HDF5 file, or an IDX images file with its labels file "
                        f"beside it Actual: {actual}")
    images, labels = read_idx_pair(p, labels_file)
    trained = (state.data.get("train") or {}) if state is not None else {}
    return datasets.ArrayDataset(images, labels.astype(np.int64), num_classes=trained.get("num_classes"),
                                 source=f"IDX: {p}", files=(p, labels_file))


def _warn_if_other_data(state, path: str, overrides, asked: set, test, identity: dict) -> None:
    """Warn when the job's test data differs from the one training evaluated on.

    With ``--set data.test_samples`` (or another ``data.*`` key) the user asked for other
    samples of the same data: the data the stored job names (without those keys) is what
    is compared, and the evaluation is not said to differ for being the subset asked for.
    """
    import warnings

    from distnet.data.identity import DataMismatchWarning, dataset_identity, describe, same_data

    trained = state.data.get("test")
    if not trained:
        return   # an older checkpoint: it does not say
    if any(key.startswith("data.") for key in asked):
        cfg = config_from_checkpoint(state, path, [o for o in overrides if not o.strip().startswith("data.")])
        _, base = load_data(cfg)
        if base is None or same_data(trained, dataset_identity(base)) is not False:
            return
        warnings.warn(f"the job's test data is not what training evaluated on: training evaluated on "
                      f"{describe(trained)}; the job's data here is {describe(dataset_identity(base))}, and "
                      f"this evaluation uses {describe(identity)}", DataMismatchWarning, stacklevel=3)
    elif same_data(trained, identity) is False:
        warnings.warn(f"evaluating on other data than training used: training evaluated on "
                      f"{describe(trained)}; this evaluation uses {describe(identity)}",
                      DataMismatchWarning, stacklevel=3)


def model_from_checkpoint(path: str, state, cfg: JobConfig, input_shape, use_ema: bool = False):
    """The job's model, built for per-sample ``input_shape``, holding the checkpoint's weights.

    Args:
        path: the checkpoint's file (for messages).
        state: its :class:`~distnet.checkpoint.CheckpointState`.
        cfg: the job stored in it (:func:`config_from_checkpoint`).
        input_shape: ``(H, W, C)`` of one image.
        use_ema: load the EMA shadow weights instead of the trained ones.

    Raises:
        CheckpointError: the weights do not fit the model (names or shapes).
    """
    from distnet.checkpoint import ema_params

    model = build_model(cfg)
    try:
        model.build((None,) + tuple(int(s) for s in input_shape))
    except DistnetError as exc:
        raise CheckpointError(f"{path}: the model of its job cannot take inputs of shape "
                              f"{tuple(input_shape)}: {exc}") from None
    weights = ema_params(state) if use_ema else state.params
    by_name = {v.name: v for v in model.variables}
    missing = sorted(set(by_name) - set(weights))
    unexpected = sorted(set(weights) - set(by_name))
    if missing or unexpected:
        raise CheckpointError(f"{path}: does not match the model of its job: missing {missing}, "
                              f"unexpected {unexpected}")
    for name, var in by_name.items():
        if tuple(var.shape) != tuple(weights[name].shape):
            raise CheckpointError(f"{path}: {name}: Expect: shape {tuple(var.shape)} for inputs of "
                                  f"shape {tuple(input_shape)} Actual: {tuple(weights[name].shape)} "
                                  "(were the images it was trained on another size?)")
        var.assign(weights[name])
    return model
