"""A webhook POST's body as the buffer keeps it: its records, one JSON object a line.

A body is one JSON object, a JSON array of objects, or NDJSON (one object a line). It is
parsed whole before anything is stored, so a body is taken entirely or refused with the
line that is wrong; records are written again compactly, one per line, so that a pretty
printed object is still one line of the buffer's ndjson. Numbers are kept as written
(a decimal is never passed through a double). What the run could not land faithfully is
refused here, where the sender hears it, rather than by every later run of the pump: a key
that repeats in one record, two keys of a record equal ignoring case (the run's columns are
not case-sensitive), an empty key, a key holding a control character (U+0000-U+001F,
U+007F), a field named like one of pumphouse's own columns, text with a lone surrogate
escape (not UTF-8), and nesting deeper than MAX_DEPTH, which is checked before parsing, so
no body can exhaust the parser's stack.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

from tasks import field_names, internal
from tasks.engine.json_numbers import dumps

MEDIA_TYPES = {
    "application/json": "json",
    "application/x-ndjson": "ndjson",
    "application/ndjson": "ndjson",
}


# Levels of arrays and objects, from the body's top (a JSON array of records is one): far
# above any real record, far below the depth that exhausts Python's parser (about 1000).
MAX_DEPTH = 256
# A string (skipped; an unclosed one ends with its line) or a bracket.
_TOKEN = re.compile(r'"[^"\\\n]*(?:\\.[^"\\\n]*)*"?|[\[\]{}]')
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


class BodyError(ValueError):
    """The body cannot be taken (answer 400); the message says where and why."""


def media_kind(content_type: str | None) -> str | None:
    """'json' or 'ndjson' for a Content-Type the receiver takes, else None (answer 415)."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return MEDIA_TYPES.get(media)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # NaN, Infinity: Python's json takes them


class _Repeated(ValueError):
    pass


def _once(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise _Repeated(f"key {key!r} appears twice in one record; send each key once")
        found[key] = value
    return found


def _loads(text: str) -> Any:
    return json.loads(
        text, parse_float=Decimal, parse_constant=_no_constant, object_pairs_hook=_once
    )


def records_of(body: bytes, kind: str) -> list[dict[str, Any]]:
    """The records of a body of `kind` ('json' or 'ndjson'); BodyError naming the line."""
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise BodyError(f"the body is not UTF-8 (byte {e.start}); send JSON in UTF-8") from None
    if kind == "json":
        if (at := _too_deep(text)) is not None:
            line = text.count("\n", 0, at) + 1
            raise BodyError(f"line {line}: {_nesting(at - text.rfind(chr(10), 0, at))}")
        try:
            value = _loads(text)
        except json.JSONDecodeError as e:
            if e.msg != "Extra data":  # else more than one value: NDJSON sent as JSON
                raise BodyError(
                    f"line {e.lineno}: malformed JSON: {e.msg} (column {e.colno})"
                ) from None
        except ValueError as e:
            raise BodyError(f"malformed JSON: {e}") from None
        else:
            items = value if isinstance(value, list) else [value]
            found = [_an_object(item, f"item {i}") for i, item in enumerate(items, 1)]
            return _utf8(found, text, "item")
    return _utf8(_ndjson(text), text, "line")


def _ndjson(text: str) -> list[dict[str, Any]]:
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        if (at := _too_deep(line)) is not None:
            raise BodyError(f"line {number}: {_nesting(at + 1)}")
        try:
            value = _loads(line)
        except json.JSONDecodeError as e:
            raise BodyError(f"line {number}: malformed JSON: {e.msg} (column {e.colno})") from None
        except ValueError as e:
            raise BodyError(f"line {number}: malformed JSON: {e}") from None
        found.append(_an_object(value, f"line {number}"))
    return found


def _an_object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BodyError(
            f"{where}: a record is a JSON object, got {_json_kind(value)}; "
            'send {"field": value, ...} per record'
        )
    if (name := internal.first_internal(value)) is not None:
        raise BodyError(f"{where}: {internal.problem(name)}")
    if "" in value:
        raise BodyError(
            f'{where}: a key is empty (""); the run names a column by its key, so give '
            "each field a name"
        )
    if field_names.CONTROL.search("".join(value)):
        key = next(k for k in value if field_names.control(k))
        raise BodyError(
            f"{where}: key {field_names.escaped(key)} holds a control character; rename it"
        )
    if (twins := field_names.case_twins(value)) is not None:
        raise BodyError(
            f"{where}: keys {twins[0]!r} and {twins[1]!r} differ only in case; the run's "
            "columns are not case-sensitive, so rename one of them"
        )
    return value


def _too_deep(text: str) -> int | None:
    """Where `text` first nests deeper than MAX_DEPTH (the bracket's index), or None. A loop
    over brackets and strings, not a recursion; a body with few brackets is not scanned."""
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return None
    depth = 0
    for token in _TOKEN.finditer(text):
        c = token.group()
        if c in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return token.start()
        elif c in "]}":
            depth -= 1
    return None


def _nesting(column: int) -> str:
    return (
        f"nesting deeper than {MAX_DEPTH} levels of arrays and objects (column {column}); "
        "flatten the record"
    )


def _utf8(records: list[dict[str, Any]], text: str, noun: str) -> list[dict[str, Any]]:
    """`records`, or BodyError for the first holding a lone surrogate (an escape like
    \\ud800 without its pair: text that UTF-8 cannot hold). Only looked for when the body
    has such an escape, so the common body is not written twice."""
    if _SURROGATE_ESCAPE.search(text) is None:
        return records
    for i, record in enumerate(records, 1):
        try:
            dumps(record).encode("utf-8")
        except UnicodeEncodeError as e:
            key = next(k for k, v in record.items() if not _encodes({k: v}))
            char = f"\\u{ord(e.object[e.start]):04x}"
            where = f"line {_line_of(text, i)}" if noun == "line" else f"item {i}"
            raise BodyError(
                f"{where}: key {key!r}: not valid UTF-8 text: a lone surrogate {char} (one "
                "half of a \\uXXXX pair without the other); send the pair, or the character "
                "itself in UTF-8"
            ) from None
    return records


def _encodes(value: Any) -> bool:
    try:
        dumps(value).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _line_of(text: str, record: int) -> int:
    """The line of the `record`-th non-blank line of NDJSON `text`."""
    lines = (n for n, line in enumerate(text.splitlines(), 1) if line.strip())
    return next(n for i, n in enumerate(lines, 1) if i == record)


def as_ndjson(records: list[dict[str, Any]]) -> bytes:
    """One compact JSON object a line, each line ended."""
    lines = (dumps(r) for r in records)
    return "".join(f"{line}\n" for line in lines).encode("utf-8")


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list):
        return "an array"
    return "a string" if isinstance(value, str) else "null"
