"""The pandera side of the contract: a spec's pandera (ibis) schema, inline or `module:Class`,
and each of its checks as a per-row ibis expression that compiles to DuckDB SQL."""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.operations as ops
import ibis.expr.types as ir
import pandera.backends.ibis.builtin_checks  # noqa: F401  (registers Check.ge & co. for ibis)
import pandera.ibis as pa
from ibis.backends.sql.datatypes import DuckDBType
from pandera.api.ibis.types import IbisData

from schemas.errors import SpecError
from schemas.spec import DECIMAL_RE, SchemaSpec, Spec

# The CTE the compiled checks read; tasks.contract defines it.
TYPED = "__ph_typed"

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


# ---------------------------------------------------------------- the schema


def load_schema(spec: Spec) -> pa.DataFrameSchema | None:
    """The spec's pandera schema: built from inline columns or loaded from "module:Class"."""
    s = spec.schema_
    if s is None:
        return None
    if isinstance(s, str):
        return _load_ref(s)
    try:
        return inline_schema(s, spec.name)
    except ValueError as e:
        raise SpecError(f"schema: {e}") from None


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


_lock = threading.Lock()
_modules: dict[Path, tuple[int, ModuleType]] = {}


def _load_ref(ref: str) -> pa.DataFrameSchema:
    module, _, cls = ref.partition(":")
    rel = "schemas/" + module.replace(".", "/") + ".py"

    def fail(what: str) -> SpecError:
        return SpecError(
            f"schema {ref!r}: {what}; define class {cls}(pandera.ibis.DataFrameModel) in {rel}"
        )

    path = Path.cwd() / rel
    try:
        mod = (
            _module_at(path, module)
            if path.is_file()
            else importlib.import_module(f"schemas.{module}")
        )
    except ModuleNotFoundError as e:
        parts = f"schemas.{module}".split(".")
        if e.name in {".".join(parts[: i + 1]) for i in range(len(parts))}:
            raise fail(
                f"there is no {rel} in {Path.cwd()} and no module schemas.{module}"
            ) from None
        raise fail(f"importing {rel} failed: {type(e).__name__}: {e}") from None
    except Exception as e:
        raise fail(f"importing {rel} failed: {type(e).__name__}: {e}") from None
    obj = getattr(mod, cls, None)
    if isinstance(obj, pa.DataFrameSchema):
        return obj
    if obj is None:
        raise fail(f"{rel} has no {cls}")
    if not (isinstance(obj, type) and issubclass(obj, pa.DataFrameModel)):
        what = f"the class {obj.__qualname__}" if isinstance(obj, type) else repr(obj)[:60]
        raise fail(f"{cls} in {rel} is {what}, not a pandera.ibis.DataFrameModel")
    try:
        return obj.to_schema()
    except Exception as e:
        raise fail(f"{cls} is not a valid model: {type(e).__name__}: {e}") from None


def _module_at(path: Path, module: str) -> ModuleType:
    """Import a schemas/ file by path, once per version of the file (batches reuse it)."""
    stamp = path.stat().st_mtime_ns
    with _lock:
        hit = _modules.get(path)
        if hit and hit[0] == stamp:
            return hit[1]
        name = "_pumphouse_schemas_" + re.sub(r"\W", "_", module)
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        # pandera resolves a model's annotations through sys.modules[cls.__module__].
        sys.modules[name] = mod
        try:
            spec.loader.exec_module(mod)
        except BaseException:
            sys.modules.pop(name, None)
            raise
        _modules[path] = (stamp, mod)
        return mod


# ---------------------------------------------------------------- types


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


# ---------------------------------------------------------------- checks


@dataclass(frozen=True)
class RowCheck:
    """One pandera check applied to every row: `failed` is TRUE (never NULL) where it fails."""

    column: str | None  # None for a table-level check
    label: str
    failed: ir.BooleanValue


def check_label(check: pa.Check) -> str:
    """The name pandera reports a failed check by, e.g. `greater_than_or_equal_to(0)`."""
    return str(check.error or check.name or check)


def row_checks(schema: pa.DataFrameSchema, data: ibis.Table) -> list[RowCheck]:
    """Every check of `schema` (column checks in column order, then table checks) over `data`,
    an unbound table of the typed schema columns. Raises SpecError, naming the check, for a
    check that cannot be evaluated row by row in SQL."""
    out: list[RowCheck] = []
    for name, column in schema.columns.items():
        for check in column.checks:
            out += _row_check(check, data, name, f"{name}: {check_label(check)}")
    for check in schema.checks:
        out += _row_check(check, data, None, f"_record: {check_label(check)}")
    return out


def compile_checks(checks: list[RowCheck], data: ibis.Table, columns: dict[str, Any]) -> str:
    """SQL selecting every column of TYPED (given with their ibis types) plus `__ph_c<i>` per check.

    The checks were built on `data`, which shows them only the schema columns; they are
    rebound to the full table so that the query also carries the bookkeeping columns.
    """
    full = ibis.table(columns, name=TYPED)
    flags = {
        f"__ph_c{i}": c.failed.op().replace({data.op(): full.op()}).to_expr()
        for i, c in enumerate(checks)
    }
    return str(ibis.to_sql(full.select(*full.columns, **flags), dialect="duckdb"))


def _row_check(check: pa.Check, data: ibis.Table, key: str | None, label: str) -> list[RowCheck]:
    if check.raise_warning:
        return []  # pandera only warns for these; a warning never rejects a row
    what = f"check {check_label(check)}" + (f" on column {key!r}" if key else "")
    if check.element_wise:
        raise SpecError(
            f"{what} is element_wise, which would run row by row in Python; "
            "write it over the column (data.table[data.key]) instead"
        )
    if check.groupby is not None:
        raise SpecError(f"{what} uses groupby, which pandera's ibis backend does not support")
    try:
        result = check._check_fn(IbisData(data, key), **check._check_kwargs)
        passed = _boolean(result, data)
        if key is not None and check.ignore_na:
            passed = passed | data[key].isnull()
        # pandera's rule: a NULL outcome counts as passed when ignore_na (the default).
        failed = ~passed.fill_null(bool(check.ignore_na))
    except Exception as e:
        detail = str(e) if isinstance(e, ValueError) else f"{type(e).__name__}: {e}"
        raise SpecError(f"{what} cannot run in SQL: {detail}") from None
    return [RowCheck(key, label, failed)]


def _boolean(result: Any, data: ibis.Table) -> ir.BooleanValue:
    """A check's output as one boolean per row: AND of its boolean columns, or a broadcast scalar."""
    if isinstance(result, bool):
        return ibis.literal(result)
    if isinstance(result, dict):
        values = list(result.values())
    elif isinstance(result, ibis.Table):
        # Built-in checks return data.select(across(col, fn)): a projection of the input
        # whose values are exactly the per-row booleans.
        op = result.op()
        if not (isinstance(op, ops.Project) and op.parent == data.op()):
            raise ValueError("it returns a table that is not a row-wise projection of its input")
        values = [v.to_expr() for v in op.values.values()]
    else:
        values = [result]
    acc: ir.BooleanValue | None = None
    for v in values:
        if not isinstance(v, ir.BooleanValue):
            raise ValueError(f"it returns {type(v).__name__}, not booleans")
        acc = v if acc is None else acc & v
    if acc is None:
        raise ValueError("it returns no columns")
    return acc
