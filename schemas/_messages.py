"""Pydantic's validation errors on a spec as messages that say what is wrong and what is valid."""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from typing import Any

from pydantic import ByteSize

from schemas._hints import byte_size, pattern_hint, show, unsubstitute, value_hint
from schemas._keypaths import annotation_at, tags, valid_keys, value_at, yaml_loc
from schemas._problems import Loc, Problem

_EXPECTED = {
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "string_type": "a string",
    "list_type": "a list such as [a, b]",
    "tuple_type": "a list such as [a, b]",
    "set_type": "a list such as [a, b]",
    "dict_type": "a mapping of keys",
    "model_type": "a mapping of keys",
    "model_attributes_type": "a mapping of keys",
}
_BOUNDS = {
    "greater_than_equal": ("ge", "at least"),
    "greater_than": ("gt", "more than"),
    "less_than_equal": ("le", "at most"),
    "less_than": ("lt", "less than"),
}


def describe_all(errors: Sequence[Any], data: Any, raw: Any) -> list[Problem]:
    """Pydantic errors as (YAML key path, message); a union's errors on one key become one."""
    by_loc: dict[Loc, list[Any]] = {}
    for err in errors:
        loc = yaml_loc(tuple(err["loc"]), data, err["type"])
        if err["type"] in ("union_tag_not_found", "union_tag_invalid"):
            loc = (*loc, "type")
        by_loc.setdefault(loc, []).append(err)
    out = []
    for loc, errs in by_loc.items():
        written = value_at(raw, loc)
        if isinstance(written, str) and "${" in written:
            # Show the reference as written, never the value substituted for it.
            errs = [{**err, "input": written} for err in errs]
        msg = _describe(loc, errs[0], data) if len(errs) == 1 else _describe_union(errs)
        msg = unsubstitute(msg, value_at(data, loc), written)
        if errs[0]["type"] == "value_error":
            loc = _narrow(loc, errs[0].get("input"), msg)
        out.append((loc, msg))
    return out


def _narrow(loc: Loc, given: Any, msg: str) -> Loc:
    """A validator's message about a mapping that quotes one of its entries belongs to that entry."""
    if not isinstance(given, dict):
        return loc
    hits = [
        k for k, v in given.items() if repr(k) in msg or (isinstance(v, str) and repr(v) in msg)
    ]
    return (*loc, hits[0]) if len(hits) == 1 else loc


def _describe(loc: Loc, err: Any, data: Any) -> str:
    """One pydantic error as a message that says what is wrong and what is valid."""
    kind, msg, given = err["type"], err["msg"], err.get("input")
    ctx = err.get("ctx") or {}
    if kind == "missing":
        return f"missing required key {loc[-1]!r}" if loc else "missing required key"
    if kind == "extra_forbidden":
        valid = valid_keys(loc[:-1], data)
        close = difflib.get_close_matches(str(loc[-1]), valid, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        hint += f"; valid keys here: {', '.join(valid)}" if valid else ""
        return f"unknown key {loc[-1]!r}{hint}"
    if kind in ("literal_error", "bool_parsing", "bool_type") and _choices(err):
        return f"unknown value {show(given)}; valid: {', '.join(_choices(err))}"
    if kind == "union_tag_invalid":
        tag = value_at(data, loc)
        return f"unknown type {show(tag)}; valid: {', '.join(tags(loc[:-1], data))}"
    if kind == "union_tag_not_found":
        return f"missing required key 'type'; valid: {', '.join(tags(loc[:-1], data))}"
    if kind == "string_pattern_mismatch":
        return pattern_hint(loc, given)
    if kind == "value_error":
        return value_hint(given) or msg.removeprefix("Value error, ")
    if kind in ("byte_size", "byte_size_unit"):
        return f"{show(given)} is not a byte size; write a number and a unit such as 512KiB, 64MiB or 1GiB"
    if kind in _BOUNDS:
        key, words = _BOUNDS[kind]
        bound = ctx.get(key)
        if annotation_at(loc, data) is ByteSize and isinstance(bound, int):
            bound = byte_size(bound)
        elif isinstance(bound, float) and bound.is_integer():
            bound = int(bound)
        return f"must be {words} {bound} (got {show(given)})"
    if kind in ("string_too_short", "too_short") and ctx.get("min_length") == 1:
        return f"must not be empty (got {show(given)})"
    if kind in _EXPECTED:
        return f"expected {_EXPECTED[kind]} (got {show(given)})"
    return f"{msg[0].lower()}{msg[1:]} (got {show(given)})"


def _describe_union(errs: list[Any]) -> str:
    """Several errors on one key: each member of a union rejected the value."""
    given = errs[0].get("input")
    choices = [c for err in errs for c in _choices(err)]
    if all(_choices(err) for err in errs):
        return f"unknown value {show(given)}; valid: {', '.join(dict.fromkeys(choices))}"
    expected = [_EXPECTED.get(err["type"]) for err in errs]
    if all(expected):
        return (
            f"expected {' or '.join(dict.fromkeys(e for e in expected if e))} (got {show(given)})"
        )
    return "; ".join(dict.fromkeys(e["msg"] for e in errs)) + f" (got {show(given)})"


def _choices(err: Any) -> list[str]:
    if err["type"] in ("bool_parsing", "bool_type"):
        return ["true", "false"]
    if err["type"] == "literal_error":
        return re.findall(r"'([^']*)'", (err.get("ctx") or {}).get("expected", ""))
    return []
