"""JSON and NDJSON records: the text of each value or non-blank line, numbered, with an
over-long or non-UTF-8 one kept as a head with its parse error."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

from tasks.sources.files._jsonsplit import JsonSplitter
from tasks.sources.files.stream import CHUNK
from tasks.sources.records import (
    BOM,
    HEAD_CHARS,
    NOT_UTF8,
    Group,
    Record,
    decode,
    drain,
    head,
    too_big,
)


def json_records(stream: io.BufferedReader[Any], limit: int) -> Iterator[Record]:
    """One record per element of a top-level array (or per top-level value), numbered from 1."""
    splitter = JsonSplitter(limit)
    n = 0
    while True:
        chunk = stream.read(CHUNK)
        values = splitter.feed(chunk) if chunk else splitter.end()
        for data, size, error in values:
            n += 1
            if size > limit:
                msg = too_big(size, limit)
                text = head(data.decode("utf-8", "replace"))
                yield n, text, f"{error}; {msg}" if error else msg, HEAD_CHARS, None
                continue
            text, bad = decode(data)
            yield n, text, error or bad, len(data), None
        if not chunk:
            return


def ndjson_groups(
    stream: io.BufferedReader[Any], limit: int, max_rows: int, max_bytes: int
) -> Iterator[Group]:
    """One record per non-blank line, numbered by its line, grouped as _records.bounded does.

    The hot path of the common format: line reading and bounded() fused by hand, because a
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
            first, k = drain(readline, line)
            raw, error = head(first.decode("utf-8", "replace")), too_big(k, limit)
            size_k = HEAD_CHARS
        else:
            text = line.rstrip(b"\r\n")
            if n == 1 and text.startswith(BOM):
                text = text[3:]
            if not text or text.isspace():
                continue
            size_k = len(text)
            if size_k > limit:
                raw, error = head(text.decode("utf-8", "replace")), too_big(size_k, limit)
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
