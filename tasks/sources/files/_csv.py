"""CSV records: the header's column names, then each record's fields put into columns,
with its text and first line kept and any problem as its parse error."""

from __future__ import annotations

import csv
import io
import itertools
import os
import tempfile
from collections import deque
from collections.abc import Iterator, Sequence
from typing import Any

from schemas._hints import show
from schemas.errors import DataError
from schemas.spec import CsvOptions, FilesSource
from tasks.engine import db as _duckdb
from tasks.internal import is_internal, problem
from tasks.sources.files._csvblocks import CsvBlocks, Unfinished, is_open
from tasks.sources.files._csvquotes import Quotes
from tasks.sources.files.listing import SourceFile, safe_url
from tasks.sources.files.stream import SUFFIX_CODECS, replayed
from tasks.sources.records import Group, Record

# Delimiters a one-column header is checked for: the common ones besides the comma.
OTHER_DELIMITERS = (";", "\t", "|", ",")
SNIFFED = 64 * 1024  # bytes of a file DuckDB's sniffer reads for delimiter: auto


def csv_options(source: FilesSource, file: SourceFile) -> CsvOptions:
    """source.csv, with a tab delimiter for a .tsv file unless the spec names a delimiter."""
    name = file.url.lower()
    for suffix in SUFFIX_CODECS:
        name = name.removesuffix(suffix)
    if name.endswith(".tsv") and "delimiter" not in source.csv.model_fields_set:
        return source.csv.model_copy(update={"delimiter": "\t"})
    return source.csv


def csv_records(
    stream: io.BufferedReader[Any],
    opts: CsvOptions,
    limit: int,
    url: str,
    positional: Sequence[str] = (),
) -> tuple[list[str], Iterator[Record]]:
    """The column names (from the header; without one, `positional` in order, then
    column<N>) and an iterator of the records."""
    # csv's own per-field cap is process-wide (128 KiB by default): left as found, whether it
    # or our limit cuts a long record (and what its error says) would depend on what ran
    # before in the process. CsvBlocks bounds what is held; csv's cap goes out of the way.
    csv.field_size_limit(max(csv.field_size_limit(), limit, 2**31 - 1))
    rows = _csv_rows(CsvBlocks(stream, limit, Quotes(opts.delimiter, opts.quote)), opts)
    first = next(rows, None)
    if first is None:
        return [], iter(())
    if first[2] is not None and (opts.header or first[4] is None):
        what = "header" if opts.header else "first record"
        raise DataError(
            f"{safe_url(url)}: line {first[0]}: cannot read the CSV {what} ({first[2]}); fix the file"
        )
    if opts.header:
        names = _header_names(first[4], url, first[0])
        if (said := one_column_header(names, opts.delimiter)) is not None:
            raise DataError(f"{safe_url(url)}: line {first[0]}: {said}")
        return names, rows
    width = len(first[4])
    names = [positional[i] if i < len(positional) else f"column{i}" for i in range(width)]
    return names, itertools.chain([first], rows)


def one_column_header(names: Sequence[str], delimiter: str) -> str | None:
    """What to say of a header read as one column that another common delimiter splits into
    names (every row would then fail the schema); None for any other header."""
    if len(names) != 1:
        return None
    for other in OTHER_DELIMITERS:
        if other != delimiter and len([n for n in names[0].split(other) if n.strip()]) >= 2:
            return (
                f"the CSV header is one column, {show(names[0])}, that holds {other!r}: is "
                f"csv.delimiter {other!r}? Set source.csv.delimiter to it, or to auto to find "
                "it in each file"
            )
    return None


def first_line_problem(source: FilesSource, file: SourceFile, path: str) -> str | None:
    """For validate: the header problem of a local, uncompressed CSV file at `path`, read
    from its first line alone (cheap); None when there is none or it cannot tell."""
    opts = csv_options(source, file)
    if opts.delimiter == "auto" or not opts.header:
        return None
    try:
        with open(path, "rb") as f:
            line = f.readline(SNIFFED).decode("utf-8-sig")
    except (OSError, UnicodeDecodeError):
        return None  # the run says what is wrong with the file
    fields = next(csv.reader([line], delimiter=opts.delimiter, quotechar=opts.quote), [])
    return one_column_header(fields, opts.delimiter)


def sniffed_delimiter(
    stream: io.BufferedReader[Any], opts: CsvOptions, url: str
) -> tuple[io.BufferedReader[Any], CsvOptions]:
    """For `delimiter: auto`: the delimiter DuckDB's sniffer finds in the file's first bytes
    (told as a warning in the run's summary), and the stream to read from its start."""
    head = stream.read(SNIFFED)
    sample = head[: head.rfind(b"\n") + 1] or head  # whole lines, or a file of one line
    found = ","
    if sample.strip():
        with tempfile.TemporaryDirectory(prefix="pumphouse-sniff-") as tmp:
            path = os.path.join(tmp, "sample.csv")
            with open(path, "wb") as f:
                f.write(sample)
            con = _duckdb.connect(memory_bytes=64 * 2**20, threads=1)
            try:
                found = str(
                    _duckdb.scalar(
                        con,
                        "SELECT Delimiter FROM sniff_csv(?, quote = ?, header = ?)",
                        [path, opts.quote, opts.header],
                    )
                )
            except _duckdb.Error as e:
                raise DataError(
                    f"{safe_url(url)}: csv.delimiter auto: DuckDB's sniffer could not read the "
                    f"file ({str(e).strip().splitlines()[0]}); set source.csv.delimiter"
                ) from None
            finally:
                con.close()
        from tasks.sources.http import (
            warn,  # it reads through tasks.sources.files.read: not at import
        )

        warn(f"{safe_url(url)}: csv.delimiter auto found {found!r}")
    return replayed(head, stream), opts.model_copy(update={"delimiter": found})


def csv_groups(
    records: Iterator[Record], width: int, max_rows: int, max_bytes: int
) -> Iterator[Group]:
    """Like _records.bounded, with the fields put into columns as they come (a list held per
    record doubles the time, through garbage collection). A record of the wrong width gets
    an error and null fields."""
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


def open_at(group: Group) -> int:
    """The line (of what was read) on which the group's last record starts if the file ends
    inside its quote (such a record runs to the file's end); 0 if not."""
    rows, _, bad, _ = group
    return rows[-1] if rows and is_open(bad.get(len(rows) - 1)) else 0


def _csv_rows(blocks: CsvBlocks, opts: CsvOptions) -> Iterator[Record]:
    """(first line, text, error, bytes held, fields) per non-blank CSV record."""
    while True:  # a new csv.reader after each record cut (see CsvBlocks.cut)
        offset = blocks.loaded
        lines = itertools.chain.from_iterable(iter(blocks.next_block, []))
        reader = csv.reader(lines, delimiter=opts.delimiter, quotechar=opts.quote, strict=False)
        while True:
            try:
                fields = next(reader)
            except StopIteration:
                return
            except Unfinished:
                yield *blocks.cut(), None
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


def _header_names(fields: list[str], url: str, line: int) -> list[str]:
    names = [name or f"column{i}" for i, name in enumerate(fields)]
    seen: set[str] = set()
    for name in names:
        if is_internal(name):
            raise DataError(
                f"{safe_url(url)}: line {line}: the CSV header's {problem(name)}, "
                "or set source.csv.header: false"
            )
        if name in seen:
            raise DataError(
                f"{safe_url(url)}: line {line}: the CSV header has column {name!r} twice; "
                "rename it in the file, or set source.csv.header: false"
            )
        seen.add(name)
    return names
