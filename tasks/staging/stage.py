"""Read one input file in bounded batches, check each against the contract, transform, stage.

Staged batches are parquet files in the run's staging folder: valid rows (with
lineage `_source`, `_row`) under valid/, rejected rows under rejected/. A local run keeps its
valid rows in its DuckDB instead while there is room (see tasks/staging/kept).
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator
from pathlib import Path

import duckdb

from schemas.errors import DataError, FilterFailed, SpecError
from schemas.spec import (
    FilesSource,
    HttpSource,
    SchemaSpec,
    Spec,
    lookback_needs_time,
    renamed_twice,
)
from tasks.contract.check import check_batch, contract_of
from tasks.engine.db import Connection, quote
from tasks.engine.shared import session, shared
from tasks.internal import STAGED, InternalField
from tasks.run import deadline, progress
from tasks.run.summary import Counts
from tasks.sinks import partitions as _partitions
from tasks.sources.files.listing import SourceFile, safe_url
from tasks.sources.files.read import Batch, ndjson_blocks, read_batches
from tasks.sources.http import PageInput, Resume, page_input, read_pages, resume_of, warnings_heard
from tasks.sources.inputs import Input
from tasks.staging import folder as staging
from tasks.staging import kept
from tasks.staging._ndjson import StageChecked, stage_blocks
from tasks.state.known import Measuring, changed_warning, entry_of, measuring, partial_warning
from tasks.transform.sql import batch_sql, missing_column, projection, valid_rows_sql


def stage_input(spec: Spec, run_dir: str, index: int, file: Input, hwm: str | None) -> Counts:
    """stage_file, and for a files source what state keeps of the file (`content`, see
    tasks/state/known) and the warning of a file read whole again because it changed."""
    source = spec.source
    if not (isinstance(source, FilesSource) and isinstance(file, SourceFile)):
        return stage_file(spec, run_dir, index, file, hwm)
    read = measuring(file)
    counts = stage_file(spec, run_dir, index, file, hwm, read)
    counts.content = entry_of(source, file, read, counts.content.get("open_line", 0))
    if file.changed:
        counts.warnings = [*counts.warnings, changed_warning(file)]
    elif file.partial:
        counts.warnings = [*counts.warnings, partial_warning(file)]
    return counts


def stage_file(
    spec: Spec,
    run_dir: str,
    index: int,
    file: Input,
    hwm: str | None,
    read: Measuring | None = None,
) -> Counts:
    """Stage one file into `run_dir`: a folder, or a staging URL (see tasks/staging/folder);
    `read` measures the file's bytes as the block reader reads them (see tasks/state/known)."""
    # Staged batches that stay on this machine are read once, by the load step: compressing
    # them costs more CPU than it saves (orders-1m: stage and load ~0.15 CPU-s less). Those
    # uploaded to a staging URL travel: compressed.
    compression = "snappy" if staging.is_remote(run_dir) else "uncompressed"
    with staging.workspace(run_dir) as local:
        return _stage_file(spec, run_dir, local, index, file, hwm, compression, read)


@contextlib.contextmanager
def one_engine(spec: Spec, run_dir: str, width: int, *, keep: bool = False) -> Iterator[None]:
    """While open, the files of the run at `run_dir` that this process stages, `width` at a
    time, share one DuckDB (see tasks/engine/shared), with the memory those files had
    together when each had a DuckDB of its own (one file may now take more than its share).
    With `keep`, the run's load step uses it too (with limits.memory, the load's), and a
    files source's valid rows stay in it (see tasks/staging/kept)."""
    memory = _file_memory(spec) * max(1, width)
    if keep:
        memory = max(memory, int(spec.limits.memory))
    keeping = kept.keeping(run_dir, memory) if keep else contextlib.nullcontext()
    with shared(run_dir, memory, str(Path(run_dir) / "tmp"), sandbox=[run_dir]), keeping:
        yield


def _file_memory(spec: Spec) -> int:
    """The memory one file's staging has: its share of limits.memory, at least 64 MiB."""
    limits = spec.limits
    return max(64 * 2**20, limits.memory // limits.max_concurrency)


def _stage_file(
    spec: Spec,
    run_dir: str,
    local: str,
    index: int,
    file: Input,
    hwm: str | None,
    compression: str,
    read: Measuring | None,
) -> Counts:
    """Stage every batch of one file into the folder `local` (`run_dir`'s workspace); returns
    its counts. Safe to repeat: it overwrites its own output.

    NDJSON is read by DuckDB in large blocks (see _json_lines); a file it cannot read exactly
    as the record reader would is staged again from the start by the record reader.
    """
    run = Path(local)
    # The filter runs here: DuckDB may touch only this folder (see _duckdb.lock).
    with session(_file_memory(spec), str(run / "tmp"), shared=run_dir, sandbox=[local]) as con:
        blocks, keep_as = None, None
        if isinstance(spec.source, FilesSource) and isinstance(file, SourceFile):
            blocks = ndjson_blocks(spec.source, file, spec.limits, read.update if read else None)
            budget = kept.room(run_dir)
            keep_as = (file.url, budget) if budget is not None else None
        keeping = con if keep_as is not None else None
        _clear(run, index, keeping)
        checked = functools.partial(_stage_checked, compression=compression, keep_as=keep_as)
        try:
            counts = (
                stage_blocks(con, spec, run, index, file, hwm, blocks, checked)
                if blocks and isinstance(file, SourceFile)
                else None
            )
            if counts is None:
                if read is not None:  # the record reader reads the file again: measured apart
                    read.spoil()
                _clear(run, index, keeping)
                counts = _stage_batches(con, spec, run, index, file, hwm, checked)
        except InternalField as e:
            raise DataError(f"{safe_url(file.url)}: {e}") from None
        progress.emit("files", 1)
    return counts


def _clear(run: Path, index: int, keeping: Connection | None = None) -> None:
    """Remove what an earlier attempt staged of input `index`: its files, and with `keeping`
    (the run's DuckDB) the tables it kept there."""
    if keeping is not None:
        kept.drop(keeping, index)
    for sub in ("valid", "rejected"):
        (run / sub).mkdir(parents=True, exist_ok=True)
        for old in (run / sub).glob(f"{index:05d}-*.parquet"):
            old.unlink()


def _stage_batches(
    con: Connection,
    spec: Spec,
    run: Path,
    index: int,
    file: Input,
    hwm: str | None,
    stage_checked: StageChecked,
) -> Counts:
    counts = Counts(files=1, bytes=file.size if isinstance(file, SourceFile) else 0)
    left: list[Resume] = []  # where an http source stopped at max_rows_per_run
    with warnings_heard() as heard:
        for batch in _batches(spec, file, hwm, left):
            deadline.check()
            name = f"{index:05d}-{batch.seq:05d}"
            con.register("raw_batch", batch.table)
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE checked AS {check_batch(con, spec, 'raw_batch', batch.kind)}"
            )
            con.unregister("raw_batch")
            counts.add(stage_checked(con, spec, run, name, hwm))
            progress.emit("rows", batch.table.num_rows)
            if batch.open_line:  # for stage_input: see tasks/state/known.entry_of
                counts.content = {"open_line": batch.open_line}
    counts.warnings = heard
    if isinstance(spec.source, HttpSource):
        counts.rest = [page_input(spec.source, point) for point in left]
    return counts


def _batches(spec: Spec, file: Input, hwm: str | None, left: list[Resume]) -> Iterator[Batch]:
    source = spec.source
    if isinstance(source, HttpSource):
        # A file left by the run before, while the source was files: from the first page.
        resume = resume_of(source, file) if isinstance(file, PageInput) else None
        return read_pages(source, hwm, spec.limits, resume, left)
    assert isinstance(
        source, FilesSource
    )  # a webhook source runs as files (tasks/receive/inbox.py)
    if not isinstance(file, SourceFile):
        raise SpecError(
            f"the open run began with an http source ({safe_url(file.url)}), and the spec "
            "now has a files source; put the http source back for this run to finish, or "
            "run `pumphouse reset` to start over"
        )
    return read_batches(source, file, spec.limits, _positional(spec))


def _positional(spec: Spec) -> list[str]:
    """The names of a headerless CSV's fields: the schema's columns, in order."""
    source = spec.source
    if not isinstance(source, FilesSource) or source.csv.header:
        return []
    if isinstance(spec.schema_, SchemaSpec):
        return list(spec.schema_.columns)
    schema = contract_of(spec).schema()
    return list(schema.columns) if schema is not None else []


def _names_known(spec: Spec, columns: list[str]) -> None:
    """DataError for a column that a batch needs (select, the cursor) and the data does not
    have: with `strict: false` the schema need not list every column, so this is known only
    once the data is read. What the run's rows need together is checked at load."""
    t = spec.transform
    missing_column("transform.select", list(t.select or []), columns)
    if (twice := renamed_twice(t.rename, list(t.select or columns))) is not None:
        raise DataError(f"transform.rename: {twice}; columns here: {', '.join(columns)}")
    outputs = [dst for _, dst in projection(t, columns)]
    cursor = [t.incremental.cursor] if t.incremental else []
    missing_column("transform.incremental.cursor", cursor, outputs)


# What an expression raises on values (not on its types): only the filter computes any.
RUN_TIME_ERRORS = (duckdb.DataError, duckdb.InvalidInputException)
PROBED = 50  # rows the filter gives NULL on that are tried one by one for the failing one


def _filter_failed(
    con: Connection, spec: Spec, relation: str, columns: list[str], e: duckdb.Error
) -> FilterFailed:
    """The filter's run-time failure, with the file and line of the first row it fails on."""
    t = spec.transform
    rows = valid_rows_sql(t, relation, columns)
    where = ""
    # TRY gives NULL where the filter raises; of those rows, the first that raises alone.
    for source, row in con.sql(
        f"SELECT _source, _row FROM {rows} WHERE TRY(({t.filter})) IS NULL "
        f"ORDER BY _source, _row LIMIT {PROBED}"
    ).fetchall():
        try:
            con.execute(
                f"SELECT ({t.filter}) FROM {rows} WHERE _source = $1 AND _row = $2", [source, row]
            ).fetchall()
        except RUN_TIME_ERRORS:
            where = f" on {os.path.basename(source)}:{row}"
            break
    first = str(e).strip().splitlines()[0].split(". ")[0]  # not DuckDB's SET advice
    if isinstance(e, duckdb.ConversionException):
        fix = "TRY_CAST instead of CAST (NULL where a value does not convert)"
    else:
        fix = "NULLIF(divisor, 0) for a division, or TRY(...) around the failing expression"
    return FilterFailed(
        f"transform.filter {t.filter!r} fails at run time{where}: {first}; fix the filter "
        f"for such values, e.g. {fix}"
    )


def _stage_checked(
    con: Connection,
    spec: Spec,
    run: Path,
    name: str,
    hwm: str | None,
    *,
    compression: str,
    keep_as: tuple[str, int] | None = None,
) -> Counts:
    """Stage the checked rows in `checked`: one batch, or with `_batch` several; valid rows
    in Parquet with `compression`, or with `keep_as` (the file's URL, the bytes the run's
    DuckDB may hold) kept in it while it has room (see tasks/staging/kept). A row whose
    partition folder name would be too long for the sink is rejected here (see
    tasks/sinks/partitions)."""
    types = dict(con.sql("SELECT column_name, column_type FROM (DESCRIBE checked)").fetchall())
    columns = [c for c in types if c not in STAGED]
    t = spec.transform
    source_of = {dst: src for src, dst in projection(t, columns)}
    rel = "checked"
    if (errors := _partitions.errors_sql(spec, source_of)) is not None:
        con.execute(
            f"CREATE OR REPLACE TEMP VIEW __ph_parted AS {_partitions.with_errors_sql(rel, errors, columns, types['_original'])}"
        )
        rel = "__ph_parted"
    batched = "_batch" in types
    counts = Counts()
    read, rejected, batches = con.sql(
        "SELECT count(*), count(*) FILTER (WHERE len(_errors) > 0), "
        f"{'count(DISTINCT _batch)' if batched else '1'} FROM {rel}"
    ).fetchall()[0]
    counts.batches = int(batches)
    counts.rows_read, counts.rows_rejected = int(read), int(rejected)
    if counts.rows_rejected:
        # As many as the record reader's batches would show: 3 per batch, 5 in all.
        first = (
            "QUALIFY row_number() OVER (PARTITION BY _batch ORDER BY _row) <= 3 "
            "ORDER BY _batch, _row LIMIT 5"
            if batched
            else "ORDER BY _row LIMIT 3"
        )
        sample = con.sql(
            f"SELECT _source, _row, _errors FROM {rel} WHERE len(_errors) > 0 {first}"
        ).fetchall()
        counts.errors_sample = [f"{os.path.basename(s)}:{r}: {', '.join(e)}" for s, r, e in sample]
        if spec.on_invalid != "drop":
            rejected = run / "rejected" / f"{name}.parquet"
            con.execute(
                f"COPY (SELECT unnest(_original), _errors, _source, _row, _raw FROM {rel} "
                f"WHERE len(_errors) > 0) TO {quote(str(rejected))} (FORMAT parquet, COMPRESSION zstd)"
            )
    _names_known(spec, columns)
    cursor_type = types.get(source_of.get(t.incremental.cursor, "")) if t.incremental else None
    timed = (cursor_type or "DATE").upper().startswith(("DATE", "TIMESTAMP"))
    if t.incremental and t.incremental.lookback and not timed:  # found before any load
        problem = lookback_needs_time(t.incremental.cursor, str(cursor_type))
        raise DataError(f"transform.incremental.lookback: {problem}")
    try:
        con.execute(
            f"CREATE OR REPLACE TEMP VIEW kept AS {batch_sql(t, rel, columns, hwm, cursor_type)}"
        )
    except duckdb.Error as e:  # the filter, on columns the schema does not type
        if not t.filter:
            raise
        first = str(e).splitlines()[0].rstrip(".!")
        raise DataError(
            f"transform.filter {t.filter!r} cannot run on this data ({first}); columns here: "
            f"{', '.join(source_of)}; fix the filter, or declare its columns in schema.columns"
        ) from None
    try:
        passed = con.sql(
            "SELECT count(*) FILTER (WHERE NOT _keep_filter), "
            "count(*) FILTER (WHERE _keep_filter AND NOT _keep_new), "
            "count(*) FILTER (WHERE _keep_filter AND _keep_new) FROM kept"
        ).fetchall()[0]
    except RUN_TIME_ERRORS as e:  # a cast or a division that a row's values break
        if not t.filter:
            raise
        raise _filter_failed(con, spec, rel, columns, e) from None
    counts.rows_filtered, counts.rows_old, counts.rows_staged = (int(x) for x in passed)
    if counts.rows_staged:
        rows = (
            "SELECT * EXCLUDE (_keep_filter, _keep_new) FROM kept WHERE _keep_filter AND _keep_new"
        )
        without_source = f"SELECT * EXCLUDE (_source) FROM ({rows})"  # the table names its file
        if keep_as is not None and kept.keep(con, without_source, name, *keep_as):
            return counts
        valid = run / "valid" / f"{name}.parquet"
        con.execute(
            f"COPY ({rows}) TO {quote(str(valid))} (FORMAT parquet, COMPRESSION {compression})"
        )
    return counts
