"""Each pandera check of a schema as a per-row ibis expression (TRUE where the row fails),
compiled together into one DuckDB SELECT over the typed batch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import ibis
import ibis.expr.operations as ops
import ibis.expr.types as ir
import pandera.ibis as pa
from pandera.backends.ibis.checks import IbisCheckBackend

from schemas.errors import SpecError

# The CTE the compiled checks read; tasks.contract._query_plan defines it.
TYPED = "__ph_typed"


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
        result = _check_fn(check, data)(pa.IbisData(data, key))
        passed = _boolean(result, data)
        if key is not None and check.ignore_na:
            passed = passed | _missing(data[key])
        # pandera's rule: a NULL outcome counts as passed when ignore_na (the default).
        failed = ~passed.fill_null(bool(check.ignore_na))
    except Exception as e:
        detail = str(e) if isinstance(e, ValueError) else f"{type(e).__name__}: {e}"
        raise SpecError(f"{what} cannot run in SQL: {detail}") from None
    return [RowCheck(key, label, failed)]


def _check_fn(check: pa.Check, data: ibis.Table) -> Any:
    """The check's function bound to its arguments, as pandera's own ibis check backend holds
    it (the backend registers the built-in checks for ibis). Its output is read unvalidated:
    pandera's `Check.__call__` would join a table output back onto an unbound table."""
    backend = pa.Check.get_backend(data)(check)
    if not isinstance(backend, IbisCheckBackend):
        raise ValueError(
            f"pandera checks ibis tables with {type(backend).__name__}, not its ibis backend; "
            "unset PANDERA_USE_NARWHALS_BACKEND"
        )
    return backend.check_fn


def _missing(column: ir.Column) -> ir.BooleanValue:
    """NULL, or for a float NaN: a missing value to pandera (and to `nullable`), which checks
    pass over. (In SQL, NaN sorts above every number: `ge` would pass it, `le` fail it.)"""
    if isinstance(column, ir.FloatingValue):
        return column.isnull() | column.isnan().fill_null(False)
    return column.isnull()


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
