"""The Delta Lake sink (`sink.type: delta`): append or merge one commit per batch, overwrite
one commit per run (a run stopped at limits.max_rows_per_run replaces the table; the runs that
read what it left append to it: tasks/run/as_started.py).

Exactly once: each batch's commit carries a Delta app transaction (app id `pumphouse:NAME`,
version = the batch's sequence number) and the run's state as commit metadata (run id,
batch k of n, high-water mark). Data and that record land in one atomic commit, so a batch
the table already holds is recognised on a replay and skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from deltalake.exceptions import DeltaError, TableNotFoundError

from schemas.errors import DataError, PumpError, SinkRefused, TransientError, UsageError
from schemas.loader import resolve_mapping
from schemas.spec import DeltaSink, Spec
from tasks.engine.db import Connection, arrow, column_types
from tasks.io.storage import object_store_error, plain, storage_errors
from tasks.run import faults
from tasks.sinks import _delta_merge, _delta_schema
from tasks.sinks import delta_storage as _delta_storage
from tasks.sinks import parquet as sink_parquet
from tasks.sinks.load import Load

META = "pumphouse."  # prefix of the commit metadata keys pumphouse writes


def app_id(spec: Spec) -> str:
    return f"pumphouse:{spec.name}"


def write_batches(load: Load) -> None:
    """Commit each `_batch` k of the load's table as table version with app transaction
    seq_base + k + 1
    (overwrite: all of them in one commit, seq_base + batches); skip the batches the table
    already holds (a replay of an interrupted run). Each commit records `hwm`, the high-water
    mark the run commits.

    Storage and commit-conflict failures are transient: the load is retried, and the retry
    skips what got committed."""
    try:
        _write_batches(load)
    except (OSError, DeltaError) as e:  # a commit conflict, or a read failing mid-write
        spec = load.spec
        where = f"sink {spec.sink.url}"
        found = object_store_error(e, where, "writing", OPTIONS) if isinstance(e, OSError) else None
        if found is not None:
            raise found from None
        first = _first(e)
        raise TransientError(
            f"writing the Delta table at {spec.sink.url} failed: {first}; "
            "run again: batches already committed are skipped"
        ) from e


def _write_batches(load: Load) -> None:
    con, table, batches, spec = load.con, load.table, load.batches, load.spec
    run_id, seq_base, hwm = load.run_id, load.seq_base, load.hwm
    sink = _sink(spec)
    uri, options = _delta_storage.table_uri(sink), _delta_storage.storage_options(sink)
    dt = open_table(uri, options)
    done = _txn(dt, app_id(spec))
    if seq_base + batches <= done:
        return
    source = table
    reduced = _delta_merge.one_row_per_key_sql(spec, table) if sink.mode == "merge" else None
    if reduced is not None:
        con.execute(f"CREATE OR REPLACE TEMP TABLE _delta_source AS {reduced}")
        source = "_delta_source"
    select = _delta_schema.select_list(
        column_types(con, f"SELECT * EXCLUDE (_batch, _source, _row) FROM {source}")
    )
    fit = _delta_schema.Fit()
    if dt is not None and sink.mode != "overwrite":  # overwrite replaces the schema too
        try:
            fit = _delta_schema.fit(
                pa.schema(dt.schema().to_arrow()),
                dt.metadata().partition_columns,
                arrow(con, f"SELECT {select} FROM {source} LIMIT 0").schema,
                sink.partition_by,
                sink.url,
            )
        except DataError as e:
            if done > seq_base:  # an earlier attempt of this run committed batches: keep the run
                raise
            raise SinkRefused(str(e)) from None
    if sink.mode == "overwrite":
        if batches:
            rows = f"SELECT {select} FROM {source} WHERE _batch < {batches}"
            commit = _commit(spec, run_id, batches, batches, seq_base + batches, hwm)
            _overwrite(con, dt, uri, options, spec, rows, commit)
        return
    for k in range(batches):
        seq = seq_base + k + 1
        if seq <= done:
            continue
        data = fit.apply(arrow(con, f"SELECT {select} FROM {source} WHERE _batch = {k}"))
        commit = _commit(spec, run_id, k + 1, batches, seq, hwm)
        dt = _commit_batch(dt, uri, options, spec, data, commit, fit)
        if _txn(dt, app_id(spec)) < seq:  # a merge that changed no row commits nothing
            write_deltalake(
                dt,
                data.slice(0, 0),
                mode="append",
                schema_mode="merge" if fit.schema_changes else None,
                commit_properties=commit,
            )
        faults.point("loaded_batch")


def _overwrite(
    con: Connection,
    dt: DeltaTable | None,
    uri: str,
    options: dict[str, str],
    spec: Spec,
    rows: str,
    commit: CommitProperties,
) -> None:
    """The run's rows (the query `rows`, in the table's columns) as one commit, so that readers
    see the old rows or the new, never a part; `commit` is the run's last batch."""
    sink = _sink(spec)
    write_deltalake(
        dt if dt is not None else uri,
        con.sql(rows).to_arrow_reader(spec.limits.batch_rows),  # streamed: one schema
        mode="overwrite",
        schema_mode="overwrite" if dt is not None else None,
        partition_by=list(sink.partition_by) or None,
        storage_options=None if dt is not None else options,
        commit_properties=commit,
    )
    faults.point("loaded_batch")


def _commit(
    spec: Spec, run_id: str, upto: int, batches: int, seq: int, hwm: str | None
) -> CommitProperties:
    """A commit of the run's batches up to `upto` of `batches`: the app transaction `seq`
    (the pump's batch sequence) and the run's state as metadata, atomic with the data."""
    meta = {
        f"{META}pump": spec.name,
        f"{META}run_id": run_id,
        f"{META}batch": f"{upto}/{batches}",
        f"{META}seq": str(seq),
        f"{META}hwm": hwm or "",
    }
    return CommitProperties(
        custom_metadata=meta, app_transactions=[Transaction(app_id=app_id(spec), version=seq)]
    )


def _commit_batch(
    dt: DeltaTable | None,
    uri: str,
    options: dict[str, str],
    spec: Spec,
    data: pa.Table,
    commit: CommitProperties,
    fit: _delta_schema.Fit,
) -> DeltaTable:
    """Append or merge one batch (the table is created by the first)."""
    sink = _sink(spec)
    if dt is None:
        write_deltalake(
            uri,
            data,
            mode="append",
            partition_by=list(sink.partition_by) or None,
            storage_options=options,
            commit_properties=commit,
        )
    elif sink.mode == "merge":
        keys = [fit.name(key) for key in spec.merge_key]
        null_keys = any(data.column(key).null_count for key in keys)
        merger = dt.merge(
            data,
            predicate=_delta_merge.match_predicate(keys, null_safe=null_keys),
            source_alias="s",
            target_alias="t",
            merge_schema=fit.schema_changes,
            streamed_exec=False,  # the batch is in memory: let deltalake prune by its key range
            commit_properties=commit,
        )
        update = _delta_merge.update_predicate(spec.transform.dedup, fit.name)
        if update != _delta_merge.NEVER:
            merger = merger.when_matched_update_all(predicate=update)
        merger.when_not_matched_insert_all().execute()
    else:
        write_deltalake(
            dt,
            data,
            mode="append",
            schema_mode="merge" if fit.schema_changes else None,
            commit_properties=commit,
        )
    if dt is None:
        return DeltaTable(uri, storage_options=options or None)
    dt.update_incremental()
    return dt


def committed_seq(spec: Spec) -> int:
    """The table's app transaction version for this pump: the last batch it holds (0: none)."""
    dt = _open(spec)
    return _txn(dt, app_id(spec))


def committed_state(spec: Spec) -> dict[str, str] | None:
    """The pumphouse metadata (run id, batch, seq, hwm) of the table's latest batch commit."""
    dt = _open(spec)
    if dt is None:
        return None
    for entry in dt.history():  # newest first
        if f"{META}seq" in entry:
            return {k.removeprefix(META): str(v) for k, v in entry.items() if k.startswith(META)}
    return None


def remove_all(spec: Spec) -> None:
    """Delete the table (--full-refresh): its data files first, its log last, so that a
    removal killed half way is still recognised as a table and finished by the next run."""
    sink = _sink(spec)
    fs, root = sink_parquet.target(sink.url, resolve_mapping(sink.storage_options))
    with storage_errors(f"sink {sink.url}", "removing the Delta table", "sink.storage_options"):
        fs.invalidate_cache()
        if not fs.exists(f"{root}/_delta_log"):
            return
        for entry in fs.ls(root, detail=False):
            name = str(entry).rstrip("/").rsplit("/", 1)[-1]
            if _written_by_delta(name):
                _remove(fs, str(entry))
        sink_parquet.remove_tree(fs, f"{root}/_delta_log")


def abandon_run(spec: Spec, run_id: str) -> int:
    """Take the batches run `run_id` committed out of the table (`reset --run`): restore the
    version before its first commit (delete every row when that commit made the table), as
    one new commit. Returns how many commits the run had made. Refused when a later commit
    is not the run's own (a compact, another writer): restoring would undo it too."""
    dt = _open(spec)
    if dt is None:
        return 0
    history = dt.history()
    if any(e.get(f"{META}abandoned") == run_id for e in history):
        return 0  # done before, by a reset --run stopped before it dropped the manifest
    mine = [int(e["version"]) for e in history if e.get(f"{META}run_id") == run_id]
    if not mine:
        return 0
    first = min(mine)
    for entry in history:
        if int(entry["version"]) > first and entry.get(f"{META}run_id") != run_id:
            raise UsageError(
                f"sink {spec.sink.url}: the Delta table has a commit after run {run_id}'s "
                f"(version {entry['version']}, {entry.get('operation')}) that reset --run "
                "would undo too; run the pump again to finish the open run instead"
            )
    commit = CommitProperties(
        custom_metadata={f"{META}pump": spec.name, f"{META}abandoned": run_id}
    )
    if first == 0:
        dt.delete(commit_properties=commit)
    else:
        dt.restore(first - 1, commit_properties=commit)
    return len(mine)


def _remove(fs: Any, path: str) -> None:
    """A file or a folder, its path taken literally (the sink's URL may hold `[`)."""
    if fs.isdir(path):
        sink_parquet.remove_tree(fs, path)
    else:
        fs.rm_file(path)


def _written_by_delta(name: str) -> bool:
    """Files and folders a Delta writer puts in the table folder (not the log)."""
    return (
        "=" in name  # a partition folder
        or name.endswith((".parquet", ".bin", ".crc"))
        or name in ("_change_data", "rejected")
    )


@dataclass(frozen=True)
class Compacted:
    files_before: int
    files_after: int
    files_deleted: int  # by vacuum: files no version within the retention period needs
    version: int


def compact(spec: Spec, retention_hours: int | None = None) -> Compacted:
    """Rewrite small files into large ones (optimize), then delete the files that only
    versions older than the retention period (the table's, 7 days by default) still need.

    Vacuum runs in lite mode: it deletes only files the log says were removed, never a file
    the log does not know, so URL/rejected/ and anything else beside the table stays.
    """
    dt = _open(spec)
    if dt is None:
        raise UsageError(f"no Delta table at {spec.sink.url} yet; run the pump first")
    before = len(dt.file_uris())
    dt.optimize.compact(
        commit_properties=CommitProperties(custom_metadata={f"{META}pump": spec.name})
    )
    deleted = dt.vacuum(
        retention_hours=retention_hours,
        dry_run=False,
        enforce_retention_duration=retention_hours is None,
        full=False,
    )
    dt.create_checkpoint()  # readers start from here instead of replaying every small commit
    dt.cleanup_metadata()  # log entries older than the log retention (30 days by default)
    return Compacted(before, len(dt.file_uris()), len(deleted), dt.version())


def dataset(spec: Spec) -> Any:
    """The table's current version as a pyarrow dataset (for `pumphouse query`), None if absent."""
    dt = _open(spec)
    return None if dt is None else dt.to_pyarrow_dataset()


def _open(spec: Spec) -> DeltaTable | None:
    sink = _sink(spec)
    return open_table(_delta_storage.table_uri(sink), _delta_storage.storage_options(sink))


def open_table(uri: str, options: dict[str, str]) -> DeltaTable | None:
    """The table at `uri`, or None when there is none yet."""
    # Not DeltaTable.is_deltatable: it holds the GIL while it waits on the network.
    try:
        return DeltaTable(uri, storage_options=options or None)
    except TableNotFoundError:
        return None
    except OSError as e:
        where = f"sink {uri}"
        found = object_store_error(e, where, "opening the Delta table", OPTIONS)
        raise found or TransientError(  # unsorted: a second try may pass, as for a write
            f"{where}: opening the Delta table failed ({_first(e)}); run again, and if it "
            f"keeps failing check the URL and {OPTIONS}"
        ) from None


OPTIONS = "sink.storage_options"


def _first(e: BaseException) -> str:
    """The first line of an error's text, without deltalake's colours."""
    text = plain(e)
    return text.splitlines()[0] if text else type(e).__name__


def _txn(dt: DeltaTable | None, app: str) -> int:
    return (dt.transaction_version(app) or 0) if dt is not None else 0


def _sink(spec: Spec) -> DeltaSink:
    if not isinstance(spec.sink, DeltaSink):
        raise PumpError(f"sink.type is {spec.sink.type!r}, not delta")
    return spec.sink
