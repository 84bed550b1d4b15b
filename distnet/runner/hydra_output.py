"""mpiexec's own messages, kept apart from the workers' output.

hydra (MPICH's mpiexec) writes its own lines into the same pipes as the
workers: the "BAD TERMINATION OF ONE OF YOUR APPLICATION PROCESSES ... YOU
CAN IGNORE THE BELOW CLEANUP MESSAGES" banner after a failed rank, "Press
Ctrl-C again to force abort" after a signal, ``[mpiexec@host]`` and
``[proxy:0:1@host]`` lines when a host cannot be reached, and MPICH's
"application called MPI_Abort" line from an aborting rank.  The launcher
says what happened in one line of its own (:mod:`distnet.runner.launcher`),
so by default these lines go to a log file that its message names, and the
console keeps the workers' output and distnet's lines
(``distnet train --verbose-launch`` shows them as they come).

A :class:`LineSorter` sorts one stream line by line (a line ends at ``\\n``
or ``\\r``, so a progress bar passes at once); a line is hydra's when it
starts like one of :data:`HYDRA_STARTS`.  A :class:`HydraLog` is the file,
opened at its first line, shared by the launcher's two relays.

Example:
    >>> sorter = LineSorter()
    >>> sorter.feed(b"step 1/10\\n[mpiexec@vm] Press Ctrl-C again to force abort\\nste")
    (b'step 1/10\\nste', b'[mpiexec@vm] Press Ctrl-C again to force abort\\n')
"""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path

#: How hydra's lines (and MPICH's abort notice) start; no distnet line starts so.
HYDRA_STARTS = (
    b"[mpiexec@", b"[proxy:", b"=",   # hydra's tagged lines; its banner's frame and lines ("=   EXIT CODE: 9")
    b"YOUR APPLICATION TERMINATED WITH THE EXIT STRING",
    b"This typically refers to a problem with your application",
    b"Please see the FAQ page for debugging suggestions",
    b"application called MPI_Abort", b"Abort(",   # MPICH in an aborting rank
    b"[unset]:",                                  # MPICH's PMI client in a rank whose mpiexec is gone
    b"ssh: ", b"Host key verification failed",   # the remote start of a hostfile's host
)


def is_hydra_line(start: bytes, complete: bool) -> bool | None:
    """Whether a line that starts with ``start`` is hydra's; None while its start cannot tell yet.

    Args:
        start: the line's first bytes.
        complete: ``start`` is the whole line (its end was seen).
    """
    undecided = False
    for prefix in HYDRA_STARTS:
        n = min(len(prefix), len(start))
        if start[:n] == prefix[:n]:
            if len(start) >= len(prefix):
                return True
            undecided = True
    return None if undecided and not complete else False


class LineSorter:
    """Split one output stream into the console's part and hydra's, line by line."""

    def __init__(self) -> None:
        self._pending = b""       # the start of a line that cannot be told yet
        self._hydra: bool | None = None   # the kind of the line being passed on (None: at a line start)

    def feed(self, chunk: bytes) -> tuple[bytes, bytes]:
        """The bytes of ``chunk`` for the console and for the log (a line's undecided start is held)."""
        console, log = [], []
        start = 0
        while start < len(chunk):
            ends = [i for i in (chunk.find(b"\n", start), chunk.find(b"\r", start)) if i >= 0]
            stop = min(ends) + 1 if ends else len(chunk)
            piece, complete, start = chunk[start:stop], bool(ends), stop
            if self._hydra is None:
                piece, self._pending = self._pending + piece, b""
                kind = is_hydra_line(piece, complete)
                if kind is None:
                    self._pending = piece
                    continue
                self._hydra = kind
            (log if self._hydra else console).append(piece)
            if complete:
                self._hydra = None
        return b"".join(console), b"".join(log)

    def flush(self) -> bytes:
        """The held start of a last line without an end: the console's."""
        rest, self._pending, self._hydra = self._pending, b"", None
        return rest


class HydraLog:
    """The file for mpiexec's own lines: opened (appending, its directory made) at the first one.

    Args:
        path: the file; a run's ``launch.log``, or one in the temp directory.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.used = False   # a line was written
        self._file = None
        self._failed = False
        self._lock = threading.Lock()

    def write(self, data: bytes) -> bool:
        """Append ``data``; False when the file cannot be written (the caller shows it instead)."""
        if not data:
            return True
        with self._lock:
            if self._failed:
                return False
            try:
                if self._file is None:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                    self._file = open(self.path, "ab")
                    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime())
                    self._file.write(f"--- distnet launch, {stamp}: mpiexec's own messages ---\n".encode())
                self._file.write(data)
                self._file.flush()
            except OSError:
                self._failed = True
                return False
            self.used = True
            return True

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
