"""Records as text, and batches in the making: decoding, an over-long record's head and
message, grouping records under the row and byte bounds, and the batch's Arrow table."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import pyarrow as pa

from tasks.internal import RECORD
from tasks.sources.files.stream import CHUNK

JSON_SCHEMA = pa.schema(
    [
        ("_source", pa.string()),
        ("_row", pa.int64()),
        ("_raw", pa.string()),
        ("_parse_error", pa.string()),
    ]
)
HEAD_CHARS = 1024  # how much of a rejected over-long record is kept, to show what it was
BOM = b"\xef\xbb\xbf"
NOT_UTF8 = "not valid UTF-8"

# (row, raw text, parse error, bytes held, CSV fields or None)
Record = tuple[int, str, str | None, int, Any]
# A batch in the making: rows, raws, {index: parse error}, CSV columns.
Group = tuple[list[int], list[str], dict[int, str], list[list[str | None]]]


def bounded(records: Iterable[Record], max_rows: int, max_bytes: int) -> Iterator[Group]:
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


def table(url: str, group: Group, names: list[str], nulls: Sequence[str]) -> pa.Table:
    """The batch table: RECORD columns (tasks/internal), then (CSV) one string column per name."""
    rows, raws, bad, columns = group
    n = len(rows)
    errors = (
        pa.array([bad.get(i) for i in range(n)], pa.string()) if bad else pa.nulls(n, pa.string())
    )
    arrays = [pa.repeat(url, n), pa.array(rows, pa.int64()), pa.array(raws, pa.string()), errors]
    if not names:
        return pa.Table.from_arrays(arrays, schema=JSON_SCHEMA)
    import pyarrow.compute as pc  # built at import: loaded by the runs that use it

    null_set = pa.array(list(nulls), pa.string())
    for col in columns:
        arr = pa.array(col, pa.string())
        if len(null_set):
            arr = pc.if_else(pc.is_in(arr, value_set=null_set), pa.scalar(None, pa.string()), arr)
        arrays.append(arr)
    return pa.Table.from_arrays(arrays, names=[*RECORD, *names])


def too_big(size: int, limit: int) -> str:
    """The parse error of a record over limits.max_record_bytes."""
    return f"record is {size} bytes, over limits.max_record_bytes ({limit})"


def head(text: str) -> str:
    """What is kept of an over-long record, to show what it was."""
    return text[:HEAD_CHARS] + "…"


def decode(data: bytes) -> tuple[str, str | None]:
    """The text of a record, and NOT_UTF8 if it had to be decoded with replacements."""
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError:
        return data.decode("utf-8", "replace"), NOT_UTF8


def drain(readline: Any, first: bytes, see: Any = None) -> tuple[bytes, int]:
    """Read the rest of an over-long line in bounded pieces: (its first bytes, its size).
    `see`, if given, is called with each piece (the line's start first)."""
    size, keep = len(first), 4 * HEAD_CHARS  # enough bytes for HEAD_CHARS characters
    if see:
        see(first)
    while more := readline(CHUNK):
        if see:
            see(more)
        size += len(more)
        if len(first) < keep:
            first += more[: keep - len(first)]
        if more.endswith(b"\n"):
            size -= 2 if more.endswith(b"\r\n") else 1
            break
    return first.rstrip(b"\r\n"), size
