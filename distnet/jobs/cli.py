"""The ``distnet`` command line.

Commands: ``train``, ``eval``, ``predict``, ``export``, ``inspect``, ``plot``,
``trace``, ``run``, ``data fetch``, ``data convert``.  Exit statuses: the table in
:mod:`distnet.runner.exit_status` (0 done, 1 training failed, 2 bad input, 3 stalled,
130 / 143 stopped by SIGINT / SIGTERM).

Bad input prints one line, ``distnet: error: ...``, and no traceback.  The
arguments are defined in :mod:`distnet.jobs.cli_args`.

This module imports little at the top: :func:`main` installs the signal
handling before the slow imports (argparse, numpy, MPI), so that a signal
during start-up ends the process cleanly.
"""
from __future__ import annotations

import sys
import warnings

import distnet.runner.exit_status as exit_status

# ---------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------

def _cmd_train(args, signals) -> int:
    """``signals``: installed by :func:`main`: a signal during start-up ends the process
    cleanly (130 / 143); one during training stops every rank after an agreed step."""
    from distnet.jobs.config import load_job

    if args.deterministic:   # also handed on to the workers of -n / --hostfile with the other --set
        args.overrides = [*args.overrides, "dist.deterministic=true"]
    cfg = load_job(args.job, args.overrides)
    if args.run_dir is not None:
        cfg.run_dir = args.run_dir
    if args.check:   # the run's own check (distnet.jobs.job.check_job), leaving nothing behind
        from distnet.jobs.job import check_job

        check_job(cfg, _world_size(args), resume=args.resume, resume_if_any=args.resume_if_any,
                  overwrite=args.overwrite)
        if args.hostfile is not None:
            _check_hosts(args.hostfile)
        print(cfg.to_toml(), end="")
        return exit_status.OK
    if args.num_workers is not None or args.hostfile is not None:
        return _launch(args, cfg, signals)
    if args.max_restarts is not None or args.min_workers is not None:
        raise _bad_input("--max-restarts and --min-workers restart a job of workers: give -n N or --hostfile")
    from distnet.distributed import get_communicator, init
    from distnet.errors import TrainingStopped
    from distnet.jobs.job import run_train
    from distnet.training.stop import DEFAULT_GRACE

    signals.grace = cfg.dist.stop_grace or DEFAULT_GRACE
    comm = get_communicator("auto")
    signals.attach(comm)   # several ranks: signals are read by a thread from now on
    # BLAS threads per rank, the allocator, and (under mpiexec) aborting every
    # rank when one fails: an error every rank agreed on (bad job or data, found
    # before training) returns normally on every rank; any other error on one
    # rank must end every rank at once instead of leaving them in a collective.
    init(comm)
    if cfg.dist.deterministic:
        # A matrix product's bits depend on its BLAS threads: one per worker, whatever N
        # (the only count every N can keep on any machine; docs/determinism.md).
        from distnet.distributed.threads import limit_blas_threads

        limit_blas_threads(comm, 1)
    options = dict(resume=args.resume, resume_if_any=args.resume_if_any, overwrite=args.overwrite,
                   progress=args.progress, trace=args.trace, signals=signals)
    if comm.size == 1:
        run_train(cfg, comm, **options)
        return exit_status.OK
    try:
        run_train(cfg, comm, **options)
    except (TrainingStopped, KeyboardInterrupt):
        raise   # every rank stopped at the same step
    except BaseException as exc:
        if getattr(exc, "agreed_by_all_ranks", False):
            raise
        # comm.abort puts the "[rank R]" in front of each line.
        comm.abort(exit_status.FAILED, f"distnet: training failed: {type(exc).__name__}: {_one_line(exc)}")
        raise
    return exit_status.OK


def _world_size(args) -> int:
    """The number of workers ``distnet train`` runs: ``-n``, else one per slot of the hostfile, else 1."""
    size = args.num_workers
    if size is not None and size < 1:
        raise _bad_input(f"-n: Expect: a number of workers >= 1 Actual: {size}")
    if size is None and args.hostfile is not None:
        from distnet.runner import launcher

        size = sum(host.slots for host in launcher.parse_hostfile(args.hostfile))
    return 1 if size is None else size


def _launch(args, cfg, signals) -> int:
    """Re-run this ``distnet train`` under mpiexec (as horovodrun / torchrun do);
    the launcher catches the signals from then on."""
    from distnet.jobs.config import check_world_size
    from distnet.jobs.job import check_job

    from distnet.runner import launcher

    size = _world_size(args)
    # Every refusal of the run, before any worker starts (the workers check again, agreeing).
    check_job(cfg, size, resume=args.resume, resume_if_any=args.resume_if_any, overwrite=args.overwrite)
    if args.hostfile is not None:
        _check_hosts(args.hostfile)
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
        raise _bad_input(f"--max-restarts: Expect: a number of restarts >= 0 Actual: {max_restarts}")
    if args.min_workers is not None:
        if args.hostfile is None:
            raise _bad_input("--min-workers leaves out failed hosts of a --hostfile: give one")
        if not 1 <= args.min_workers <= size:
            raise _bad_input(f"--min-workers: Expect: 1 .. {size} (the job's workers) Actual: {args.min_workers}")
        check_world_size(cfg, args.min_workers)
    from distnet.jobs.job import checkpoint_dir
    from distnet.runner.restart import supervise
    from distnet.training.stop import DEFAULT_GRACE

    signals.end_startup()
    import os

    settings = launcher.LaunchSettings(num_workers=args.num_workers, hostfile=args.hostfile,
                                       entry=launcher.WORKER_ENTRY, verbose=args.verbose_launch,
                                       launch_log=os.path.join(cfg.run_dir, "launch.log"))
    return supervise(worker_args, settings, first_args=first_args, max_restarts=max_restarts,
                     min_workers=args.min_workers, run_dir=cfg.run_dir, checkpoint_dir=checkpoint_dir(cfg, cfg.run_dir),
                     stop_grace=cfg.dist.stop_grace or DEFAULT_GRACE, launch=launcher.launch_job)


def _check_hosts(hostfile: str) -> None:
    """Every host of the hostfile answers the remote start (ssh), or one line names those that do not."""
    from distnet.runner.launcher import parse_hostfile
    from distnet.runner.reachable import check_hosts_reachable

    check_hosts_reachable(parse_hostfile(hostfile), source=f"hostfile {hostfile}")


def _cmd_run(args) -> int:
    """``distnet run [-n N] PROGRAM ARGS...``: the program here, or under mpiexec."""
    import os
    import runpy

    if not os.path.isfile(args.program):
        raise _bad_input(f"run: PROGRAM: Expect: a Python file Actual: {args.program!r} does not exist")
    if args.num_workers is not None and args.num_workers < 1:
        raise _bad_input(f"-n: Expect: a number of workers >= 1 Actual: {args.num_workers}")
    if args.num_workers is not None or args.hostfile is not None:
        from distnet.runner import launcher

        if args.hostfile is not None:
            _check_hosts(args.hostfile)
        # Each worker is `distnet run PROGRAM` itself, so it gets the same alias.
        entry = ("-m", "distnet", "run", *(() if args.tf_alias else ("--no-tf-alias",)))
        return int(launcher.launch([args.program, *args.program_args], num_workers=args.num_workers,
                                   hostfile=args.hostfile, entry=entry, verbose=args.verbose_launch))
    alias = None
    if args.tf_alias:
        from distnet.compat import alias as tf_alias

        alias = tf_alias.install()
    saved_argv, saved_path = sys.argv, list(sys.path)
    sys.argv = [args.program, *args.program_args]
    sys.path.insert(0, os.path.dirname(os.path.abspath(args.program)))
    try:
        runpy.run_path(args.program, run_name="__main__")
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else exit_status.FAILED)
    finally:
        sys.argv, sys.path[:] = saved_argv, saved_path
        if alias is not None:
            tf_alias.uninstall(alias)
    return exit_status.OK


def _bad_input(message: str):
    from distnet.errors import ConfigError

    return ConfigError(message)


def _cmd_eval(args) -> int:
    from distnet.jobs.job import run_eval

    result = run_eval(args.ckpt, use_ema=args.ema, data=args.data, overrides=args.overrides,
                      allow_nonfinite=args.allow_nonfinite)
    if args.json:
        import json

        print(json.dumps(result))
    else:
        metric = "mae" if "mae" in result else "accuracy"   # a regression's, or a classification's
        print(f"{result['checkpoint']} (step {result['step']}, {result['weights']} weights): "
              f"test loss {result['loss']:.4f}, {metric} {result[metric]:.4f} "
              f"on {result['samples']} samples")
        print(f"  data: {result['data']}")   # which samples: the job's test split, or those named
    return exit_status.OK


def _cmd_predict(args) -> int:
    import numpy as np

    from distnet.jobs.predict import predict, write_predictions

    pred = predict(args.ckpt, args.input, use_ema=args.ema, batch_size=args.batch_size)
    n = len(pred.labels)
    if args.output is not None:
        out = write_predictions(pred, args.output)
    else:
        names = pred.class_names
        shown = min(n, 10)
        for i in range(shown if pred.task == "values" else 0):   # a regression: the predicted values
            print(f"{i:>6}  {np.array2string(np.atleast_1d(pred.probabilities[i]), precision=4)}")
        for i in range(0 if pred.task == "values" else shown):
            label = int(pred.labels[i])
            name = f" {names[label]}" if names else ""
            truth = "" if pred.true_labels is None else f"  (true {int(pred.true_labels[i])})"
            print(f"{i:>6}  {label}{name}  p={pred.probabilities[i, label]:.4f}{truth}")
        if n > shown:
            print(f"  ... {n - shown} more; --output preds.csv or preds.npy writes them all")
    what = "rows" if pred.task == "values" else "images"
    summary = (f"predicted {n} {what} of {pred.source} with the {pred.weights} weights of "
               f"{pred.checkpoint} (step {pred.step})")
    if pred.accuracy is not None:
        summary += f"; accuracy {pred.accuracy:.4f} against its labels"
    if args.output is not None:
        summary += f"; wrote {out}"
    print(summary)
    return exit_status.OK


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
    return exit_status.OK


def _cmd_compare(args) -> int:
    from distnet.checkpoint.compare import compare_states
    from distnet.jobs.job import load_checkpoint

    path_a, a = load_checkpoint(args.a, allow_nonfinite=True)
    path_b, b = load_checkpoint(args.b, allow_nonfinite=True)
    differences, arrays = compare_states(a, b)
    print(f"A {path_a} (step {a.step}, {a.world_size} worker(s))")
    print(f"B {path_b} (step {b.step}, {b.world_size} worker(s))")
    if not differences:
        print(f"bitwise equal: {arrays} arrays (weights, optimizer slots, EMA shadows), step, position")
        return exit_status.OK
    for d in differences:
        print(f"  {d.what}: {d.detail}")
    print(f"differ: {len(differences)} difference(s) in {arrays} arrays and the step fields")
    return exit_status.FAILED


def _cmd_inspect(args) -> int:
    from distnet.jobs.job import load_checkpoint

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
    if state.conv_algorithms:   # the plan a resumed run runs again (distnet/nn/conv_choice.py)
        print("convolutions    " + ", ".join(f"{k}: {v}" for k, v in state.conv_algorithms.items()))
    if state.metrics:
        from distnet.training.metrics import metric_name

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
    return exit_status.OK


def _cmd_trace(args) -> int:
    from distnet.errors import DataError
    from distnet.training.trace import merge

    try:
        path, counts = merge(args.run, args.output)
    except FileNotFoundError as exc:
        raise DataError(str(exc)) from None
    print(f"{path}: {sum(counts.values())} events of {len(counts)} rank(s) "
          f"({', '.join(f'rank {r}: {n}' for r, n in sorted(counts.items()))}); "
          "open it in ui.perfetto.dev or chrome://tracing")
    return exit_status.OK


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
    from distnet.jobs.plot import plot_run, plot_runs

    if len(args.run_dirs) == 1:
        out = plot_run(args.run_dirs[0], args.output)
    else:
        out = plot_runs(args.run_dirs, args.output or "runs.png")
    print(f"wrote {out}")
    return exit_status.OK


def _cmd_data(args, parser) -> int:
    if args.data_command == "fetch":
        from distnet.data import fetch

        paths = fetch.fetch(args.name, args.dest, args.base_url, log=print)
        print(f"{args.name}: {len(paths)} files verified in {args.dest}")
        return exit_status.OK
    if args.data_command == "convert":
        from distnet.data import convert_idx_to_hdf5

        out = convert_idx_to_hdf5(args.images, args.labels, args.out, num_classes=args.num_classes,
                                  compression=args.compression)
        print(f"wrote {out}")
        return exit_status.OK
    parser.parse_args(["data", "--help"])
    return exit_status.BAD_INPUT  # pragma: no cover - --help exits


def _is_main_rank() -> bool:
    """True unless this process is a rank > 0 of an MPI job (only rank 0 prints errors)."""
    from distnet.runner.startup_signals import is_main_rank

    return is_main_rank()


def main(argv: list[str] | None = None) -> int:
    """Run the ``distnet`` command; returns the exit status (:mod:`distnet.runner.exit_status`)."""
    from distnet.errors import TrainingStopped
    from distnet.training.stop import StopSignals

    speak = _is_main_rank()
    # First of all, before the slow imports: SIGINT / SIGTERM end the start-up cleanly.
    # `distnet train` keeps this handling (the launcher until it catches the signals
    # itself); the other commands get the default back.
    with StopSignals() as signals:
        try:
            from distnet.jobs.cli_args import build_parser

            parser = build_parser()
            try:
                args = parser.parse_args(argv)
            except SystemExit as exc:  # --help, --version, or an argparse error (code 2)
                return int(exc.code or 0) if not isinstance(exc.code, str) else exit_status.BAD_INPUT
            if args.command != "train":
                signals.end_startup()   # a signal held back during the imports ends it here
        except TrainingStopped as exc:
            return _stopped(exc, speak)
        if args.command is None:
            parser.print_help()
            return exit_status.OK
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning  # one line per warning, restored on return
            return _run(args, parser, speak, signals)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"distnet: warning: {message}", file=sys.stderr if file is None else file)


def _stopped(exc, speak: bool) -> int:
    """Report a :class:`~distnet.errors.TrainingStopped`; returns its exit status."""
    if exc.aborted:
        # Stopped at once, perhaps inside MPI_Init (mpi4py's import then failed)
        # or before init() removed the name of MPICH's segment file: the job
        # ends, so none of its ranks needs the file any more.
        from distnet.distributed.shared_memory import unlink_mapped_segment_files

        unlink_mapped_segment_files()
    if speak:
        if exc.aborted:
            print(f"distnet: {exc.reason}: stopped at once (no checkpoint)", file=sys.stderr)
        else:
            saved = f"; checkpoint {exc.checkpoint}" if exc.checkpoint else " (checkpoints are off)"
            print(f"distnet: interrupted: stopped by {exit_status.signal_name(exc.signal)} after step "
                  f"{exc.step}{saved}", file=sys.stderr)
    return int(exc.code)


def _run(args, parser, speak: bool, signals) -> int:
    from distnet.errors import (CheckpointError, ConfigError, DataError, DistnetError,
                                InvalidArgumentError, TrainingStopped)

    commands = {"eval": _cmd_eval, "predict": _cmd_predict, "export": _cmd_export,
                "inspect": _cmd_inspect, "compare": _cmd_compare, "plot": _cmd_plot, "trace": _cmd_trace, "run": _cmd_run}
    try:
        if args.command == "data":
            return _cmd_data(args, parser)
        if args.command == "train":
            return _cmd_train(args, signals)
        return commands[args.command](args)
    except TrainingStopped as exc:
        return _stopped(exc, speak)
    except KeyboardInterrupt:
        if speak:
            print("\ndistnet: interrupted (Ctrl-C)", file=sys.stderr)
        return exit_status.SIGINT
    except (ConfigError, DataError, CheckpointError, InvalidArgumentError) as exc:
        if speak:
            print(f"distnet: error: {_one_line(exc)}", file=sys.stderr)
        return exit_status.BAD_INPUT
    except DistnetError as exc:
        if speak:
            print(f"distnet: training failed: {_one_line(exc)}", file=sys.stderr)
        return exit_status.FAILED
    except BrokenPipeError:
        # Our reader went away (``distnet inspect CKPT | head``): stop quietly.
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return exit_status.FAILED
    except ImportError as exc:
        print(f"distnet: error: {exc} (a part of distnet or an optional dependency is missing)",
              file=sys.stderr)
        return exit_status.FAILED
    except OSError as exc:
        print(f"distnet: error: {exc}", file=sys.stderr)
        return exit_status.FAILED


def _one_line(exc: BaseException) -> str:
    """The error's message on one line (a message of several lines joined with "; ")."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return "; ".join(lines) or type(exc).__name__


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
