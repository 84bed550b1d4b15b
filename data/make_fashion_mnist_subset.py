#!/usr/bin/env python3
"""Regenerate distnet's embedded Fashion-MNIST subset from the Debian files.

The subset is the first 10,000 training and the first 2,000 test examples of
Fashion-MNIST, in the original IDX format, gzip-compressed (level 9, no file
name and a zero timestamp in the gzip header, so the output is reproducible).

Usage (from the repository's root)::

    apt-get install dataset-fashion-mnist      # provides the source files
    python3 data/make_fashion_mnist_subset.py  # writes distnet/data/embedded/...
    python3 data/make_fashion_mnist_subset.py --check   # compare, write nothing

Only the standard library is used: an IDX file is a header (magic, dtype
code, number of dimensions, one big-endian 32-bit size per dimension) and the
values in C order, so the first n items are the header, with the first size
replaced by n, followed by the first n * item_size bytes.
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import struct
import sys
from pathlib import Path

SOURCE_DIR = Path("/usr/share/datasets/fashion-mnist")
ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = ROOT / "distnet" / "data" / "embedded" / "fashion-mnist-subset"
# (source file, number of leading items kept)
SUBSET = {
    "train-images-idx3-ubyte.gz": 10_000,
    "train-labels-idx1-ubyte.gz": 10_000,
    "t10k-images-idx3-ubyte.gz": 2_000,
    "t10k-labels-idx1-ubyte.gz": 2_000,
}
ITEM_BYTES = {0x08: 1, 0x09: 1, 0x0B: 2, 0x0C: 4, 0x0D: 4, 0x0E: 8}


def head_of_idx(data: bytes, n: int) -> bytes:
    """The first ``n`` items of the uncompressed IDX file ``data``."""
    if data[:2] != b"\0\0" or data[2] not in ITEM_BYTES:
        raise SystemExit("not an IDX file")
    ndim = data[3]
    sizes = list(struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim]))
    if sizes[0] < n:
        raise SystemExit(f"the file holds {sizes[0]} items, fewer than {n}")
    item = ITEM_BYTES[data[2]]
    for s in sizes[1:]:
        item *= s
    start = 4 + 4 * ndim
    sizes[0] = n
    return data[:4] + struct.pack(f">{ndim}I", *sizes) + data[start:start + n * item]


def gzip_bytes(data: bytes) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=9, mtime=0) as gz:
        gz.write(data)
    return buf.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=SOURCE_DIR,
                        help=f"directory of the Fashion-MNIST .gz files (default {SOURCE_DIR})")
    parser.add_argument("--out", type=Path, default=OUT_DIR, help=f"output (default {OUT_DIR})")
    parser.add_argument("--check", action="store_true",
                        help="compare with the files in --out instead of writing")
    args = parser.parse_args(argv)
    if not args.check:
        args.out.mkdir(parents=True, exist_ok=True)
    status = 0
    for name, n in SUBSET.items():
        raw = gzip.decompress((args.source / name).read_bytes())
        subset = head_of_idx(raw, n)
        packed = gzip_bytes(subset)
        target = args.out / name
        print(f"{name}: first {n} items, {len(packed)} bytes\n"
              f"  sha256 (file)         {hashlib.sha256(packed).hexdigest()}\n"
              f"  sha256 (decompressed) {hashlib.sha256(subset).hexdigest()}")
        if args.check:
            if not target.exists() or gzip.decompress(target.read_bytes()) != subset:
                print(f"  DIFFERS from {target}")
                status = 1
        else:
            target.write_bytes(packed)
    return status


if __name__ == "__main__":
    sys.exit(main())
