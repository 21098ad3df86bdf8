"""Column types on the way into a Delta table: what DuckDB hands over, made Delta-friendly,
and checked against the table's own schema (schema evolution and lossy drift).

Timestamps become UTC (`timestamp`, not `timestamp_ntz`, which older readers do not know).
A new column is added to the table; a column whose type would narrow or change is an error.
A run's column equal to a table column but for case lands in it, under the table's spelling
(the run's columns are not case-sensitive; Delta refuses two names equal ignoring case).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import pyarrow as pa

from schemas.errors import DataError
from tasks.engine.db import ident

# DuckDB types Delta has no type for -> the nearest type that keeps every value.
_WIDER = {
    "UTINYINT": "SMALLINT",
    "USMALLINT": "INTEGER",
    "UINTEGER": "BIGINT",
    "UBIGINT": "DECIMAL(20,0)",
    "HUGEINT": "DECIMAL(38,0)",
    "UHUGEINT": "DECIMAL(38,0)",
    "TIME": "VARCHAR",
    "TIME WITH TIME ZONE": "VARCHAR",
    "INTERVAL": "VARCHAR",
    "UUID": "VARCHAR",
    "JSON": "VARCHAR",
    "BIT": "VARCHAR",
}
# Naive timestamps (of any unit), not already followed by WITH TIME ZONE, nor a quoted field name.
_NAIVE_TS = re.compile(r'(?<!")\bTIMESTAMP(?:_NS|_MS|_S)?\b(?! WITH TIME ZONE)(?!")')
# The contract's type names, for messages that tell the user what to write in the spec.
_SPEC_NAMES = {
    "integer": "int32",
    "long": "int64",
    "double": "float64",
    "boolean": "bool",
    "string": "string",
    "date": "date",
    "timestamp": "timestamp",
}


def select_list(columns: Sequence[tuple[str, str]]) -> str:
    """A SELECT list over (name, DuckDB type) columns with every type Delta-friendly."""
    out = []
    for name, sql_type in columns:
        target = _WIDER.get(sql_type.upper())
        if target is None and _NAIVE_TS.search(sql_type):
            target = _NAIVE_TS.sub("TIMESTAMP WITH TIME ZONE", sql_type)  # session zone is UTC
        col = ident(name)
        out.append(f"CAST({col} AS {target}) AS {col}" if target else col)
    return ", ".join(out)


@dataclass(frozen=True)
class Fit:
    """How a run's columns go into the table: renames (to the table's spelling of a name),
    casts (widening only) and whether the schema grows."""

    renames: dict[str, str] = field(default_factory=dict)  # run's name -> table's
    casts: dict[str, pa.DataType] = field(default_factory=dict)  # by the table's name
    schema_changes: bool = False  # the run adds columns or lacks some of the table's

    def name(self, column: str) -> str:
        """The table's spelling of the run's `column`."""
        return self.renames.get(column, column)

    def apply(self, data: pa.Table) -> pa.Table:
        if self.renames:
            data = data.rename_columns([self.name(n) for n in data.column_names])
        for name, to in self.casts.items():
            i = data.schema.get_field_index(name)
            data = data.set_column(i, pa.field(name, to), data.column(i).cast(to))
        return data


def fit(
    table: pa.Schema,
    table_partitions: Sequence[str],
    data: pa.Schema,
    partition_by: Sequence[str],
    where: str,
) -> Fit:
    """Check a run's columns against the table's; raise DataError for drift that loses data."""
    if list(table_partitions) != list(partition_by):
        raise DataError(
            f"the Delta table at {where} is partitioned by {_names(table_partitions)} but "
            f"sink.partition_by is {_names(partition_by)}; set sink.partition_by to "
            f"{_names(table_partitions)}, or rebuild the table with `pumphouse run SPEC --full-refresh`"
        )
    have = {f.name: f.type for f in table}
    spelled = {name.lower(): name for name in have}
    renames = {
        f.name: spelled[f.name.lower()]
        for f in data
        if f.name not in have and f.name.lower() in spelled
    }
    casts: dict[str, pa.DataType] = {}
    for f in data:
        name = renames.get(f.name, f.name)
        old = have.get(name)
        if old is None or old == f.type or _same(old, f.type):
            continue
        if not _widens(f.type, old):
            raise DataError(
                f"column {name!r} is {delta_name(old)} in the Delta table at {where} but "
                f"{delta_name(f.type)} in this run; writing it would lose data or change the "
                f"table's type. Fix: {_fix(old)}, or rebuild the table with "
                "`pumphouse run SPEC --full-refresh`"
            )
        casts[name] = old
    names = {renames.get(n, n) for n in data.names}
    return Fit(renames=renames, casts=casts, schema_changes=names != have.keys())


def delta_name(t: pa.DataType) -> str:
    """A type as Delta spells it (long, double, timestamp, decimal(10,2), ...)."""
    if pa.types.is_timestamp(t):
        return "timestamp" if t.tz else "timestamp_ntz"
    if pa.types.is_decimal(t):
        return f"decimal({t.precision},{t.scale})"
    if _stringy(t):
        return "string"
    if _binary(t):
        return "binary"
    simple = {
        pa.int8(): "byte",
        pa.int16(): "short",
        pa.int32(): "integer",
        pa.int64(): "long",
        pa.float32(): "float",
        pa.float64(): "double",
        pa.bool_(): "boolean",
        pa.date32(): "date",
    }
    return simple.get(t, str(t))


def _fix(table_type: pa.DataType) -> str:
    name = delta_name(table_type)
    spec = _SPEC_NAMES.get(name) or (name if name.startswith("decimal(") else None)
    if spec:
        return f"give the column its old type again in the spec (type: {spec})"
    return "give the column its old type again in the spec"


def _names(cols: Sequence[str]) -> str:
    return "[" + ", ".join(cols) + "]"


def _stringy(t: pa.DataType) -> bool:
    return bool(pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t))


def _binary(t: pa.DataType) -> bool:
    return bool(pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_binary_view(t))


_INT_DIGITS = {8: 3, 16: 5, 32: 10, 64: 19}


def _widens(src: pa.DataType, dst: pa.DataType) -> bool:
    """Whether every value of type `src` fits type `dst` exactly."""
    if pa.types.is_null(src):
        return True
    if pa.types.is_signed_integer(src) and pa.types.is_signed_integer(dst):
        return bool(src.bit_width <= dst.bit_width)
    if pa.types.is_signed_integer(src) and pa.types.is_floating(dst):
        return bool(src.bit_width < dst.bit_width)  # int32 -> double is exact, int64 -> double not
    if pa.types.is_floating(src) and pa.types.is_floating(dst):
        return bool(src.bit_width <= dst.bit_width)
    if pa.types.is_decimal(src) and pa.types.is_decimal(dst):
        return bool(
            dst.scale >= src.scale and dst.precision - dst.scale >= src.precision - src.scale
        )
    if pa.types.is_signed_integer(src) and pa.types.is_decimal(dst):
        return bool(_INT_DIGITS[src.bit_width] <= dst.precision - dst.scale)
    # Timestamps: both hold instants in microseconds; only the time zone label differs.
    return bool(pa.types.is_timestamp(src) and pa.types.is_timestamp(dst))


def _same(a: pa.DataType, b: pa.DataType) -> bool:
    """Equal as Delta sees it: string kinds alike, list element names and nullability ignored."""
    if a == b or (_stringy(a) and _stringy(b)) or (_binary(a) and _binary(b)):
        return True
    if pa.types.is_list(a) or pa.types.is_large_list(a) or pa.types.is_list_view(a):
        return (pa.types.is_list(b) or pa.types.is_large_list(b) or pa.types.is_list_view(b)) and (
            _same(a.value_type, b.value_type)
        )
    if pa.types.is_struct(a) and pa.types.is_struct(b):
        fa = {a.field(i).name: a.field(i).type for i in range(a.num_fields)}
        fb = {b.field(i).name: b.field(i).type for i in range(b.num_fields)}
        return fa.keys() == fb.keys() and all(_same(fa[k], fb[k]) for k in fa)
    if pa.types.is_map(a) and pa.types.is_map(b):
        return _same(a.key_type, b.key_type) and _same(a.item_type, b.item_type)
    return False
