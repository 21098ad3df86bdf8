"""NDJSON lines read by DuckDB itself: the file's bytes in large blocks of whole lines, handed
over as Arrow without copying, split and numbered in SQL. The fast twin of `ndjson_groups`.

It takes only what it can read exactly as `ndjson_groups` does (valid UTF-8, no NUL byte, no
record over max_record_bytes); for anything else it says so, and the caller reads the file
the usual way.
"""

from __future__ import annotations

import array
import io
import re
from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from tasks.engine.json_numbers import may_hold_long
from tasks.sources.records import BOM

BLOCK = 32 << 20  # bytes read at a time: a few batches of typical records
PIECE = 4 << 20  # the block is cut into pieces of about this size, which DuckDB splits in parallel
# ASCII whitespace as bytes.isspace() sees it, "\n" aside (lines never hold one).
_SPACE = "' ' || chr(9) || chr(11) || chr(12) || chr(13)"
_SPACE_BYTES = b" \t\x0b\x0c\r"
_BLANK_INSIDE = re.compile(rb"\n[ \t\x0b\x0c\r]*\n")
_BLANK_FIRST = re.compile(rb"[ \t\x0b\x0c\r]*\n")


def blocks(
    stream: io.BufferedReader[Any], limit: int, before: int = 0
) -> Iterator[pa.Table | None]:
    """The stream's lines in blocks, each an Arrow table of pieces (`content`: whole lines,
    `base`: the number of lines before the piece, `before` lines precede the stream). Yields
    None, and stops, where the bytes are not for the fast path (a NUL byte, invalid UTF-8, a
    line over `limit` bytes)."""
    size = max(BLOCK, 2 * limit + 2)
    base, tail = before, b""
    while True:
        data = stream.read(size)
        if not data:
            if tail:
                yield _table(tail, base)
            return
        data = tail + data if tail else data
        cut = data.rfind(b"\n") + 1
        if cut == 0:
            if len(data) > limit + 1:  # one line longer than a record may be: drained elsewhere
                yield None
                return
            tail = data
            continue
        block, tail = (data, b"") if cut == len(data) else (data[:cut], data[cut:])
        table = _table(block, base)
        yield table
        if table is None:
            return
        base = int(table.schema.metadata[b"end"])


def _table(block: bytes, base: int) -> pa.Table | None:
    if b"\0" in block or len(block) >= 2**31:  # Arrow strings: 32-bit offsets
        return None
    buffer = pa.py_buffer(block)
    starts, bases, at, lines = [], [], 0, base
    while at < len(block):
        end = block.find(b"\n", min(at + PIECE, len(block)) - 1) + 1 or len(block)
        starts.append(at)
        bases.append(lines)
        lines += block.count(b"\n", at, end)
        at = end
    offsets = array.array("i", [*starts, len(block)])
    content = pa.StringArray.from_buffers(len(starts), pa.py_buffer(offsets), buffer)
    try:
        content.validate(full=True)  # UTF-8
    except pa.ArrowInvalid:
        return None
    plain = base > 0 or not block.startswith(BOM)
    plain = plain and b"\r" not in block and not _has_blank(block)
    metadata = {
        b"plain": b"1" if plain else b"0",
        b"long": b"1" if may_hold_long(block) else b"0",
        b"end": str(lines).encode(),
    }
    # Arrays from buffers and Table.from_arrays: pa.array and pa.table look for pandas (a
    # 0.3 s import) first.
    numbers = pa.Array.from_buffers(
        pa.int64(), len(bases), [None, pa.py_buffer(array.array("q", bases))]
    )
    columns = [content, numbers]
    return pa.Table.from_arrays(columns, names=["content", "base"], metadata=metadata)


def is_plain(block: pa.Table) -> bool:
    """No blank line, no CR, no BOM in the block: every line is a record, as it is."""
    return (block.schema.metadata or {}).get(b"plain") == b"1"


def has_long_numbers(block: pa.Table) -> bool:
    """The block may hold a number a double does not keep (json_numbers.may_hold_long)."""
    return (block.schema.metadata or {}).get(b"long") != b"0"


def _has_blank(block: bytes) -> bool:
    """A line of ASCII whitespace only (or nothing): the record reader skips it."""
    last = block.rfind(b"\n", 0, len(block) - 1) + 1  # where the last line starts
    return bool(
        _BLANK_INSIDE.search(block)
        or _BLANK_FIRST.match(block)
        or (not block.endswith(b"\n") and not block[last:].strip(_SPACE_BYTES))
    )


def split_sql(block: str) -> str:
    """Every line of the pieces in `block`: `_row` (1-based line number), `_raw` (CRs at the
    end and, on line 1, a BOM removed), `_width` (the line's bytes before that), `_blank`."""
    text = "CASE WHEN ends_with(line, chr(13)) THEN rtrim(line, chr(13)) ELSE line END"
    bom = "CASE WHEN _row = 1 AND starts_with(t, chr(65279)) THEN substr(t, 2) ELSE t END"
    blank = f"_raw = '' OR (NOT starts_with(_raw, '{{') AND trim(_raw, {_SPACE}) = '')"
    return (
        f"SELECT _row, _raw, _width, {blank} AS _blank FROM ("
        f"SELECT _row, {bom} AS _raw, _width FROM ("
        f"SELECT _row, {text} AS t, strlen(line) AS _width FROM ({_lines(block)})))"
    )


def plain_sql(block: str, before: int, first: int, batch_rows: int) -> str:
    """The lines of a plain block (see is_plain) as batch rows (see numbered_sql): with
    nothing to trim or skip, the records are lines first, first + 1, ..."""
    return (
        f"SELECT _row, line AS _raw, CAST(NULL AS VARCHAR) AS _parse_error, "
        f"({int(before)} + _row - {int(first)}) // {int(batch_rows)} AS _batch, "
        f"strlen(line) AS _size FROM ({_lines(block)}) WHERE line <> ''"
    )


def numbered_sql(new: str, before: int, first: int | None, batch_rows: int) -> str:
    """The non-blank lines of `new` (from split_sql) as batch rows: `_row`, `_raw`,
    `_parse_error`, `_batch` (the record's batch in the file: every batch_rows records) and
    `_size`. `before`: records earlier in the file; `first`: the first record's line when the
    block's records are on consecutive lines (then numbering needs no sort)."""
    k = f"_row - {int(first)}" if first is not None else "row_number() OVER (ORDER BY _row) - 1"
    return (
        f"SELECT _row, _raw, CAST(NULL AS VARCHAR) AS _parse_error, "
        f"({int(before)} + {k}) // {int(batch_rows)} AS _batch, strlen(_raw) AS _size "
        f"FROM {new} WHERE NOT _blank"
    )


def _lines(block: str) -> str:
    # A piece that ends in a newline gives one empty string past it: not a line.
    return (
        "SELECT unnest(l) AS line, generate_subscripts(l, 1) + base AS _row "
        f"FROM (SELECT string_split(content, chr(10)) AS l, base FROM {block})"
    )
