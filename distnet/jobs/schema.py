"""The job file's plain sections, each key declared once: type, default, range, doc and what it builds.

``[regularization]``, ``[ema]``, ``[data]``, ``[train]``, ``[checkpoint]`` and
``[dist]`` are declared here like components are (:class:`distnet.registry.Option`),
and everything else reads these declarations:

* the validator (``distnet.jobs.config``) checks each value's type, choices and range;
* the dataclasses ``distnet.jobs.config.TrainConfig`` etc. are made from them;
* the builder (``distnet.jobs.job.build_trainer``) hands every key with a
  Trainer keyword (``arg``) to the Trainer as it is;
* the tables of ``docs/jobs.md`` are written from them (``distnet.jobs.registry_docs``).

A key the Trainer does not take as it is says which function reads it
(``used_by``, e.g. ``"distnet.jobs.job.load_data"``); ``tests/test_config.py``
checks that function reads it.  A new ``[train]`` key is one :class:`Key`
line here (plus, for a new Trainer setting, the Trainer's own parameter).

The strategy's options are not keys of ``[dist]``: each strategy declares its
own (``Strategy.options``) and a job sets them in ``[dist] strategy``
(``{type = "zero1", shared_memory = true}``).
"""
from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

from distnet.nn.conv_choice import MODES as CONV_MODES
from distnet.registry import BOOL, FLOAT, INT, STR, STR_OR_TABLE, TABLE, Option

__all__ = ["BUILTIN_DATASETS", "METRICS", "SECTIONS", "Key", "Section"]

#: Dataset names ``[data] name`` accepts (paths go in ``[data] path``).
BUILTIN_DATASETS = ("fashion_mnist", "mnist", "tabular_regression", "tabular_binary")

#: The evaluation metrics early stopping and ``keep_best`` choose on (validation data only).
METRICS = ("val_loss", "val_accuracy", "val_mae", "ema_val_loss", "ema_val_accuracy", "ema_val_mae")


@dataclass(frozen=True)
class Key(Option):
    """One key of a section.

    Beside :class:`~distnet.registry.Option`'s fields (``arg`` is the
    Trainer's keyword the value is handed to as it is):

    Args:
        used_by: for a key the Trainer does not take as it is, the function
            that reads it (``"distnet.jobs.job.load_data"``).
        shown: the default as the docs say it, when the value alone does not
            (``"the end only"`` for ``None``).
    """

    used_by: str = ""
    shown: str = ""


@dataclass(frozen=True)
class Section:
    """A ``[name]`` table of plain keys, and the dataclass that holds it (``cls``)."""

    name: str
    cls: str
    doc: str
    keys: tuple[Key, ...]

    def key(self, name: str) -> Key | None:
        for k in self.keys:
            if k.name == name:
                return k
        return None


_POSITIVE = {"low": 0, "low_open": True}
_JOB = "distnet.jobs.job.run_train"
_CLI = "distnet.jobs.cli"

SECTIONS: MappingProxyType[str, Section] = MappingProxyType({s.name: s for s in (
    Section("regularization", "RegularizationConfig",
            "weight decay, ``weight_decay * sum(l2_loss(v))`` over the trainable variables", (
                Key("weight_decay", FLOAT, 0.0, "adds `weight_decay * sum(l2_loss(v))` over the trainable "
                    "variables, `l2_loss(v) = sum(v**2) / 2` (TF1)", low=0, arg="weight_decay"),
                Key("exclude_bias", BOOL, False, "leave the biases out of the weight decay (TF1 code that sums "
                    "over `tf.trainable_variables()` includes them)", arg="weight_decay_exclude_bias"),
            )),
    Section("ema", "EMAConfig", "exponential moving average of the trainable weights", (
        Key("enabled", BOOL, False, "`false` switches it off again (e.g. `--set ema.enabled=false`)",
            used_by="distnet.jobs.job.build_ema", shown="`true` with the section"),
        Key("decay", FLOAT, 0.999, "`shadow = decay * shadow + (1 - decay) * var`", low=0, high=1,
            low_open=True, high_open=True, used_by="distnet.jobs.job.build_ema"),
        Key("num_updates", BOOL, True, "pass the global step as `num_updates`: `decay = min(decay, "
            "(1 + step) / (10 + step))`, so early shadows follow the weights closely", arg="ema_num_updates"),
    )),
    Section("data", "DataConfig", "a built-in dataset by name, or a path (HDF5 file or IDX directory); "
            "with a path to an IDX directory, ``name`` says which dataset it holds", (
                Key("name", STR, None, "`\"fashion_mnist\"`, `\"mnist\"`, `\"tabular_regression\"` or "
                    "`\"tabular_binary\"`. Fashion-MNIST is read from an installed copy "
                    "(`/usr/share/datasets/fashion-mnist`) or else the 10,000 + 2,000 images shipped with "
                    "distnet; MNIST needs `path` (`distnet data fetch mnist --dest DIR`); the tabular ones are "
                    "generated deterministically (`distnet/data/synthetic.py`)",
                    choices=BUILTIN_DATASETS, used_by="distnet.jobs.job.load_data", shown='`"fashion_mnist"`'),
                Key("path", STR, None, "a directory of IDX files (of the dataset `name`), a directory holding "
                    "`*train*.h5` and `*test*.h5`, or one HDF5 dataset file (`distnet data convert`); the test "
                    "split of `x-train.h5` is `x-test.h5` when it exists", used_by="distnet.jobs.job.load_data"),
                Key("train_samples", INT, None, "use only the first N training samples", **_POSITIVE,
                    used_by="distnet.jobs.job.load_data", shown="all"),
                Key("test_samples", INT, None, "evaluate on the first N test samples", **_POSITIVE,
                    used_by="distnet.jobs.job.load_data", shown="all"),
                Key("validation", FLOAT, None, "hold N samples (or a fraction, e.g. `0.1`) of the training data "
                    "out, drawn with the job's seed, and evaluate on them at every `eval_every` as "
                    "`val_loss`/`val_accuracy` (and `ema_val_*`): what early stopping and `keep_best` choose "
                    "on — the test set only measures; a whole number >= 1 or a fraction in (0, 1)",
                    used_by="distnet.jobs.job.build_trainer"),
                Key("augment_padding", INT, 0, "random crop for training images: pad this many zeros on each side, "
                    "then cut a window of the image's size at a random offset (0: no crop); drawn per sample "
                    "from its key, so N workers augment a sample as one worker does", low=0,
                    arg="augment_padding", shown="0 (off)"),
                Key("augment_flip", BOOL, False, "mirror each training image left-right with probability 1/2 "
                    "(per sample, as the crop)", arg="augment_flip"),
            )),
    Section("train", "TrainConfig", "batch, length of the run, evaluation and logging", (
        Key("batch_size", INT, 100, "the global batch: split across the workers; at least the number of "
            "workers (times `micro_batches`)", **_POSITIVE, arg="global_batch_size"),
        Key("epochs", INT, None, "number of passes over the training data ...", **_POSITIVE, arg="epochs",
            shown="`1` when neither is set"),
        Key("steps", INT, None, "... or number of updates (set one of the two; `--set train.steps=N` "
            "replaces a file's `epochs`)", **_POSITIVE, arg="steps"),
        Key("eval_every", INT, None, "evaluate on the test split every N steps (and always at the end)",
            **_POSITIVE, arg="eval_every", shown="at the end only"),
        Key("eval_batch_size", INT, 1000, "samples per forward pass when evaluating", **_POSITIVE,
            arg="eval_batch_size"),
        Key("log_every", INT, 100, "print a progress line every N steps when not on a terminal", **_POSITIVE,
            arg="log_every"),
        Key("micro_batches", INT, 1, "split each worker's shard into K pieces whose gradients are accumulated "
            "(same result, less memory); at most `batch_size`", **_POSITIVE, arg="micro_batches"),
        Key("tensorboard", BOOL, None, "write TensorBoard event files beside `metrics.jsonl` (every step and "
            "evaluation number but sample counts, `best/<metric>` at each best step of a metric early stopping or "
            "`keep_best` watches, an `early_stopping` text at an early stop, the job file as text): "
            "`tensorboard --logdir runs/`", used_by=_JOB,
            shown="on when tensorboardX is installed (`pip install 'distnet[tensorboard]'`)"),
        Key("histograms_every", INT, None, "also a histogram of every weight in TensorBoard every N steps, and of the initial "
            "weights at step 0",
            **_POSITIVE, used_by="distnet.jobs.job.build_trainer", shown="off"),
        Key("conv_algorithm", STR, None, "the convolution layers' algorithm: `auto` (the fastest of `gemm`, "
            "`fft`, `winograd` for each layer, measured once at start-up on rank 0 and used by every worker; "
            "layers too small to matter and near ties stay `gemm`; the plan is stored in every checkpoint and a "
            "resumed run, on any number of workers, runs it again; unset, the default, is `auto`, and with "
            "`deterministic` no measurement: `gemm`, or a checkpoint's plan on resume), "
            "`gemm` (im2col + matrix product everywhere: fresh runs independent of any measurement), or `fft` / "
            "`winograd` forced on the layers they can compute (stride 1; Winograd: 3x3 kernels). The algorithms "
            "agree to float rounding, not bitwise: two fresh `auto` runs on machines that measure differently "
            "may differ in the last bits", choices=CONV_MODES, arg="conv_algorithm",
            shown="`auto` (`deterministic`: `gemm`)"),
        Key("early_stopping", TABLE, None, "a table, Keras's `EarlyStopping`: `metric` (`val_loss`, "
            "`val_accuracy`, `ema_val_loss`, `ema_val_accuracy`; default `val_loss`), `patience` (evaluations "
            "without improvement before stopping, default 0), `min_delta` (a smaller change is no improvement), "
            "`mode` (`auto`: maximise accuracies, minimise losses), `restore_best_weights` (the weights and EMA "
            "shadows of the best evaluation come back; they are evaluated again, and the summary, the `end` "
            "record and the last checkpoint give their figures). Needs `[data] "
            "validation` and `eval_every`; every worker stops at the same step (the metrics are global), writes "
            "its last checkpoint there and says why (\"stopped early at step N (best M)\" in the summary), e.g. "
            "`early_stopping = {metric = \"val_loss\", patience = 3}`",
            used_by="distnet.jobs.job.build_trainer", shown="off"),
    )),
    Section("checkpoint", "CheckpointConfig", "where and how often the job is saved; ``dir`` defaults to "
            "``RUN_DIR/checkpoints``; ``every = 0`` or ``dir = \"\"`` switches checkpoints off", (
                Key("dir", STR, None, "where checkpoints go; `\"\"` switches them off",
                    used_by="distnet.jobs.job.checkpoint_dir", shown="`RUN_DIR/checkpoints`"),
                Key("every", INT, None, "write one every N steps (also at the end, and at the step a signal "
                    "stopped the job); `0` switches checkpoints off", low=0, arg="checkpoint_every",
                    shown="at the end and at a stop"),
                Key("max_to_keep", INT, 5, "keep the newest N files", **_POSITIVE, arg="max_to_keep"),
                Key("keep_best", STR, None, "also keep the checkpoint of the best evaluation of this metric "
                    "(`val_loss`, `val_accuracy`, `ema_val_*`) in `DIR/best/`, apart from the newest N; needs "
                    "`[data] validation`", choices=METRICS, used_by="distnet.jobs.job.build_trainer", shown="off"),
            )),
    Section("dist", "DistConfig", "how the workers synchronise, and failure detection across them", (
        Key("strategy", STR_OR_TABLE, "auto", "how the workers synchronise a step: a strategy's name or a table "
            "with its `type` and its options, e.g. `{type = \"zero1\", shared_memory = false}` (the strategies "
            "and their options are listed below). `\"auto\"` takes the strategy that prefers this job most "
            "among those that take the options given: ZeRO-1 with two or more workers unless an option only "
            "`replicated` takes is given (`optimizer.clip_norm` clips the whole gradient under every strategy). "
            "Results and checkpoints are "
            "the same whichever runs, and a checkpoint resumes under any on any number of workers. Step times "
            "and memory of each: `benchmarks/README.md`", used_by="distnet.jobs.job.build_trainer"),
        Key("sync_batch_norm", BOOL, True, "batch normalization's statistics over the global batch: each "
            "`batch_norm` layer sums its statistics over the workers (one small all-reduce per layer call, "
            "and one in backward), so N workers train as one worker does; with `micro_batches = K` they are "
            "those of each global micro-batch (the global batch's samples K apart). `false`: each worker "
            "normalizes by its own shard (TensorFlow's and Horovod's default; the moving statistics then "
            "differ between workers, each evaluates its part of the test set with its own, and checkpoints hold "
            "worker 0's). No effect with `deterministic` (per-piece statistics)", arg="sync_batch_norm"),
        Key("stall_timeout", FLOAT, 120.0, "seconds without progress from a worker before the job is stopped "
            "with an error naming it", **_POSITIVE, arg="stall_timeout"),
        Key("stop_grace", FLOAT, None, "seconds a stop asked by SIGINT / SIGTERM may take (finish the step, "
            "write the checkpoint) before the job is ended at once; keep it below the scheduler's own grace "
            "period ([stopping.md](stopping.md))", **_POSITIVE, used_by=_CLI, shown="`30`"),
        Key("max_restarts", INT, None, "with `-n` / `--hostfile`: relaunch a job whose worker died or that "
            "failed after its first step, from the newest checkpoint, up to this many times (`--max-restarts` "
            "overrides)", low=0, used_by=_CLI, shown="`0`"),
        Key("check_every", INT, 100, "compare a checksum of the parameters across workers every N steps",
            **_POSITIVE, arg="check_every"),
        Key("max_bad_steps", INT, 5, "stop after this many consecutive steps with a non-finite loss or "
            "gradient (each is skipped)", **_POSITIVE, arg="max_bad_steps"),
        Key("deterministic", BOOL, False, "train and evaluate with the same bits on any number of workers, "
            "under every strategy: a run on N workers, or resumed on another N, equals the 1-worker run bit "
            "for bit (the global batch in pieces of `piece_size` samples, their gradients summed exactly; "
            "`micro_batches` has no effect). Batch normalization takes each piece's own statistics (ghost batch "
            "normalization; `sync_batch_norm` has no effect) and moves its moving statistics once per step, "
            "toward the pieces' sample-weighted mean. Not with `compression`, `overlap` or "
            "`conv_algorithm = \"auto\"`; `distnet train --deterministic` sets it "
            "([determinism.md](determinism.md))", arg="deterministic"),
        Key("piece_size", INT, None, "with `deterministic`: samples per piece of the global batch (each piece "
            "one forward and backward wherever it runs); part of the computation: another piece size is "
            "another run up to float rounding", **_POSITIVE, arg="piece_size",
            shown="`ceil(batch_size / P)`, `P` the largest power of two <= 16 with >= 32 samples a piece"),
    )),
)})
