"""The ``distnet`` command line.

Commands: ``train``, ``eval``, ``predict``, ``export``, ``inspect``, ``plot``,
``trace``, ``run``, ``data fetch``, ``data convert``.  Exit statuses: the table in
:mod:`distnet.exit_status` (0 done, 1 training failed, 2 bad input, 3 stalled,
130 / 143 stopped by SIGINT / SIGTERM).

Bad input prints one line, ``distnet: error: ...``, and no traceback.
"""
from __future__ import annotations

import argparse
import json
import sys
import textwrap
import warnings
from typing import Sequence

from distnet import exit_status
from distnet._version import __version__

EXIT_OK = exit_status.OK
EXIT_FAILURE = exit_status.FAILED
EXIT_BAD_INPUT = exit_status.BAD_INPUT
EXIT_STALLED = exit_status.STALLED
EXIT_INTERRUPTED = exit_status.SIGINT
EXIT_TERMINATED = exit_status.SIGTERM

_EPILOG_TOP = """\
examples:
  distnet train                                  # the built-in default job (Fashion-MNIST)
  distnet train examples/jobs/seed003_l2.toml -n 2
  distnet eval runs/default --ema
  distnet predict runs/default --input images.npy --output preds.csv
  distnet export runs/default --format onnx -o model.onnx --ema
  distnet plot runs/default
  distnet run -n 2 tf1_program.py                # a TF1 program (import distnet.compat.v1 as tf)

exit statuses: 0 done, 1 training failed, 2 bad input, 3 stalled,
  130 / 143 stopped by SIGINT (Ctrl-C) / SIGTERM after saving a checkpoint
"""


class _Parser(argparse.ArgumentParser):
    """argparse with exit code 2 and a one-line error (argparse's own convention)."""

    def error(self, message: str):  # noqa: D401 - argparse API
        self.print_usage(sys.stderr)
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message}\n")


def _wrap(text: str) -> str:
    return textwrap.fill(text, width=78)


def _formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``distnet`` command (every subcommand)."""
    parser = _Parser(
        prog="distnet",
        description=_wrap("Data-parallel neural-network training on numpy and MPI, with "
                    "TensorFlow 1.x semantics."),
        epilog=_EPILOG_TOP, formatter_class=_formatter,
    )
    parser.add_argument("--version", action="version", version=f"distnet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    # -- train --------------------------------------------------------------
    p = sub.add_parser(
        "train", help="train a job (no JOB: the built-in default job)",
        description=_wrap("Train the job described by a TOML job file (see docs/jobs.md) on one "
                    "process, or on N MPI workers with -n / --hostfile. Without JOB the built-in "
                    "default job runs: a small conv net on the Fashion-MNIST data shipped with "
                    "distnet. Rank 0 writes metrics.jsonl in the run directory and shows progress. "
                    "Ctrl-C or SIGTERM stops every worker after the same step and saves a checkpoint "
                    "there (exit 130 / 143; a second signal aborts at once); --resume continues from "
                    "it."),
        epilog="examples:\n"
               "  distnet train\n"
               "  distnet train examples/jobs/seed003_dropout.toml --set train.steps=200\n"
               "  distnet train job.toml -n 2 --set optimizer.learning_rate=0.01\n"
               "  distnet train job.toml --hostfile hosts.txt --resume\n",
        formatter_class=_formatter)
    p.add_argument("job", nargs="?", metavar="JOB", help="the TOML job file (default: the built-in job)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a job value, e.g. --set optimizer.learning_rate=0.01 "
                        "(VALUE is read as TOML, else as a string); repeatable")
    p.add_argument("-n", "--np", dest="num_workers", type=int, metavar="N",
                   help="launch N MPI workers (through mpiexec) on this machine, or on the "
                        "hostfile's hosts")
    p.add_argument("--hostfile", metavar="FILE",
                   help="launch workers on the hosts of an MPI hostfile ('host' or 'host:slots' "
                        "per line; one worker per slot unless -n is given)")
    start = p.add_mutually_exclusive_group()
    start.add_argument("--resume", action="store_true",
                       help="continue from the newest good checkpoint in the job's checkpoint directory "
                            "(an error when there is none)")
    start.add_argument("--resume-if-any", action="store_true",
                       help="continue from the newest good checkpoint if there is one, else start")
    start.add_argument("--overwrite", action="store_true",
                       help="start again in a run directory that holds an earlier run: its checkpoints and "
                            "metrics.jsonl are deleted first")
    p.add_argument("--max-restarts", type=int, metavar="K",
                   help="with -n / --hostfile: when a worker dies or the job fails after its first step, "
                        "end the rest and relaunch from the newest checkpoint, up to K times "
                        "(default: [dist] max_restarts, 0)")
    p.add_argument("--min-workers", type=int, metavar="M",
                   help="with --hostfile and --max-restarts: leave out a host that failed twice and go on "
                        "while the others have at least M slots")
    p.add_argument("--run-dir", metavar="DIR", help="where metrics.jsonl, job.toml and (by "
                   "default) checkpoints go (default: the job's run_dir, runs/<name>)")
    p.add_argument("--progress", choices=("auto", "bar", "plain", "none"), default="auto",
                   help="progress display: a bar on a terminal, plain lines otherwise (default: auto)")
    p.add_argument("--check", action="store_true",
                   help="validate the job (and the dataset path) and print it as TOML; do not train")
    p.add_argument("--trace", action="store_true",
                   help="record every rank's timeline (data, forward, backward, reduce and the waits in it, "
                        "update, evaluation, checkpoints) in RUN_DIR/trace/; merge it with `distnet trace`")

    # -- trace --------------------------------------------------------------
    p = sub.add_parser(
        "trace", help="merge a traced run's per-rank timelines into one file for Perfetto",
        description=_wrap("Join RUN/trace/rank-*.json, written by `distnet train --trace`, into one "
                          "Chrome trace file (one process per rank, one thread per kind of work) that "
                          "ui.perfetto.dev and chrome://tracing open."),
        epilog="example:\n  distnet train job.toml -n 2 --trace --run-dir runs/t && distnet trace runs/t\n",
        formatter_class=_formatter)
    p.add_argument("run", metavar="RUN", help="the run directory")
    p.add_argument("-o", "--output", metavar="FILE", help="where to write it (default: RUN/trace.json)")

    # -- eval ---------------------------------------------------------------
    p = sub.add_parser(
        "eval", help="evaluate a checkpoint on its job's test split",
        description=_wrap("Load a checkpoint (a file, a checkpoint directory or a run directory: the "
                    "newest good checkpoint is used), rebuild the model from the job stored in it "
                    "and print the loss and accuracy on the test split, with the trained weights "
                    "or, with --ema, the moving-average (shadow) weights."),
        epilog="examples:\n"
               "  distnet eval runs/default\n"
               "  distnet eval runs/default/checkpoints/ckpt-00000300.h5 --ema\n"
               "  distnet eval runs/default --data /data/fashion-test.h5\n",
        formatter_class=_formatter)
    p.add_argument("ckpt", metavar="CKPT", help="checkpoint file, checkpoint directory or run directory")
    p.add_argument("--ema", action="store_true", help="use the EMA shadow weights")
    p.add_argument("--data", metavar="NAME|PATH",
                   help="evaluate on another dataset: fashion_mnist, mnist, an HDF5 file or an "
                        "IDX directory (default: the job's own data)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a value of the stored job, e.g. --set data.test_samples=500")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.add_argument("--allow-nonfinite", action="store_true",
                   help="read a checkpoint whose weights hold NaN/inf (refused otherwise)")

    # -- predict ------------------------------------------------------------
    p = sub.add_parser(
        "predict", help="predict the classes of new images with a trained model",
        description=_wrap("Load a checkpoint (a file, a checkpoint directory or a run directory: the "
                    "newest good checkpoint is used), rebuild its model and predict the class of every "
                    "image in FILE: an IDX images file (raw or .gz), a .npy array (N, H, W[, C]) of "
                    "uint8 or floats in [0, 1], or an HDF5 file (distnet's dataset format, or any file "
                    "with an /images dataset). With labels beside the images (an IDX labels file named "
                    "like the images file, or an HDF5 dataset's labels) the accuracy is printed too. "
                    "--output writes every prediction: preds.npy holds the class probabilities "
                    "(N, classes; the label is their argmax), preds.csv one row per image (index, "
                    "label, class name, probabilities)."),
        epilog="examples:\n"
               "  distnet predict runs/default --input t10k-images-idx3-ubyte.gz --ema\n"
               "  distnet predict runs/default --input new.npy --output preds.csv\n"
               "  distnet predict runs/default/checkpoints/ckpt-00000500.h5 --input test.h5 "
               "--output probs.npy\n",
        formatter_class=_formatter)
    p.add_argument("ckpt", metavar="RUN", help="run directory, checkpoint directory or checkpoint file")
    p.add_argument("--input", required=True, metavar="FILE", help="images: IDX, .npy or HDF5")
    p.add_argument("--ema", action="store_true", help="use the EMA shadow weights")
    p.add_argument("--output", metavar="OUT.npy|OUT.csv",
                   help="write every prediction (default: print the first 10 and a summary)")
    p.add_argument("--batch-size", type=int, default=1000, metavar="N",
                   help="images per forward pass (default: 1000)")

    # -- export -------------------------------------------------------------
    p = sub.add_parser(
        "export", help="export a trained model (ONNX)",
        description=_wrap("Write a checkpoint's model with its trained (or, with --ema, its "
                    "moving-average) weights as an ONNX model: input 'images' [batch, H, W, C] "
                    "float32 in [0, 1] (NHWC, as distnet reads images), outputs 'logits' and "
                    "'probabilities'. Needs the onnx package: pip install 'distnet[onnx]'."),
        epilog="examples:\n"
               "  distnet export runs/default --format onnx -o model.onnx --ema\n"
               "  python -c \"import onnxruntime as ort; "
               "s = ort.InferenceSession('model.onnx'); print(s.get_inputs()[0].shape)\"\n",
        formatter_class=_formatter)
    p.add_argument("ckpt", metavar="RUN", help="run directory, checkpoint directory or checkpoint file")
    p.add_argument("--format", choices=("onnx",), default="onnx", help="the model format (default: onnx)")
    p.add_argument("-o", "--output", required=True, metavar="OUT.onnx", help="the file to write")
    p.add_argument("--ema", action="store_true", help="export the EMA shadow weights")

    # -- inspect ------------------------------------------------------------
    p = sub.add_parser(
        "inspect", help="show what a checkpoint holds",
        description=_wrap("Print a checkpoint's step, epoch, world size, variables and shapes, "
                    "optimizer and its slots, EMA shadows, last metrics and the job configuration."),
        epilog="examples:\n  distnet inspect runs/default\n"
               "  distnet inspect runs/default/checkpoints/ckpt-00000300.h5 --no-config\n",
        formatter_class=_formatter)
    p.add_argument("ckpt", metavar="CKPT", help="checkpoint file, checkpoint directory or run directory")
    p.add_argument("--no-config", action="store_true", help="leave out the stored job configuration")
    p.add_argument("--allow-nonfinite", action="store_true",
                   help="read a checkpoint whose weights, slots or shadows hold NaN/inf (refused otherwise)")

    # -- plot ---------------------------------------------------------------
    p = sub.add_parser(
        "plot", help="plot loss, accuracy and learning-rate curves to a PNG",
        description=_wrap("Read metrics.jsonl of one run (or several, to compare them on the same "
                    "axes) and draw loss, accuracy (train, test, EMA) and learning-rate curves "
                    "into a PNG."),
        epilog="examples:\n  distnet plot runs/default                  # -> runs/default/metrics.png\n"
               "  distnet plot runs/seed003_* -o seed003.png  # the three variants side by side\n",
        formatter_class=_formatter)
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directory holding metrics.jsonl")
    p.add_argument("-o", "--output", metavar="OUT.png",
                   help="image to write (default: RUN_DIR/metrics.png, or runs.png for several runs)")

    # -- run ----------------------------------------------------------------
    p = sub.add_parser(
        "run", help="run a Python program (e.g. a TF1 program) on N MPI workers",
        description=_wrap("Run PROGRAM with its arguments: in this process, or with -n / --hostfile "
                    "on N workers through mpiexec (the same as `mpiexec -n N python PROGRAM ...`). "
                    "A TF1 program written with `import distnet.compat.v1 as tf` goes data "
                    "parallel with `opt = tf.DistributedOptimizer(opt)` (see docs/tf1.md)."),
        epilog="examples:\n  distnet run -n 2 mnist_softmax.py --steps 1000\n"
               "  distnet run --hostfile hosts.txt train.py\n",
        formatter_class=_formatter)
    p.add_argument("-n", "--np", dest="num_workers", type=int, metavar="N", help="launch N MPI workers")
    p.add_argument("--hostfile", metavar="FILE", help="launch workers on the hosts of an MPI hostfile")
    p.add_argument("program", metavar="PROGRAM", help="the Python program to run")
    p.add_argument("program_args", nargs=argparse.REMAINDER, metavar="ARGS", help="its arguments")

    # -- data ---------------------------------------------------------------
    p = sub.add_parser(
        "data", help="download or convert datasets",
        description=_wrap("Download a dataset (fetch) or convert IDX files to distnet's HDF5 "
                    "dataset format (convert)."),
        epilog="examples:\n  distnet data fetch fashion_mnist --dest data/fashion\n"
               "  distnet data convert train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz train.h5\n",
        formatter_class=_formatter)
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION", parser_class=_Parser)
    f = dsub.add_parser(
        "fetch", help="download MNIST or Fashion-MNIST (checksums verified)",
        description=_wrap("Download a dataset's four IDX files from their official addresses into "
                    "DEST, verify their checksums and resume or discard partial downloads."),
        epilog="example:\n  distnet data fetch mnist --dest ~/datasets/mnist\n",
        formatter_class=_formatter)
    f.add_argument("name", metavar="NAME", help="fashion_mnist or mnist")
    f.add_argument("--dest", required=True, metavar="DIR", help="directory to write the files to")
    f.add_argument("--base-url", metavar="URL",
                   help="a mirror serving the same file names (default: the official address)")
    c = dsub.add_parser(
        "convert", help="convert an IDX images/labels pair to an HDF5 dataset",
        description=_wrap("Convert an IDX images file and its labels file (raw or .gz) to one HDF5 "
                    "dataset file (images, labels and metadata), from which each rank of a job "
                    "reads only its own rows."),
        epilog="example:\n  distnet data convert t10k-images-idx3-ubyte.gz "
               "t10k-labels-idx1-ubyte.gz fashion-test.h5\n",
        formatter_class=_formatter)
    c.add_argument("images", metavar="IMAGES", help="IDX images file")
    c.add_argument("labels", metavar="LABELS", help="IDX labels file")
    c.add_argument("out", metavar="OUT.h5", help="HDF5 file to write")
    c.add_argument("--num-classes", type=int, metavar="K",
                   help="number of classes (default: largest label + 1)")
    c.add_argument("--compression", choices=("gzip", "lzf"), help="HDF5 compression filter")
    return parser


# ---------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------

def _cmd_train(args) -> int:
    if args.num_workers is not None or args.hostfile is not None or args.check:
        return _train_or_launch(args, None)
    from distnet.stop import StopSignals

    # First of all: a signal during start-up ends this process cleanly (130 / 143),
    # one during training stops every rank after an agreed step.
    with StopSignals() as signals:
        return _train_or_launch(args, signals)


def _train_or_launch(args, signals) -> int:
    from distnet.config import check_world_size, load_job

    cfg = load_job(args.job, args.overrides)
    if args.run_dir is not None:
        cfg.run_dir = args.run_dir
    if args.check:
        if args.num_workers is not None:
            check_world_size(cfg, args.num_workers)
        print(cfg.to_toml(), end="")
        return EXIT_OK
    if args.num_workers is not None or args.hostfile is not None:
        return _launch(args, cfg)
    if args.max_restarts is not None or args.min_workers is not None:
        raise _bad_input("--max-restarts and --min-workers restart a job of workers: give -n N or --hostfile")
    from distnet.distributed import get_communicator, init
    from distnet.errors import TrainingStopped
    from distnet.job import run_train
    from distnet.stop import DEFAULT_GRACE

    signals.grace = cfg.dist.stop_grace or DEFAULT_GRACE
    comm = get_communicator("auto")
    signals.attach(comm)   # several ranks: signals are read by a thread from now on
    # BLAS threads per rank, the allocator, and (under mpiexec) aborting every
    # rank when one fails: an error every rank agreed on (bad job or data, found
    # before training) returns normally on every rank; any other error on one
    # rank must end every rank at once instead of leaving them in a collective.
    init(comm)
    options = dict(resume=args.resume, resume_if_any=args.resume_if_any, overwrite=args.overwrite,
                   progress=args.progress, trace=args.trace, signals=signals)
    if comm.size == 1:
        run_train(cfg, comm, **options)
        return EXIT_OK
    try:
        run_train(cfg, comm, **options)
    except (TrainingStopped, KeyboardInterrupt):
        raise   # every rank stopped at the same step
    except BaseException as exc:
        if getattr(exc, "agreed_by_all_ranks", False):
            raise
        # comm.abort puts the "[rank R]" in front of each line.
        comm.abort(EXIT_FAILURE, f"distnet: training failed: {type(exc).__name__}: {_one_line(exc)}")
        raise
    return EXIT_OK


def _launch(args, cfg) -> int:
    """Re-run this ``distnet train`` under mpiexec (as horovodrun / torchrun do)."""
    from distnet.config import check_world_size

    from distnet import launcher

    size = args.num_workers
    if size is not None and size < 1:
        raise _bad_input(f"-n: expected a number of workers >= 1, got {size}")
    if size is None:  # one worker per slot of the hostfile
        size = sum(host.slots for host in launcher.parse_hostfile(args.hostfile))
    check_world_size(cfg, size)  # before any worker starts
    worker_args = ["train"]
    if args.job is not None:
        worker_args.append(args.job)
    for item in args.overrides:
        worker_args += ["--set", item]
    if args.run_dir is not None:
        worker_args += ["--run-dir", args.run_dir]
    if args.trace:
        worker_args.append("--trace")
    progress = args.progress
    if progress == "auto":  # the workers' output is a pipe: decide from our terminal
        progress = "bar" if sys.stdout.isatty() else "plain"
    worker_args += ["--progress", progress]
    first = {"resume": ["--resume"], "resume_if_any": ["--resume-if-any"], "overwrite": ["--overwrite"]}
    first_args = next((flag for key, flag in first.items() if getattr(args, key)), [])
    max_restarts = args.max_restarts if args.max_restarts is not None else (cfg.dist.max_restarts or 0)
    if max_restarts < 0:
        raise _bad_input(f"--max-restarts: expected a number of restarts >= 0, got {max_restarts}")
    if args.min_workers is not None:
        if args.hostfile is None:
            raise _bad_input("--min-workers leaves out failed hosts of a --hostfile: give one")
        if not 1 <= args.min_workers <= size:
            raise _bad_input(f"--min-workers: expected 1 .. {size} (the job's workers), got {args.min_workers}")
        check_world_size(cfg, args.min_workers)
    from distnet.job import checkpoint_dir
    from distnet.restart import supervise
    from distnet.stop import DEFAULT_GRACE

    return supervise(worker_args, first_args=first_args, num_workers=args.num_workers, hostfile=args.hostfile,
                     max_restarts=max_restarts, min_workers=args.min_workers, run_dir=cfg.run_dir,
                     checkpoint_dir=checkpoint_dir(cfg, cfg.run_dir),
                     stop_grace=cfg.dist.stop_grace or DEFAULT_GRACE, entry=launcher.WORKER_ENTRY,
                     launch=launcher.launch_job)


def _cmd_run(args) -> int:
    """``distnet run [-n N] PROGRAM ARGS...``: the program here, or under mpiexec."""
    import os
    import runpy

    if not os.path.isfile(args.program):
        raise _bad_input(f"run: PROGRAM: Expect: a Python file Actual: {args.program!r} does not exist")
    if args.num_workers is not None and args.num_workers < 1:
        raise _bad_input(f"-n: expected a number of workers >= 1, got {args.num_workers}")
    if args.num_workers is not None or args.hostfile is not None:
        from distnet import launcher

        return int(launcher.launch([args.program, *args.program_args], num_workers=args.num_workers,
                                   hostfile=args.hostfile, entry=()))
    saved_argv, saved_path = sys.argv, list(sys.path)
    sys.argv = [args.program, *args.program_args]
    sys.path.insert(0, os.path.dirname(os.path.abspath(args.program)))
    try:
        runpy.run_path(args.program, run_name="__main__")
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else EXIT_FAILURE)
    finally:
        sys.argv, sys.path[:] = saved_argv, saved_path
    return EXIT_OK


def _bad_input(message: str):
    from distnet.errors import ConfigError

    return ConfigError(message)


def _cmd_eval(args) -> int:
    from distnet.job import run_eval

    result = run_eval(args.ckpt, use_ema=args.ema, data=args.data, overrides=args.overrides,
                      allow_nonfinite=args.allow_nonfinite)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['checkpoint']} (step {result['step']}, {result['weights']} weights): "
              f"test loss {result['loss']:.4f}, accuracy {result['accuracy']:.4f} "
              f"on {result['samples']} samples")
    return EXIT_OK


def _cmd_predict(args) -> int:
    from distnet.predict import predict, write_predictions

    pred = predict(args.ckpt, args.input, use_ema=args.ema, batch_size=args.batch_size)
    n = len(pred.labels)
    if args.output is not None:
        out = write_predictions(pred, args.output)
    else:
        names = pred.class_names
        shown = min(n, 10)
        for i in range(shown):
            label = int(pred.labels[i])
            name = f" {names[label]}" if names else ""
            truth = "" if pred.true_labels is None else f"  (true {int(pred.true_labels[i])})"
            print(f"{i:>6}  {label}{name}  p={pred.probabilities[i, label]:.4f}{truth}")
        if n > shown:
            print(f"  ... {n - shown} more; --output preds.csv or preds.npy writes them all")
    summary = (f"predicted {n} images of {pred.source} with the {pred.weights} weights of "
               f"{pred.checkpoint} (step {pred.step})")
    if pred.accuracy is not None:
        summary += f"; accuracy {pred.accuracy:.4f} against its labels"
    if args.output is not None:
        summary += f"; wrote {out}"
    print(summary)
    return EXIT_OK


def _cmd_export(args) -> int:
    from distnet.export.onnx import INSTALL_HINT

    try:
        import onnx  # noqa: F401 - present?
    except ImportError:
        raise _bad_input(f"distnet export --format onnx needs the onnx package: {INSTALL_HINT}") from None
    from distnet.export import export_checkpoint

    out, info = export_checkpoint(args.ckpt, args.output, use_ema=args.ema)
    print(f"wrote {out}: the {info['weights']} weights of {info['checkpoint']} (step {info['step']}), "
          f"input images [batch, {', '.join(map(str, info['input_shape']))}]")
    return EXIT_OK


def _cmd_inspect(args) -> int:
    from distnet.job import load_checkpoint

    path, state = load_checkpoint(args.ckpt, allow_nonfinite=args.allow_nonfinite)
    print(f"checkpoint      {path}")
    print(f"step            {state.step}")
    print(f"epoch           {_epoch_line(state)}")
    print(f"world size      {state.world_size}")
    print(f"distnet         {state.distnet_version} (format {state.format_version})")
    total = sum(int(a.size) for a in state.params.values())
    print(f"\nvariables ({len(state.params)}, {total:,} parameters):")
    width = max((len(n) for n in state.params), default=0)
    for name, arr in state.params.items():
        shadow = " ema" if name in state.ema else ""
        print(f"  {name:<{width}}  {arr.dtype}{list(arr.shape)}{shadow}")
    opt = state.optimizer
    slots = ", ".join(f"{s} ({len(v)})" for s, v in opt.get("slots", {}).items()) or "none"
    print(f"\noptimizer       {opt.get('name') or '?'}, {opt.get('iterations', 0)} iterations, slots: {slots}")
    for key, value in opt.get("hyper", {}).items():
        print(f"  {key} = {value}")
    print(f"ema             {'%d shadow weights' % len(state.ema) if state.ema else 'none'}")
    if state.metrics:
        from distnet.metrics import metric_name

        print("\nmetrics:")
        for key, value in sorted((metric_name(k), v) for k, v in state.metrics.items()):
            print(f"  {key} = {value:.6g}")
    if state.data:
        from distnet.data.identity import describe

        print("\ndata:")
        for split, identity in sorted(state.data.items()):
            print(f"  {split}: {describe(identity)}")
    if not args.no_config:
        print("\nconfig:")
        text = state.config_text.strip()
        print("  " + text.replace("\n", "\n  ") if text else "  (none stored)")
    return EXIT_OK


def _cmd_trace(args) -> int:
    from distnet.errors import DataError
    from distnet.trace import merge

    try:
        path, counts = merge(args.run, args.output)
    except FileNotFoundError as exc:
        raise DataError(str(exc)) from None
    print(f"{path}: {sum(counts.values())} events of {len(counts)} rank(s) "
          f"({', '.join(f'rank {r}: {n}' for r, n in sorted(counts.items()))}); "
          "open it in ui.perfetto.dev or chrome://tracing")
    return EXIT_OK


def _epoch_line(state) -> str:
    """The epoch as metrics.jsonl and the run's summary count it: that of the last step.

    The checkpoint stores where the data resumes (epoch, position of the next
    sample): after whole epochs that is the next epoch at position 0.
    """
    if state.step == 0:
        return f"none yet (resumes at epoch {state.epoch}, sample {state.position})"
    last = state.epoch - 1 if state.position == 0 and state.epoch > 0 else state.epoch
    return (f"{last} (0-based, the epoch of step {state.step}; resumes at epoch {state.epoch}, "
            f"sample {state.position})")


def _cmd_plot(args) -> int:
    from distnet.plot import plot_run, plot_runs

    if len(args.run_dirs) == 1:
        out = plot_run(args.run_dirs[0], args.output)
    else:
        out = plot_runs(args.run_dirs, args.output or "runs.png")
    print(f"wrote {out}")
    return EXIT_OK


def _cmd_data(args, parser) -> int:
    if args.data_command == "fetch":
        from distnet.data import fetch

        paths = fetch.fetch(args.name, args.dest, args.base_url, log=print)
        print(f"{args.name}: {len(paths)} files verified in {args.dest}")
        return EXIT_OK
    if args.data_command == "convert":
        from distnet.data import convert_idx_to_hdf5

        out = convert_idx_to_hdf5(args.images, args.labels, args.out, num_classes=args.num_classes,
                                  compression=args.compression)
        print(f"wrote {out}")
        return EXIT_OK
    parser.parse_args(["data", "--help"])
    return EXIT_BAD_INPUT  # pragma: no cover - --help exits


def _is_main_rank() -> bool:
    """True unless this process is a rank > 0 of an MPI job (only rank 0 prints errors)."""
    import os

    for var in ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK", "MV2_COMM_WORLD_RANK"):
        if os.environ.get(var, "0") not in ("0", ""):
            return False
    return True


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``distnet`` command; returns the exit status (:mod:`distnet.exit_status`)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or an argparse error (code 2)
        return int(exc.code or 0) if not isinstance(exc.code, str) else EXIT_BAD_INPUT
    if args.command is None:
        parser.print_help()
        return EXIT_OK
    speak = _is_main_rank()
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning  # one line per warning, restored on return
        return _run(args, parser, speak)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"distnet: warning: {message}", file=sys.stderr if file is None else file)


def _run(args, parser, speak: bool) -> int:
    from distnet.errors import (CheckpointError, ConfigError, DataError, DistnetError,
                                InvalidArgumentError, TrainingStopped)

    commands = {"train": _cmd_train, "eval": _cmd_eval, "predict": _cmd_predict, "export": _cmd_export,
                "inspect": _cmd_inspect, "plot": _cmd_plot, "trace": _cmd_trace, "run": _cmd_run}
    try:
        if args.command == "data":
            return _cmd_data(args, parser)
        return commands[args.command](args)
    except TrainingStopped as exc:
        if speak:
            if exc.aborted:
                print(f"distnet: {exc.reason}: stopped at once (no checkpoint)", file=sys.stderr)
            else:
                saved = f"; checkpoint {exc.checkpoint}" if exc.checkpoint else " (checkpoints are off)"
                print(f"distnet: interrupted: stopped by {exit_status.signal_name(exc.signal)} after step "
                      f"{exc.step}{saved}", file=sys.stderr)
        return int(exc.code)
    except KeyboardInterrupt:
        if speak:
            print("\ndistnet: interrupted (Ctrl-C)", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (ConfigError, DataError, CheckpointError, InvalidArgumentError) as exc:
        if speak:
            print(f"distnet: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except DistnetError as exc:
        if speak:
            print(f"distnet: training failed: {_one_line(exc)}", file=sys.stderr)
        return EXIT_FAILURE
    except BrokenPipeError:
        # Our reader went away (``distnet inspect CKPT | head``): stop quietly.
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAILURE
    except ImportError as exc:
        print(f"distnet: error: {exc} (a part of distnet or an optional dependency is missing)",
              file=sys.stderr)
        return EXIT_FAILURE
    except OSError as exc:
        print(f"distnet: error: {exc}", file=sys.stderr)
        return EXIT_FAILURE


def _one_line(exc: BaseException) -> str:
    """The error's message on one line (a message of several lines joined with "; ")."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return "; ".join(lines) or type(exc).__name__


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
