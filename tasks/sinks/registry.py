"""The one place that knows which sink serves which `sink.type`: SINKS, one Sink each.

Every sink offers the same few things (the Sink protocol): write a run's numbered rows
(idempotently for a replay of the same run), take back what an abandoned run committed,
remove all output (for --full-refresh), the batch sequence it has committed, and where its
files (and rejected rows) go. The load step and the flow call only this module's functions;
a new sink is one class here and one entry in SINKS.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, cast

from schemas.loader import resolve_mapping
from schemas.settings import settings
from schemas.spec import DeltaSink, ParquetSink, Spec
from tasks.engine.db import Connection
from tasks.io.files import is_remote, state_options
from tasks.sinks import parquet as sink_parquet
from tasks.sinks import webhook as sink_http
from tasks.sinks.load import Load


class Sink(Protocol):
    """What a sink does for the load step and the flow; `spec.sink` is of its type."""

    def write_rows(self, load: Load) -> None: ...

    def files(self, spec: Spec, state: str) -> tuple[Any, str]:
        """The filesystem and folder of the pump's parquet files: data, rejected rows."""
        ...

    def abandon_run(self, spec: Spec, run_id: str) -> None:
        """Take back what the sink itself committed for the open run (beyond its files)."""
        ...

    def remove_all(self, spec: Spec) -> None:
        """Drop what the sink holds beyond its files (--full-refresh)."""
        ...

    def committed_seq(self, spec: Spec) -> int:
        """The highest batch sequence the sink itself says it holds (0 when it keeps none)."""
        ...


class Parquet:
    """Parquet files under URL/data/ (and URL/rejected/), named per run and batch."""

    def write_rows(self, load: Load) -> None:
        fs, root = _table_target(load.spec)
        partition_by = cast(ParquetSink, load.spec.sink).partition_by
        sink_parquet.write_batches(
            load.con,
            load.table,
            load.batches,
            fs,
            f"{root}/data",
            load.run_id,
            partition_by,
            load.run,
        )

    def files(self, spec: Spec, state: str) -> tuple[Any, str]:
        return _table_target(spec)

    def abandon_run(self, spec: Spec, run_id: str) -> None:
        return None

    def remove_all(self, spec: Spec) -> None:
        return None

    def committed_seq(self, spec: Spec) -> int:
        return 0


class Delta(Parquet):
    """A Delta table at URL (rejected rows as parquet under URL/rejected/). deltalake is
    imported by the first call: a run of another sink never loads it."""

    def write_rows(self, load: Load) -> None:
        from tasks.sinks import delta

        delta.write_batches(load)

    def abandon_run(self, spec: Spec, run_id: str) -> None:
        from tasks.sinks import delta

        delta.abandon_run(spec, run_id)

    def remove_all(self, spec: Spec) -> None:
        from tasks.sinks import delta

        delta.remove_all(spec)

    def committed_seq(self, spec: Spec) -> int:
        from tasks.sinks import delta

        return delta.committed_seq(spec)


class Webhook:
    """POSTs to a webhook; with no folder of its own, its files (rejected rows) go under the
    pump's state location. Deliveries cannot be unsent."""

    def write_rows(self, load: Load) -> None:
        sink_http.deliver(load)

    def files(self, spec: Spec, state: str) -> tuple[Any, str]:
        options = state_options(settings.state_storage_options) if is_remote(state) else {}
        return sink_parquet.target(state, options)

    def abandon_run(self, spec: Spec, run_id: str) -> None:
        return None

    def remove_all(self, spec: Spec) -> None:
        return None

    def committed_seq(self, spec: Spec) -> int:
        return 0


SINKS: dict[str, Sink] = {"parquet": Parquet(), "delta": Delta(), "http": Webhook()}


def sink_of(spec: Spec) -> Sink:
    """The sink that serves `spec.sink.type`."""
    return SINKS[spec.sink.type]


def write_rows(load: Load) -> None:
    """Write the run's rows (see tasks/sinks/load) to the sink of `load.spec`."""
    sink_of(load.spec).write_rows(load)


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
    sink_of(spec).abandon_run(spec, run_id)
    remove_run(spec, run_id, state)


def remove_all(spec: Spec, state: str) -> None:
    """--full-refresh: drop everything the pump has written (a webhook cannot be unsent)."""
    sink_of(spec).remove_all(spec)
    fs, root = files_target(spec, state)
    sink_parquet.remove_all(fs, root)


def committed_seq(spec: Spec) -> int:
    """The highest batch sequence the sink itself says it holds (0 when it keeps none)."""
    return sink_of(spec).committed_seq(spec)


def files_target(spec: Spec, state: str) -> tuple[Any, str]:
    """Where the pump's parquet files go: the sink's URL, or for the http sink (which has no
    folder of its own) the pump's state location `state` (a folder or a URL)."""
    return sink_of(spec).files(spec, state)


def _table_target(spec: Spec) -> tuple[Any, str]:
    sink = cast(ParquetSink | DeltaSink, spec.sink)
    return sink_parquet.target(sink.url, resolve_mapping(sink.storage_options))
