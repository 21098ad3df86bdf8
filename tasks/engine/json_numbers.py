"""JSON numbers as written. DuckDB's JSON functions and Python's json module read a decimal
into a double, which keeps about 17 significant digits: `0.12345678901234567890123` would
come out as `0.12345678901234568`. Records whose text may hold such a number (a run of 16+
digits, a dot allowed) are read again here, their numbers kept as the text written."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

# A number with 16+ significant digits, or a 3-digit exponent (beyond a double's range).
LONG = r"[0-9]{16}|[0-9.]{17}|[0-9][eE][+-]?[0-9]{3}"
_LONG = re.compile(LONG.encode())

# The SQL name of as_written() on every connection (tasks.engine.db.connect).
SQL_NAME = "ph_numbers_as_written"


class _Number(str):
    """A JSON number's text, as written."""


def as_written(raw: str | None, keys: list[str], strings: list[str | None] | None) -> Any:
    """`strings` (json_extract_string's values of `raw`'s top-level `keys`, JSON pointers)
    with each value that is a JSON number replaced by its text as written."""
    if raw is None or strings is None:
        return strings
    try:
        record = json.loads(raw, parse_float=_Number, parse_int=_Number, object_pairs_hook=_first)
    except (ValueError, RecursionError):  # DuckDB read it, or said why not
        return strings
    if not isinstance(record, dict):
        return strings
    out = list(strings)
    for i, key in enumerate(keys):
        value = record.get(key[1:].replace("~1", "/").replace("~0", "~"))
        if isinstance(value, _Number):
            out[i] = str(value)
    return out


def parse(body: bytes) -> Any:
    """A JSON body, its decimals as Decimal (which keeps every digit) where it may hold a
    long one: dumps() then writes them as they were."""
    return json.loads(body, parse_float=Decimal if _LONG.search(body) else None)


def dumps(value: Any) -> str:
    """Compact JSON text of a value parse() gave; a Decimal as written."""
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    except TypeError:  # a Decimal inside: rare, so the slow path is fine
        return _exact(value)


def _exact(value: Any) -> str:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        items = (f"{json.dumps(k, ensure_ascii=False)}:{_exact(v)}" for k, v in value.items())
        return "{" + ",".join(items) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_exact(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


def _first(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object whose key repeats keeps its first value, as DuckDB's reader does."""
    out: dict[str, Any] = {}
    for k, v in pairs:
        out.setdefault(k, v)
    return out
