"""The bytes of one source file: decompressed, counted, capped against decompression bombs,
with storage and codec failures turned into pumphouse errors."""

from __future__ import annotations

import gzip
import io
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import zstandard

from schemas.errors import DataError, InputGone
from schemas.spec import FilesSource
from tasks.io.storage import storage_errors
from tasks.sources.files.listing import SourceFile, safe_url

CHUNK = 1 << 20  # read size: large enough that Python overhead per read does not matter
# Bytes an object store fetches ahead per request (s3fs's own default is 50 MiB): memory
# per file read stays about CHUNK + READ_BLOCK, however big the object.
READ_BLOCK = 8 << 20
# Decompression bomb guard: a compressed file may expand to BOMB_RATIO x its size, and
# always to BOMB_FLOOR. Reading streams, so memory stays bounded anyway; the cap stops a
# tiny file from keeping a run busy for hours. Typical text compresses 5-20x.
BOMB_RATIO = 100
BOMB_FLOOR = 1 << 30
SUFFIX_CODECS = {".gz": "gzip", ".zst": "zstd", ".zstd": "zstd"}
MAGIC_CODECS = {b"\x1f\x8b": "gzip", b"\x28\xb5\x2f\xfd": "zstd"}  # the formats' first bytes


def sniffed(raw: Any) -> tuple[str, Any]:
    """The codec a stream's first bytes say (gzip, zstd; else "none"), and the stream to read
    from its start: `raw`, sought back, or where it cannot seek (an HTTP stream of unknown
    size) a reader that gives those bytes first. For `compression: infer` when the name has
    no suffix to go by."""
    head = raw.read(4)
    codec = next((c for magic, c in MAGIC_CODECS.items() if head.startswith(magic)), "none")
    try:
        raw.seek(0)
    except (ValueError, OSError):  # io.UnsupportedOperation is both
        return codec, _Replayed(head, raw)
    return codec, raw


def replayed(head: bytes, src: Any) -> io.BufferedReader[Any]:
    """A stream of `head` (bytes already read from `src`), then the rest of `src`."""
    return io.BufferedReader(_Replayed(head, src))


class _Replayed(io.RawIOBase):
    """`head` (bytes already read from `src`), then the rest of `src`."""

    def __init__(self, head: bytes, src: Any) -> None:
        self.head, self.src = head, src

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.head[: len(buffer)] if self.head else self.src.read(len(buffer))
        self.head = self.head[len(data) :] if self.head else b""
        buffer[: len(data)] = data
        return len(data)


def codec_of(source: FilesSource, file: SourceFile, fmt: str) -> str:
    """The file's compression: source.compression, or inferred from the name's suffix
    ("infer" when the name has none: the content may say, see sniffed; parquet: "none")."""
    codec: str = source.compression
    if codec == "infer":
        name = file.url.lower()
        codec = next((c for ext, c in SUFFIX_CODECS.items() if name.endswith(ext)), codec)
    if fmt == "parquet" and codec == "infer":
        return "none"
    if fmt == "parquet" and codec != "none":
        raise DataError(
            f"{safe_url(file.url)}: parquet files carry their own compression and cannot be "
            f"read through {codec}; store them uncompressed or set source.compression: none"
        )
    return codec


def decompressed(raw: Any, codec: str, file: SourceFile) -> Meter:
    """`raw` read through `codec`, counted, and capped at max(BOMB_RATIO x size, BOMB_FLOOR)."""
    if codec == "none":
        return Meter(raw, file.url)
    if codec == "gzip":
        inner: Any = gzip.GzipFile(fileobj=raw, mode="rb")
    elif codec == "zstd":
        inner = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
    else:
        raise ValueError(f"no codec {codec!r}: gzip, zstd or none")
    return Meter(inner, file.url, codec=codec, cap=max(BOMB_RATIO * file.size, BOMB_FLOOR))


class Meter(io.RawIOBase):
    """A raw stream over `src` that counts bytes and turns codec failures into DataError;
    `seen` is given each piece read, in order."""

    def __init__(
        self,
        src: Any,
        url: str,
        codec: str = "",
        cap: int | None = None,
        seen: Callable[[memoryview], None] | None = None,
    ) -> None:
        self.src, self.url, self.codec, self.cap, self.seen = src, url, codec, cap, seen
        self.count = 0

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        if self.codec:  # the decompressor is ours; the file underneath belongs to the caller
            self.src.close()
        super().close()

    def readinto(self, buffer: Any) -> int:
        try:
            into = getattr(self.src, "readinto", None)
            if into is not None:  # straight into the caller's buffer: no copy of large reads
                n = into(buffer) or 0
            else:
                data = self.src.read(len(buffer))
                n = len(data)
                buffer[:n] = data
        except (gzip.BadGzipFile, EOFError, zlib.error, zstandard.ZstdError) as e:
            raise DataError(
                f"{safe_url(self.url)}: not valid {self.codec} data after {self.count} bytes ({e}); "
                "check source.compression or re-export the file"
            ) from None
        self.count += n
        if self.seen is not None and n:
            self.seen(memoryview(buffer)[:n])
        if self.cap is not None and self.count > self.cap:
            raise DataError(
                f"{safe_url(self.url)}: decompresses to more than {self.cap} bytes, over "
                f"{BOMB_RATIO}x its size; refused as a possible decompression bomb. "
                "If the file is genuine, split it into smaller files"
            )
        return n


@contextmanager
def io_errors(url: str) -> Iterator[None]:
    """Storage failures as errors by what to do: a vanished or forbidden file is for the user
    to fix (DataError), anything else (network, throttling) may pass on retry."""
    with storage_errors(safe_url(url), "reading", "source.storage_options"):
        try:
            yield
        except FileNotFoundError:
            raise InputGone(
                f"{safe_url(url)}: the file is gone since it was listed; run again to list "
                "the files afresh (if that fails the same way, restore the file, or `pumphouse "
                "reset` the pump)",
                safe_url(url),
            ) from None


class Window(io.RawIOBase):
    """The bytes of `raw` from `start` to `end`, after `head`: the part of a file this run
    reads (a grown file's new bytes, after its CSV header), never past the size it was
    listed with, so bytes a producer appends while it is read are left for the next run."""

    def __init__(self, raw: Any, start: int, end: int, head: bytes = b"", url: str = "") -> None:
        self.raw, self.head, self.left, self.end, self.url = raw, head, end - start, end, url
        if start:
            raw.seek(start)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.head:
            data, self.head = self.head[: len(buffer)], self.head[len(buffer) :]
        else:
            data = self.raw.read(min(len(buffer), self.left)) if self.left > 0 else b""
            if not data and self.left > 0 and len(buffer):  # never guess at the bytes missing
                what = f"is shorter ({self.end - self.left:,} bytes, listed with {self.end:,})"
                raise InputGone(
                    f"{safe_url(self.url)}: the file {what}: it was truncated or rewritten "
                    "since it was listed; run again to list the files afresh",
                    safe_url(self.url),
                    what,
                )
            self.left -= len(data)
        buffer[: len(data)] = data
        return len(data)
