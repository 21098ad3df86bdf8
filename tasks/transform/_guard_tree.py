"""Judging a filter's parse tree: every node, column reference, lambda and function call,
left to right; a macro is judged by walking its body. Use under _guard_catalog.LOCK."""

from __future__ import annotations

from typing import Any

from tasks.transform._guard_catalog import parse, reads_session
from tasks.transform._guard_functions import calls_by_name, function_problem
from tasks.transform._guard_rules import PLAIN, REFUSED, USE, type_problem


def walk(root: dict[str, Any], known: dict[str, str] | None, macro: bool = False) -> str | None:
    """The first refused part of an expression tree, left to right; None if all is allowed.

    `macro`: the tree is the body of one of DuckDB's macros, which may call a function
    by name when the name is a literal (list_sum(l) is list_aggr(l, 'sum')).

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
            problem = None if macro and _names_a_literal(node) else _call_problem(node)
            if problem:
                return problem
        elif cls == "LAMBDA":
            names = _lambda_params(node.get("lhs"))
            if names is None:
                return "the left of '->' must be a name: a column for JSON (payload -> '$.a') or a lambda parameter (write lambda x: ...)"
            for name in names:
                if reads_session(name):
                    return f"{name} cannot name a lambda parameter: DuckDB reads it as the clock or a session value"
            stack.append((node.get("expr"), scope | {n.lower() for n in names}))
            continue
        elif cls == "TYPE":
            problem = type_problem(node)
            if problem:
                return problem
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
        hint = " (the clock and session values are not allowed)" if reads_session(name) else ""
        return f"unknown column {name!r}{hint}; columns here: {', '.join(known.values())}"
    if reads_session(name):
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
    problem = function_problem(name, _macro_problem)
    if problem is None and modifiers:
        return "DISTINCT, FILTER and ORDER BY inside a call are for aggregates, which are not allowed: the filter sees one row at a time"
    return problem


def _names_a_literal(node: dict[str, Any]) -> bool:
    """A call of a function by name with the name a string literal, not a parameter."""
    args = node.get("arguments") or []
    name = args[1].get("expression", {}) if len(args) > 1 else {}
    literal = name.get("class") == "CONSTANT" and name["literal"].get("kind") == "STRING"
    return literal and calls_by_name(str(node.get("function_name", "")))


def _macro_problem(entry: dict[str, Any]) -> str | None:
    """A scalar macro is allowed when its body passes the same checks, over its parameters."""
    body = parse(entry.get("macro_definition") or "")
    if isinstance(body, str):
        return body
    params = [str(p) for p in entry.get("parameters") or []]
    return walk(body, {p.lower(): p for p in params}, macro=True)
