"""A webhook POST's body as the buffer keeps it: its records, one JSON object a line.

A body is one JSON object, a JSON array of objects, or NDJSON (one object a line). It is
parsed whole before anything is stored, so a body is taken entirely or refused with the
line that is wrong; records are written again compactly, one per line, so that a pretty
printed object is still one line of the buffer's ndjson.
"""

from __future__ import annotations

import json
from typing import Any

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


def records_of(body: bytes, kind: str) -> list[dict[str, Any]]:
    """The records of a body of `kind` ('json' or 'ndjson'); BodyError naming the line."""
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise BodyError(f"the body is not UTF-8 (byte {e.start}); send JSON in UTF-8") from None
    if kind == "json":
        try:
            value = json.loads(text, parse_constant=_no_constant)
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
            value = json.loads(line, parse_constant=_no_constant)
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
    return value


def as_ndjson(records: list[dict[str, Any]]) -> bytes:
    """One compact JSON object a line, each line ended."""
    lines = (json.dumps(r, ensure_ascii=False, separators=(",", ":")) for r in records)
    return "".join(f"{line}\n" for line in lines).encode("utf-8")


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list):
        return "an array"
    return "a string" if isinstance(value, str) else "null"
