"""`pumphouse query`: the pump's output as a view named after it, rejected rows as NAME_rejected."""

from __future__ import annotations

from typing import Any

import duckdb

from schemas.errors import UsageError
from schemas.loader import resolve_mapping
from schemas.spec import DeltaSink, ParquetSink, Spec
from tasks import sink_delta, sink_parquet
from tasks._duckdb import connect, ident, quote, register_fs


def run_query(spec: Spec, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Run read-only SQL against the pump's output; returns (column names, rows)."""
    sink = spec.sink
    if not isinstance(sink, ParquetSink | DeltaSink):
        raise UsageError(
            f"query reads parquet and delta sinks in this build; sink.type is {sink.type!r}"
        )
    fs, root = sink_parquet.target(sink.url, resolve_mapping(sink.storage_options))
    con = connect(memory_bytes=spec.limits.memory)
    register_fs(con, fs)
    prefix = "" if sink_parquet.is_local(fs) else f"{_protocol(fs)}://"
    views = []
    for view, sub in ((spec.name, "data"), (f"{spec.name}_rejected", "rejected")):
        if sub == "data" and isinstance(sink, DeltaSink):  # the table's current version
            table = sink_delta.dataset(spec)
            if table is not None:
                con.register(view, table)
                views.append(view)
            continue
        if fs.glob(f"{root}/{sub}/**/*.parquet"):
            pattern = quote(f"{prefix}{root}/{sub}/**/*.parquet")
            con.execute(
                f"CREATE VIEW {ident(view)} AS SELECT * FROM read_parquet({pattern}, "
                "hive_partitioning = true, union_by_name = true)"
            )
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


def _protocol(fs: Any) -> str:
    return fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
