"""SQL that types a value as a contract column's type: NULL where it does not convert,
never a silently changed value."""

from __future__ import annotations

from tasks.contract.columns import Column
from tasks.engine.db import type_name

_INTEGERS = (
    *("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT"),
    *("UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT", "UHUGEINT"),
)


def cast(expr: str, source_type: str, c: Column) -> str:
    """SQL for `expr` as the column's type; NULL when it does not convert."""
    if c.sql == "VARCHAR":
        return as_text(expr, source_type)
    if same_type(source_type, c.sql):
        return expr
    if c.dtype.is_integer() and type_name(source_type) not in _INTEGERS:
        # TRY_CAST rounds '1.5' to 2; an integer column must not silently change a value.
        try_cast = f"TRY_CAST({expr} AS {c.sql})"
        return f"CASE WHEN TRY_CAST({expr} AS DOUBLE) = {try_cast} THEN {try_cast} END"
    if c.dtype.is_timestamp() and c.dtype.timezone is None and source_type == "VARCHAR":
        # A TIMESTAMP cast drops a '+02:00' offset; through TIMESTAMPTZ (UTC) it is applied.
        return f"TRY_CAST(TRY_CAST({expr} AS TIMESTAMPTZ) AS TIMESTAMP)"
    return f"TRY_CAST({expr} AS {c.sql})"


def as_text(expr: str, source_type: str) -> str:
    """SQL for `expr` as VARCHAR."""
    return expr if source_type == "VARCHAR" else f"CAST({expr} AS VARCHAR)"


def same_type(source_type: str, target: str) -> bool:
    """True if the two spellings name one DuckDB type (INT and INTEGER)."""
    return type_name(source_type) == type_name(target)
