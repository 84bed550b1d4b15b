"""Start N distnet workers under MPICH's ``mpiexec`` (hydra), as horovodrun / torchrun do.

``distnet train job.toml -n 4`` and ``distnet train job.toml --hostfile hosts``
end here: :func:`launch` runs ``mpiexec -n N [-hosts ...] -genvall PYTHON -m
distnet train ...`` and returns the job's exit status (:mod:`distnet.runner.exit_status`;
:func:`launch_job` also says which rank failed and how).  Three parts, apart:

* the settings: one :class:`LaunchSettings` holds every launch option
  (:mod:`distnet.runner.restart` relaunches with the same object);
* the plan: :func:`plan` builds the command and the workers' environment
  from the settings and starts nothing (:func:`build_mpiexec_command` is the
  same for options given one by one);
* the run: a :class:`Supervisor` owns the mpiexec process, passes signals on
  (its phases are :mod:`distnet.runner.lifecycle`'s, as a worker's), watches
  for a failed rank or a hung mpiexec and says how the job ended; mpiexec's
  own messages go to a log file its last line names
  (:mod:`distnet.runner.hydra_output`) unless ``verbose``.

mpiexec dies with the launcher (Linux), and hydra then ends every rank: a
killed launcher leaves no job behind.  ``launch/README.md`` says what
they do and why: which mpiexec, hostfiles, remote start, network, BLAS threads
per worker, signals and failed workers, and the ``/dev/shm`` clean-up.

Example:
    >>> from distnet.runner.launcher import LaunchSettings, plan
    >>> settings = LaunchSettings(num_workers=2, mpiexec="mpiexec", python="python", cores=4)
    >>> launch_plan = plan(["train", "job.toml"], settings)
    >>> launch_plan.argv
    ['mpiexec', '-n', '2', '-genvall', 'python', '-m', 'distnet', 'train', 'job.toml']
    >>> launch_plan.env["OMP_NUM_THREADS"]
    '2'
"""
from __future__ import annotations

import ctypes
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Mapping, Sequence

from distnet.runner import exit_status
from distnet.runner.hydra_output import HydraLog, LineSorter
from distnet.distributed.threads import THREAD_VARIABLES, usable_cores  # noqa: F401 (re-exported)
from distnet.errors import ConfigError, DistributedError, InvalidArgumentError
from distnet.runner.lifecycle import Action, Lifecycle, Phase

# What hydra prints when a rank dies or aborts; seeing it starts the failure grace.
FAILURE_MARKERS = (b"BAD TERMINATION", b"application called MPI_Abort")

# What shows that mpiexec or the workers have a stop signal already: hydra's
# note on a SIGINT, and rank 0's (distnet.training.stop).
STOPPING_MARKERS = (b"Sending Ctrl-C to processes", b": stopping after the current step")
#: Seconds the launcher waits before it passes a signal on, to see whether
#: mpiexec got it too (a scheduler that signals every process of the job):
#: mpiexec takes a second copy as an order to kill every worker at once.
FORWARD_DELAY = 1.0

#: How ``distnet train -n N`` starts each worker: first of all SIGINT / SIGTERM end it
#: at once (status 130 / 143, :mod:`distnet.runner.startup_signals`) while Python
#: imports distnet, until ``distnet train`` installs its own handlers
#: (:mod:`distnet.training.stop`).
WORKER_ENTRY = ("-c", "import sys\n"
                      "from distnet.runner.startup_signals import end_at_once_on_signals\n"
                      "end_at_once_on_signals()\n"
                      "from distnet.jobs.cli import main\n"
                      "sys.exit(main(sys.argv[1:]))")

# hydra's report of a rank that died: its pid, host, status and how it ended.
_BANNER = re.compile(rb"PID (\d+) RUNNING AT (\S+)\s*=+\s*EXIT CODE: (\d+)")
_EXIT_STRING = re.compile(rb"EXIT STRING: [^\n(]*\(signal (\d+)\)")
_ABORTED = re.compile(rb"MPI_Abort\(MPI_COMM_WORLD, (\d+)\) - process (\d+)")

_HOST_RE = re.compile(r"^[A-Za-z0-9_.\-\[\]:]+$")


class HostfileError(ConfigError):
    """A hostfile is missing, empty or has a line that is not ``host[:slots]``."""


class LaunchError(DistributedError):
    """mpiexec cannot be found or started."""


@dataclass(frozen=True)
class Host:
    """One hostfile entry: a name or address and its number of slots."""

    name: str
    slots: int


def parse_hostfile(path: str | os.PathLike) -> list[Host]:
    """Read an MPICH (``host:slots``) or OpenMPI (``host slots=N``) hostfile.

    Args:
        path: the file.
    Returns:
        The hosts in file order.
    Raises:
        HostfileError: the file is missing or unreadable, has no host, or a
            line is malformed or repeats a host (message names file and line).
    Example:
        >>> # hosts: "node1:2\\nnode2 slots=4\\n"  ->  [Host('node1', 2), Host('node2', 4)]
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise HostfileError(f"hostfile {str(p)!r} does not exist; give a file with one "
                            f"'host:slots' line per machine") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise HostfileError(f"hostfile {str(p)!r} cannot be read: {exc}") from None
    hosts: list[Host] = []
    seen: dict[str, int] = {}
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        host = _parse_host_line(line, p, lineno)
        if host.name in seen:
            raise HostfileError(f"{p}:{lineno}: host {host.name!r} is already listed on line "
                                f"{seen[host.name]}; list each host once (give it more slots)")
        seen[host.name] = lineno
        hosts.append(host)
    if not hosts:
        raise HostfileError(f"hostfile {str(p)!r} lists no host; write one 'host:slots' "
                            f"line per machine")
    return hosts


def _parse_host_line(line: str, path: Path, lineno: int) -> Host:
    where = f"{path}:{lineno}"
    forms = "'host', 'host:slots' (MPICH) or 'host slots=N' (OpenMPI)"
    fields = line.split()
    if len(fields) == 1:
        name, sep, slots_text = fields[0].rpartition(":")
        if not sep:  # no colon: a bare host
            name, slots_text = fields[0], "1"
    elif len(fields) == 2 and fields[1].startswith("slots="):
        name, slots_text = fields[0], fields[1][len("slots="):]
    else:
        raise HostfileError(f"{where}: Expect: {forms} Actual: {line!r}")
    if not name or not _HOST_RE.match(name):
        raise HostfileError(f"{where}: host: Expect: a host name or address, as {forms} Actual: {name!r}")
    if not slots_text.isdigit() or int(slots_text) < 1:
        raise HostfileError(f"{where}: slots: Expect: an integer >= 1 Actual: {slots_text!r}")
    return Host(name, int(slots_text))


def ranks_per_host(hosts: Sequence[Host], num_workers: int) -> list[int]:
    """How hydra places ``num_workers`` ranks: fill each host's slots in order, wrap around.

    Example:
        >>> ranks_per_host([Host("a", 2), Host("b", 1)], 5)
        [4, 1]
    """
    counts = [0] * len(hosts)
    left = num_workers
    while left > 0:
        for i, host in enumerate(hosts):
            take = min(host.slots, left)
            counts[i] += take
            left -= take
            if left == 0:
                break
    return counts


def find_mpiexec() -> str:
    """The ``mpiexec`` next to ``sys.executable`` (the mpich wheel's), else on ``PATH``.

    Raises:
        LaunchError: none is found.
    """
    beside = Path(sys.executable).parent / "mpiexec"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("mpiexec")
    if found is None:
        raise LaunchError(f"mpiexec not found next to {sys.executable} nor on PATH; install "
                          f"MPICH's hydra (pip install mpich)")
    return found


def _check_count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgumentError(f"{name}: Expect: an integer >= 1 Actual: {value!r}")
    if value < 1:
        raise InvalidArgumentError(f"{name}: Expect: >= 1 Actual: {value}")
    return value


@dataclass(frozen=True)
class LaunchSettings:
    """How to launch a job of workers: every option of :func:`plan` and :class:`Supervisor`.

    Attributes:
        num_workers: number of ranks; defaults to the hostfile's total slots.
        hostfile: MPICH or OpenMPI hostfile; without it every rank runs here.
        env: environment to pass (default ``os.environ``); not modified.
        launcher_exec: remote-start agent used instead of ``ssh`` (hydra's ``-launcher-exec``).
        iface: network interface for MPI traffic (hydra's ``-iface``).
        mpiexec: the mpiexec to run (default :func:`find_mpiexec`).
        python: the workers' interpreter (default ``sys.executable``).
        entry: what python runs before the program's arguments (default ``-m distnet``).
        cores: cores per machine for the thread split (default :func:`usable_cores`).
        failure_grace: seconds mpiexec gets to finish after it reported a failed rank.
        stop_grace: seconds mpiexec gets to finish after a forwarded SIGINT/SIGTERM.
        announce_failure: print the line that names a failed rank and the exit status;
            :func:`distnet.runner.restart.supervise` turns it off when it may restart
            the job, and says itself what follows (a restart or the exit status).
        launch_log: the file for mpiexec's own messages (hydra's banners and
            lines); default ``distnet-launch-PID.log`` in the temp directory.
            ``distnet train`` gives ``RUN_DIR/launch.log``.
        verbose: mpiexec's own messages on the console as they come, no log file.
    Raises:
        InvalidArgumentError: a grace that is not a number of seconds > 0.
    Example:
        >>> LaunchSettings(num_workers=2, stop_grace=45.0).failure_grace
        10.0
    """

    num_workers: int | None = None
    hostfile: str | os.PathLike | None = None
    env: Mapping[str, str] | None = None
    launcher_exec: str | None = None
    iface: str | None = None
    mpiexec: str | None = None
    python: str | None = None
    entry: Sequence[str] = ("-m", "distnet")
    cores: int | None = None
    failure_grace: float = 10.0
    stop_grace: float = 30.0
    announce_failure: bool = True
    launch_log: str | os.PathLike | None = None
    verbose: bool = False

    def __post_init__(self) -> None:
        for name in ("failure_grace", "stop_grace"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise InvalidArgumentError(f"{name}: Expect: a number of seconds > 0 Actual: {value!r}")


@dataclass(frozen=True)
class LaunchPlan:
    """What :func:`plan` builds: the mpiexec command and the workers' environment."""

    argv: list[str]
    env: dict[str, str]


def plan(program_args: Sequence[str], settings: LaunchSettings) -> LaunchPlan:
    """The mpiexec command line and the environment the workers get; starts nothing.

    Args:
        program_args: arguments after ``python -m distnet`` (e.g. ``["train", "job.toml"]``);
            must not contain ``-n`` / ``--hostfile`` again.
        settings: the launch options (:class:`LaunchSettings`).
    Raises:
        InvalidArgumentError: ``num_workers`` < 1 or neither it nor a hostfile given.
        HostfileError: the hostfile is missing, empty or malformed.
        LaunchError: no mpiexec found.
    """
    num_workers = settings.num_workers
    if num_workers is None and settings.hostfile is None:
        raise InvalidArgumentError("give num_workers (-n N) or a hostfile (--hostfile FILE); "
                                   "got neither")
    if num_workers is not None:
        num_workers = _check_count("num_workers", num_workers)
    cores = _check_count("cores", settings.cores) if settings.cores is not None else None
    program_args = _checked_program_args(program_args)
    argv = [settings.mpiexec or find_mpiexec()]
    if settings.hostfile is not None:
        placement, busiest = _hosts_arguments(settings, num_workers)
    else:
        if settings.launcher_exec is not None:
            raise InvalidArgumentError("launcher_exec starts workers on remote hosts: it needs "
                                       "a hostfile")
        placement, busiest = ["-n", str(num_workers)], int(num_workers)
    argv += placement
    out_env = dict(os.environ if settings.env is None else settings.env)
    if settings.iface is not None:
        argv += _iface_arguments(settings.iface, out_env)
    argv.append("-genvall")  # hydra's default, stated: every rank gets this environment
    argv += [settings.python or sys.executable, *settings.entry, *program_args]
    _split_threads(out_env, cores, busiest)
    return LaunchPlan(argv, out_env)


def _checked_program_args(program_args: Sequence[str]) -> list[str]:
    if isinstance(program_args, (str, bytes)):
        raise InvalidArgumentError(f"program_args: Expect: a list of arguments Actual: the string "
                                   f"{program_args!r}")
    program_args = [str(a) for a in program_args]
    for flag in ("-n", "--np", "--hostfile", "--num-workers"):
        if flag in program_args:
            raise InvalidArgumentError(f"program_args: Expect: no {flag} (each worker "
                                       f"would launch workers again) Actual: {program_args}")
    return program_args


def _hosts_arguments(settings: LaunchSettings, num_workers: int | None) -> tuple[list[str], int]:
    """mpiexec's arguments that place the ranks on the hostfile's hosts, and the most ranks on one host."""
    hosts = parse_hostfile(settings.hostfile)
    if num_workers is None:
        num_workers = sum(h.slots for h in hosts)
    busiest = max(ranks_per_host(hosts, num_workers))
    args = ["-n", str(num_workers), "-hosts", ",".join(f"{h.name}:{h.slots}" for h in hosts)]
    if not (settings.env if settings.env is not None else os.environ).get("HYDRA_LAUNCHER"):
        args += ["-launcher", "ssh"]  # else hydra's own variable decides (slurm.sbatch)
    if settings.launcher_exec is not None:
        args += ["-launcher-exec", str(settings.launcher_exec)]
    return args, busiest


def _iface_arguments(iface: str, env: dict[str, str]) -> list[str]:
    if not re.match(r"^[A-Za-z0-9_.\-@]+$", iface):
        raise InvalidArgumentError(f"iface: Expect: an interface name such as 'eth0' "
                                   f"Actual: {iface!r}")
    env.setdefault("UCX_NET_DEVICES", iface)
    env.setdefault("FI_TCP_IFACE", iface)
    return ["-iface", iface]


def _split_threads(env: dict[str, str], cores: int | None, busiest: int) -> None:
    # torchrun's convention: one pool per rank, an explicit setting wins.  One
    # variable set by the user (OMP_NUM_THREADS=2) sizes the pools left unset
    # too: their count from this machine's cores would not be the user's, and
    # differs between machines (a container sees its host's cores).
    chosen = [env[name] for name in THREAD_VARIABLES if env.get(name)]
    threads = chosen[0] if chosen else str(max(1, (cores or usable_cores()) // busiest))
    for name in THREAD_VARIABLES:
        if not env.get(name):
            env[name] = threads


def build_mpiexec_command(program_args: Sequence[str], **options) -> tuple[list[str], dict[str, str]]:
    """:func:`plan` for options given one by one (those of :class:`LaunchSettings`).

    Returns:
        ``(argv, env)``.
    """
    built = plan(program_args, LaunchSettings(**options))
    return built.argv, built.env


class _Relay(threading.Thread):
    """Copy one of mpiexec's output pipes to our stream, watching for failure banners."""

    def __init__(self, source: BinaryIO, sink: BinaryIO, on_failure: threading.Event,
                 on_stopping: threading.Event | None = None, hydra_log: HydraLog | None = None) -> None:
        super().__init__(daemon=True)
        self.source, self.sink, self.on_failure = source, sink, on_failure
        # Without a log, every line goes to the sink as it comes (verbose).
        self.hydra_log, self.sorter = hydra_log, LineSorter() if hydra_log is not None else None
        self.on_stopping = on_stopping if on_stopping is not None else threading.Event()
        self.report = b""   # what hydra printed from its first failure banner on (bounded)

    def run(self) -> None:
        tail = b""
        fd = self.source.fileno()
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            window = tail + chunk
            if any(m in window for m in FAILURE_MARKERS):
                self.on_failure.set()
            if any(m in window for m in STOPPING_MARKERS):
                self.on_stopping.set()
            if self.on_failure.is_set() and len(self.report) < 8192:
                self.report += window if not self.report else chunk
            tail = window[-64:]
            if self.sorter is not None:
                chunk, hydra = self.sorter.feed(chunk)
                if not self.hydra_log.write(hydra):
                    chunk += hydra   # the log cannot be written: the lines stay on the console
            self._write(chunk)
        if self.sorter is not None:
            self._write(self.sorter.flush())
        self.source.close()

    def _write(self, data: bytes) -> None:
        if not data:
            return
        try:
            self.sink.write(data)
            self.sink.flush()
        except (OSError, ValueError):
            pass  # our own output is gone; keep draining so mpiexec never blocks


def _binary(stream) -> BinaryIO:
    return getattr(stream, "buffer", stream)


def launch(program_args: Sequence[str], **options) -> int:
    """Run the workers under mpiexec and return the job's exit status.

    The status is one of :mod:`distnet.runner.exit_status`'s table: the ranks'
    own (0, 1, 2, 3, 130, 143), a rank that died otherwise (hydra's 9 for
    SIGKILL ...) is 1, with a line naming it (rank, host, signal) on
    ``stderr``.  The arguments are :func:`launch_job`'s, which says more.

    Example:
        >>> launch(["train", "job.toml"], num_workers=2)  # doctest: +SKIP
        0
    """
    return launch_job(program_args, **options).code


@dataclass
class LaunchOutcome:
    """How one run of mpiexec ended.

    Attributes:
        code: the job's exit status (:mod:`distnet.runner.exit_status`).
        raw: mpiexec's own status (128 + N when it died of signal N).
        failure: which rank failed and how (``"rank 1 (pid 5127 on node2) was
            killed by SIGKILL"``), or None.
        failed_host: the host of the failed rank, when hydra named it.
        signal: the first SIGINT / SIGTERM the launcher received and passed on, or None.
        hydra_log: the file that holds mpiexec's own messages of this run, or None
            (none came, or they went to the console).
    """

    code: int
    raw: int
    failure: str | None = None
    failed_host: str | None = None
    signal: int | None = None
    hydra_log: str | None = None


def launch_job(program_args: Sequence[str], settings: LaunchSettings | None = None, *,
               stdout: BinaryIO | None = None, stderr: BinaryIO | None = None, **options) -> LaunchOutcome:
    """Run the workers under mpiexec; how it ended (:func:`launch` returns its ``code``).

    Args:
        program_args: as in :func:`plan`.
        settings: the launch options; or give them one by one as ``**options``
            (the fields of :class:`LaunchSettings`), not both.
        stdout, stderr: binary streams for the workers' output (default ours).
    Returns:
        a :class:`LaunchOutcome`.
    Raises:
        as :func:`plan`; LaunchError when mpiexec cannot start.
    """
    if settings is None:
        settings = LaunchSettings(**options)
    elif options:
        raise InvalidArgumentError(f"launch_job: Expect: settings or options one by one Actual: both "
                                   f"(settings and {sorted(options)})")
    return Supervisor(plan(program_args, settings), settings, stdout=stdout, stderr=stderr).run()


class Supervisor:
    """Owns one run of mpiexec: starts it, relays its output, passes signals on,
    watches for a failed rank or a hung mpiexec, and says how the job ended.

    Signals follow the one lifecycle (:mod:`distnet.runner.lifecycle`), from
    ``RUNNING``: the first SIGINT / SIGTERM (``STOP``) is held back for
    :data:`FORWARD_DELAY` and passed on only when neither mpiexec nor the
    workers have it already; a repeat within the duplicate window (``REPEAT``)
    passes the held one on at once (unless they have it); a later one
    (``ABORT``) goes to mpiexec at once: the job is aborted.  Its handlers
    are installed before mpiexec starts, so a signal while it starts is passed
    on like any other, and restored when :meth:`run` returns.

    Args:
        plan: the command and environment (:func:`plan`).
        settings: the launch options (its graces).
        stdout, stderr: binary streams for the workers' output (default ours).
    """

    def __init__(self, plan: LaunchPlan, settings: LaunchSettings, *, stdout: BinaryIO | None = None,
                 stderr: BinaryIO | None = None) -> None:
        self.plan, self.settings = plan, settings
        self.out = stdout if stdout is not None else _binary(sys.stdout)
        self.err = stderr if stderr is not None else _binary(sys.stderr)
        self.lifecycle = Lifecycle(settings.stop_grace, phase=Phase.RUNNING)
        self.proc: subprocess.Popen | None = None   # mpiexec, once it runs
        self.failed, self.stopping = threading.Event(), threading.Event()
        self._relays: list[_Relay] = []
        self._ranks: _RankMap | None = None
        self._passed_on = False      # the held first signal was passed on (or found not needed)
        self._stopped_by_us = False  # the supervisor had to stop mpiexec itself
        self._deadline: float | None = None
        self._why = ""
        log = settings.launch_log
        if log is None:
            log = Path(tempfile.gettempdir()) / f"distnet-launch-{os.getpid()}.log"
        self.hydra_log = None if settings.verbose else HydraLog(log)

    def run(self) -> LaunchOutcome:
        """Start mpiexec and supervise it until it ends; how the job ended."""
        shm_before = shm_files()
        previous = self._catch_signals()
        guard = None
        try:
            self._start()
            guard = self._start_guard(shm_before)
            self._watch()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            if self.proc is not None and self.proc.poll() is None:  # an exception (KeyboardInterrupt ...)
                _stop(self.proc)
            for relay in self._relays:
                relay.join(timeout=5)
            if self.hydra_log is not None:
                self.hydra_log.close()
            if guard is not None:
                _dismiss(guard)
        return self._outcome(shm_before)

    # -- signals --------------------------------------------------------------
    def _catch_signals(self) -> dict:
        previous = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, self._on_signal)
        return previous

    def _on_signal(self, signum, _frame) -> None:
        decision = self.lifecycle.signal(signum)
        if decision.action is Action.STOP:
            _say(self.err, f"distnet launch: {exit_status.signal_name(signum)}: every worker stops after its "
                           f"current step and saves a checkpoint (again to abort at once)")
        elif decision.action is Action.ABORT:
            self._send(signum)

    def _send(self, signum: int) -> None:
        try:
            if self.proc is not None:
                self.proc.send_signal(signum)
        except ProcessLookupError:
            pass

    # -- the run --------------------------------------------------------------
    def _start(self) -> None:
        try:
            self.proc = subprocess.Popen(self.plan.argv, env=self.plan.env, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                         start_new_session=True,  # our signals reach it once, via us
                                         preexec_fn=_die_with_parent(os.getpid()))
        except OSError as exc:
            raise LaunchError(f"cannot start {self.plan.argv[0]!r}: {exc}") from None
        self._relays = [_Relay(self.proc.stdout, self.out, self.failed, self.stopping, self.hydra_log),
                        _Relay(self.proc.stderr, self.err, self.failed, self.stopping, self.hydra_log)]
        for relay in self._relays:
            relay.start()
        self._ranks = _RankMap(self.proc.pid)

    def _start_guard(self, shm_before: set[str]) -> subprocess.Popen | None:
        """The watch that ends the job and cleans up if this process dies (:mod:`distnet.runner.guard`)."""
        if not sys.platform.startswith("linux"):
            return None
        try:
            guard = subprocess.Popen([sys.executable, "-m", "distnet.runner.guard", str(os.getpid()),
                                      str(self.proc.pid), repr(self.settings.stop_grace)],
                                     stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True, env=self.plan.env)
            guard.stdin.write(json.dumps(sorted(shm_before)).encode() + b"\n")
            guard.stdin.flush()
        except OSError:
            return None   # the job runs unguarded, as before
        return guard

    def _watch(self) -> None:
        proxies = _ProxyWatch(self.proc.pid)
        while True:
            try:
                # Often while the ranks start (see _RankMap), then every 0.1 s.
                self.proc.wait(timeout=0.01 if time.monotonic() < self._ranks.early_until else 0.1)
                return
            except subprocess.TimeoutExpired:
                pass
            now = time.monotonic()
            self._ranks.look(now)
            self._pass_on_held_signal(now)
            self._set_deadline(now, proxies)
            if self._deadline is not None and now > self._deadline:
                self._stop_mpiexec()
                return

    def _pass_on_held_signal(self, now: float) -> None:
        life = self.lifecycle
        if life.first is None or self._passed_on:
            return
        if now - life.first_at >= FORWARD_DELAY or life.received > 1:
            self._passed_on = True
            if not self.stopping.is_set():
                self._send(life.first)

    def _set_deadline(self, now: float, proxies: _ProxyWatch) -> None:
        if self._deadline is None and self.lifecycle.first is not None:
            self._deadline, self._why = now + self.settings.stop_grace, "after the interrupt"
        if self._deadline is None and not self.failed.is_set() and proxies.one_ended():
            self.failed.set()
        if self._deadline is None and self.failed.is_set():
            self._deadline, self._why = now + self.settings.failure_grace, "after a rank failed"

    def _stop_mpiexec(self) -> None:
        self._stopped_by_us = True
        grace = self.settings.stop_grace if self.lifecycle.first is not None else self.settings.failure_grace
        _say(self.err, f"distnet launch: mpiexec did not finish within {grace:g} s {self._why} (a host may "
                       f"be unreachable); stopping it")
        _stop(self.proc, term_wait=min(5.0, grace))

    # -- the outcome ------------------------------------------------------------
    def _outcome(self, shm_before: set[str]) -> LaunchOutcome:
        raw = self.proc.returncode
        if raw < 0:
            raw = 128 - raw
        failure, host = _describe_failure(b"".join(r.report for r in self._relays), self._ranks)
        code = exit_status.from_mpiexec(raw)
        if failure is None and code != raw:
            failure = f"a rank ended with status {raw} (hydra did not say which)"
        if self._stopped_by_us and code == exit_status.OK:
            code = exit_status.FAILED
        first = self.lifecycle.first
        if first is not None and code not in exit_status.DONE_OR_STOPPED:
            # Stopped at once (a second signal, hydra's forced abort): the stop is the reason.
            code, failure = exit_status.for_signal(first), None
        if raw != 0:
            removed, freed = remove_leftover_shm(shm_before)
            if removed:
                _say(self.err, f"distnet launch: removed {removed} shared-memory file(s) ({freed / 1e6:.1f} MB) "
                               f"that the failed job's ranks left in {SHM_DIR}")
        log = str(self.hydra_log.path) if self.hydra_log is not None and self.hydra_log.used else None
        told = failure is not None and code not in exit_status.DONE_OR_STOPPED
        if told and self.settings.announce_failure:
            _say(self.err, failure_line(failure, code, log))
        elif log is not None and not told:
            _say(self.err, f"distnet launch: mpiexec's own messages are in {log}")
        return LaunchOutcome(code=code, raw=raw, failure=failure, failed_host=host, signal=first, hydra_log=log)


def _dismiss(guard: subprocess.Popen) -> None:
    """Tell the guard the job is over (it then exits without acting)."""
    try:
        guard.stdin.write(b"done")
        guard.stdin.close()
    except (OSError, ValueError):
        pass
    try:
        guard.wait(timeout=5)
    except subprocess.TimeoutExpired:
        guard.kill()
        guard.wait()


def failure_line(failure: str, code: int, hydra_log: str | None = None) -> str:
    """The launcher's last word on a failed job: what failed, the exit status, where mpiexec's messages are."""
    where = f" (mpiexec's own messages: {hydra_log})" if hydra_log else ""
    return f"distnet launch: {failure}; exit status {code} ({exit_status.MEANING[code]}){where}"


def _die_with_parent(parent: int):
    """mpiexec's pre-exec step: SIGTERM it when the launcher dies (Linux
    ``PR_SET_PDEATHSIG``), so a killed launcher or a closed terminal stops
    the job (hydra passes the SIGTERM on: the ranks stop and save) instead
    of leaving it training unwatched."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def preexec() -> None:
        pr_set_pdeathsig = 1
        prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:   # the launcher died before the line above
            os._exit(exit_status.SIGTERM)

    return preexec


class _RankMap:
    """Which local pid is which rank: read from the ranks' environment (``PMI_RANK``)
    while the job runs, so that a rank hydra reports by pid can be named."""

    def __init__(self, pid: int, every: float = 1.0, early: float = 0.01, early_for: float = 3.0) -> None:
        self.pid, self.every = pid, every
        # Often at first: a rank that dies right after start-up must have been seen alive.
        self.early, self.early_until = early, time.monotonic() + early_for
        self.ranks: dict[int, int] = {}
        self.next_look = 0.0

    def look(self, now: float) -> None:
        if now < self.next_look:
            return
        self.next_look = now + (self.early if now < self.early_until else self.every)
        todo, seen = [self.pid], set()
        while todo:
            p = todo.pop()
            try:
                for tid in os.listdir(f"/proc/{p}/task"):
                    with open(f"/proc/{p}/task/{tid}/children") as f:
                        todo += [int(c) for c in f.read().split() if int(c) not in seen]
            except (OSError, ValueError):
                continue
            seen.add(p)
            if p not in self.ranks and p != self.pid:
                try:
                    with open(f"/proc/{p}/environ", "rb") as f:
                        env = dict(kv.split(b"=", 1) for kv in f.read().split(b"\0") if b"=" in kv)
                    self.ranks[p] = int(env[b"PMI_RANK"])
                except (OSError, KeyError, ValueError):
                    continue


def _describe_failure(report: bytes, ranks: _RankMap) -> tuple[str | None, str | None]:
    """The failed rank in words, from hydra's report, and its host."""
    aborted = _ABORTED.search(report)
    banner = _BANNER.search(report)
    if banner is None:
        if aborted is not None:
            return (f"rank {int(aborted.group(2))} ended the job (MPI_Abort, status {int(aborted.group(1))}; "
                    f"its message is above)"), None
        return None, None
    pid, host, status = int(banner.group(1)), banner.group(2).decode(errors="replace"), int(banner.group(3))
    rank = ranks.ranks.get(pid)
    who = f"rank {rank} (pid {pid} on {host})" if rank is not None else f"a rank (pid {pid} on {host})"
    killed = _EXIT_STRING.search(report)
    if killed is not None:
        how = f"was killed by {exit_status.signal_name(int(killed.group(1)))}"
    elif aborted is not None:
        how = f"ended the job (MPI_Abort, status {int(aborted.group(1))}; its message is above)"
    else:
        how = f"exited with status {status}"
    return f"{who} {how}", host


class _ProxyWatch:
    """Notice when one of mpiexec's children (a host's proxy, or its ssh/agent) has ended.

    hydra starts one child per host; they end together when the job ends.  One
    that ended while mpiexec keeps running means its host's ranks are gone and
    hydra is cleaning up -- which never finishes when another host cannot be
    reached.  Linux only (``/proc/PID/task/TID/children``); elsewhere it never
    fires and the failure banners alone start the grace period.
    """

    def __init__(self, pid: int, every: float = 0.5) -> None:
        self.pid, self.every = pid, every
        self.seen: set[int] = set()
        self.next_look = 0.0

    def _children(self) -> set[int] | None:
        found: set[int] = set()
        try:
            for tid in os.listdir(f"/proc/{self.pid}/task"):
                with open(f"/proc/{self.pid}/task/{tid}/children") as f:
                    found.update(int(c) for c in f.read().split())
        except (OSError, ValueError):
            return None
        return found

    def one_ended(self) -> bool:
        now = time.monotonic()
        if now < self.next_look:
            return False
        self.next_look = now + self.every
        children = self._children()
        if children is None:
            return False
        ended = bool(self.seen - children)
        self.seen |= children
        return ended


#: Where MPICH keeps its per-job shared-memory files, and their names.
SHM_DIR = "/dev/shm"
SHM_PATTERN = re.compile(r"^mpich_shm_[0-9a-f]+_\d+$")


def shm_files(directory: str = SHM_DIR) -> set[str]:
    """Names of MPICH's shared-memory files in ``directory`` owned by this user."""
    uid = os.getuid()
    try:
        with os.scandir(directory) as entries:
            return {e.name for e in entries if SHM_PATTERN.match(e.name)
                    and e.is_file(follow_symlinks=False) and e.stat(follow_symlinks=False).st_uid == uid}
    except OSError:
        return set()


def mapped_files(directory: str = SHM_DIR) -> set[str]:
    """Names of files in ``directory`` that a live process (one we may inspect) has mapped."""
    prefix = directory.rstrip("/") + "/"
    names: set[str] = set()
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return names
    for pid in pids:
        try:
            with open(f"/proc/{pid}/maps", encoding="utf-8", errors="replace") as maps:
                for line in maps:
                    at = line.find(prefix)
                    if at >= 0:
                        names.add(line[at + len(prefix):].split()[0])
        except OSError:   # gone, or another user's
            continue
    return names


def remove_leftover_shm(before: set[str], directory: str = SHM_DIR) -> tuple[int, int]:
    """Remove MPICH files that appeared since ``before`` and no live process maps.

    Returns:
        ``(files removed, bytes freed)``.
    """
    new = shm_files(directory) - before
    if not new:
        return 0, 0
    count = freed = 0
    for name in sorted(new - mapped_files(directory)):
        path = os.path.join(directory, name)
        try:
            size = os.stat(path).st_size
            os.unlink(path)
        except OSError:
            continue
        count, freed = count + 1, freed + size
    return count, freed


def _say(stream: BinaryIO, message: str) -> None:
    try:
        stream.write(message.encode() + b"\n")
        stream.flush()
    except (OSError, ValueError):
        pass


def _stop(proc: subprocess.Popen, term_wait: float = 5.0) -> None:
    """SIGTERM mpiexec's process group, then SIGKILL it if still alive."""
    for sig, wait in ((signal.SIGTERM, term_wait), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue
