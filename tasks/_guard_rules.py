"""What the `transform.filter` guard refuses in an expression tree (classes, query clauses)
and the messages it shares."""

from __future__ import annotations

from typing import Any

USE = "use only the row's columns, literals, operators and scalar functions"
TOO_DEEP = "the expression is nested too deeply; simplify it"

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


def not_sql(detail: object) -> str:
    """The message for text DuckDB cannot read as an expression."""
    return f"not a valid SQL expression ({detail}); write one boolean expression such as status <> 'void'"
