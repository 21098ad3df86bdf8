"""DuckDB's view of a filter, from one small connection shared by the process: the parse
tree of `SELECT (expr)`, the function catalog, and names that bind to session values.
Use under LOCK: the connection and the caches are shared."""

from __future__ import annotations

import json
import threading
from typing import Any

from tasks.engine import db as _duckdb
from tasks.transform._guard_rules import BARE_SELECT, REFUSED, TOO_DEEP, USE, not_sql

LOCK = threading.RLock()
_state: dict[str, Any] = {}


def parse(expr: str) -> dict[str, Any] | str:
    """The one select-list expression of `SELECT (expr)`, or why there is not exactly one."""
    try:
        text = _duckdb.scalar(
            connection(), "SELECT json_serialize_sql('SELECT (' || ? || ')')", [expr]
        )
        tree = json.loads(text)
    except _duckdb.Error as e:
        return not_sql(e)
    except RecursionError:
        return TOO_DEEP
    if tree.get("error"):
        msg = str(tree.get("error_message", "syntax error"))
        if "expression depth" in msg:
            return TOO_DEEP
        return not_sql(msg)
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


def catalog() -> dict[str, list[dict[str, Any]]]:
    """duckdb_functions() by lower-cased name, read once per process."""
    if "catalog" not in _state:
        rows = _duckdb.arrow(
            connection(),
            "SELECT function_name, function_type, stability, macro_definition, parameters "
            "FROM duckdb_functions()",
        ).to_pylist()
        found: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            found.setdefault(row["function_name"].lower(), []).append(row)
        _state["catalog"] = found
    catalog_: dict[str, list[dict[str, Any]]] = _state["catalog"]
    return catalog_


def reads_session(name: str) -> bool:
    """True if `SELECT "name"` binds with no table: DuckDB's fallbacks such as current_date and user."""
    cache: dict[str, bool] = _state.setdefault("session_names", {})
    key = name.lower()
    if key not in cache:
        try:
            _duckdb.arrow(connection(), f"SELECT {_duckdb.ident(name)}")
            cache[key] = True
        except _duckdb.Error:
            cache[key] = False
    return cache[key]


def connection() -> _duckdb.Connection:
    """The catalog's one connection (used under LOCK; also to bind a filter on a typed row)."""
    if "con" not in _state:
        _state["con"] = _duckdb.connect(memory_bytes=64 * 2**20, threads=1)
    con: _duckdb.Connection = _state["con"]
    return con
