"""A spec's pandera (ibis) schema: built from the inline `schema:` section, or loaded from
`schema: module:Class`."""

from __future__ import annotations

import copy
from typing import Any

import ibis.expr.datatypes as dt
import pandera.backends.ibis.builtin_checks  # noqa: F401  (registers Check.ge & co. for ibis)
import pandera.ibis as pa

from schemas.errors import SpecError
from schemas.spec import DECIMAL_RE, SchemaSpec, Spec
from tasks.contract._schema_ref import load_ref

TYPES: dict[str, dt.DataType] = {
    "int32": dt.int32,
    "int64": dt.int64,
    "float64": dt.float64,
    "bool": dt.boolean,
    "string": dt.string,
    "date": dt.date,
    "timestamp": dt.Timestamp(timezone="UTC"),
}
# Inline check name -> pandera built-in check.
INLINE_CHECKS = {
    "eq": "equal_to",
    "ne": "not_equal_to",
    "gt": "greater_than",
    "ge": "greater_than_or_equal_to",
    "lt": "less_than",
    "le": "less_than_or_equal_to",
    "isin": "isin",
    "notin": "notin",
    "str_matches": "str_matches",
}


def load_schema(spec: Spec) -> pa.DataFrameSchema | None:
    """The spec's pandera schema: built from inline columns or loaded from "module:Class"."""
    s = spec.schema_
    if s is None:
        return None
    if isinstance(s, str):
        return in_zone(load_ref(s), spec.source.timezone)
    try:
        return in_zone(inline_schema(s, spec.name), spec.source.timezone)
    except ValueError as e:
        raise SpecError(f"schema: {e}") from None


def in_zone(schema: pa.DataFrameSchema, zone: str) -> pa.DataFrameSchema:
    """The schema with its timestamp (and date) columns read in `zone` (source.timezone) when
    it is not UTC, the default: kept in each column's metadata, where tasks.contract.columns finds it.
    A date is in a zone only when it is read from an epoch (the day of that instant there)."""
    if zone == "UTC":
        return schema
    schema = copy.deepcopy(schema)  # pandera's update_columns is not there for ibis
    for c in schema.columns.values():
        if c.dtype is not None and (c.dtype.type.is_timestamp() or c.dtype.type.is_date()):
            c.metadata = {**(c.metadata or {}), "timezone": zone}
    return schema


def inline_schema(s: SchemaSpec, name: str | None = None) -> pa.DataFrameSchema:
    """An inline `schema:` section as a pandera DataFrameSchema; ValueError for a bad check."""
    columns = {
        col: pa.Column(
            column_dtype(c.type),
            checks=[inline_check(k, v) for k, v in c.checks.given()],
            nullable=c.nullable,
            unique=c.unique,
            coerce=s.coerce,
            name=col,
            metadata={"format": c.format} if c.format is not None else None,
        )
        for col, c in s.columns.items()
    }
    return pa.DataFrameSchema(columns, strict=s.strict, coerce=s.coerce, name=name)


def column_dtype(type_name: str) -> dt.DataType:
    """A contract type name (int64, decimal(10,2), ...) as an ibis dtype."""
    m = DECIMAL_RE.match(type_name)
    return dt.Decimal(int(m.group(1)), int(m.group(2))) if m else TYPES[type_name]


def inline_check(name: str, value: Any) -> pa.Check:
    """One inline check (`ge: 0`, `in_range: {min, max}`) as the pandera check it stands for."""
    if name in ("in_range", "str_length"):
        lo, hi = value.min, value.max
        if lo is None and hi is None:
            raise ValueError(f"{name} needs min, max or both")
        if name == "str_length":
            return pa.Check.str_length(lo, hi)
        # pandera's in_range needs both ends; one open end is the matching comparison.
        if hi is None:
            return pa.Check.greater_than_or_equal_to(lo)
        if lo is None:
            return pa.Check.less_than_or_equal_to(hi)
        return pa.Check.in_range(lo, hi)
    return getattr(pa.Check, INLINE_CHECKS[name])(value)
