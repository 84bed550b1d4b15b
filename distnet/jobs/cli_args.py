"""The ``distnet`` command's arguments: every subcommand and option, and the
help text (``distnet --help``).  :mod:`distnet.jobs.cli` runs what they ask for."""
from __future__ import annotations

import argparse
import sys
import textwrap

from distnet.runner import exit_status
from distnet._version import __version__

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
        self.exit(exit_status.BAD_INPUT, f"{self.prog}: error: {message}\n")


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
    p.add_argument("--verbose-launch", action="store_true",
                   help="with -n / --hostfile: show mpiexec's own messages (hydra's banners and lines) on "
                        "the console; by default they go to RUN_DIR/launch.log, named when there are any")
    p.add_argument("--run-dir", metavar="DIR", help="where metrics.jsonl, job.toml and (by "
                   "default) checkpoints go (default: the job's run_dir, runs/<name>)")
    p.add_argument("--progress", choices=("auto", "bar", "plain", "none"), default="auto",
                   help="progress display: a bar on a terminal, plain lines otherwise (default: auto)")
    p.add_argument("--check", action="store_true",
                   help="validate the job (and the dataset path) and print it as TOML; do not train")
    p.add_argument("--deterministic", action="store_true",
                   help="the same bits on any number of workers, and on a resume on another number "
                        "(--set dist.deterministic=true; docs/determinism.md)")
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
               "  distnet eval runs/default --data /data/fashion-test.h5\n"
               "  distnet eval runs/default --data /data/t10k-images-idx3-ubyte.gz --set data.test_samples=500\n",
        formatter_class=_formatter)
    p.add_argument("ckpt", metavar="CKPT", help="checkpoint file, checkpoint directory or run directory")
    p.add_argument("--ema", action="store_true", help="use the EMA shadow weights")
    p.add_argument("--data", metavar="NAME|PATH",
                   help="evaluate on this data, whole: a dataset's name (fashion_mnist, mnist: its test "
                        "split), an HDF5 file (e.g. from `distnet data convert`), an IDX images file "
                        "(its labels file beside it) or a directory of IDX files (default: the test "
                        "split of the job's own data)")
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

    # -- compare ------------------------------------------------------------
    p = sub.add_parser(
        "compare", help="compare two checkpoints bit for bit",
        description=_wrap("Compare every array of two checkpoints (files, checkpoint directories or run "
                    "directories: the newest good checkpoint of each) — weights, optimizer slots, EMA "
                    "shadows — and the step, iterations and data position, bit for bit. Exit 0 when "
                    "they are equal, 1 when they differ (each difference printed). Two runs of a job "
                    "with [dist] deterministic = true are equal on any numbers of workers "
                    "(docs/determinism.md)."),
        epilog="examples:\n  distnet compare runs/one runs/four\n"
               "  distnet compare runs/a/checkpoints/ckpt-00000300.h5 runs/b/checkpoints/ckpt-00000300.h5\n",
        formatter_class=_formatter)
    p.add_argument("a", metavar="A", help="checkpoint file, checkpoint directory or run directory")
    p.add_argument("b", metavar="B", help="the other one")

    # -- plot ---------------------------------------------------------------
    p = sub.add_parser(
        "plot", help="plot loss, accuracy and learning-rate curves to a PNG",
        description=_wrap("Read metrics.jsonl of one run (or several, to compare them on the same "
                    "axes) and draw loss, accuracy (train, validation, test, EMA) and learning-rate "
                    "curves into a PNG, with a star at the best step of the metric early stopping "
                    "or keep_best watched and a dashed line at an early stop. Line style tells "
                    "train (solid), validation (dashed) and test (dash-dot) apart; colour, the runs."),
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
                    "on N workers through mpiexec. A TF1 program runs unchanged: inside `distnet run`, "
                    "`import tensorflow as tf` (also `tensorflow.compat.v1`, `tensorflow.contrib...`, "
                    "`tensorflow.examples.tutorials.mnist`) is distnet.compat.v1 (--no-tf-alias "
                    "leaves the installed TensorFlow in place). It goes data parallel with "
                    "`opt = tf.DistributedOptimizer(opt)` (see docs/tf1.md)."),
        epilog="examples:\n  distnet run -n 2 mnist_softmax.py --steps 1000\n"
               "  distnet run --hostfile hosts.txt train.py\n",
        formatter_class=_formatter)
    p.add_argument("-n", "--np", dest="num_workers", type=int, metavar="N", help="launch N MPI workers")
    p.add_argument("--hostfile", metavar="FILE", help="launch workers on the hosts of an MPI hostfile")
    p.add_argument("--verbose-launch", action="store_true",
                   help="with -n / --hostfile: show mpiexec's own messages on the console; by default they "
                        "go to a log file in the temp directory, named when there are any")
    p.add_argument("--no-tf-alias", dest="tf_alias", action="store_false",
                   help="do not make `import tensorflow` distnet.compat.v1 (use the installed TensorFlow)")
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
