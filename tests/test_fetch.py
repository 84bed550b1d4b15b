"""data fetch: downloads from a local HTTP server on 127.0.0.1 serving the Debian package's files.

The server (``http.server`` in a thread, our own handler) can close the
connection after K bytes, ignore Range requests, change a file's ETag, serve
a corrupt copy, answer 404 / 503, or stall.  Nothing here contacts any
address but 127.0.0.1.
"""
from __future__ import annotations

import gzip
import hashlib
import http.server
import threading
import os
import time
from pathlib import Path

import pytest

from distnet.data import fetch as fetch_mod
from distnet.data.fetch import download, fetch
from distnet.errors import DataError, DistnetError, InvalidArgumentError

DEBIAN = Path("/usr/share/datasets/fashion-mnist")
NAMES = [f.name for f in fetch_mod.FASHION_MNIST.files]


def _debian_or_skip() -> Path:
    # The loopback server serves Debian's real Fashion-MNIST files, so the
    # published checksums are checked against real bytes; .ci/run installs
    # dataset-fashion-mnist, so these tests run in CI.
    if not all((DEBIAN / n).is_file() for n in NAMES):
        reason = f"{DEBIAN} is absent (apt-get install dataset-fashion-mnist)"
        print(f"\ntest_fetch skipped: {reason}")
        pytest.skip(reason)
    return DEBIAN


class Behaviour:
    """What the test server does; changed by the tests between requests."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.ranges = True          # honour Range requests
        self.cut_after: dict[str, int] = {}   # name -> close the connection after K body bytes (once)
        self.etag = '"v1"'
        self.corrupt: set[str] = set()        # names served with one byte flipped
        self.status: dict[str, int] = {}      # name -> error status to answer
        self.stall: float = 0.0
        self.requests: list[tuple[str, str | None, str | None]] = []  # (name, Range, If-Range)
        self.body_bytes = 0
        self.lock = threading.Lock()


def _make_handler(b: Behaviour):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # keep the test output clean
            pass

        def do_GET(self):  # noqa: N802 (http.server's name)
            name = self.path.lstrip("/")
            with b.lock:
                b.requests.append((name, self.headers.get("Range"), self.headers.get("If-Range")))
            if b.stall:
                time.sleep(b.stall)
            if name in b.status:
                self.send_error(b.status[name])
                return
            path = b.root / name
            if not path.is_file():
                self.send_error(404)
                return
            data = bytearray(path.read_bytes())
            if name in b.corrupt:
                data[len(data) // 2] ^= 0xFF
            start, status = 0, 200
            rng = self.headers.get("Range")
            if_range = self.headers.get("If-Range")
            if rng and b.ranges and (if_range is None or if_range == b.etag):
                start = int(rng.split("=")[1].split("-")[0])
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                status = 206
            body = bytes(data[start:])
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("ETag", b.etag)
            if b.ranges:
                self.send_header("Accept-Ranges", "bytes")
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.end_headers()
            cut = b.cut_after.pop(name, None)
            if cut is not None:
                self.wfile.write(body[:cut])
                self.wfile.flush()
                with b.lock:
                    b.body_bytes += cut
                self.close_connection = True
                self.connection.shutdown(2)
                return
            try:
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                return  # the client gave up (the stall test)
            with b.lock:
                b.body_bytes += len(body)

    return Handler


@pytest.fixture
def server(tmp_path):
    root = _debian_or_skip()
    behaviour = Behaviour(root)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(behaviour))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    behaviour.url = f"http://127.0.0.1:{httpd.server_address[1]}/"
    try:
        yield behaviour
    finally:
        httpd.shutdown()
        httpd.server_close()


def _same_as_debian(dest: Path, names=NAMES) -> None:
    for n in names:
        assert (dest / n).read_bytes() == (DEBIAN / n).read_bytes(), n
    assert not list(dest.glob("*.part*"))


def test_fetch_fashion_mnist_and_keep_verified_files(server, tmp_path):
    dest = tmp_path / "fashion"
    lines = []
    paths = fetch("fashion-mnist", dest, base_url=server.url, log=lines.append)
    assert paths == [dest / n for n in NAMES]
    _same_as_debian(dest)
    assert [r[0] for r in server.requests] == NAMES
    assert all("downloaded, checksum ok" in line for line in lines)
    # again: the verified files are kept, nothing is requested
    assert fetch("fashion_mnist", dest, base_url=server.url) == paths
    assert len(server.requests) == 4


def test_interrupted_download_resumes_with_a_range_request(server, tmp_path):
    name = "t10k-images-idx3-ubyte.gz"
    size = (DEBIAN / name).stat().st_size
    server.cut_after[name] = 1_000_000
    download(server.url + name, tmp_path / name, md5=None,
             content_sha256=fetch_mod.FASHION_MNIST.files[2].content_sha256, retries=2)
    _same_as_debian(tmp_path, [name])
    assert server.requests == [(name, None, None), (name, "bytes=1000000-", '"v1"')]
    assert server.body_bytes == size  # nothing sent twice


def test_partial_file_is_resumed_by_a_later_call(server, tmp_path):
    name = "train-labels-idx1-ubyte.gz"
    server.cut_after[name] = 10_000
    with pytest.raises(DataError, match="connection closed after 10000 of 29491 bytes") as info:
        fetch("fashion_mnist", tmp_path, base_url=server.url, retries=0)
    part = tmp_path / (name + ".part")
    assert f"the partial file {part} (10000 bytes) is kept and resumed next time" in str(info.value)
    assert part.stat().st_size == 10_000
    fetch("fashion_mnist", tmp_path, base_url=server.url, retries=0)
    _same_as_debian(tmp_path)
    assert (name, "bytes=10000-", '"v1"') in server.requests


def test_server_without_range_support_restarts_the_download(server, tmp_path):
    name = "train-labels-idx1-ubyte.gz"
    server.ranges = False
    server.cut_after[name] = 5_000
    spec = fetch_mod.FASHION_MNIST.files[1]
    download(server.url + name, tmp_path / name, content_sha256=spec.content_sha256, retries=1)
    _same_as_debian(tmp_path, [name])
    assert server.requests[1] == (name, "bytes=5000-", '"v1"')  # asked; got the whole file
    assert server.body_bytes == 5_000 + (DEBIAN / name).stat().st_size


def test_changed_file_on_the_server_discards_the_partial_content(server, tmp_path):
    name = "t10k-labels-idx1-ubyte.gz"
    part = tmp_path / (name + ".part")
    part.write_bytes(b"\x00" * 3000)  # bytes of an older version of the file
    (tmp_path / (name + ".part.json")).write_text('{"validator": "\\"v0\\""}')
    spec = fetch_mod.FASHION_MNIST.files[3]
    download(server.url + name, tmp_path / name, content_sha256=spec.content_sha256, retries=0)
    _same_as_debian(tmp_path, [name])
    assert server.requests == [(name, "bytes=3000-", '"v0"')]  # If-Range failed: whole file


def test_part_longer_than_the_file_restarts(server, tmp_path):
    name = "t10k-labels-idx1-ubyte.gz"
    (tmp_path / (name + ".part")).write_bytes(b"x" * 10_000)  # the file has 5125 bytes
    spec = fetch_mod.FASHION_MNIST.files[3]
    download(server.url + name, tmp_path / name, content_sha256=spec.content_sha256, retries=1)
    _same_as_debian(tmp_path, [name])
    assert [r[1] for r in server.requests] == ["bytes=10000-", None]


def test_corrupt_file_is_rejected_and_deleted(server, tmp_path):
    name = "train-labels-idx1-ubyte.gz"
    server.corrupt.add(name)
    with pytest.raises(DataError, match="checksum mismatch") as info:
        fetch("fashion_mnist", tmp_path, base_url=server.url)
    message = str(info.value)
    assert name in message and "25c81989df183df01b3e8a0aad5dffbe" in message and "Actual: MD5" in message
    assert not (tmp_path / name).exists() and not list(tmp_path.glob(name + ".part*"))
    assert (tmp_path / NAMES[0]).exists()  # the file before it was good and kept


def test_present_but_wrong_file_is_downloaded_again(server, tmp_path):
    name = "t10k-labels-idx1-ubyte.gz"
    (tmp_path / name).write_bytes(b"not the file")
    spec = fetch_mod.FASHION_MNIST.files[3]
    download(server.url + name, tmp_path / name, content_sha256=spec.content_sha256)
    _same_as_debian(tmp_path, [name])


def test_md5_of_the_published_file(server, tmp_path):
    name = "t10k-labels-idx1-ubyte.gz"
    good = hashlib.md5((DEBIAN / name).read_bytes()).hexdigest()
    download(server.url + name, tmp_path / "a.gz", md5=good)
    assert (tmp_path / "a.gz").read_bytes() == (DEBIAN / name).read_bytes()
    with pytest.raises(DataError, match=f"Expect: MD5 {'0' * 32} Actual: MD5 {good}"):
        download(server.url + name, tmp_path / "b.gz", md5="0" * 32)
    assert not (tmp_path / "b.gz").exists()


def test_http_errors(server, tmp_path):
    with pytest.raises(DataError, match="HTTP 404"):
        download(server.url + "missing.gz", tmp_path / "m.gz", retries=3)
    assert len(server.requests) == 1  # not retried
    server.status["x.gz"] = 503
    with pytest.raises(DataError, match=r"HTTP 503 .*after 2 attempts"):
        download(server.url + "x.gz", tmp_path / "x.gz", retries=1)
    assert len(server.requests) == 3


def test_stalled_server_times_out_after_bounded_retries(server, tmp_path):
    server.stall = 1.0
    start = time.monotonic()
    with pytest.raises(DataError, match="after 2 attempts") as info:
        download(server.url + NAMES[3], tmp_path / "s.gz", timeout=0.2, retries=1)
    assert time.monotonic() - start < 5
    assert len(server.requests) == 2
    # No byte arrived: the message promises no partial file, and none is left.
    assert str(info.value).endswith("(after 2 attempts; nothing was downloaded)")
    assert os.listdir(tmp_path) == []


def test_content_digests_match_the_debian_package():
    root = _debian_or_skip()
    for spec in fetch_mod.FASHION_MNIST.files:
        data = gzip.decompress((root / spec.name).read_bytes())
        assert hashlib.sha256(data).hexdigest() == spec.content_sha256


@pytest.mark.parametrize("kwargs, error, words", [
    ({"name": "cifar10"}, InvalidArgumentError, "expected one of ['fashion_mnist', 'mnist']"),
    ({"name": "mnist", "base_url": "ftp://127.0.0.1/"}, InvalidArgumentError, "http://"),
    ({"name": "mnist", "base_url": "http://127.0.0.1:9/", "timeout": 0}, InvalidArgumentError,
     "timeout"),
    ({"name": "mnist", "base_url": "http://127.0.0.1:9/", "retries": -1}, InvalidArgumentError,
     "retries"),
])
def test_bad_arguments(tmp_path, kwargs, error, words):
    with pytest.raises(error) as info:
        fetch(dest=tmp_path, **kwargs)
    assert words in str(info.value) and isinstance(info.value, DistnetError)


def test_unreachable_server_is_a_data_error(tmp_path):
    # port 9 (discard) on loopback: nothing listens there in the test environment
    with pytest.raises(DataError, match="cannot download http://127.0.0.1:9/") as info:
        fetch("mnist", tmp_path, base_url="http://127.0.0.1:9/", retries=0, timeout=2)
    assert str(info.value).endswith("(after 1 attempt; nothing was downloaded)")
    assert os.listdir(tmp_path) == []
