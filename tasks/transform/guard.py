"""The `transform.filter` guard: a filter may use only the row's columns, literals, operators
and scalar, deterministic functions, judged on DuckDB's own parse of it."""

from __future__ import annotations

import re
from collections.abc import Sequence

from schemas.loader import Problem
from schemas.spec import SchemaSpec, Spec, output_columns
from tasks.engine import db as _duckdb
from tasks.transform._guard_catalog import LOCK as _lock
from tasks.transform._guard_catalog import connection as _connection
from tasks.transform._guard_catalog import parse as _parse
from tasks.transform._guard_rules import not_sql
from tasks.transform._guard_tree import walk

MAX_CHARS = 4096
KEY = "transform.filter"


def filter_error(expr: str, columns: Sequence[str] | None) -> str | None:
    """None when `expr` is an allowed filter, else one message that starts with `transform.filter: `.

    `columns` are the row's column names, or None when they are not known: then any
    name passes as a column, except names DuckDB would read as the clock or a setting.
    """
    problem = _problem(expr, columns)
    return None if problem is None else f"{KEY}: {problem}"


def filter_problems(spec: Spec) -> list[Problem]:
    """A loader check: the filter's problem under its key path (the loader adds the key)."""
    expr = spec.transform.filter
    if expr is None:
        return []
    problem = _problem(expr, output_columns(spec)) or _type_problem(expr, spec)
    return [] if problem is None else [(("transform", "filter"), problem)]


# The DuckDB type each spec type is checked and filtered as; a value of it for the probe.
_TYPED = {
    "int32": ("INTEGER", "1"),
    "int64": ("BIGINT", "1"),
    "float64": ("DOUBLE", "1.5"),
    "bool": ("BOOLEAN", "TRUE"),
    "string": ("VARCHAR", "'x'"),
    "date": ("DATE", "DATE '2000-01-01'"),
    "timestamp": ("TIMESTAMP", "TIMESTAMP '2000-01-01 00:00:00'"),
}
TYPES_FIX = (
    "write each value as its column's declared type (a number for a number column, quoted "
    "text for a string), or CAST the column"
)


def _type_problem(expr: str, spec: Spec) -> str | None:
    """Why the filter cannot be evaluated on the declared column types (after select and
    rename), or None; unknown without an inline schema. Bound on an empty row, then run on
    one row of typical values, for a literal that does not convert to its column's type
    (`dep_delay > '15 minutes'` binds, and fails on the first row)."""
    schema, t = spec.schema_, spec.transform
    if not isinstance(schema, SchemaSpec):
        return None
    names = [n for n in (t.select or schema.columns) if n in schema.columns]
    typed = [(t.rename.get(n, n), *_typed(schema.columns[n].type)) for n in names]
    if not typed:
        return None
    nulls = ", ".join(f"NULL::{sql} AS {_duckdb.ident(n)}" for n, sql, _ in typed)
    values = ", ".join(f"{v}::{sql} AS {_duckdb.ident(n)}" for n, sql, v in typed)
    with _lock:
        try:
            _duckdb.rows(_connection(), f"SELECT ({expr}) FROM (SELECT {nulls}) LIMIT 0")
        except _duckdb.Error as e:
            first = _first_line(e)
            if "Referenced column" in first and output_columns(spec) is None:
                return None  # an undeclared column that strict: false lets through
            return f"cannot be evaluated on the declared column types: {first}; {TYPES_FIX}"
        try:
            _duckdb.rows(_connection(), f"SELECT ({expr}) FROM (SELECT {values})")
        except _duckdb.ConversionError as e:
            first = _first_line(e)
            if "source column" not in first and any(
                f"{q}{text}{q}" in first for text in _texts(expr) for q in "'\""
            ):
                return f"cannot be evaluated on the declared column types: {first}; {TYPES_FIX}"
        except _duckdb.Error:
            pass  # fails on the probe's values only: the run tells it with the row
    return None


def _typed(kind: str) -> tuple[str, str]:
    if kind.startswith("decimal"):
        return kind.upper(), "1"
    return _TYPED[kind]


def _texts(expr: str) -> list[str]:
    """The filter's text literals, as DuckDB quotes them in an error."""
    found = _duckdb.tokens(expr)
    ends = [start for start, _ in found[1:]] + [len(expr)]
    return [
        expr[start:end].strip()[1:-1].replace("''", "'")
        for (start, kind), end in zip(found, ends, strict=True)
        if kind == "string_const" and expr[start:end].strip().endswith("'")
    ]


def _first_line(e: BaseException) -> str:
    """DuckDB's first line, without its "Binder Error: " kind."""
    return re.sub(r"^\w+ Error: ", "", str(e).strip().splitlines()[0])


def _problem(expr: str, columns: Sequence[str] | None) -> str | None:
    if not expr.strip():
        return "the expression is empty; write a boolean expression over the row's columns, e.g. status <> 'void'"
    if len(expr) > MAX_CHARS:
        return f"the expression is {len(expr)} characters long, over the limit of {MAX_CHARS}; simplify it"
    problem = _token_problem(expr)
    if problem:
        return problem
    with _lock:
        ast = _parse(expr)
        if isinstance(ast, str):
            return ast
        known = None if columns is None else {c.lower(): c for c in columns}
        return walk(ast, known)


def _token_problem(expr: str) -> str | None:
    """Comments, `;` and unbalanced parentheses, found with DuckDB's own lexer.

    Lexing (no connection needed) keeps literals apart: `note = 'a--b'` is fine. Balanced
    parentheses keep the expression one group wherever the transform embeds it.
    """
    try:
        tokens = _duckdb.tokens(expr)
    except _duckdb.Error as e:
        return not_sql(e)
    if any(kind == "comment" for _, kind in tokens):
        return "comments (-- or /* */) are not allowed; remove them"
    # Operators are the only tokens outside literals and names that can hold ( ) and ;.
    ends = [start for start, _ in tokens[1:]] + [len(expr)]
    ops = "".join(
        expr[start:end]
        for (start, kind), end in zip(tokens, ends, strict=True)
        if kind == "operator"
    )
    if ";" in ops:
        return "';' is not allowed: the filter is one expression, not SQL statements"
    depth = 0
    for ch in ops:
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if depth < 0:
            break
    if depth != 0:
        return "the parentheses do not balance; the filter must be one self-contained expression"
    return None
