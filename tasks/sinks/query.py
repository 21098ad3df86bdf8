"""`pumphouse query`: the pump's output as a view named after it, rejected rows as NAME_rejected."""

from __future__ import annotations

from typing import Any

import duckdb

from schemas.errors import UsageError
from schemas.spec import DeltaSink, ParquetSink, SchemaSpec, Spec
from tasks.engine.db import connect, ident, literal_glob, quote, register_fs
from tasks.sinks import delta as sink_delta
from tasks.sinks import parquet as sink_parquet
from tasks.sinks import registry as sinks
from tasks.state.store import StateStore
from tasks.transform.sql import projection


def run_query(spec: Spec, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Run read-only SQL against the pump's output; returns (column names, rows).

    Before anything landed (or was rejected) the view is there, empty, with the columns the
    spec gives it. An http sink has no output to query: only its rejected rows, which are
    under the pump's state folder."""
    sink = spec.sink
    con = connect(memory_bytes=spec.limits.memory)
    fs, root = sinks.files_target(spec, StateStore(spec.name).location)
    wanted = [(f"{spec.name}_rejected", "rejected")]
    if isinstance(sink, ParquetSink | DeltaSink):
        wanted.insert(0, (spec.name, "data"))
    register_fs(con, fs)
    prefix = "" if sink_parquet.is_local(fs) else f"{_protocol(fs)}://"
    views = []
    for view, sub in wanted:
        if sub == "data" and isinstance(sink, DeltaSink):  # the table's current version
            table = sink_delta.dataset(spec)
            if table is not None:
                con.register(view, table)
                views.append(view)
                continue
        elif any(f.endswith(".parquet") for f in sink_parquet.files_in(fs, f"{root}/{sub}")):
            pattern = quote(f"{literal_glob(prefix + root)}/{sub}/**/*.parquet")
            con.execute(
                f"CREATE VIEW {ident(view)} AS SELECT * FROM read_parquet({pattern}, "
                "hive_partitioning = true, union_by_name = true)"
            )
            views.append(view)
            continue
        columns = _columns(spec, rejected=sub == "rejected")
        if columns:
            typed = ", ".join(f"NULL::{t} AS {ident(n)}" for n, t in columns)
            con.execute(f"CREATE VIEW {ident(view)} AS SELECT {typed} WHERE false")
            views.append(view)
    try:
        rel = con.sql(sql)
        if rel is None:
            raise UsageError("the query returned nothing; give a SELECT")
        return list(rel.columns), rel.fetchall()
    except duckdb.Error as e:
        # The SQL is the caller's: a query that fails is a usage error (exit 2), not a failed run.
        have = ", ".join(views) or f"none yet (run the pump first; output goes to {sink.url})"
        first_line = str(e).splitlines()[0].rstrip(".!")
        raise UsageError(f"query failed: {first_line}; views here: {have}") from None
    finally:
        con.close()


def _columns(spec: Spec, rejected: bool) -> list[tuple[str, str]]:
    """(name, DuckDB type) of the output (after select and rename), or of rejected rows
    (the schema's columns as text, then why and where); none without a schema."""
    from tasks.contract.check import contract_of
    from tasks.contract.columns import columns_of

    if rejected and isinstance(spec.schema_, SchemaSpec):  # no pandera needed for the names
        types = dict.fromkeys(spec.schema_.columns, "VARCHAR")
    else:
        schema = contract_of(spec).schema()
        types = {c.name: c.sql for c in columns_of(schema)} if schema is not None else {}
    if rejected:
        why = [("_errors", "VARCHAR[]"), ("_source", "VARCHAR"), ("_row", "BIGINT")]
        return [(n, "VARCHAR") for n in types] + [*why, ("_raw", "VARCHAR")]
    # A selected column the schema leaves out (strict: false) is text.
    return [
        (dst, types.get(src, "VARCHAR")) for src, dst in projection(spec.transform, list(types))
    ]


def _protocol(fs: Any) -> str:
    return fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
