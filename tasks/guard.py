"""The `transform.filter` guard: a filter may use only the row's columns, literals, operators
and scalar, deterministic functions, judged on DuckDB's own parse of it."""

from __future__ import annotations

from collections.abc import Sequence

from schemas.loader import Problem
from schemas.spec import Spec, output_columns
from tasks import _duckdb
from tasks._guard_catalog import LOCK as _lock
from tasks._guard_catalog import parse as _parse
from tasks._guard_rules import not_sql
from tasks._guard_tree import walk

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
    problem = _problem(expr, output_columns(spec))
    return [] if problem is None else [(("transform", "filter"), problem)]


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
