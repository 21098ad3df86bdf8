"""Read one source file as a stream of bounded Arrow batches: records split and located, not parsed.

JSON stays text in `_raw` (DuckDB parses it later); CSV becomes string columns; parquet stays typed.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.core import url_to_fs

from schemas.errors import DataError, SpecError
from schemas.loader import resolve, resolve_mapping
from schemas.spec import FORMATS, FilesSource, Limits, source_format
from tasks.internal import RECORD, refuse
from tasks.sources.files._csv import (
    csv_groups,
    csv_options,
    csv_records,
    open_at,
    sniffed_delimiter,
)
from tasks.sources.files._csv import first_line_problem as first_line_problem  # for validate
from tasks.sources.files._json import json_records, ndjson_groups
from tasks.sources.files._jsonsplit import JsonSplitter as _JsonSplitter  # noqa: F401  (tests use this name)
from tasks.sources.files._parquet_sizes import blanked, oversize, read_step
from tasks.sources.files.json_lines import blocks
from tasks.sources.files.listing import SourceFile, safe_url
from tasks.sources.files.stream import (
    CHUNK,
    READ_BLOCK,
    Meter,
    Window,
    codec_of,
    decompressed,
    io_errors,
    sniffed,
)
from tasks.sources.records import Group, bounded, table


@dataclass
class Batch:
    """Up to limits.batch_rows records of one file, with `_source, _row, _raw, _parse_error` first."""

    table: pa.Table
    kind: Literal["json", "columns"]
    seq: int  # 0-based batch number within this file
    source_bytes: int  # compressed bytes of the file this batch covers (approximate)
    # The file's line on which its last record starts, when the file ends inside that CSV
    # record's quote (rejected, and read again from there if the file grows); else 0.
    open_line: int = 0


def read_batches(
    source: FilesSource, file: SourceFile, limits: Limits, names: Sequence[str] = ()
) -> Iterator[Batch]:
    """Stream one file as batches of at most limits.batch_rows rows (and about limits.batch_bytes
    of record text), never holding the whole file.

    Formats: ndjson and json arrays give kind "json" (the record text in `_raw`); csv gives kind
    "columns" with one string column per header field (with `csv.header: false`, `names` in
    order, then column<N>); parquet gives its own typed columns.
    A record that cannot be read (over limits.max_record_bytes, not UTF-8, wrong CSV width,
    a broken JSON array) becomes a row with `_parse_error` set, never an exception.
    An empty file yields no batches. Compressed input (gzip, zstd) that expands beyond
    max(100 x its size, 1 GiB) is refused with DataError as a possible decompression bomb.
    """
    fmt = _format(source, file)
    with _opened(source, file, fmt) as (raw, codec):
        if fmt == "parquet":
            yield from _parquet_batches(raw, file, limits)
            return
        counted = Meter(raw, file.url)
        with io.BufferedReader(decompressed(counted, codec, file), CHUNK) as stream:
            yield from _text_batches(stream, counted, fmt, source, file, limits, names)


def appendable(source: FilesSource, file: SourceFile) -> bool:
    """Whether records can be added at the file's end and read from there: uncompressed
    NDJSON or CSV (a name without a suffix is checked for compression by its first bytes)."""
    fmt = _format(source, file)
    return fmt in ("ndjson", "csv") and codec_of(source, file, fmt) in ("none", "infer")


def _lines_before(source: FilesSource, file: SourceFile, fmt: str) -> int:
    """The lines of the file before the first one read: none, or for a grown file those
    read before (a CSV's header, read again, is line 1 of what is read)."""
    if not file.start:
        return 0
    return file.lines - (1 if fmt == "csv" and source.csv.header else 0)


def ndjson_blocks(
    source: FilesSource,
    file: SourceFile,
    limits: Limits,
    seen: Callable[[memoryview], None] | None = None,
) -> Iterator[pa.Table | None] | None:
    """An NDJSON file's whole lines in large blocks for DuckDB to split (see _json_lines.blocks),
    opened, decompressed and guarded as read_batches does; None for any other format. `seen`
    is given the file's bytes as stored (compressed or not), in order, as they are read."""
    if _format(source, file) != "ndjson":
        return None
    return _ndjson_blocks(source, file, int(limits.max_record_bytes), seen)


def _ndjson_blocks(
    source: FilesSource, file: SourceFile, limit: int, seen: Callable[[memoryview], None] | None
) -> Iterator[pa.Table | None]:
    with _opened(source, file, "ndjson") as (raw, codec):
        counted = Meter(raw, file.url, seen=seen)
        with io.BufferedReader(decompressed(counted, codec, file), CHUNK) as stream:
            yield from blocks(stream, limit, _lines_before(source, file, "ndjson"))


@contextmanager
def _opened(source: FilesSource, file: SourceFile, fmt: str) -> Iterator[tuple[Any, str]]:
    """The file open for reading, and its codec; storage failures as pumphouse errors."""
    try:
        fs, path = url_to_fs(resolve(file.url), **resolve_mapping(source.storage_options))
    except (ValueError, ImportError) as e:
        raise SpecError(f"source.url {safe_url(file.url)}: cannot open it ({e})") from None
    codec = codec_of(source, file, fmt)
    # A cached listing would give the object's size and etag as they were when listed; s3fs
    # then reads a replaced object only up to the old size. Ask the store afresh.
    fs.invalidate_cache(path)
    with io_errors(file.url), fs.open(path, "rb", block_size=READ_BLOCK) as raw:
        if codec == "infer":
            codec, raw = sniffed(raw)
        if codec == "none" and fmt != "parquet" and (file.size or file.start):
            raw = _window(raw, source, file, fmt)
        yield raw, codec


def _window(raw: Any, source: FilesSource, file: SourceFile, fmt: str) -> Window:
    """The part of an uncompressed text file this run reads: up to its listed size, from
    `file.start` for a grown file (a CSV's header line first)."""
    head = b""
    if file.start and fmt == "csv" and source.csv.header:
        head = raw.readline()
    return Window(raw, file.start, file.size, head, file.url)


def _format(source: FilesSource, file: SourceFile) -> str:
    fmt = source_format(source) or source_format(FilesSource(type="files", url=file.url))
    if fmt is None:
        raise SpecError(
            f"source.format: cannot tell the format of {safe_url(file.url)} from its name; "
            f"set source.format to one of {', '.join(FORMATS)}"
        )
    return fmt


def _text_batches(
    stream: io.BufferedReader[Any],
    counted: Meter,
    fmt: str,
    source: FilesSource,
    file: SourceFile,
    limits: Limits,
    positional: Sequence[str] = (),
) -> Iterator[Batch]:
    limit, rows, size = int(limits.max_record_bytes), limits.batch_rows, int(limits.batch_bytes)
    opts = csv_options(source, file)
    names: list[str] = []
    groups: Iterator[Group]
    if fmt == "csv":
        if opts.delimiter == "auto":
            stream, opts = sniffed_delimiter(stream, opts, file.url)
        names, records = csv_records(stream, opts, limit, file.url, positional)
        groups = csv_groups(records, len(names), rows, size)
    elif fmt == "json":
        groups = bounded(json_records(stream, limit), rows, size)
    else:
        groups = ndjson_groups(stream, limit, rows, size)
    done, before = 0, _lines_before(source, file, fmt)
    for seq, group in enumerate(groups):
        batch = table(file.url, group, names, opts.null_values)
        if before:  # a grown file's records go on with the line numbers they have in it
            import pyarrow.compute as pc  # built at import: loaded by the runs that use it

            batch = batch.set_column(1, "_row", pc.add(batch.column(1), before))
        # The compressed position runs ahead by a read buffer, so this is approximate;
        # after the last batch it is the whole file.
        opened = open_at(group) if fmt == "csv" else 0
        kind: Literal["json", "columns"] = "columns" if fmt == "csv" else "json"
        yield Batch(batch, kind, seq, counted.count - done, opened + before if opened else 0)
        done = counted.count


STEP = 1024  # rows of a parquet row group decoded at a time (see _parquet_pieces)


def _parquet_batches(raw: Any, file: SourceFile, limits: Limits) -> Iterator[Batch]:
    url = safe_url(file.url)
    try:
        pf = pq.ParquetFile(raw)
    except pa.ArrowInvalid as e:
        raise DataError(f"{url}: not a readable parquet file ({e}); check source.format") from None
    refuse(url, pf.schema_arrow.names)
    total = max(pf.metadata.num_rows, 1)
    limit = int(limits.max_record_bytes)
    row = 0
    try:
        big = {g: found for g in range(pf.num_row_groups) if (found := oversize(pf, g, limit))}
        # pyarrow holds a batch several times over while it decodes it, outside DuckDB's
        # memory limit: a batch gets batch_bytes, and no more than a sixteenth of that limit.
        budget = min(int(limits.batch_bytes), int(limits.memory) // 16)
        pieces = _parquet_pieces(pf, big, limits.batch_rows, limit, budget)
        for seq, (columns, errors) in enumerate(pieces):
            n = len(errors)
            meta = [
                pa.repeat(file.url, n),
                pa.array(range(row + 1, row + n + 1), pa.int64()),
                pa.nulls(n, pa.string()),
                errors,
            ]
            names = [*RECORD, *pf.schema_arrow.names]
            batch = pa.Table.from_arrays([*meta, *columns], names=names)
            covered = file.size * (row + n) // total - file.size * row // total
            row += n
            yield Batch(batch, "columns", seq, covered)
    except pa.ArrowInvalid as e:
        raise DataError(
            f"{url}: parquet data broken after row {row} ({e}); re-export the file"
        ) from None


def _parquet_pieces(
    pf: pq.ParquetFile, big: dict[int, dict[int, int]], rows: int, limit: int, budget: int
) -> Iterator[tuple[list[Any], Any]]:
    """Batches of `rows` rows, fewer where they would hold over `budget` bytes decoded, as
    (columns, parse errors). A file's metadata cannot bound that (a dictionary-encoded
    column of a few KB may decode to GBs), so row groups are read STEP rows at a time and
    measured. The records in `big` ({row group: {row: bytes}}) over `limit` are NULL with
    their error; their row groups are read a few rows at a time."""
    names = [*pf.schema_arrow.names, "_parse_error"]
    held: list[pa.Table] = []
    count = size = 0
    for g in range(pf.num_row_groups):
        found, first = big.get(g), 0
        step = read_step(pf, g, limit) if found else min(rows, STEP)
        for rb in pf.iter_batches(batch_size=step, row_groups=[g]):
            columns, errors = (
                blanked(rb, found, first, limit)
                if found
                else (rb.columns, pa.nulls(rb.num_rows, pa.string()))
            )
            first += rb.num_rows
            piece = pa.Table.from_arrays([*columns, errors], names=names)
            held.append(piece)
            count, size = count + piece.num_rows, size + piece.nbytes
            while count >= rows or (size > budget and count):
                whole = pa.concat_tables(held)
                cut = min(rows, count)
                out, rest = whole.slice(0, cut), whole.slice(cut)
                held, count, size = [rest], rest.num_rows, rest.nbytes
                yield out.columns[:-1], out.column("_parse_error")
    if count:
        whole = pa.concat_tables(held)
        yield whole.columns[:-1], whole.column("_parse_error")
