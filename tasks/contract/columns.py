"""A schema column as the contract query needs it: its ibis dtype, its DuckDB type, whether
it is coerced, nullable or unique, and the dtype's name in messages."""

from __future__ import annotations

from dataclasses import dataclass

import ibis.expr.datatypes as dt
import pandera.ibis as pa
from ibis.backends.sql.datatypes import DuckDBType

from schemas.errors import SpecError
from tasks.internal import is_internal, problem


@dataclass(frozen=True)
class Column:
    """One schema column, as the SQL needs it."""

    name: str
    dtype: dt.DataType
    sql: str
    coerce: bool
    nullable: bool
    unique: str | None  # pandera's report_duplicates, when the column is unique
    format: str | None = (
        None  # how its text is read (tasks.contract._formats); None: DuckDB's casts
    )
    zone: str = "UTC"  # where a timestamp that carries no offset is local time


def columns_of(schema: pa.DataFrameSchema) -> list[Column]:
    """The schema's columns in order; SpecError for a regex column."""
    out = []
    for name, c in schema.columns.items():
        if c.regex:
            raise SpecError(f"schema: column {name!r} is a regex; name each column")
        if is_internal(name):
            raise SpecError(f"{problem(name, 'column')}, and in the schema")
        dtype = c.dtype.type if c.dtype is not None else dt.string
        coerce = bool(schema.coerce or c.coerce or c.dtype is None)
        unique = c.report_duplicates if c.unique else None
        meta = c.metadata or {}
        fmt, zone = meta.get("format"), meta.get("timezone", "UTC")
        out.append(
            Column(name, dtype, sql_type(dtype), coerce, bool(c.nullable), unique, fmt, zone)
        )
    return out


def sql_type(dtype: dt.DataType) -> str:
    """The DuckDB type a pandera/ibis dtype is stored as (timestamps with a zone are TIMESTAMPTZ)."""
    if dtype.is_string():
        return "VARCHAR"
    return str(DuckDBType.to_string(dtype))


def type_label(dtype: dt.DataType) -> str:
    """The dtype as users wrote it: the contract's names (bool, timestamp, decimal(P,S)) where one fits."""
    if dtype.is_boolean():
        return "bool"
    if dtype.is_timestamp() and dtype.timezone is not None:
        return "timestamp"
    if dtype.is_decimal():
        return f"decimal({dtype.precision},{dtype.scale})"
    return str(dtype)
