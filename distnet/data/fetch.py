"""Download MNIST and Fashion-MNIST from their official addresses, checksums verified.

``distnet data fetch NAME --dest DIR`` calls :func:`fetch`.  Each of a
dataset's four IDX files (``train-images-idx3-ubyte.gz`` ...) is downloaded
with :func:`download`:

* into ``FILE.part`` first; the file gets its real name only once complete
  and verified, so a file with the real name is always a good one (and a
  later call skips it);
* an interrupted transfer keeps its ``.part`` and resumes with an HTTP
  ``Range: bytes=N-`` request, guarded by ``If-Range`` with the validator
  (ETag or Last-Modified) the server gave for the first bytes, kept in
  ``FILE.part.json``.  A server that ignores ranges (answers 200), answers
  with another range, or whose file changed (``If-Range`` fails, so it
  answers 200) gets the partial file discarded and the download restarted;
  ``416`` (the part is not a prefix of the file) likewise;
* network errors, timeouts and 5xx answers are retried ``retries`` times
  with a short back-off; other HTTP errors fail at once;
* the finished file is checked against the table below: a mismatch deletes
  it and raises :class:`~distnet.errors.DataError`.

Checksums.  ``md5`` is the digest of the ``.gz`` file the maintainers
publish (Fashion-MNIST's README; the MNIST mirror's values are torchvision's
``MNIST.resources``).  ``content_sha256`` is the digest of the decompressed
IDX data: a copy re-compressed by a packager or mirror (Debian's
``dataset-fashion-mnist`` package drops the file name from the gzip header,
so its ``.gz`` bytes differ) is accepted when its content is the same.  The
Fashion-MNIST content digests were computed from the Debian package's files.

Only ``urllib`` from the standard library is used.

Example:
    >>> from distnet.data.fetch import fetch
    >>> fetch("fashion_mnist", "data/fashion")  # doctest: +SKIP
    [PosixPath('data/fashion/train-images-idx3-ubyte.gz'), ...]
"""
from __future__ import annotations

import gzip
import hashlib
import http.client
import json
import os
import time
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from distnet.errors import DataError, InvalidArgumentError

CHUNK = 1 << 16


@dataclass(frozen=True)
class RemoteFile:
    """One file of a dataset and what it must hash to."""

    name: str
    md5: str                          # of the .gz as published
    content_sha256: str | None = None  # of the decompressed data (re-compressed copies)


@dataclass(frozen=True)
class RemoteDataset:
    base_url: str
    files: tuple[RemoteFile, ...]


FASHION_MNIST = RemoteDataset(
    base_url="http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    files=(
        RemoteFile("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                   "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
        RemoteFile("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe",
                   "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
        RemoteFile("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79",
                   "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
        RemoteFile("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310",
                   "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
    ),
)

MNIST = RemoteDataset(
    base_url="https://ossci-datasets.s3.amazonaws.com/mnist/",
    files=(
        RemoteFile("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
        RemoteFile("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
        RemoteFile("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
        RemoteFile("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
    ),
)

DATASETS = {"fashion_mnist": FASHION_MNIST, "mnist": MNIST}


class _Restart(Exception):
    """The partial file cannot be continued: discard it and start again."""


class _Retry(Exception):
    """A transient failure: try again (keeping the partial file)."""


def fetch(name: str, dest: str | os.PathLike, base_url: str | None = None, *,
          timeout: float = 30.0, retries: int = 3,
          log: Callable[[str], None] | None = None) -> list[Path]:
    """Download a dataset's four IDX files into ``dest`` and verify them.

    Args:
        name: ``"fashion_mnist"`` (or ``"fashion-mnist"``) or ``"mnist"``.
        dest: directory, created if needed; verified files already there are kept.
        base_url: where the files are (default: the official address); a
            mirror must serve the same file names.
        timeout: seconds without data before a connection counts as failed.
        retries: further attempts per file after a network failure.
        log: called with one line per file (default: silent).
    Returns:
        The paths of the four files.
    Raises:
        InvalidArgumentError: unknown name, bad URL, timeout or retries.
        DataError: a download failed after its retries, or a checksum mismatch
            (the bad file is deleted).
    """
    key = str(name).replace("-", "_").lower()
    if key not in DATASETS:
        raise InvalidArgumentError(f"unknown dataset {name!r}; expected one of "
                                   f"{sorted(DATASETS)}")
    remote = DATASETS[key]
    base = remote.base_url if base_url is None else str(base_url)
    if not base.endswith("/"):
        base += "/"
    dest_dir = Path(dest)
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create the destination directory {str(dest_dir)!r}: "
                        f"{exc}") from None
    paths = []
    for spec in remote.files:
        paths.append(download(base + spec.name, dest_dir / spec.name, md5=spec.md5,
                              content_sha256=spec.content_sha256, timeout=timeout,
                              retries=retries, log=log))
    return paths


def download(url: str, path: str | os.PathLike, *, md5: str | None = None,
             content_sha256: str | None = None, timeout: float = 30.0, retries: int = 3,
             log: Callable[[str], None] | None = None) -> Path:
    """Download ``url`` to ``path`` through ``path.part``, resuming, then verify it.

    The file is accepted when its MD5 is ``md5``, or (a ``.gz`` file) when its
    decompressed data has SHA-256 ``content_sha256``; with neither, it is
    accepted as it came.

    Returns:
        ``path``.
    Raises:
        InvalidArgumentError: not an http(s) URL, or bad timeout / retries.
        DataError: failed after ``retries`` retries, an HTTP error, or a
            checksum mismatch (the file is deleted).
    Example:
        >>> download("http://127.0.0.1:8000/t10k-labels-idx1-ubyte.gz", "t10k-labels.gz",
        ...          md5="bb300cfdad3c16e7a12a480ee83cd310")  # doctest: +SKIP
    """
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise InvalidArgumentError(f"url: Expect: http://... or https://... Actual: {url!r}")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise InvalidArgumentError(f"timeout: Expect: a number of seconds > 0 Actual: {timeout!r}")
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise InvalidArgumentError(f"retries: Expect: an integer >= 0 Actual: {retries!r}")
    say = log or (lambda _msg: None)
    path = Path(path)
    if path.exists():
        if _verify(path, md5, content_sha256) is None:
            say(f"{path}: present, checksum ok")
            return path
        say(f"{path}: present but its checksum is wrong; downloading it again")
        path.unlink()
    part = path.with_name(path.name + ".part")
    meta = path.with_name(path.name + ".part.json")
    last_error = ""
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(min(0.25 * 2 ** (attempt - 1), 4.0))
        try:
            _transfer(url, part, meta, timeout)
            break
        except _Restart as exc:
            say(f"{path}: {exc}; restarting the download")
            _remove(part, meta)
            last_error = str(exc)
        except _Retry as exc:
            last_error = str(exc)
            say(f"{path}: {exc} (attempt {attempt + 1} of {retries + 1})")
    else:
        kept = part.stat().st_size if part.exists() else 0
        if kept:
            what = f"the partial file {part} ({kept} bytes) is kept and resumed next time"
        else:   # no byte arrived: promise no file
            _remove(part, meta)
            what = "nothing was downloaded"
        raise DataError(f"cannot download {url}: {last_error} (after {retries + 1} "
                        f"attempt{'s' if retries else ''}; {what})")
    problem = _verify(part, md5, content_sha256)
    if problem is not None:
        _remove(part, meta)
        raise DataError(f"{url}: checksum mismatch, {problem}; the downloaded file was deleted")
    with open(part, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(part, path)
    meta.unlink(missing_ok=True)
    say(f"{path}: downloaded, checksum ok")
    return path


def _remove(*paths: Path) -> None:
    for p in paths:
        p.unlink(missing_ok=True)


def _transfer(url: str, part: Path, meta: Path, timeout: float) -> None:
    """One attempt: fetch the rest of ``url`` into ``part``."""
    offset = part.stat().st_size if part.exists() else 0
    validator = None
    if offset:
        try:
            validator = json.loads(meta.read_text()).get("validator")
        except (OSError, ValueError, AttributeError):
            validator = None
    headers = {"User-Agent": "distnet-fetch", "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
        if validator:
            headers["If-Range"] = validator
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 416 and offset:
            raise _Restart(f"the server refused to resume at byte {offset} (HTTP 416)") from None
        if exc.code >= 500 or exc.code == 429:
            raise _Retry(f"HTTP {exc.code} {exc.reason}") from None
        raise DataError(f"cannot download {url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise _Retry(f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}") from None
    with response:
        total = response.headers.get("Content-Length")
        if offset and response.status == 206:
            start, size = _content_range(response.headers.get("Content-Range"))
            if start != offset:
                raise _Restart(f"asked to resume at byte {offset}, the server answered from "
                               f"byte {start}")
            mode = "ab"
            expected = size if size is not None else (
                offset + int(total) if total and total.isdigit() else None)
        elif response.status == 200:
            if offset:
                # No range support, or If-Range failed (the file changed): the
                # body is the whole file; the old part is discarded.
                offset = 0
            mode = "wb"
            expected = int(total) if total and total.isdigit() else None
            new_validator = response.headers.get("ETag") or response.headers.get("Last-Modified")
            meta.write_text(json.dumps({"url": url, "validator": new_validator}))
        else:
            raise _Retry(f"unexpected HTTP status {response.status}")
        written = offset
        try:
            with open(part, mode) as out:
                while True:
                    chunk = response.read(CHUNK)
                    if not chunk:
                        break
                    out.write(chunk)
                    written += len(chunk)
        except (OSError, http.client.HTTPException) as exc:
            raise _Retry(f"connection lost after {written} bytes "
                         f"({type(exc).__name__}: {exc})") from None
    if expected is not None and written < expected:
        raise _Retry(f"connection closed after {written} of {expected} bytes")
    if expected is not None and written > expected:
        raise _Restart(f"got {written} bytes, more than the {expected} announced")


def _content_range(value: str | None) -> tuple[int, int | None]:
    """``bytes START-END/SIZE`` -> (START, SIZE or None)."""
    try:
        unit, _, spec = value.strip().partition(" ")
        span, _, size = spec.partition("/")
        start = int(span.split("-")[0])
        if unit != "bytes":
            raise ValueError(unit)
        return start, (int(size) if size not in ("", "*") else None)
    except (AttributeError, ValueError):
        raise _Restart(f"unreadable Content-Range {value!r}") from None


def _verify(path: Path, md5: str | None, content_sha256: str | None) -> str | None:
    """None when the file matches; else what was expected and what came."""
    if md5 is None and content_sha256 is None:
        return None
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    got_md5 = digest.hexdigest()
    if md5 is not None and got_md5 == md5:
        return None
    expected = [f"MD5 {md5}" if md5 else None,
                f"SHA-256 of the content {content_sha256}" if content_sha256 else None]
    report = f"Expect: {' or '.join(e for e in expected if e)} Actual: MD5 {got_md5}"
    if content_sha256 is not None:
        content = hashlib.sha256()
        try:
            with gzip.open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    content.update(chunk)
        except (OSError, EOFError, zlib.error) as exc:
            return f"{report} and the file is not valid gzip ({exc})"
        if content.hexdigest() == content_sha256:
            return None
        report += f", content SHA-256 {content.hexdigest()}"
    return report
