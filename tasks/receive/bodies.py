"""A webhook POST's body as the buffer keeps it: its records, one JSON object a line.

A body is one JSON object, a JSON array of objects, or NDJSON (one object a line). It is
parsed whole before anything is stored, so a body is taken entirely or refused with the
line that is wrong; records are written again compactly, one per line, so that a pretty
printed object is still one line of the buffer's ndjson. Numbers are kept as written
(a decimal is never passed through a double), a key that repeats in one record is refused
rather than silently resolved, and so is a field named like one of pumphouse's own columns:
the run would refuse its file, and with it every body after it.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from tasks import internal
from tasks.engine.json_numbers import dumps

MEDIA_TYPES = {
    "application/json": "json",
    "application/x-ndjson": "ndjson",
    "application/ndjson": "ndjson",
}


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
            return [_an_object(item, f"item {i}") for i, item in enumerate(items, 1)]
    return _ndjson(text)


def _ndjson(text: str) -> list[dict[str, Any]]:
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
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
    return value


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
