"""What the `transform.filter` guard refuses in an expression tree (classes, query clauses)
and the messages it shares."""

from __future__ import annotations

from typing import Any

USE = "use only the row's columns, literals, operators and scalar functions"
TOO_DEEP = "the expression is nested too deeply; simplify it"

# Expression classes that hold nothing but their children.
PLAIN = frozenset(
    {"CONSTANT", "COMPARISON", "CONJUNCTION", "OPERATOR", "CASE", "CAST", "BETWEEN", "COLLATE"}
)  # fmt: skip
# The types a cast may name, as DuckDB's parser spells them (lower-cased): the spec's
# types and plain SQL types, built into DuckDB. Any other name may belong to an extension,
# which DuckDB would try to install and load (INET, JSON, GEOMETRY), or to the catalog.
CAST_TYPES = frozenset(
    {
        "boolean", "bool", "logical", "tinyint", "int1", "smallint", "int2", "short",
        "integer", "int", "int4", "int32", "signed", "bigint", "int8", "int64", "long",
        "hugeint", "int128", "utinyint", "usmallint", "uinteger", "ubigint", "uhugeint",
        "float", "float4", "real", "double", "float8", "decimal", "numeric", "varchar",
        "text", "string", "char", "bpchar", "date", "time", "timestamp", "datetime",
        "timestamptz", "timestamp with time zone", "interval", "uuid",
        "list",  # the parse of T[]: its element type is judged on its own
    }
)  # fmt: skip
CASTS_TO = (
    "BOOLEAN, the integers, FLOAT, DOUBLE, DECIMAL(p,s), VARCHAR, DATE, TIME, TIMESTAMP, "
    "TIMESTAMPTZ, INTERVAL, UUID and lists T[] of them"
)
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


def type_problem(node: dict[str, Any]) -> str | None:
    """Why a type named in a cast is refused, or None."""
    name = str(node.get("type_name", ""))
    dotted = ".".join(p for p in (node.get("catalog"), node.get("schema"), name) if p)
    if dotted.lower() in CAST_TYPES:
        return None
    return (
        f"type {dotted} is not allowed in a cast (it may need an extension, which a filter "
        f"cannot load): only {CASTS_TO}; cast to one of those, e.g. CAST(x AS VARCHAR)"
    )
