"""Each column of a sample as DuckDB read it: the spec type, a date or time `format` when
not ISO, and what the checks are proposed from (NULLs, distinct values, least value)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from tasks.engine import db

FEW = 10  # distinct values a text column may have to be proposed an isin check
INTEGERS = {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT", "UINTEGER"}
WIDE = {"UBIGINT", "HUGEINT", "UHUGEINT"}  # beyond int64: exact as decimal(38,0)
FLOATS = {"FLOAT", "DOUBLE"}
TEXT = {"VARCHAR", "UUID", "TIME", "TIME WITH TIME ZONE"}
# Formats that are ISO-8601 already: the spec reads those without a `format`.
ISO = {"%Y-%m-%d", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S.%f"}


@dataclass(frozen=True)
class Column:
    """One column of the sample. `type` is None for a value the spec cannot declare (a
    nested object, a list, bytes): it is kept as read."""

    name: str
    read_as: str  # DuckDB's type
    type: str | None
    format: str | None = None
    nulls: int = 0
    distinct: int = 0
    values: tuple[str, ...] = field(default_factory=tuple)  # text columns with few values
    least: float | None = None  # numeric columns

    @property
    def numeric(self) -> bool:
        return self.type in ("int64", "float64") or (self.type or "").startswith("decimal")

    @property
    def temporal(self) -> bool:
        return self.type in ("date", "timestamp")


def spec_type(read_as: str) -> str | None:
    """The spec's column type for a DuckDB type, or None (kept as read)."""
    t = read_as.upper()
    if t in INTEGERS or t == "BIGINT":
        return "int64"
    if t in WIDE:
        return "decimal(38,0)"
    if t in FLOATS:
        return "float64"
    if m := re.fullmatch(r"DECIMAL\((\d+),\s*(\d+)\)", t):
        return f"decimal({m[1]},{m[2]})"
    if t == "BOOLEAN":
        return "bool"
    if t == "DATE":
        return "date"
    if t.startswith("TIMESTAMP"):
        return "timestamp"
    if t in TEXT:
        return "string"
    return None


def profile(
    con: db.Connection, table: str, formats: dict[str, str | None] | None = None
) -> list[Column]:
    """The columns of `table`; `formats`: DuckDB type → the format the sniffer found for it."""
    formats = formats or {}
    out = []
    for name, read_as in db.column_types(con, f"SELECT * FROM {table}"):
        kind = spec_type(read_as)
        c = db.ident(name)
        if read_as.upper() in WIDE and _fits_int64(con, table, c):
            kind = "int64"  # DuckDB reads JSON integers as HUGEINT when a line is skipped
        nulls, distinct = db.rows(
            con, f"SELECT count(*) - count({c}), count(DISTINCT {c}) FROM {table}"
        )[0]
        values: tuple[str, ...] = ()
        if kind == "string" and distinct <= FEW:
            found = db.rows(con, f"SELECT DISTINCT {c}::VARCHAR FROM {table} WHERE {c} IS NOT NULL")
            values = tuple(sorted(str(v) for (v,) in found))
        least: Any = None
        if kind in ("int64", "float64") or (kind or "").startswith("decimal"):
            least = db.scalar(con, f"SELECT min({c})::DOUBLE FROM {table}")
        fmt = formats.get(read_as.upper().split(" ")[0]) if kind in ("date", "timestamp") else None
        fmt = None if fmt in ISO else fmt
        low = None if least is None else float(least)
        out.append(Column(name, read_as, kind, fmt, int(nulls), int(distinct), values, low))
    return out


def _fits_int64(con: db.Connection, table: str, c: str) -> bool:
    """Whether every sampled value of a wide integer column fits int64."""
    low, high = db.rows(con, f"SELECT min({c})::VARCHAR, max({c})::VARCHAR FROM {table}")[0]
    return all(v is None or -(2**63) <= int(v) < 2**63 for v in (low, high))
