"""Reading JSON records' fields in SQL: which rows hold an object, the batch's top-level keys
and their types, and the one parse that extracts every field's text (and JSON)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from tasks._duckdb import Connection, quote, rows

if TYPE_CHECKING:
    import ibis.expr.datatypes as dt

# Looks like a JSON object (valid if try(json_...) then parses it). The regex, for leading
# whitespace, runs only on rows not starting with '{': ltrim(_raw, chars) costs twice as much.
OBJECT = (
    r"_parse_error IS NULL AND (starts_with(_raw, '{') OR regexp_matches(_raw, '^[ \t\n\r]+\{'))"
)
_NUMBER_START = ", ".join(quote(c) for c in "-0123456789")


def extract(paths: list[str], need_json: bool) -> str:
    """Select-list items: `__ph_s`, each key's value as text (or, with no keys, the record's
    keys), and with `need_json` `__ph_j`, each value's JSON; NULL for a row that is no object."""
    keys = "[" + ", ".join(quote(_pointer(p)) for p in paths) + "]"
    # try(): invalid JSON is NULL, not a failed batch; one parse reads every field.
    parse = f"try(json_extract_string(_raw, {keys}))" if paths else "try(json_keys(_raw))"
    sel = f"CASE WHEN {OBJECT} THEN {parse} END AS __ph_s"
    if need_json:
        sel += f", CASE WHEN {OBJECT} THEN try(json_extract(_raw, {keys})) END AS __ph_j"
    return sel


def json_kind_matches(json_text: str, dtype: dt.DataType) -> str:
    """coerce: false with JSON: the value's JSON type must already be the column's kind."""
    if dtype.is_boolean():
        return f"{json_text} IN ('true', 'false')"
    if dtype.is_numeric():
        return f"left({json_text}, 1) IN ({_NUMBER_START})"
    return f"starts_with({json_text}, '\"')"


def json_fields(con: Connection, source: str, has_schema: bool, strict: Any) -> dict[str, str]:
    """The batch's top-level JSON keys, sorted, each with a DuckDB type to read it as ("" =
    text); types are inferred only without a schema; no keys when extras are dropped."""
    if strict == "filter":
        return {}
    objects = f"FROM {source} WHERE {OBJECT}"
    if has_schema:
        keys = rows(con, f"SELECT DISTINCT unnest(try(json_keys(_raw))) {objects}")
        return dict.fromkeys(sorted(k for (k,) in keys), "")
    # A batch has few distinct shapes, so merging json_structure's answers here is cheap.
    shapes = rows(con, f"SELECT DISTINCT CAST(try(json_structure(_raw)) AS VARCHAR) {objects}")
    kinds: dict[str, set[str]] = {}
    for (structure,) in shapes:
        shape = json.loads(structure) if structure else {}
        for k, v in shape.items() if isinstance(shape, dict) else ():
            kinds.setdefault(k, set()).add(v if isinstance(v, str) else "NESTED")
    return {k: _inferred(kinds[k]) for k in sorted(kinds)}


def _pointer(key: str) -> str:
    """A JSON pointer (RFC 6901) to a top-level key: exact for any key, quotes included."""
    return "/" + key.replace("~", "~0").replace("/", "~1")


def _inferred(kinds: set[str]) -> str:
    """One DuckDB type for a key's JSON types across the batch; text when they disagree."""
    kinds = kinds - {"NULL"}
    if kinds and kinds <= {"UBIGINT", "BIGINT"}:
        return "BIGINT"
    if kinds and kinds <= {"UBIGINT", "BIGINT", "DOUBLE"}:
        return "DOUBLE"
    return "BOOLEAN" if kinds == {"BOOLEAN"} else ""
