"""Stage an NDJSON file through DuckDB in blocks (see _json_lines): the records of whole
batches are checked together, one contract query per block instead of one per batch."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import duckdb
import pyarrow as pa

from schemas.spec import Spec
from tasks.contract.batch import Contract, json_batches_fields, plan_sql
from tasks.contract.check import contract_of
from tasks.engine.db import Connection, quote, scalar
from tasks.run import deadline, progress
from tasks.run.summary import Counts
from tasks.sources.files.json_lines import (
    has_long_numbers,
    is_plain,
    numbered_sql,
    plain_sql,
    split_sql,
)
from tasks.sources.files.listing import SourceFile

# (con, spec, run folder, staged files' name, high-water mark) -> the round's counts
StageChecked = Callable[[Connection, Spec, Path, str, "str | None"], Counts]


def stage_blocks(
    con: Connection,
    spec: Spec,
    run: Path,
    index: int,
    file: SourceFile,
    hwm: str | None,
    blocks: Iterator[pa.Table | None],
    stage_checked: StageChecked,
) -> Counts | None:
    """Stage an NDJSON file block by block, with the batches the record reader would make
    (every batch_rows records); None where the file needs the record reader. `stage_checked`
    stages the `checked` table of a round, as it does a batch of the record reader's."""
    rows, limit = spec.limits.batch_rows, int(spec.limits.max_record_bytes)
    contract = contract_of(spec)
    counts = Counts(files=1, bytes=file.size)
    con.execute(
        "CREATE OR REPLACE TEMP TABLE __ph_lines "
        "(_row BIGINT, _raw VARCHAR, _parse_error VARCHAR, _batch BIGINT, _size BIGINT)"
    )
    staged = emitted = 0  # batches staged, rows shown
    # A block that may hold a long number makes the rest of the file read each number's text
    # (json_numbers): its last batch may run on into the next block.
    long = False
    for block in itertools.chain(blocks, [END]):
        deadline.check()
        if block is None:
            progress.emit("rows", -emitted)
            return None
        # The batches complete so far are staged when the next block comes, or at the end
        # (then the last one too): a file of one block is checked in one round.
        records = staged * rows + int(scalar(con, "SELECT count(*) FROM __ph_lines"))
        upto = -(-records // rows) if block is END else records // rows
        if upto > staged:
            done = _stage_rows(
                con,
                spec,
                contract,
                run,
                (index, file.url),
                (staged, upto),
                hwm,
                stage_checked,
                long,
            )
            if done is None:
                progress.emit("rows", -emitted)
                return None
            counts.add(done)
            progress.emit("rows", done.rows_read)
            emitted += done.rows_read
            staged = upto
        if isinstance(block, pa.Table):
            if not _add_block(con, block, records, rows, limit):
                progress.emit("rows", -emitted)
                return None
            long = long or has_long_numbers(block)
    return counts


END = object()  # after the last block


def _add_block(con: Connection, block: pa.Table, before: int, rows: int, limit: int) -> bool:
    """Append the block's records to __ph_lines; False if one is over `limit` bytes."""
    first = int(block.column("base")[0].as_py()) + 1
    con.register("__ph_block", block)
    try:
        if is_plain(block):
            con.execute(f"INSERT INTO __ph_lines {plain_sql('__ph_block', before, first, rows)}")
            return True
        con.execute(f"CREATE OR REPLACE TEMP TABLE __ph_new AS {split_sql('__ph_block')}")
    finally:
        con.unregister("__ph_block")
    width, n, first, last = con.sql(
        "SELECT max(_width), count(*) FILTER (WHERE NOT _blank), "
        "min(_row) FILTER (WHERE NOT _blank), max(_row) FILTER (WHERE NOT _blank) FROM __ph_new"
    ).fetchall()[0]
    if width is not None and width > limit:
        return False
    if n:
        start = first if last - first + 1 == n else None
        con.execute(f"INSERT INTO __ph_lines {numbered_sql('__ph_new', before, start, rows)}")
    return True


def _stage_rows(
    con: Connection,
    spec: Spec,
    contract: Contract,
    run: Path,
    file: tuple[int, str],
    batches: tuple[int, int],
    hwm: str | None,
    stage_checked: StageChecked,
    long: bool,
) -> Counts | None:
    """Check and stage batches lo..hi-1 of __ph_lines, then drop them; None if a record is
    over max_record_bytes, or batch_bytes would have cut a batch short (the record reader
    then rejects that record, or makes other batches). `long`: a record may hold a number a
    double does not keep."""
    (index, url), (lo, hi) = file, batches
    longest, widest = con.sql(
        "SELECT max(n), max(s) FROM (SELECT max(_size) AS n, sum(_size) AS s "
        "FROM __ph_lines GROUP BY _batch)"
    ).fetchall()[0]
    if longest is not None and longest > int(spec.limits.max_record_bytes):
        return None
    if widest is not None and widest > int(spec.limits.batch_bytes):
        return None
    # `_source` is one URL for the whole file: a NULL while the rows are checked and kept in
    # a table, the URL put back by a view (1M copies of a URL cost ~40% of the check query).
    lines = "SELECT CAST(NULL AS VARCHAR) AS _source, * FROM __ph_lines WHERE _batch "
    round_rows = f"({lines}>= {lo} AND _batch < {hi})"
    fields = json_batches_fields(con, contract, round_rows, range(lo, hi), long=long)
    counts = Counts()
    b = lo
    # Batches with the same fields are checked together, when every check is a row's own
    # (inline checks; `unique` is told the batches apart): a `module:Class` check may look
    # at a whole batch (a mean, a count), so those batches go one at a time.
    together = contract.key is not None or not contract.present
    while b < hi:
        end = b + 1
        while together and end < hi and fields[end - lo] == fields[b - lo]:
            end += 1
        # Under one name, the query is the same for every file and round: built once, cached.
        con.execute(f"CREATE OR REPLACE TEMP VIEW __ph_round AS {lines}>= {b} AND _batch < {end}")
        sql = plan_sql(
            contract, "__ph_round", "json", fields[b - lo], carry=("_batch",), lean=True, long=long
        )
        con.execute(f"CREATE OR REPLACE TEMP TABLE __ph_checked AS {sql}")
        con.execute(
            "CREATE OR REPLACE TEMP VIEW checked AS "
            f"SELECT * REPLACE ({quote(url)} AS _source) FROM __ph_checked"
        )
        try:
            counts.add(stage_checked(con, spec, run, f"{index:05d}-{b:05d}", hwm))
        finally:  # the record reader may stage this file again, in a table of this name
            with contextlib.suppress(duckdb.Error):  # never in place of the error under way
                con.execute("DROP VIEW IF EXISTS checked")
        b = end
    con.execute(f"DELETE FROM __ph_lines WHERE _batch < {hi}")
    return counts
