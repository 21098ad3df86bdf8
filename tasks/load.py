"""Load a staged run into the sink: dedup across the whole run, then write it batch by batch."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from schemas.errors import NotSupportedYet
from schemas.loader import resolve_mapping
from schemas.spec import ParquetSink, Spec
from tasks import faults, sink_parquet
from tasks._duckdb import Connection, connect, ident, quote, scalar
from tasks.transform import dedup_sql, numbered_sql


@dataclass
class Loaded:
    rows_duplicate: int = 0
    rows_written: int = 0
    hwm_after: str | None = None


def load_run(spec: Spec, run_dir: str, run_id: str, hwm_before: str | None) -> Loaded:
    """Write the run's rows and rejected rows to the sink; idempotent for the same run."""
    sink = spec.sink
    if not isinstance(sink, ParquetSink):
        raise NotSupportedYet(
            f"sink.type {sink.type!r} is valid but not supported by this build yet; use sink.type parquet"
        )
    run = Path(run_dir)
    fs, root = sink_parquet.target(sink.url, resolve_mapping(sink.storage_options))
    sink_parquet.remove_run(fs, root, run_id)  # a replay starts from nothing of its own
    con = connect(memory_bytes=spec.limits.memory, temp_dir=str(run / "tmp"))
    out = Loaded(hwm_after=hwm_before)
    try:
        valid = sorted(str(p) for p in (run / "valid").glob("*.parquet"))
        if valid:
            staged = f"read_parquet({_list(valid)}, union_by_name = true)"
            if spec.transform.incremental:
                top = scalar(
                    con,
                    f"SELECT max({ident(spec.transform.incremental.cursor)})::VARCHAR FROM {staged}",
                )
                out.hwm_after = top if top is not None else hwm_before
            numbered = numbered_sql(
                dedup_sql(spec.transform.dedup, staged), spec.limits.batch_rows, sink.partition_by
            )
            con.execute(f"CREATE TEMP TABLE out AS {numbered}")
            total = int(scalar(con, f"SELECT count(*) FROM {staged}"))
            out.rows_written = int(scalar(con, "SELECT count(*) FROM out"))
            out.rows_duplicate = total - out.rows_written
            _write_batches(
                con, "out", fs, f"{root}/data", run_id, sink.partition_by, run, ("_source", "_row")
            )
        rejected = sorted(str(p) for p in (run / "rejected").glob("*.parquet"))
        if rejected and spec.on_invalid == "quarantine":
            src = f"read_parquet({_list(rejected)}, union_by_name = true)"
            con.execute(
                f"CREATE TEMP TABLE rej AS {numbered_sql(f'SELECT * FROM {src}', spec.limits.batch_rows, ())}"
            )
            _write_batches(con, "rej", fs, f"{root}/rejected", run_id, (), run, ())
    finally:
        con.close()
    return out


def _write_batches(
    con: Connection,
    table: str,
    fs: Any,
    dest: str,
    run_id: str,
    partition_by: tuple[str, ...],
    run: Path,
    drop: tuple[str, ...],
) -> int:
    n = int(scalar(con, f"SELECT coalesce(max(_batch) + 1, 0) FROM {table}"))
    exclude = ", ".join(("_batch", *drop))
    for k in range(n):
        sql = f"SELECT * EXCLUDE ({exclude}) FROM {table} WHERE _batch = {k}"
        sink_parquet.write(
            con, sql, fs, dest, f"part-{run_id}-{k:05d}", partition_by, str(run / "tmp")
        )
        faults.point("loaded_batch")
    return n


def _list(paths: list[str]) -> str:
    return "[" + ", ".join(quote(p) for p in paths) + "]"
