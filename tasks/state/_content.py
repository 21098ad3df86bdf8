"""What identifies a file's bytes across runs: a hash of them all, their number of lines,
and a cheap sample of their two ends (enough to tell that a file only grew, as log
shippers do)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fsspec.core import url_to_fs

from schemas.loader import resolve, resolve_mapping
from schemas.spec import FilesSource
from tasks.sources.files.listing import SourceFile
from tasks.sources.files.stream import CHUNK, MAGIC_CODECS, READ_BLOCK, io_errors

EDGE = 4096  # bytes sampled at each end


def measure(source: FilesSource, file: SourceFile) -> dict[str, Any]:
    """`hash` (sha256, with CPU support hashlib's fastest) and `lines` (newlines) of the
    file's first `size` bytes, and `ends` (see grew_from): what state keeps of a file read."""
    digest, lines, first, last = hashlib.sha256(), 0, b"", b""
    with _opened(source, file.url) as raw:
        left = file.size
        while left > 0 and (data := raw.read(min(CHUNK, left))):
            left -= len(data)
            digest.update(data)
            lines += data.count(b"\n")
            first = first or data[:EDGE]
            last = (last + data)[-EDGE:]
    return {"hash": digest.hexdigest(), "lines": lines, "ends": _ends(first, last)}


def hash_of(source: FilesSource, file: SourceFile) -> str:
    """The hash `measure` gives."""
    return str(measure(source, file)["hash"])


def grew_from(
    source: FilesSource, file: SourceFile, size: int, ends: str
) -> tuple[int, int] | None:
    """Where the new lines start, if the file's first `size` bytes are still the ones
    sampled as `ends` and are not compressed (else None): (offset, lines read before it
    beyond the `size` bytes' own newlines, 0 or 1; -1 for a last line re-read).

    The bytes read before may end without a newline: if the new bytes start with one, that
    last line was whole; if not, it was still being written, and is read again from its
    start (found in the last EDGE bytes; a longer line: None, read whole)."""
    with _opened(source, file.url) as raw:
        first = raw.read(min(EDGE, size))
        raw.seek(max(0, size - EDGE))
        last = raw.read(min(EDGE, size))
        after = raw.read(2)
    compressed = any(first.startswith(magic) for magic in MAGIC_CODECS)
    if compressed or _ends(first, last) != ends:
        return None
    if last.endswith(b"\n"):
        return size, 0
    for newline in (b"\n", b"\r\n"):
        if after.startswith(newline):
            return size + len(newline), 1
    begins = last.rfind(b"\n") + 1
    if begins == 0 and size > EDGE:
        return None
    return size - (len(last) - begins), -1


def _ends(first: bytes, last: bytes) -> str:
    return hashlib.blake2b(first + last, digest_size=16).hexdigest()


@contextmanager
def _opened(source: FilesSource, url: str) -> Iterator[Any]:
    # `url` keeps the spec's ${...} references (tasks/sources/files/listing): resolved only to open it
    fs, path = url_to_fs(resolve(url), **resolve_mapping(source.storage_options))
    fs.invalidate_cache(path)
    with io_errors(url), fs.open(path, "rb", block_size=READ_BLOCK) as raw:
        yield raw
