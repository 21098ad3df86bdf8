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
    measuring = Measuring(file.size)
    with _opened(source, file.url) as raw:
        while measuring.left > 0 and (data := raw.read(min(CHUNK, measuring.left))):
            measuring.update(data)
    return measuring.result() or measuring.done()


class Measuring:
    """measure()'s answer taken from the bytes of the file as a reader reads them from its
    start: staging a local file then needs no second read of it."""

    def __init__(self, size: int) -> None:
        self.left, self._digest, self._lines = size, hashlib.sha256(), 0
        self._first, self._last, self._spoiled = b"", b"", False

    def update(self, data: bytes | memoryview) -> None:
        """The next bytes read (past the first `size`: not looked at)."""
        data = bytes(data[: self.left])
        self.left -= len(data)
        self._digest.update(data)
        self._lines += data.count(b"\n")
        if len(self._first) < EDGE:
            self._first += data[: EDGE - len(self._first)]
        self._last = (self._last + data[-EDGE:])[-EDGE:]

    def result(self) -> dict[str, Any] | None:
        """measure()'s answer, or None if the first `size` bytes were not all read."""
        return self.done() if self.left == 0 and not self._spoiled else None

    def spoil(self) -> None:
        """The bytes read are not the ones staged: result() is None."""
        self._spoiled = True

    def done(self) -> dict[str, Any]:
        ends = _ends(self._first, self._last)
        return {"hash": self._digest.hexdigest(), "lines": self._lines, "ends": ends}


def hash_of(source: FilesSource, file: SourceFile) -> str:
    """The hash `measure` gives."""
    return str(measure(source, file)["hash"])


def line_start(source: FilesSource, file: SourceFile, line: int) -> int:
    """The offset at which the file's line `line` (1-based) starts, counting from
    `file.start` (whose line is `file.lines` + 1) when it has one."""
    at, left = file.start, line - 1 - (file.lines if file.start else 0)
    with _opened(source, file.url) as raw:
        raw.seek(at)
        while left > 0 and (data := raw.read(CHUNK)):
            newlines = data.count(b"\n")
            if newlines < left:
                left, at = left - newlines, at + len(data)
                continue
            found = -1
            for _ in range(left):
                found = data.index(b"\n", found + 1)
            return at + found + 1
    return at


def same_start(source: FilesSource, file: SourceFile, size: int, ends: str) -> bool:
    """Whether the file's first `size` bytes are still the ones sampled as `ends`, and are
    not compressed."""
    with _opened(source, file.url) as raw:
        first = raw.read(min(EDGE, size))
        raw.seek(max(0, size - EDGE))
        last = raw.read(min(EDGE, size))
    compressed = any(first.startswith(magic) for magic in MAGIC_CODECS)
    return not compressed and _ends(first, last) == ends


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
