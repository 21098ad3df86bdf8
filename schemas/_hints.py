"""How a value is shown in a spec message, and the hints for values of a known wrong form."""

from __future__ import annotations

import re
from typing import Any

from schemas._problems import Loc


def show(value: Any) -> str:
    """The value as written, cut to fit one message."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def byte_size(n: int) -> str:
    """A byte count in the largest unit that divides it: 64MiB, 1GiB, 100 bytes."""
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size and n % size == 0:
            return f"{n // size}{unit}"
    return f"{n} bytes"


def unsubstitute(msg: str, value: Any, raw: Any) -> str:
    """A validator's own message may quote the substituted value; put the reference back."""
    if isinstance(value, str) and isinstance(raw, str) and value != raw and value:
        return msg.replace(value, raw)
    return msg


def value_hint(given: Any) -> str | None:
    """The fix for a value a validator refused, when its form says what went wrong."""
    if isinstance(given, str) and re.fullmatch(r"\s*decimal\(\s*\d+\s*", given):
        return (
            f"{given!r} is a decimal type cut at its comma; "
            f'inside {{...}} quote it: type: "decimal(P,S)"'
        )
    return None


def pattern_hint(loc: Loc, given: Any) -> str:
    """What a value that does not match its key's pattern should look like."""
    last = loc[-1] if loc else ""
    if last == "name":
        return f"{given!r} is not a valid pump name: use [a-z][a-z0-9_]*, e.g. orders_daily"
    if last == "url":
        return f"{given!r} is not an http(s) URL: it must start with http:// or https://"
    if last == "schema":
        return (
            f"{given!r} is not a schema reference: use 'module:Class' "
            f"(a pandera model in schemas/module.py) or an inline mapping"
        )
    return f"{given!r} does not have the expected form"
