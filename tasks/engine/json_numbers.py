"""JSON numbers as written. DuckDB's JSON functions and Python's json module read a decimal
into a double, which keeps about 17 significant digits: `0.12345678901234567890123` would
come out as `0.12345678901234568`. Records whose text may hold such a number (a run of 16+
digits, a dot allowed) are read again here, their numbers kept as the text written."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

import numpy as np

# A number with 16+ significant digits, or a 3-digit exponent (beyond a double's range).
LONG = r"[0-9]{16}|[0-9.]{17}|[0-9][eE][+-]?[0-9]{3}"
_LONG = re.compile(LONG.encode())

_EIGHT = np.uint64(0x0101010101010101)  # 8 bytes, each True
_CHUNK = 1 << 20  # bytes looked at together: a chunk's masks stay in the CPU's cache

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


def may_hold_long(text: bytes) -> bool:
    """Whether some part of `text` matches LONG, as _LONG.search says, at a fraction of its
    cost (and of DuckDB's regexp over every record): a block of records with no match is read
    without looking at each record's text."""
    if len(text) < 64:
        return _LONG.search(text) is not None
    if _LONG.search(text, len(text) - 24):  # the end, past the last whole 8-byte word
        return True
    whole = np.frombuffer(text, np.uint8)
    for start in range(0, len(text), _CHUNK):
        a = whole[start : start + _CHUNK + 24]  # a match that starts in the chunk ends in a
        n = len(a)
        if n < 24:  # within the end, already searched
            break
        digit = (a - np.uint8(ord("0"))) <= np.uint8(9)
        number = digit | (a == np.uint8(ord(".")))
        # 16 digits (or 17 of [0-9.]) in a row fill at least one aligned 8-byte word.
        if (number[: n // 8 * 8].view(np.uint64) == _EIGHT).any() and (
            _run(digit, 16) or _run(number, 17)
        ):
            return True
        # An exponent of 3 digits: a digit, e or E, then 3 digits or a sign and 3 digits.
        e = (a[1 : n - 4] | np.uint8(0x20)) == np.uint8(ord("e"))
        e &= digit[: n - 5]
        if e.any():
            at = np.flatnonzero(e) + 1
            sign = (a[at + 1] == np.uint8(ord("+"))) | (a[at + 1] == np.uint8(ord("-")))
            three = digit[at + 2] & digit[at + 3] & (digit[at + 1] | (sign & digit[at + 4]))
            if three.any():
                return True
    return False


def _run(mask: np.ndarray, k: int) -> bool:
    """`mask` has k (16 or 17) True in a row."""
    two = mask[:-1] & mask[1:]
    four = two[:-2] & two[2:]
    eight = four[:-4] & four[4:]
    sixteen = eight[:-8] & eight[8:]
    return bool(sixteen.any() if k == 16 else (sixteen[:-1] & mask[16:]).any())


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
