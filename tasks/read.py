"""Read one source file as a stream of bounded Arrow batches: records split and located, not parsed.

JSON stays text in `_raw` (DuckDB parses it later); CSV becomes string columns; parquet stays typed.
"""

from __future__ import annotations

import csv
import gzip
import io
import itertools
import re
import zlib
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import zstandard
from fsspec.core import url_to_fs

from schemas.errors import DataError, PumpError, SpecError, TransientError
from schemas.loader import resolve_mapping
from schemas.spec import FORMATS, CsvOptions, FilesSource, Limits, source_format
from tasks.listing import SourceFile, safe_url

META = ("_source", "_row", "_raw", "_parse_error")
JSON_SCHEMA = pa.schema(
    [
        ("_source", pa.string()),
        ("_row", pa.int64()),
        ("_raw", pa.string()),
        ("_parse_error", pa.string()),
    ]
)
CHUNK = 1 << 20  # read size: large enough that Python overhead per read does not matter
HEAD_CHARS = 1024  # how much of a rejected over-long record is kept, to show what it was
BOM = b"\xef\xbb\xbf"
NOT_UTF8 = "not valid UTF-8"
# Decompression bomb guard: a compressed file may expand to BOMB_RATIO x its size, and
# always to BOMB_FLOOR. Reading streams, so memory stays bounded anyway; the cap stops a
# tiny file from keeping a run busy for hours. Typical text compresses 5-20x.
BOMB_RATIO = 100
BOMB_FLOOR = 1 << 30
SUFFIX_CODECS = {".gz": "gzip", ".zst": "zstd", ".zstd": "zstd"}

# (row, raw text, parse error, bytes held, CSV fields or None)
Record = tuple[int, str, str | None, int, Any]
# A batch in the making: rows, raws, {index: parse error}, CSV columns.
Group = tuple[list[int], list[str], dict[int, str], list[list[str | None]]]


@dataclass
class Batch:
    """Up to limits.batch_rows records of one file, with `_source, _row, _raw, _parse_error` first."""

    table: pa.Table
    kind: Literal["json", "columns"]
    seq: int  # 0-based batch number within this file
    source_bytes: int  # compressed bytes of the file this batch covers (approximate)


def read_batches(source: FilesSource, file: SourceFile, limits: Limits) -> Iterator[Batch]:
    """Stream one file as batches of at most limits.batch_rows rows (and about limits.batch_bytes
    of record text), never holding the whole file.

    Formats: ndjson and json arrays give kind "json" (the record text in `_raw`); csv gives kind
    "columns" with one string column per header field; parquet gives its own typed columns.
    A record that cannot be read (over limits.max_record_bytes, not UTF-8, wrong CSV width,
    a broken JSON array) becomes a row with `_parse_error` set, never an exception.
    An empty file yields no batches. Compressed input (gzip, zstd) that expands beyond
    max(100 x its size, 1 GiB) is refused with DataError as a possible decompression bomb.
    """
    fmt = _format(source, file)
    try:
        fs, path = url_to_fs(file.url, **resolve_mapping(source.storage_options))
    except (ValueError, ImportError) as e:
        raise SpecError(f"source.url {safe_url(file.url)}: cannot open it ({e})") from None
    codec = _codec(source, file, fmt)
    with _io_errors(file.url), fs.open(path, "rb") as raw:
        if fmt == "parquet":
            yield from _parquet_batches(raw, file, limits)
            return
        counted = _Meter(raw, file.url)
        with io.BufferedReader(_decompressed(counted, codec, file), CHUNK) as stream:
            yield from _text_batches(stream, counted, fmt, source, file, limits)


def _text_batches(
    stream: io.BufferedReader[Any],
    counted: _Meter,
    fmt: str,
    source: FilesSource,
    file: SourceFile,
    limits: Limits,
) -> Iterator[Batch]:
    limit, rows, size = int(limits.max_record_bytes), limits.batch_rows, int(limits.batch_bytes)
    opts = _csv_options(source, file)
    names: list[str] = []
    groups: Iterator[Group]
    if fmt == "csv":
        names, records = _csv_records(stream, opts, limit, file.url)
        groups = _csv_groups(records, len(names), rows, size)
    elif fmt == "json":
        groups = _bounded(_json_records(stream, limit), rows, size)
    else:
        groups = _ndjson_groups(stream, limit, rows, size)
    done = 0
    for seq, group in enumerate(groups):
        table = _table(file.url, group, names, opts.null_values)
        # The compressed position runs ahead by a read buffer, so this is approximate;
        # after the last batch it is the whole file.
        yield Batch(table, "columns" if fmt == "csv" else "json", seq, counted.count - done)
        done = counted.count


# ---------------------------------------------------------------- opening


def _format(source: FilesSource, file: SourceFile) -> str:
    fmt = source_format(source) or source_format(FilesSource(type="files", url=file.url))
    if fmt is None:
        raise SpecError(
            f"source.format: cannot tell the format of {safe_url(file.url)} from its name; "
            f"set source.format to one of {', '.join(FORMATS)}"
        )
    return fmt


def _codec(source: FilesSource, file: SourceFile, fmt: str) -> str:
    codec: str = source.compression
    if codec == "infer":
        name = file.url.lower()
        codec = next((c for ext, c in SUFFIX_CODECS.items() if name.endswith(ext)), "none")
    if fmt == "parquet" and codec != "none":
        raise DataError(
            f"{safe_url(file.url)}: parquet files carry their own compression and cannot be "
            f"read through {codec}; store them uncompressed or set source.compression: none"
        )
    return codec


def _csv_options(source: FilesSource, file: SourceFile) -> CsvOptions:
    # A .tsv file is tab-separated unless the spec names a delimiter.
    name = file.url.lower().removesuffix(".gz").removesuffix(".zst").removesuffix(".zstd")
    if name.endswith(".tsv") and "delimiter" not in source.csv.model_fields_set:
        return source.csv.model_copy(update={"delimiter": "\t"})
    return source.csv


def _decompressed(raw: Any, codec: str, file: SourceFile) -> _Meter:
    if codec == "none":
        return _Meter(raw, file.url)
    inner: Any = (
        gzip.GzipFile(fileobj=raw, mode="rb")
        if codec == "gzip"
        else zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
    )
    return _Meter(inner, file.url, codec=codec, cap=max(BOMB_RATIO * file.size, BOMB_FLOOR))


class _Meter(io.RawIOBase):
    """A raw stream over `src` that counts bytes and turns codec failures into DataError."""

    def __init__(self, src: Any, url: str, codec: str = "", cap: int | None = None) -> None:
        self.src, self.url, self.codec, self.cap = src, url, codec, cap
        self.count = 0

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        if self.codec:  # the decompressor is ours; the file underneath belongs to the caller
            self.src.close()
        super().close()

    def readinto(self, buffer: Any) -> int:
        try:
            data = self.src.read(len(buffer))
        except (gzip.BadGzipFile, EOFError, zlib.error, zstandard.ZstdError) as e:
            raise DataError(
                f"{safe_url(self.url)}: not valid {self.codec} data after {self.count} bytes ({e}); "
                "check source.compression or re-export the file"
            ) from None
        n = len(data)
        buffer[:n] = data
        self.count += n
        if self.cap is not None and self.count > self.cap:
            raise DataError(
                f"{safe_url(self.url)}: decompresses to more than {self.cap} bytes, over "
                f"{BOMB_RATIO}x its size; refused as a possible decompression bomb. "
                "If the file is genuine, split it into smaller files"
            )
        return n


@contextmanager
def _io_errors(url: str) -> Iterator[None]:
    # Storage failures: a vanished or forbidden file is for the user to fix, anything else
    # (network, throttling) may pass on retry.
    try:
        yield
    except PumpError:
        raise
    except FileNotFoundError:
        raise DataError(
            f"{safe_url(url)}: the file is gone since it was listed; restore it, or reset the pump"
        ) from None
    except PermissionError:
        raise DataError(
            f"{safe_url(url)}: access denied; check the credentials in source.storage_options"
        ) from None
    except OSError as e:
        raise TransientError(f"{safe_url(url)}: reading failed ({e}); run again later") from None


# ---------------------------------------------------------------- records and batches


def _bounded(records: Iterable[Record], max_rows: int, max_bytes: int) -> Iterator[Group]:
    """Group records so that a group has at most max_rows and (unless one record alone is
    larger) at most max_bytes of record text."""
    rows: list[int] = []
    raws: list[str] = []
    bad: dict[int, str] = {}
    size = 0
    for row, raw, error, k, _ in records:
        if rows and (len(rows) >= max_rows or size + k > max_bytes):
            yield rows, raws, bad, []
            rows, raws, bad, size = [], [], {}, 0
        if error:
            bad[len(rows)] = error
        rows.append(row)
        raws.append(raw)
        size += k
    if rows:
        yield rows, raws, bad, []


def _table(url: str, group: Group, names: list[str], nulls: Sequence[str]) -> pa.Table:
    """The batch table: META columns, then (CSV) one string column per name."""
    rows, raws, bad, columns = group
    n = len(rows)
    errors = (
        pa.array([bad.get(i) for i in range(n)], pa.string()) if bad else pa.nulls(n, pa.string())
    )
    arrays = [pa.repeat(url, n), pa.array(rows, pa.int64()), pa.array(raws, pa.string()), errors]
    if not names:
        return pa.Table.from_arrays(arrays, schema=JSON_SCHEMA)
    null_set = pa.array(list(nulls), pa.string())
    for col in columns:
        arr = pa.array(col, pa.string())
        if len(null_set):
            arr = pc.if_else(pc.is_in(arr, value_set=null_set), pa.scalar(None, pa.string()), arr)
        arrays.append(arr)
    return pa.Table.from_arrays(arrays, names=[*META, *names])


def _too_big(size: int, limit: int, cut: bool = False) -> str:
    more = "more than " if cut else ""
    return f"record is {more}{size} bytes, over limits.max_record_bytes ({limit})"


def _head(text: str) -> str:
    return text[:HEAD_CHARS] + "…"


def _decode(data: bytes) -> tuple[str, str | None]:
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError:
        return data.decode("utf-8", "replace"), NOT_UTF8


# ---------------------------------------------------------------- ndjson


def _ndjson_groups(
    stream: io.BufferedReader[Any], limit: int, max_rows: int, max_bytes: int
) -> Iterator[Group]:
    """One record per non-blank line, numbered by its line, grouped as _bounded does.

    The hot path of the common format: _lines and _bounded fused by hand, because a
    generator hop and a tuple per line cost half the time.
    """
    readline = stream.readline
    want = limit + 2  # room for the content plus "\r\n"
    rows: list[int] = []
    raws: list[str] = []
    bad: dict[int, str] = {}
    size = n = 0
    while line := readline(want):
        n += 1
        error = None
        if len(line) == want and line[-1] != 10:  # no "\n" within the limit: too long
            head, k = _drain(readline, line)
            raw, error = _head(head.decode("utf-8", "replace")), _too_big(k, limit)
            size_k = HEAD_CHARS
        else:
            text = line.rstrip(b"\r\n")
            if n == 1 and text.startswith(BOM):
                text = text[3:]
            if not text or text.isspace():
                continue
            size_k = len(text)
            if size_k > limit:
                raw, error = _head(text.decode("utf-8", "replace")), _too_big(size_k, limit)
                size_k = HEAD_CHARS
            else:
                try:
                    raw = text.decode("utf-8")
                except UnicodeDecodeError:
                    raw, error = text.decode("utf-8", "replace"), NOT_UTF8
        if rows and (len(rows) >= max_rows or size + size_k > max_bytes):
            yield rows, raws, bad, []
            rows, raws, bad, size = [], [], {}, 0
        if error:
            bad[len(rows)] = error
        rows.append(n)
        raws.append(raw)
        size += size_k
    if rows:
        yield rows, raws, bad, []


def _drain(readline: Any, head: bytes) -> tuple[bytes, int]:
    """Read the rest of an over-long line in bounded pieces: (its first bytes, its size)."""
    size, keep = len(head), 4 * HEAD_CHARS  # enough bytes for HEAD_CHARS characters
    while more := readline(CHUNK):
        size += len(more)
        if len(head) < keep:
            head += more[: keep - len(head)]
        if more.endswith(b"\n"):
            size -= 2 if more.endswith(b"\r\n") else 1
            break
    return head.rstrip(b"\r\n"), size


# ---------------------------------------------------------------- csv

_LINE = re.compile(r"[^\n]*\n|[^\n]+")
_LINE_BYTES = re.compile(rb"[^\n]*\n|[^\n]+")


class _Oversize(Exception):
    """The record in progress outgrew the limit while csv.reader was inside it."""


class _CsvBlocks:
    """Cuts a byte stream into blocks of whole decoded lines for csv.reader, which pulls them
    through C iterators: a Python call per line would cost more than the parsing itself.

    Remembers the lines of the record in progress (so each record gets its text and first
    line number), lines that were not UTF-8, and lines over the limit (given to csv.reader
    as empty lines, their head kept aside).
    """

    def __init__(self, stream: io.BufferedReader[Any], limit: int) -> None:
        self.stream, self.limit = stream, limit
        self.lines: list[str] = []  # lines base+1 .. loaded
        self.base = 0  # line number before lines[0]
        self.done = 0  # last line of the last record taken
        self.loaded = 0  # last line handed to csv.reader
        self.bad: set[int] = set()  # numbers of lines that were not UTF-8
        self.big: dict[int, tuple[str, int]] = {}  # number of a line over the limit: head, size

    def next_block(self) -> list[str]:
        """The next lines, [] at the end; _Oversize if the record in progress is too long."""
        del self.lines[: self.done - self.base]
        self.base = self.done
        if sum(map(len, self.lines)) > self.limit:
            raise _Oversize
        lines = self._read()
        self.lines += lines
        self.loaded += len(lines)
        return lines

    def take(self, end: int, cut: bool = False) -> tuple[int, str, str | None, int]:
        """The record on the lines after the last one taken, up to `end`:
        (first line, text, error, bytes held). `cut`: csv.reader was stopped inside it."""
        start, lines = self.done + 1, self.lines[self.done - self.base : end - self.base]
        self.done = end
        extra, error = 0, None
        if self.big or self.bad:
            lines, extra, error = self._problems(start, lines)
        text = (lines[0] if len(lines) == 1 else "".join(lines)).rstrip("\r\n")
        size = len(text)
        if cut or extra or size * 4 > self.limit:  # chars <= bytes <= 4 x chars
            size = len(text.encode()) + extra
            if cut or size > self.limit:
                return start, _head(text), _too_big(size, self.limit, cut), HEAD_CHARS
        return start, text, error, size

    def _problems(self, start: int, lines: list[str]) -> tuple[list[str], int, str | None]:
        """The lines with the heads of over-long ones put back, the bytes those heads leave
        out, and NOT_UTF8 if a line was not UTF-8."""
        numbers = range(start, start + len(lines))
        bad = not self.bad.isdisjoint(numbers)
        self.bad.difference_update(numbers)
        out, extra = [], 0
        for n, line in zip(numbers, lines, strict=True):
            if n in self.big:
                head, size = self.big.pop(n)
                out.append(head)
                extra += size - len(head.encode())
            else:
                out.append(line)
        return out, extra, NOT_UTF8 if bad else None

    def _read(self) -> list[str]:
        block = self.stream.read(CHUNK)
        if not self.loaded and block.startswith(BOM):
            block = block[3:]
        if not block:
            return []
        big = None
        if not block.endswith(b"\n"):  # complete the last line, unless it is too long
            tail = self.stream.readline(self.limit + 2)
            if len(tail) < self.limit + 2 or tail.endswith(b"\n"):
                block += tail
            else:
                cut = block.rfind(b"\n") + 1
                big = _drain(self.stream.readline, block[cut:] + tail)
                block = block[:cut]
        try:
            lines = _LINE.findall(block.decode("utf-8"))
        except UnicodeDecodeError:
            lines = []
            for i, data in enumerate(_LINE_BYTES.findall(block), self.loaded + 1):
                text, error = _decode(data)
                if error:
                    self.bad.add(i)
                lines.append(text)
        # chars <= bytes <= 4 x chars: only lines over a quarter of the limit need a look
        long = lines and max(map(len, lines)) * 4 > self.limit
        for i, line in enumerate(lines if long else ()):
            if len(line) * 4 > self.limit:
                content = line.rstrip("\r\n")
                if len(content.encode()) > self.limit:
                    self.big[self.loaded + i + 1] = (content[:HEAD_CHARS], len(content.encode()))
                    lines[i] = "\n"
        if big:
            head = big[0].decode("utf-8", "replace")[:HEAD_CHARS]
            self.big[self.loaded + len(lines) + 1] = (head, big[1])
            lines.append("\n")
        return lines


def _csv_rows(blocks: _CsvBlocks, opts: CsvOptions) -> Iterator[Record]:
    """(first line, text, error, bytes held, fields) per non-blank CSV record."""
    while True:  # a new csv.reader after each record cut for its size
        offset = blocks.loaded
        lines = itertools.chain.from_iterable(iter(blocks.next_block, []))
        reader = csv.reader(lines, delimiter=opts.delimiter, quotechar=opts.quote, strict=False)
        while True:
            try:
                fields = next(reader)
            except StopIteration:
                return
            except _Oversize:
                yield *blocks.take(blocks.loaded, cut=True), None
                break
            except csv.Error as e:
                start, text, error, size = blocks.take(offset + reader.line_num)
                yield start, text, error or _csv_problem(e), size, None
                continue
            start, text, error, size = blocks.take(offset + reader.line_num)
            if fields or error:
                yield start, text, error, size, fields


def _csv_problem(e: csv.Error) -> str:
    if "new-line character" in str(e):  # csv's own words point at open(), not at the data
        return (
            "not valid CSV: a carriage return (\\r) inside an unquoted field; "
            "if the file's lines end in \\r alone, convert them to \\n"
        )
    return f"not valid CSV: {e}"


def _csv_records(
    stream: io.BufferedReader[Any], opts: CsvOptions, limit: int, url: str
) -> tuple[list[str], Iterator[Record]]:
    """The column names (from the header, or column0...) and an iterator of the records."""
    # csv's own per-field cap (128 KiB by default, process-wide) would reject records our
    # limit allows; only ever raise it.
    csv.field_size_limit(max(csv.field_size_limit(), limit))
    rows = _csv_rows(_CsvBlocks(stream, limit), opts)
    first = next(rows, None)
    if first is None:
        return [], iter(())
    if first[2] is not None and (opts.header or first[4] is None):
        what = "header" if opts.header else "first record"
        raise DataError(
            f"{safe_url(url)}: line {first[0]}: cannot read the CSV {what} ({first[2]}); fix the file"
        )
    if opts.header:
        return _header_names(first[4], url, first[0]), rows
    return [f"column{i}" for i in range(len(first[4]))], itertools.chain([first], rows)


def _csv_groups(
    records: Iterator[Record], width: int, max_rows: int, max_bytes: int
) -> Iterator[Group]:
    """Like _bounded, with the fields put into columns as they come (a list held per record
    doubles the time, through garbage collection). A record of the wrong width gets an
    error and null fields."""
    nulls = (None,) * width
    rows: list[int] = []
    raws: list[str] = []
    bad: dict[int, str] = {}
    columns: list[list[str | None]] = [[] for _ in range(width)]
    size = 0
    for start, text, error, k, fields in records:
        if error is None and len(fields) != width:
            error = f"expected {width} fields, got {len(fields)}"
        if rows and (len(rows) >= max_rows or size + k > max_bytes):
            yield rows, raws, bad, columns
            rows, raws, bad, size = [], [], {}, 0
            columns = [[] for _ in range(width)]
        if error:
            bad[len(rows)] = error
        deque(map(list.append, columns, nulls if error else fields), 0)
        rows.append(start)
        raws.append(text)
        size += k
    if rows:
        yield rows, raws, bad, columns


def _header_names(fields: list[str], url: str, line: int) -> list[str]:
    names = [name or f"column{i}" for i, name in enumerate(fields)]
    seen: set[str] = set()
    for name in names:
        if name in seen or name in META:
            why = (
                "twice" if name in seen else "but that name is reserved for pumphouse's own columns"
            )
            raise DataError(
                f"{safe_url(url)}: line {line}: the CSV header has column {name!r} {why}; "
                "rename it in the file, or set source.csv.header: false"
            )
        seen.add(name)
    return names


# ---------------------------------------------------------------- json


def _json_records(stream: io.BufferedReader[Any], limit: int) -> Iterator[Record]:
    """One record per element of a top-level array (or per top-level value), numbered from 1."""
    splitter = _JsonSplitter(limit)
    n = 0
    while True:
        chunk = stream.read(CHUNK)
        values = splitter.feed(chunk) if chunk else splitter.end()
        for data, size, error in values:
            n += 1
            if size > limit:
                msg = _too_big(size, limit)
                text = _head(data.decode("utf-8", "replace"))
                yield n, text, f"{error}; {msg}" if error else msg, HEAD_CHARS, None
                continue
            text, bad = _decode(data)
            yield n, text, error or bad, len(data), None
        if not chunk:
            return


_STRUCTURE = re.compile(rb'["\[\]{},]')


def _nested(inner: bytes) -> bytes:
    return rb"(?:\{(?:" + inner + rb")*+\}|\[(?:" + inner + rb")*+\])"


# The fast path: a whole value (nested up to 4 deep) matched by one regex in C. Possessive
# quantifiers keep a failed match linear; whatever does not match goes through _scan.
_STRING = rb'"(?:[^"\\]++|\\.)*+"'
_ATOM = rb'[^"{}\[\]]++|' + _STRING
_CONTAINER = _nested(_ATOM + b"|" + _nested(_ATOM + b"|" + _nested(_ATOM + b"|" + _nested(_ATOM))))
_ELEMENT = re.compile(
    rb"(" + _CONTAINER + b"|" + _STRING + rb'|[^\s,\[\]{}"]++)[ \t\r\n]*+([,\]])', re.S
)
_DOCUMENT = re.compile(_CONTAINER, re.S)
_IN_STRING = re.compile(rb'["\\]')
_NOT_SPACE = re.compile(rb"[^ \t\r\n]")
_OPEN = {ord("["): ord("]"), ord("{"): ord("}")}
QUOTE, BACKSLASH, COMMA, CLOSE_ARRAY = ord('"'), ord("\\"), ord(","), ord("]")


class _JsonSplitter:
    """Splits JSON fed in chunks into the text of its top-level values without parsing them:
    the elements of one top-level array, or else each value of the file (one object, or
    concatenated / newline-delimited objects). Tracks only strings and bracket nesting.

    A structural fault (a stray ',' or bracket, text after the array) turns the rest of the
    file into one value with an error; a value's text is kept only up to `limit` bytes.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.state = "start"  # start | between | value | done | broken
        self.array = False
        self.stack: list[int] = []  # closing bracket expected for each open one
        self.in_string = False
        self.skip = 0  # bytes of the next chunk already consumed (an escape split by a chunk)
        self.parts: list[bytes] = []
        self.size = 0
        self.offset = 0  # bytes before the current chunk
        self.error: str | None = None

    def feed(self, chunk: bytes) -> list[tuple[bytes, int, str | None]]:
        """The values that end in this chunk: (text or its head if over limit, bytes, error)."""
        out: list[tuple[bytes, int, str | None]] = []
        if self.offset == 0 and chunk.startswith(BOM):
            chunk, self.offset = chunk[3:], 3
        pos, self.skip = self.skip, 0
        start = 0  # where the current value's text begins in this chunk
        n = len(chunk)
        while pos < n:
            if self.state == "value":
                pos, end = self._scan(chunk, pos)
                if end is not None:
                    out.append(self._take(chunk[start:end]))
                continue
            if self.state == "broken":
                break
            m = _NOT_SPACE.search(chunk, pos)
            if m is None:
                break
            pos, c = m.start(), chunk[m.start()]
            if self.state == "start":
                self.state = "between"
                if c == ord("["):
                    self.array = True
                    pos += 1
            elif self.state == "done":
                self._break(f"text after the closing ']' at byte {self.offset + pos}")
                start = pos
            elif self.array and c == CLOSE_ARRAY:
                self.state, pos = "done", pos + 1
            elif c == COMMA:
                self._break(f"unexpected ',' at byte {self.offset + pos}")
                start = pos
            elif m := (_ELEMENT if self.array else _DOCUMENT).match(chunk, pos):
                value = m.group(1) if self.array else m.group()
                out.append(
                    self._take(value) if len(value) > self.limit else (value, len(value), None)
                )
                if self.array and m.group(2) == b"]":
                    self.state = "done"
                pos = m.end()
            else:
                self.state, start = "value", pos
        if self.state in ("value", "broken"):
            self._keep(chunk[start:])
        self.offset += n
        return out

    def end(self) -> list[tuple[bytes, int, str | None]]:
        """The last value at the end of the file, with an error if the JSON was cut short."""
        if self.state == "broken":
            return [self._take(b"")]
        if self.state == "between" and self.array:
            return [
                (b"", 0, "the file ends inside the JSON array (no closing ']'); is it truncated?")
            ]
        if self.state != "value":
            return []
        if self.array or self.stack or self.in_string:
            self.error = "the file ends inside this JSON value; is it truncated?"
        return [self._take(b"")]

    def _scan(self, chunk: bytes, pos: int) -> tuple[int, int | None]:
        """Advance over one token of the current value; (new position, end of value or None)."""
        if self.in_string:
            m = _IN_STRING.search(chunk, pos)
            if m is None:
                return len(chunk), None
            if chunk[m.start()] == BACKSLASH:
                pos = m.start() + 2
                self.skip = max(0, pos - len(chunk))
                return min(pos, len(chunk)), None
            self.in_string = False
            return m.end(), None
        m = _STRUCTURE.search(chunk, pos)
        if m is None:
            return len(chunk), None
        i, c = m.start(), chunk[m.start()]
        if c == QUOTE:
            self.in_string = True
        elif c in _OPEN:
            self.stack.append(_OPEN[c])
        elif self.stack:
            if c == COMMA:
                return i + 1, None
            if self.stack.pop() != c:
                self._break(f"mismatched {chr(c)!r} at byte {self.offset + i}")
                return len(chunk), None
            if not self.stack and not self.array:
                self.state = "between"
                return i + 1, i + 1
        elif self.array and c in (COMMA, CLOSE_ARRAY):
            self.state = "between" if c == COMMA else "done"
            return i + 1, i
        else:
            self._break(f"unexpected {chr(c)!r} at byte {self.offset + i}")
            return len(chunk), None
        return i + 1, None

    def _break(self, where: str) -> None:
        kind = "JSON array" if self.array else "JSON"
        self.error = f"not a valid {kind}: {where}; the rest of the file is kept as this one record"
        self.state = "broken"

    def _keep(self, piece: bytes) -> None:
        self.size += len(piece)
        if self.size <= self.limit:
            self.parts.append(piece)
        elif len(self.parts) != 1 or len(self.parts[0]) != 4 * HEAD_CHARS:
            # Over the limit: keep only a head to show, count the rest.
            self.parts = [b"".join([*self.parts, piece])[: 4 * HEAD_CHARS]]

    def _take(self, piece: bytes) -> tuple[bytes, int, str | None]:
        self._keep(piece)
        data = b"".join(self.parts).strip()
        size = self.size if self.size > self.limit else len(data)
        out = (data, size, self.error)
        self.parts, self.size, self.error = [], 0, None
        return out


# ---------------------------------------------------------------- parquet


def _parquet_batches(raw: Any, file: SourceFile, limits: Limits) -> Iterator[Batch]:
    url = safe_url(file.url)
    try:
        pf = pq.ParquetFile(raw)
    except pa.ArrowInvalid as e:
        raise DataError(f"{url}: not a readable parquet file ({e}); check source.format") from None
    clash = [name for name in pf.schema_arrow.names if name in META]
    if clash:
        raise DataError(
            f"{url}: column {clash[0]!r} is reserved for pumphouse's own columns; rename it in the file"
        )
    total = max(pf.metadata.num_rows, 1)
    row = 0
    try:
        for seq, rb in enumerate(pf.iter_batches(batch_size=limits.batch_rows)):
            n = rb.num_rows
            meta = [
                pa.repeat(file.url, n),
                pa.array(range(row + 1, row + n + 1), pa.int64()),
                pa.nulls(n, pa.string()),
                pa.nulls(n, pa.string()),
            ]
            table = pa.Table.from_arrays([*meta, *rb.columns], names=[*META, *rb.schema.names])
            covered = file.size * (row + n) // total - file.size * row // total
            row += n
            yield Batch(table, "columns", seq, covered)
    except pa.ArrowInvalid as e:
        raise DataError(
            f"{url}: parquet data broken after row {row} ({e}); re-export the file"
        ) from None
