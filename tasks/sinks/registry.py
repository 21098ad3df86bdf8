"""The one place that knows which sink module serves which `sink.type`.

Every sink offers the same three things: write a run's numbered rows (idempotently for a
replay of the same run), remove all output (for --full-refresh), and say where rejected
rows go. The load step and the flow call only these.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from schemas.loader import resolve_mapping
from schemas.settings import settings
from schemas.spec import DeltaSink, HttpSink, ParquetSink, Spec
from tasks.engine.db import Connection
from tasks.io.files import is_remote, state_options
from tasks.sinks import delta as sink_delta
from tasks.sinks import parquet as sink_parquet
from tasks.sinks import webhook as sink_http


def write_rows(
    con: Connection,
    table: str,
    batches: int,
    spec: Spec,
    run: Path,
    run_id: str,
    seq_base: int,
    hwm: str | None,
) -> None:
    """Write `table` (numbered by `_batch`, 0..batches-1, lineage `_source`, `_row` still on);
    `hwm` is the high-water mark the run will commit (a Delta commit records it)."""
    sink = spec.sink
    if isinstance(sink, DeltaSink):
        sink_delta.write_batches(con, table, batches, spec, run, run_id, seq_base, hwm)
    elif isinstance(sink, HttpSink):
        sink_http.deliver(con, table, batches, spec, run, run_id)
    else:
        fs, root = _parquet_target(sink)
        sink_parquet.write_batches(
            con, table, batches, fs, f"{root}/data", run_id, sink.partition_by, run
        )


def write_rejected(
    con: Connection, table: str, batches: int, spec: Spec, run: Path, run_id: str, state: str
) -> None:
    """Rejected rows as parquet: under URL/rejected/, or for the http sink under the pump's
    state location `state` (a folder or a URL)."""
    fs, root = files_target(spec, state)
    sink_parquet.write_batches(
        con, table, batches, fs, f"{root}/rejected", run_id, (), run, lineage=True
    )


def remove_run(spec: Spec, run_id: str, state: str) -> None:
    """Delete the files an earlier attempt of this run wrote (the parquet parts, rejected rows)."""
    fs, root = files_target(spec, state)
    sink_parquet.remove_run(fs, root, run_id)


def abandon_run(spec: Spec, run_id: str, state: str) -> None:
    """`reset --run`: take out of the sink what the open run `run_id` wrote (files, and the
    batches a Delta table committed), so that the next run, reading its files again, lands
    each row once. A webhook's deliveries cannot be unsent."""
    if isinstance(spec.sink, DeltaSink):
        sink_delta.abandon_run(spec, run_id)
    remove_run(spec, run_id, state)


def remove_all(spec: Spec, state: str) -> None:
    """--full-refresh: drop everything the pump has written (a webhook cannot be unsent)."""
    if isinstance(spec.sink, DeltaSink):
        sink_delta.remove_all(spec)
    fs, root = files_target(spec, state)
    sink_parquet.remove_all(fs, root)


def committed_seq(spec: Spec) -> int:
    """The highest batch sequence the sink itself says it holds (0 when it keeps none)."""
    if isinstance(spec.sink, DeltaSink):
        return sink_delta.committed_seq(spec)
    return 0


def files_target(spec: Spec, state: str) -> tuple[Any, str]:
    """Where the pump's parquet files go: the sink's URL, or for the http sink (which has no
    folder of its own) the pump's state location `state` (a folder or a URL)."""
    if not isinstance(spec.sink, HttpSink):
        return _parquet_target(spec.sink)
    options = state_options(settings.state_storage_options) if is_remote(state) else {}
    return sink_parquet.target(state, options)


def _parquet_target(sink: ParquetSink | DeltaSink) -> tuple[Any, str]:
    return sink_parquet.target(sink.url, resolve_mapping(sink.storage_options))
