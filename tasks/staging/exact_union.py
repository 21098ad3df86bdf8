"""The staged batches of a run read as one table: a column typed BIGINT in one batch and
DOUBLE in another becomes DOUBLE, which cannot keep an integer beyond 2^53."""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from schemas.errors import SinkRefused
from tasks.engine.db import Connection, column_types, ident, scalar

EXACT = 2**53  # every integer up to this is a double's own


def refuse_rounding(
    paths: Sequence[str], con: Connection | None = None, tables: Sequence[str] = ()
) -> None:
    """SinkRefused (the run is dropped, nothing written) if the batches (Parquet files at
    `paths`, tables of `con`) give a column an integer (or decimal) type in some and a
    floating one in others, and the integers or decimals are not all a double's own."""
    # column -> batch (a path, or a table with `con`) -> int, decimal, float or other
    kinds: dict[str, dict[tuple[str, Connection | None], str]] = {}
    for path in paths:
        for f in pq.read_schema(path):
            kinds.setdefault(f.name, {})[(path, None)] = _arrow_kind(f.type)
    for table in tables:
        assert con is not None
        for name, t in column_types(con, f"SELECT * FROM {ident(table)} LIMIT 0"):
            kinds.setdefault(name, {})[(table, con)] = _duckdb_kind(t)
    for name, by_batch in kinds.items():
        if "float" not in by_batch.values():
            continue
        for batch, kind in by_batch.items():
            if kind == "decimal" or (kind == "int" and not _in_double(*batch, name)):
                raise SinkRefused(
                    f"column {name!r} holds numbers a double cannot keep (integers beyond "
                    "2^53 or exact decimals) in some batches and floating-point numbers in "
                    "others; read together they would be rounded. Declare the column in "
                    "schema.columns (type decimal or string) so that every value is read as "
                    "written"
                )


def _arrow_kind(t: pa.DataType) -> str:
    if pa.types.is_floating(t):
        return "float"
    if pa.types.is_decimal(t):  # inferred only where a double did not keep a value
        return "decimal"
    return "int" if pa.types.is_integer(t) else "other"


_INTEGERS = {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT"}
_INTEGERS |= {f"U{t}" for t in _INTEGERS}


def _duckdb_kind(t: str) -> str:
    t = t.upper()
    if t in ("FLOAT", "DOUBLE"):
        return "float"
    if t.startswith("DECIMAL"):
        return "decimal"
    return "int" if t in _INTEGERS else "other"


def _in_double(batch: str, con: Connection | None, name: str) -> bool:
    """Every value of integer column `name` in the batch (a Parquet file's path, or with
    `con` its table) is one a double keeps."""
    if con is not None:
        top = scalar(con, f"SELECT max(abs({ident(name)}::HUGEINT)) FROM {ident(batch)}")
        return top is None or int(top) <= EXACT
    meta = pq.ParquetFile(batch).metadata
    for g in range(meta.num_row_groups):
        group = meta.row_group(g)
        j = next(j for j in range(group.num_columns) if group.column(j).path_in_schema == name)
        stats = group.column(j).statistics
        if stats is None or not stats.has_min_max:
            if stats is not None and stats.null_count == group.num_rows:
                continue
            return False
        if max(abs(int(stats.min)), abs(int(stats.max))) > EXACT:
            return False
    return True
