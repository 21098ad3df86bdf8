"""The data contract step: one SELECT that types a batch and lists, per row, the pandera
checks it fails (`_errors`), all inside DuckDB; plus the spec's schema problems for validate."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from schemas.errors import SpecError
from schemas.loader import Problem
from schemas.spec import Spec
from tasks.contract import _cache as _contract_cache
from tasks.contract.batch import Contract, batch_sql
from tasks.engine import db as _duckdb
from tasks.engine.db import Connection, connect, ident

if TYPE_CHECKING:  # pandera and ibis are imported only where a query is built
    import ibis.expr.datatypes as dt
    import pandera.ibis as pa


def pandera_schema(spec: Spec) -> pa.DataFrameSchema | None:
    """The spec's pandera (ibis backend) schema: built from the inline columns or loaded from
    `schema: "module:Class"`; None without a schema. Raises SpecError."""
    from tasks.contract._pandera_schema import load_schema

    return load_schema(spec)


def check_batch(
    con: Connection,
    spec: Spec,
    relation: str,
    kind: Literal["json", "columns"],
) -> str:
    """SQL that checks the batch in `relation` (a table or view on `con`) against the spec.

    `relation` has `_source`, `_row`, `_raw`, `_parse_error` and, for kind "columns", the
    record's fields; for kind "json" each record's JSON text is in `_raw`. The result has
    the output columns (schema columns cast to their types, then extra fields per `strict`,
    sorted by name), then `_source`, `_row`, `_raw`, `_errors` (VARCHAR[], [] when valid)
    and `_original` (a STRUCT of each field's value as text). `unique` is checked within
    the batch. For json the batch's keys are read here with one query on `con`. Without a
    schema json keys get the types DuckDB sees in the batch, columns pass through, and only
    unreadable records are errors.
    """
    if kind not in ("json", "columns"):
        raise ValueError(f"kind must be 'json' or 'columns', not {kind!r}")
    # Timestamps without an offset are read in the session's zone: it must be UTC.
    zone = _duckdb.scalar(con, "SELECT current_setting('TimeZone')")
    if zone != "UTC":
        raise ValueError(
            f"the connection's TimeZone is {zone!r}; open it with tasks.engine.db.connect"
        )
    return batch_sql(con, contract_of(spec), ident(relation), kind)


def contract_of(spec: Spec) -> Contract:
    """The spec's contract for the queries; one per inline schema in a process, so that its
    queries are built once (`module:Class` is loaded afresh each time: its file may change)."""
    key = _contract_cache.schema_key(spec)
    if key is None:
        return Contract(lambda: pandera_schema(spec), present=spec.schema_ is not None)
    key = f"{spec.name}\0{key}"
    found = _CONTRACTS.get(key)
    if found is None:
        if len(_CONTRACTS) >= 64:
            _CONTRACTS.clear()
        s = spec.schema_
        inline = s if s is not None and not isinstance(s, str) else None
        strict = inline.strict if inline is not None else None
        columns = tuple(inline.columns) if inline is not None else None
        found = _CONTRACTS[key] = Contract(
            lambda: pandera_schema(spec), key=key, strict=strict, columns=columns
        )
    return found


_CONTRACTS: dict[str, Contract] = {}


def schema_problems(spec: Spec) -> list[Problem]:
    """Problems `pumphouse validate` reports: a `schema: "module:Class"` that cannot be loaded or
    run, an inline check that cannot apply to its column's type (a loader check)."""
    key = _contract_cache.schema_key(spec)
    if key is None:
        return _schema_problems(spec)
    # An inline schema's problems depend on it alone: kept (on disk too), a run checks its
    # spec before the flow and in it, and a later run again, without pandera's dry runs.
    found = _PROBLEMS.get(key)
    if found is None:
        cached = _contract_cache.get(key, "problems")
        if isinstance(cached, list):
            found = [(tuple(loc), str(msg)) for loc, msg in cached]
        else:
            found = _schema_problems(spec)
            _contract_cache.put(key, "problems", [[list(loc), msg] for loc, msg in found])
        _PROBLEMS[key] = found
    return list(found)


_PROBLEMS: dict[str, list[Problem]] = {}


def _schema_problems(spec: Spec) -> list[Problem]:
    s = spec.schema_
    if s is None:
        return []
    import pandera.ibis as pa

    from tasks.contract._formats import format_problem
    from tasks.contract._pandera_schema import column_dtype, inline_check, load_schema

    con = connect(memory_bytes=256 * 2**20)
    try:
        if isinstance(s, str):
            try:
                schema = load_schema(spec)
                problem = _dry_run(con, schema) if schema is not None else None
            except SpecError as e:
                return [(("schema",), e.message)]
            return [(("schema",), f"schema {s!r}: {problem}")] if problem else []
        problems: list[Problem] = []
        for name, column in s.columns.items():
            dtype = column_dtype(column.type)
            for check_name, value in column.checks.given():
                try:
                    check = inline_check(check_name, value)
                    one = pa.DataFrameSchema({name: pa.Column(dtype, checks=[check], name=name)})
                    problem = _dry_run(con, one)
                except (SpecError, ValueError) as e:
                    problem = str(e)
                if problem:
                    where = ("schema", "columns", name, "checks", check_name)
                    message = f"{value!r} does not apply to a {column.type} column: {problem}"
                    problems.append((where, message))
            if column.format is not None and (said := format_problem(con, column.format)):
                problems.append((("schema", "columns", name, "format"), said))
        return problems
    finally:
        con.close()


def _dry_run(con: Connection, schema: pa.DataFrameSchema) -> str | None:
    """Run the checks on one row of sample values: catches what only DuckDB notices (an RE2
    regex it rejects, `isin: [x]` on a number column). Returns the error's first line."""
    from tasks.contract.columns import columns_of

    values = "".join(f", {_sample(c.dtype, c.sql)} AS {ident(c.name)}" for c in columns_of(schema))
    try:
        _duckdb.execute(
            con,
            "CREATE OR REPLACE TABLE probe AS SELECT 'probe' AS _source, 0::BIGINT AS _row, "
            f"NULL::VARCHAR AS _raw, NULL::VARCHAR AS _parse_error{values}",
        )
        # Select _errors: it needs every check, so none is optimised away.
        sql = batch_sql(con, Contract.of(schema), "probe", "columns")
        _duckdb.rows(con, f"SELECT _errors FROM ({sql})")
    except _duckdb.Error as e:
        return str(e).strip().splitlines()[0]
    return None


def _sample(dtype: dt.DataType, sql: str) -> str:
    if dtype.is_string():
        return "'x'"
    if dtype.is_boolean():
        return "TRUE"
    if dtype.is_numeric():
        return f"CAST(1 AS {sql})"
    if dtype.is_temporal():
        return f"TRY_CAST('2000-01-01' AS {sql})"
    return f"CAST(NULL AS {sql})"
