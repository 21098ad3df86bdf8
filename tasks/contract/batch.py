"""The contract query for one batch: the schema's columns and the batch's own fields (read
from the relation, or from the JSON records' keys) made into one QueryPlan."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tasks import field_names
from tasks.contract import _cache as _contract_cache
from tasks.contract._json_fields import first_with, json_fields, keys_by
from tasks.engine.db import Connection, column_types
from tasks.field_names import fold
from tasks.internal import CHECKED, InternalField, first_internal, is_internal, problem

if TYPE_CHECKING:  # imported where a query is built: a cached query needs neither
    import pandera.ibis as pa

    from tasks.contract._query_plan import QueryPlan

# The batch's own columns and the two the contract adds: never a data column's name.
_UNSET: Any = object()


class Contract:
    """A data contract as the queries need it. The pandera schema is built (or loaded) on first
    use, so a run whose queries are all in the cache imports neither pandera nor ibis."""

    def __init__(
        self,
        load: Callable[[], pa.DataFrameSchema | None],
        *,
        key: str | None = None,
        present: bool = True,
        strict: bool | str | None = None,
        columns: tuple[str, ...] | None = None,
    ) -> None:
        self._load, self.key, self.present, self._strict = load, key, present, strict
        self._columns = columns
        self._schema: Any = _UNSET
        self.plans: dict[Any, str] = {}

    @classmethod
    def of(cls, schema: pa.DataFrameSchema | None) -> Contract:
        """A contract of a schema at hand (no cache: it has no name to be found by)."""
        strict = schema.strict if schema is not None else False
        return cls(lambda: schema, present=schema is not None, strict=strict)

    def schema(self) -> pa.DataFrameSchema | None:
        if self._schema is _UNSET:
            self._schema = self._load()
        return self._schema

    @property
    def strict(self) -> bool | str:
        if self._strict is None:
            schema = self.schema()
            self._strict = schema.strict if schema is not None else False
        return self._strict

    @property
    def columns(self) -> tuple[str, ...]:
        """The declared columns' names."""
        if self._columns is None:
            schema = self.schema()
            self._columns = tuple(schema.columns) if schema is not None else ()
        return self._columns


def batch_sql(
    con: Connection,
    contract: Contract,
    source: str,
    kind: str,
    *,
    carry: tuple[str, ...] = (),
    lean: bool = False,
) -> str:
    """SQL that checks the batch in `source` (an SQL relation) against the contract (see
    check_batch). `carry`: bookkeeping columns of `source` kept in the result, `unique`
    checked within each of their values; `lean`: `_raw` and `_original` only on rejected rows.
    """
    fields = batch_fields(con, contract, source, kind)
    return plan_sql(contract, source, kind, fields, carry=carry, lean=lean)


def batch_fields(
    con: Connection, contract: Contract, source: str, kind: str, *, long: bool = True
) -> dict[str, str]:
    """The batch's own fields and their types ("" = text): the JSON records' keys, or the
    relation's columns. `long`: a JSON record may hold a number a double does not keep."""
    if kind == "json":
        fields = json_fields(con, source, contract.present, long=long)
        return _json_batch(con, contract, source, fields)
    described = column_types(con, f"SELECT * FROM {source} LIMIT 0")
    return {n: t for n, t in described if n not in CHECKED}


def json_batches_fields(
    con: Connection, contract: Contract, records: str, batches: range, *, long: bool = True
) -> list[dict[str, str]]:
    """batch_fields of the JSON batches `batches` of the relation `records` (its `_batch`
    column tells them apart); with a schema, one scan finds every batch's keys (keys_by)."""
    one = [f"(SELECT * FROM {records} WHERE _batch = {b})" for b in batches]
    if not contract.present:  # each batch's types are inferred: one at a time
        return [batch_fields(con, contract, batch, "json", long=long) for batch in one]
    keys = keys_by(con, records, "_batch")
    return [
        _json_batch(con, contract, batch, keys.get(b, {}))
        for b, batch in zip(batches, one, strict=True)
    ]


def _json_batch(
    con: Connection, contract: Contract, source: str, fields: dict[str, str]
) -> dict[str, str]:
    """A JSON batch's fields as its query needs them: under `strict: filter` only a declared
    column's other spellings; refused when a record holds a field named like our own."""
    if contract.present and contract.strict == "filter":
        # Only a declared column's other spellings count: the rest are dropped. A batch
        # without one has no fields, so its query is the one every such batch shares.
        declared = set(contract.columns)
        folded = {fold(c) for c in declared}
        return {k: t for k, t in fields.items() if k not in declared and fold(k) in folded}
    if (name := first_internal(fields)) is not None:
        raise InternalField(f"record {first_with(con, source, name)}: {problem(name)}")
    return fields


def plan_sql(
    contract: Contract,
    source: str,
    kind: str,
    fields: dict[str, str],
    *,
    carry: tuple[str, ...] = (),
    lean: bool = False,
    long: bool = True,
) -> str:
    """The contract query for a batch whose fields are `fields`. The same contract and fields
    give the same SQL: it is built once (compiling pandera's checks costs ~20 ms), and for an
    inline schema kept on disk for later runs. `long`: a JSON record may hold a number a
    double does not keep (only then is each record's text looked at for one)."""
    what = ["plan", source, kind, list(fields.items()), list(carry), lean, long]
    key = repr(what)
    sql = contract.plans.get(key)
    if sql is None and contract.key is not None:
        cached = _contract_cache.get(contract.key, what)
        sql = cached if isinstance(cached, str) else None
    if sql is None:
        sql = _plan(contract.schema(), source, kind, fields, carry, lean, long)
        if contract.key is not None:
            _contract_cache.put(contract.key, what, sql)
    contract.plans[key] = sql
    return sql


def _plan(
    schema: pa.DataFrameSchema | None,
    source: str,
    kind: str,
    fields: dict[str, str],
    carry: tuple[str, ...],
    lean: bool,
    long: bool,
) -> str:
    import ibis

    from tasks.contract import _checks
    from tasks.contract._query_plan import QueryPlan
    from tasks.contract.columns import columns_of

    cols = columns_of(schema) if schema is not None else []
    strict = schema.strict if schema is not None else False
    dtypes = {c.name: c.dtype for c in cols}
    plan = QueryPlan(kind, source, dtypes=dtypes, carry=carry, lean=lean, long=long)
    if schema is not None:
        plan.checks = _checks.row_checks(schema, ibis.table(plan.dtypes, name=_checks.TYPED))
    for c in cols:
        plan.add_column(c, fields.get(c.name, ""))
    _add_extras(plan, fields, strict)
    if schema is not None:
        plan.add_table_rules(schema)
    return plan.sql()


def _add_extras(plan: QueryPlan, fields: dict[str, str], strict: bool | str) -> None:
    """The fields the schema does not declare. DuckDB's names ignore case, so a field spelled
    like a declared column but for case makes its record invalid (rather than its value being
    lost), whatever `strict`; so does one that would be a column but whose name is empty or
    holds a control character; an extra field's spellings that differ only by case are one
    column, named by the first in sort order. With `strict: filter` the others are dropped."""
    declared = {fold(n): n for n in plan.dtypes}
    spellings: dict[str, list[str]] = {}
    control: dict[str, list[str]] = {}
    for k in sorted(k for k in fields if k not in plan.dtypes):
        if (column := declared.get(fold(k))) is not None:
            label = f"_record: field {k!r} differs from column {column!r} only in case"
            plan.reject_present([k], label)
        elif strict == "filter":
            continue
        elif not k:
            plan.reject_present([k], "_record: a field has an empty name")
        elif (c := field_names.control(k)) is not None:
            control.setdefault(c, []).append(k)
        elif not is_internal(k):  # refused by name before anything lands
            spellings.setdefault(fold(k), []).append(k)
    for c, names in sorted(control.items()):
        plan.reject_present(names, f"_record: a field name holds a control character ({c})")
    for names in spellings.values():
        kinds = {fields[n] for n in names}
        source_type = kinds.pop() if len(kinds) == 1 else ""  # types that disagree: text
        plan.add_extra(names, source_type, keep=strict is False, unknown=strict is True)
