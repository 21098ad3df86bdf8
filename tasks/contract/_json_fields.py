"""Reading JSON records' fields in SQL: which rows hold an object, the batch's top-level keys
and their types, and the one parse that extracts every field's text (and JSON)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from tasks.engine import json_numbers
from tasks.engine.db import Connection, quote, rows, scalar, texts

if TYPE_CHECKING:
    import ibis.expr.datatypes as dt

# Looks like a JSON object (valid if try(json_...) then parses it). The regex, for leading
# whitespace, runs only on rows not starting with '{': ltrim(_raw, chars) costs twice as much.
OBJECT = (
    r"_parse_error IS NULL AND (starts_with(_raw, '{') OR regexp_matches(_raw, '^[ \t\n\r]+\{'))"
)
# A number a double may not keep exactly (16+ digits, a 3-digit exponent) is in the record's
# text: only then are the numeric fields' values looked at one by one.
_LONG_NUMBER = f"regexp_matches(_raw, {quote(json_numbers.LONG)})"
_DECIMAL = r"regexp_full_match({t}, '-?[0-9]+(\.[0-9]+)?')"
_NUMBER_START = ", ".join(quote(c) for c in "-0123456789")


def extract(paths: list[str], need_json: bool, long: bool = True) -> str:
    """Select-list items: `__ph_s`, each key's value as text (or, with no keys, the record's
    keys), and with `need_json` `__ph_j`, each value's JSON; NULL for a row that is no object.
    `long`: a record may hold a number a double does not keep."""
    keys = texts(_pointer(p) for p in paths)
    # try(): invalid JSON is NULL, not a failed batch; one parse reads every field.
    parse = _strings(keys, long) if paths else "try(json_keys(_raw))"
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


def json_fields(
    con: Connection, source: str, has_schema: bool, *, long: bool = True
) -> dict[str, str]:
    """The batch's top-level JSON keys, sorted, each with a DuckDB type to read it as ("" =
    text); types are inferred only without a schema. `long`: a record may hold a number a
    double does not keep."""
    if has_schema:
        return keys_by(con, source, "0").get(0, {})
    objects = f"FROM {source} WHERE {OBJECT}"
    # A batch has few distinct shapes, so merging json_structure's answers here is cheap.
    shapes = rows(con, f"SELECT DISTINCT CAST(try(json_structure(_raw)) AS VARCHAR) {objects}")
    kinds: dict[str, set[str]] = {}
    for (structure,) in shapes:
        shape = json.loads(structure) if structure else {}
        for k, v in shape.items() if isinstance(shape, dict) else ():
            kinds.setdefault(k, set()).add(v if isinstance(v, str) else "NESTED")
    types = {k: _inferred(kinds[k]) for k in sorted(kinds)}
    numeric = [k for k, t in types.items() if t in ("BIGINT", "DOUBLE")]
    if numeric and long and scalar(con, f"SELECT count(*) {objects} AND {_LONG_NUMBER}"):
        types.update(_exact(con, source, {k: types[k] for k in numeric}))
    return types


def keys_by(con: Connection, source: str, by: str) -> dict[int, dict[str, str]]:
    """json_fields with a schema, for several batches in one scan: each value of the integer
    column (or constant) `by` with its JSON records' keys, sorted ("" = text); a batch
    without a JSON object has no entry."""
    found: dict[int, set[str]] = {}
    sql = f"SELECT DISTINCT {by}, unnest(try(json_keys(_raw))) FROM {source} WHERE {OBJECT}"
    for b, k in rows(con, sql):
        found.setdefault(int(b), set()).add(k)
    return {b: dict.fromkeys(sorted(keys), "") for b, keys in found.items()}


def first_with(con: Connection, source: str, key: str) -> int:
    """The `_row` of the first JSON record in `source` that has the top-level key."""
    has = f"json_exists(_raw, {quote(_pointer(key))})"
    return int(scalar(con, f"SELECT min(_row) FROM {source} WHERE {OBJECT} AND try({has})"))


def _exact(con: Connection, source: str, numeric: dict[str, str]) -> dict[str, str]:
    """The numeric fields whose values the inferred type would change (an integer beyond
    BIGINT, or a double that is not the number written) retyped: DECIMAL(38, s) when every
    value is a plain decimal that fits, else text, which keeps the value as written."""
    names = list(numeric)
    keys = texts(_pointer(k) for k in names)
    values = f"SELECT {_strings(keys)} AS __ph_s FROM {source} WHERE {OBJECT}"
    changed = ", ".join(
        f"bool_or({_changed(f'__ph_s[{i}]', numeric[k])})" for i, k in enumerate(names, 1)
    )
    flags = rows(con, f"SELECT {changed} FROM ({values} AND {_LONG_NUMBER})")[0]
    out = {}
    for i, (k, bad) in enumerate(zip(names, flags, strict=True), 1):
        if not bad:
            continue
        t = f"__ph_s[{i}]"
        plain, whole, scale = rows(
            con,
            f"SELECT bool_and({t} IS NULL OR {_DECIMAL.format(t=t)}), "
            f"max(strlen(split_part(ltrim({t}, '-'), '.', 1))), "
            f"max(strlen(split_part({t}, '.', 2))) FROM ({values})",
        )[0]
        fits = plain and (whole or 0) + (scale or 0) <= 38
        out[k] = f"DECIMAL(38, {scale or 0})" if fits else ""
    return out


def _strings(keys: str, long: bool = True) -> str:
    """The `keys`' values as text; DuckDB reads a decimal into a double, so in a record that
    may hold a long one, each number's text is taken as written (tasks.engine.json_numbers)."""
    s = f"try(json_extract_string(_raw, {keys}))"
    if not long:
        return s
    return f"CASE WHEN {_LONG_NUMBER} THEN {json_numbers.SQL_NAME}(_raw, {keys}, {s}) ELSE {s} END"


def _changed(text: str, inferred: str) -> str:
    """TRUE where a JSON number's text is not what the inferred type would hold."""
    if inferred == "BIGINT":
        return f"({text} IS NOT NULL AND TRY_CAST({text} AS BIGINT) IS NULL)"
    d = f"TRY_CAST({text} AS DOUBLE)"
    # The significant digits of the text and of the double's shortest form must agree.
    return f"({text} IS NOT NULL AND (isinf({d}) OR {_digits(text)} <> {_digits(f'CAST({d} AS VARCHAR)')}))"


def _digits(number: str) -> str:
    return f"trim(replace(regexp_replace({number}, '^-|[eE].*$', '', 'g'), '.', ''), '0')"


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
