"""The `transform.filter` guard: a filter may use only the row's columns, literals, operators
and scalar, deterministic functions, judged on DuckDB's own parse of it."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from typing import Any

import duckdb
import pyarrow as pa

from schemas.spec import Spec, output_columns
from tasks import _duckdb

MAX_CHARS = 4096
KEY = "transform.filter"
USE = "use only the row's columns, literals, operators and scalar functions"
ONLY = "only scalar, deterministic functions"

# Refused even where the catalog calls them deterministic: their result depends on the
# process, the session's settings or the catalog, so replaying a run could differ; the
# json_*_sql functions parse or plan SQL given as a string, a way around this guard.
ENVIRONMENT = frozenset(
    {
        "getenv", "current_setting", "getvariable", "version", "current_database",
        "current_catalog", "current_schema", "current_schemas", "current_user", "current_role",
        "session_user", "user", "current_query", "current_query_id", "current_connection_id",
        "current_transaction_id", "in_search_path", "txid_current", "stats", "vector_type",
        "json_serialize_plan", "json_serialize_sql", "json_deserialize_sql", "index_key",
    }
)  # fmt: skip
# Refused by their catalog stability already; named so that a DuckDB upgrade which
# relabels one cannot let the clock or chance into a replayable run.
CLOCK_AND_CHANCE = frozenset(
    {
        "random", "setseed", "uuid", "uuidv4", "uuidv7", "gen_random_uuid", "nextval",
        "currval", "setval", "now", "today", "current_date", "current_time",
        "current_timestamp", "localtime", "localtimestamp", "current_localtime",
        "current_localtimestamp", "get_current_time", "get_current_timestamp",
        "transaction_timestamp", "ago", "sleep_ms", "pg_sleep", "write_log",
    }
)  # fmt: skip
# Files, tables, the catalog and DuckDB's internal helpers.
DENIED_PREFIXES = ("read_", "glob", "query", "sniff_", "parquet_", "duckdb_", "pg_", "__")
# Expression classes that hold nothing but their children.
PLAIN = frozenset(
    {"CONSTANT", "COMPARISON", "CONJUNCTION", "OPERATOR", "CASE", "CAST", "BETWEEN", "COLLATE", "TYPE"}
)  # fmt: skip
REFUSED = {
    "SUBQUERY": f"subqueries are not allowed; {USE}",
    "WINDOW": "window functions are not allowed: the filter sees one row at a time",
    "STAR": "* and COLUMNS(...) are not allowed; name the columns you mean",
    "PARAMETER": "parameters ($1, $name, ?) are not allowed; write the value as a literal",
    "POSITIONAL_REFERENCE": "#N column positions are not allowed; name the column",
}
# The parse of `SELECT (expr)` and nothing else: any other clause means the text escaped
# its parentheses. Values are what each key must hold; a key DuckDB adds later is refused
# until someone looks at it.
BARE_SELECT: dict[str, Any] = {
    "type": "SELECT_NODE",
    "modifiers": [],
    "cte_map": {"map": []},
    "where_clause": None,
    "group_expressions": [],
    "group_sets": [],
    "aggregate_handling": "STANDARD_HANDLING",
    "having": None,
    "sample": None,
    "qualify": None,
}

_lock = threading.RLock()
_state: dict[str, Any] = {}


def filter_error(expr: str, columns: Sequence[str] | None) -> str | None:
    """None when `expr` is an allowed filter, else one message that starts with `transform.filter: `.

    `columns` are the row's column names, or None when they are not known: then any
    name passes as a column, except names DuckDB would read as the clock or a setting.
    """
    problem = _problem(expr, columns)
    return None if problem is None else f"{KEY}: {problem}"


def filter_problems(spec: Spec) -> list[tuple[tuple[str | int, ...], str]]:
    """A loader check: the filter's problem under its key path (the loader adds the key)."""
    expr = spec.transform.filter
    if expr is None:
        return []
    problem = _problem(expr, output_columns(spec))
    return [] if problem is None else [(("transform", "filter"), problem)]


# ---------------------------------------------------------------- the expression


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
        return _walk(ast, known)


def _token_problem(expr: str) -> str | None:
    """Comments, `;` and unbalanced parentheses, found with DuckDB's own lexer.

    Lexing (no connection needed) keeps literals apart: `note = 'a--b'` is fine. Balanced
    parentheses keep the expression one group wherever the transform embeds it.
    """
    try:
        tokens = duckdb.tokenize(expr)
    except duckdb.Error as e:
        return f"not a valid SQL expression ({e}); write one boolean expression such as status <> 'void'"
    if any(kind == duckdb.token_type.comment for _, kind in tokens):
        return "comments (-- or /* */) are not allowed; remove them"
    # Operators are the only tokens outside literals and names that can hold ( ) and ;.
    ends = [start for start, _ in tokens[1:]] + [len(expr)]
    ops = "".join(
        expr[start:end]
        for (start, kind), end in zip(tokens, ends, strict=True)
        if kind == duckdb.token_type.operator
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


def _parse(expr: str) -> dict[str, Any] | str:
    """The one select-list expression of `SELECT (expr)`, or why there is not exactly one."""
    try:
        text = _first(
            _duckdb.arrow(_con(), "SELECT json_serialize_sql('SELECT (' || ? || ')')", [expr])
        )
        tree = json.loads(text)
    except duckdb.Error as e:
        return f"not a valid SQL expression ({e}); write one boolean expression such as status <> 'void'"
    except RecursionError:
        return "the expression is nested too deeply; simplify it"
    if tree.get("error"):
        msg = str(tree.get("error_message", "syntax error"))
        if "expression depth" in msg:
            return "the expression is nested too deeply; simplify it"
        return f"not a valid SQL expression ({msg}); write one boolean expression such as status <> 'void'"
    statements = tree.get("statements") or []
    if any(st.get("named_param_map") for st in statements):
        return REFUSED["PARAMETER"]
    node = statements[0].get("node", {}) if len(statements) == 1 else {}
    bare = (
        node.keys() == {*BARE_SELECT, "from_table", "select_list"}
        and all(node[k] == v for k, v in BARE_SELECT.items())
        and node.get("from_table", {}).get("type") == "EMPTY"
        and len(node.get("select_list") or []) == 1
    )
    if not bare:
        return f"must be one expression over the row, not a query (FROM, WHERE, UNION, ...); {USE}"
    item: dict[str, Any] = node["select_list"][0]
    return item


def _walk(root: dict[str, Any], known: dict[str, str] | None) -> str | None:
    """The first refused part of an expression tree, left to right; None if all is allowed.

    Iterative, so a deeply nested expression cannot exhaust Python's stack. `known` maps
    lower-cased column names to their spelling (DuckDB matches names case-insensitively).
    """
    stack: list[tuple[Any, frozenset[str]]] = [(root, frozenset())]
    while stack:
        node, scope = stack.pop()
        if isinstance(node, list):
            stack += [(child, scope) for child in reversed(node)]
            continue
        if not isinstance(node, dict):
            continue
        cls = node.get("class")
        if cls is None:
            # Argument wrappers, CASE branches, literals; a query node here is a subquery.
            if {"node", "select_list", "from_table", "statements"} & node.keys():
                return REFUSED["SUBQUERY"]
        elif cls in REFUSED:
            return REFUSED[cls]
        elif cls == "COLUMN_REF":
            problem = _column_problem(node["column_names"], known, scope)
            if problem:
                return problem
            continue
        elif cls == "FUNCTION":
            problem = _call_problem(node)
            if problem:
                return problem
        elif cls == "LAMBDA":
            names = _lambda_params(node.get("lhs"))
            if names is None:
                return "the left of '->' must be a name: a column for JSON (payload -> '$.a') or a lambda parameter (write lambda x: ...)"
            for name in names:
                if _reads_session(name):
                    return f"{name} cannot name a lambda parameter: DuckDB reads it as the clock or a session value"
            stack.append((node.get("expr"), scope | {n.lower() for n in names}))
            continue
        elif node.get("type") == "GROUPING_FUNCTION":
            return "GROUPING() is not allowed: it belongs to aggregates, and the filter sees one row at a time"
        elif cls not in PLAIN:
            return f"{cls.lower()} expressions are not allowed; {USE}"
        stack += [(v, scope) for v in reversed(list(node.values())) if isinstance(v, dict | list)]
    return None


def _column_problem(
    names: list[str], known: dict[str, str] | None, scope: frozenset[str]
) -> str | None:
    if len(names) != 1:
        field = names[0] + "".join(f"['{n}']" for n in names[1:])
        return (
            f"qualified name {'.'.join(names)} is not allowed; name the row's column alone "
            f"(for a struct field write {field})"
        )
    name = names[0]
    if name.lower() in scope:
        return None
    if known is not None:
        if name.lower() in known:
            return None
        hint = " (the clock and session values are not allowed)" if _reads_session(name) else ""
        return f"unknown column {name!r}{hint}; columns here: {', '.join(known.values())}"
    if _reads_session(name):
        return (
            f"{name} is not allowed: unless the row has a column of that name DuckDB reads it as "
            f"the clock or a session value, and the columns are not known here; "
            f"declare them (transform.select or a strict inline schema) to use such a column"
        )
    return None


def _lambda_params(lhs: Any) -> list[str] | None:
    """The parameter names of `x -> ...` or `(x, y) -> ...`; None if the left side is not names."""
    if not isinstance(lhs, dict):
        return None
    if lhs.get("class") == "COLUMN_REF" and len(lhs["column_names"]) == 1:
        return [lhs["column_names"][0]]
    if lhs.get("class") == "FUNCTION" and lhs.get("function_name") == "row":
        names = [_lambda_params(arg.get("expression")) for arg in lhs.get("arguments", [])]
        if all(n is not None and len(n) == 1 for n in names):
            return [n[0] for n in names if n]
    return None


def _call_problem(node: dict[str, Any]) -> str | None:
    name = str(node.get("function_name", ""))
    if node.get("schema") or node.get("catalog"):
        dotted = ".".join(p for p in (node.get("catalog"), node.get("schema"), name) if p)
        return f"function {dotted} is not allowed; call functions by their name alone"
    modifiers = (
        node.get("distinct")
        or node.get("filter")
        or node.get("export_state")
        or (node.get("order_bys") or {}).get("orders")
    )
    problem = _function_problem(name)
    if problem is None and modifiers:
        return "DISTINCT, FILTER and ORDER BY inside a call are for aggregates, which are not allowed: the filter sees one row at a time"
    return problem


# ---------------------------------------------------------------- the catalog


def _con() -> _duckdb.Connection:
    if "con" not in _state:
        _state["con"] = _duckdb.connect(memory_bytes=64 * 2**20, threads=1)
    con: _duckdb.Connection = _state["con"]
    return con


def _first(table: pa.Table) -> Any:
    # Arrow, not _duckdb.scalar: a half-fetched execute() result blocks the next query
    # on the shared connection (DuckDB 2).
    return table.column(0)[0].as_py()


def _catalog() -> dict[str, list[dict[str, Any]]]:
    """duckdb_functions() by lower-cased name, read once per process."""
    if "catalog" not in _state:
        rows = _duckdb.arrow(
            _con(),
            "SELECT function_name, function_type, stability, macro_definition, parameters "
            "FROM duckdb_functions()",
        ).to_pylist()
        catalog: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            catalog.setdefault(row["function_name"].lower(), []).append(row)
        _state["catalog"] = catalog
    catalog_: dict[str, list[dict[str, Any]]] = _state["catalog"]
    return catalog_


def _function_problem(name: str) -> str | None:
    """Why a function may not be called in a filter, or None; memoised per process."""
    verdicts: dict[str, str | None] = _state.setdefault("functions", {})
    key = name.lower()
    if key not in verdicts:
        verdicts[key] = "it is a macro that calls itself"  # in progress: a cycle is refused
        verdicts[key] = _judge_function(name, key)
    return verdicts[key]


def _judge_function(name: str, key: str) -> str | None:
    shown = "count(*)" if key == "count_star" else name
    why = None
    if key in ENVIRONMENT:
        why = "it reads the environment, settings or catalog"
    elif key in CLOCK_AND_CHANCE:
        why = "its result changes from run to run"
    elif key.startswith(DENIED_PREFIXES):
        why = "it reads files, tables or DuckDB's internals"
    if why:
        return f"function {shown} is not allowed ({why}): {ONLY}"
    entries = _catalog().get(key)
    if not entries:
        return f"unknown function {shown}; use DuckDB's built-in scalar, deterministic functions"
    kinds = {e["function_type"] for e in entries}
    scalars = [e for e in entries if e["function_type"] == "scalar"]
    macros = [e for e in entries if e["function_type"] == "macro"]
    if kinds & {"aggregate", "window"}:
        why = "an aggregate; the filter sees one row at a time"
    elif not scalars and not macros:
        why = "a table function"
    elif scalars and not any(e["stability"] == "CONSISTENT" for e in scalars):
        # Some overloads of +, year(), strftime() depend on the time zone, which the
        # engine pins to UTC, so one consistent overload is enough.
        why = "its result changes from run to run"
    elif any(_macro_problem(e) for e in macros):
        why = "it expands to SQL that is not allowed here"
    return None if why is None else f"function {shown} is not allowed ({why}): {ONLY}"


def _macro_problem(entry: dict[str, Any]) -> str | None:
    """A scalar macro is allowed when its body passes the same checks, over its parameters."""
    body = _parse(entry.get("macro_definition") or "")
    if isinstance(body, str):
        return body
    params = [str(p) for p in entry.get("parameters") or []]
    return _walk(body, {p.lower(): p for p in params})


def _reads_session(name: str) -> bool:
    """True if `SELECT "name"` binds with no table: DuckDB's fallbacks such as current_date and user."""
    cache: dict[str, bool] = _state.setdefault("session_names", {})
    key = name.lower()
    if key not in cache:
        try:
            _duckdb.arrow(_con(), f"SELECT {_duckdb.ident(name)}")
            cache[key] = True
        except duckdb.Error:
            cache[key] = False
    return cache[key]
