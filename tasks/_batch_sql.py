"""The contract query for one batch: the schema's columns and the batch's own fields (read
from the relation, or from the JSON records' keys) made into one QueryPlan."""

from __future__ import annotations

import ibis
import pandera.ibis as pa

from tasks import _checks
from tasks._columns import columns_of
from tasks._duckdb import Connection, column_types
from tasks._json_fields import json_fields
from tasks._query_plan import QueryPlan
from tasks._records import META

# The batch's own columns and the two the contract adds: never a data column's name.
RESERVED = (*META, "_errors", "_original")


def batch_sql(con: Connection, schema: pa.DataFrameSchema | None, source: str, kind: str) -> str:
    """SQL that checks the batch in `source` (an SQL relation) against `schema` (see check_batch)."""
    cols = columns_of(schema) if schema is not None else []
    strict = schema.strict if schema is not None else False
    plan = QueryPlan(kind, source, dtypes={c.name: c.dtype for c in cols})
    if schema is not None:
        plan.checks = _checks.row_checks(schema, ibis.table(plan.dtypes, name=_checks.TYPED))
    if kind == "json":
        fields = json_fields(con, source, schema is not None, strict)
    else:
        described = column_types(con, f"SELECT * FROM {source} LIMIT 0")
        fields = {n: t for n, t in described if n not in RESERVED}
    for c in cols:
        plan.add_column(c, fields.get(c.name, ""))
    if strict != "filter":
        extras = sorted(k for k in fields if k not in plan.dtypes)
        named = _nameable(extras, list(plan.dtypes))
        for k in extras:
            if k in named or strict is True:
                keep = k in named and strict is not True
                plan.add_extra(k, fields[k], keep=keep, unknown=strict is True, named=k in named)
    if schema is not None:
        plan.add_table_rules(schema)
    return plan.sql()


def _nameable(extras: list[str], names: list[str]) -> set[str]:
    """Extra fields that can be columns (and `_original` fields). DuckDB names are case-insensitive,
    so one differing from a taken name only by case (or one of ours) stays in `_raw` only."""
    taken = {n.lower() for n in (*names, *RESERVED)}
    kept = set()
    for k in extras:
        if k.lower() not in taken and not k.startswith("__ph_"):
            kept.add(k)
            taken.add(k.lower())
    return kept
