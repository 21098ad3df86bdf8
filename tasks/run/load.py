"""Load a staged run into the sink: dedup across the whole run, then write it batch by batch."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from schemas.errors import PumpError
from schemas.spec import HttpSource, Spec
from tasks.engine.db import Connection, column_types, connect, ident, quote, scalar, texts
from tasks.engine.shared import session
from tasks.internal import LINEAGE
from tasks.sinks import registry as sinks
from tasks.sinks.load import Load
from tasks.sources.files.listing import SourceFile, safe_url
from tasks.sources.inputs import Input
from tasks.staging import kept
from tasks.staging.exact_union import refuse_rounding
from tasks.transform.sql import (
    ARRIVAL_KEY,
    arrival_ranks,
    batch_of,
    dedup_sql,
    keyed_sql,
    lineage_sql,
    numbered_sql,
    run_columns_known,
    starts_sql,
)
from tasks.transform.window import HASH, Window, fresh_sql, later, remembered_sql, since


@dataclass
class Loaded:
    rows_duplicate: int = 0
    rows_written: int = 0
    hwm_after: str | None = None
    batches: int = 0  # load batches of valid rows: the sink's batch sequence moves by this much
    rows_seen: int = 0  # new by the cursor, but loaded by a run before (tasks/transform/window.py)
    seen: list[tuple[str, str]] | None = None  # the window the next run knows; None: as it was
    seen_from: str | None = None  # the lowest cursor `seen` covers


def load_run(
    spec: Spec,
    run_dir: str,
    run_id: str,
    hwm_floor: str | None,
    seq_base: int = 0,
    state: str = ".",
    window: Window | None = None,
    leaves_rest: bool = False,
    inputs: Sequence[Input] = (),
) -> Loaded:
    """Write the run's rows and rejected rows to the sink; idempotent for the same run.
    The mark after it is the newest cursor loaded, never below `hwm_floor` (the mark before).
    Rows `window` has seen are not loaded again; with `leaves_rest` the next run reads against
    this run's mark again (what max_rows_per_run left), so the window it knows starts there.
    `inputs`: the run's manifest inputs, whose frozen modification times order its files.

    Load batch k of the run is sink batch `seq_base + k + 1`: sinks that keep their own
    record of what they hold (Delta) skip a batch they already have.
    """
    run = Path(run_dir)
    sinks.remove_run(spec, run_id, state)  # a replay starts from nothing of its own
    sinks.remove_run(spec, GATED, state)  # this run reads those rows again: its own say
    out = Loaded(hwm_after=hwm_floor)
    memory, spill = spec.limits.memory, str(run / "tmp")
    # The run's DuckDB when its stage step kept it open (a local run), else one of its own.
    with session(memory, spill, shared=run_dir) as con:
        staged = _staged(con, run)
        if staged is not None:
            described = column_types(con, f"SELECT * FROM {staged} LIMIT 0")
            run_columns_known(spec, [n for n, _ in described if n not in LINEAGE])
            if spec.transform.incremental:
                staged = _fresh(
                    con,
                    spec,
                    staged,
                    dict(described),
                    hwm_floor,
                    window or Window(),
                    leaves_rest,
                    out,
                )
            ranks = _ranks(con, spec, staged, inputs)
            out.rows_written, out.batches = _number(con, spec, staged, ranks)
            total = int(scalar(con, f"SELECT count(*) FROM {staged}"))
            out.rows_duplicate = total - out.rows_written
            sinks.write_rows(
                Load(con, "out", out.batches, spec, run, run_id, seq_base, out.hwm_after)
            )
        rejected = sorted(str(p) for p in (run / "rejected").glob("*.parquet"))
        if rejected and spec.on_invalid == "quarantine":
            src = f"read_parquet({texts(rejected)}, union_by_name = true)"
            con.execute(
                f"CREATE TEMP TABLE rej AS {numbered_sql(f'SELECT * FROM {src}', spec.limits.batch_rows, ())}"
            )
            sinks.write_rejected(con, "rej", _batches(con, "rej"), spec, run, run_id, state)
    return out


def _staged(con: Connection, run: Path) -> str | None:
    """The run's staged valid rows as one relation (files, and tables kept in the run's
    DuckDB); None if there are none. Refused if reading them together would round numbers."""
    files = sorted(str(p) for p in (run / "valid").glob("*.parquet"))
    tables = kept.tables(con)
    refuse_rounding(files, con, [t for t, _ in tables])
    parts = [f"SELECT * FROM read_parquet({texts(files)}, union_by_name = true)"] if files else []
    if tables:
        parts.append(kept.relation(tables))
    return f"({' UNION ALL BY NAME '.join(parts)})" if parts else None


def _fresh(
    con: Connection,
    spec: Spec,
    staged: str,
    types: dict[str, str],
    hwm_floor: str | None,
    window: Window,
    leaves_rest: bool,
    out: Loaded,
) -> str:
    """The staged rows the window has not seen (a table); sets the mark after the run, the rows
    seen and the window the next run knows."""
    assert spec.transform.incremental
    cursor = spec.transform.incremental.cursor
    kind = types[cursor]
    floor = quote(hwm_floor) if hwm_floor is not None else "NULL"
    # The text literal takes the cursor's type; greatest() passes over NULLs.
    top, total = con.sql(
        f"SELECT greatest(max({ident(cursor)}), {floor})::VARCHAR, count(*) FROM {staged}"
    ).fetchall()[0]
    out.hwm_after = top if top is not None else hwm_floor
    low = since(out.hwm_after, window.lookback)
    # From lists, not an Arrow table: pyarrow imports pandas to build one from Python values.
    con.execute(
        "CREATE TEMP TABLE seen AS SELECT unnest($1::VARCHAR[]) AS cursor, "
        "unnest($2::VARCHAR[]) AS hash",
        [[c for c, _ in window.seen], [h for _, h in window.seen]],
    )
    columns = [n for n in types if n not in LINEAGE]
    con.execute(
        f"CREATE TEMP TABLE fresh AS {fresh_sql(window, staged, cursor, kind, columns, low)}"
    )
    out.rows_seen = int(total) - int(scalar(con, "SELECT count(*) FROM fresh"))
    if window.strict and out.hwm_after == window.mark:
        return f"(SELECT * EXCLUDE ({HASH}) FROM fresh)"  # still the old `>` at the same mark
    low_before = since(window.mark, window.lookback) if leaves_rest else low
    remembered = con.sql(remembered_sql("fresh", cursor, kind, low, low_before)).fetchall()
    out.seen = [(str(c), str(h)) for c, h in remembered]
    # Rows below what the window held before were not remembered: coverage starts no lower.
    out.seen_from = later(low_before, window.seen_from)
    return f"(SELECT * EXCLUDE ({HASH}) FROM fresh)"


def _ranks(
    con: Connection, spec: Spec, staged: str, inputs: Sequence[Input]
) -> dict[str, int] | None:
    """Each staged file's rank in arrival order, by the modification times the run froze
    (a manifest from before them: 0.0, so by URL); None for an http source (see keyed_sql)."""
    if isinstance(spec.source, HttpSource):
        return None
    frozen = {f.url: f.mtime if isinstance(f, SourceFile) else 0.0 for f in inputs}
    sources = [s for (s,) in con.sql(f"SELECT DISTINCT _source FROM {staged}").fetchall()]
    unknown = sorted(s for s in sources if s not in frozen)
    if unknown:
        raise PumpError(
            f"staged rows come from {safe_url(unknown[0])}, which is not among the run's "
            f"inputs ({len(unknown)} such file(s)), so their arrival order is unknown; nothing "
            "was loaded. This is a bug in pumphouse: please report it with the pump's "
            "manifest.json (in its state folder)"
        )
    return arrival_ranks({s: frozen[s] for s in sources})


def _number(
    con: Connection, spec: Spec, staged: str, ranks: dict[str, int] | None
) -> tuple[int, int]:
    """`out`: the staged rows deduplicated, each with its load batch `_batch`; returns its
    rows and batches. There `_row` is the row's arrival key (`__ph_key`), so that a sink
    reducing the rows again (a merge key other than dedup's) breaks ties as dedup did.

    Batches follow (partition_by, arrival). Without partition_by, the first row of each
    batch is found by sorting one number per row (`__ph_key`), and a row's batch is a few
    comparisons with those; numbering every row in one window sorts whole rows, 2-3x dearer.
    """
    dedup = dedup_sql(spec.transform.dedup, f"({keyed_sql(staged, ranks)})", (ARRIVAL_KEY,))
    con.execute(f"CREATE TEMP TABLE __ph_dedup AS {dedup}")
    rows, partition_by = spec.limits.batch_rows, spec.sink.partition_by
    n = int(scalar(con, "SELECT count(*) FROM __ph_dedup"))
    lineage = lineage_sql(ranks)
    if not partition_by and n <= rows * MAX_CASE:
        starts = [k for (k,) in con.sql(starts_sql("__ph_dedup", rows)).fetchall()]
        con.execute(
            f"CREATE TEMP VIEW out AS SELECT * EXCLUDE ({ARRIVAL_KEY}), {lineage}, "
            f"{batch_of(starts)} AS _batch FROM __ph_dedup"
        )
        return n, len(starts)
    numbered = numbered_sql("SELECT * FROM __ph_dedup", rows, partition_by, (ARRIVAL_KEY,))
    con.execute(
        f"CREATE TEMP TABLE out AS SELECT * EXCLUDE ({ARRIVAL_KEY}, _batch), {lineage}, _batch "
        f"FROM ({numbered})"
    )
    return n, _batches(con, "out")


MAX_CASE = 4096  # batches beyond which the window numbers rows instead (the CASE tree grows)


# The name a stopped run's rejected rows are kept under (part-gated-*): one stopped run's at a
# time, so the same files stopped again are not shown twice.
GATED = "gated"
# A check failing in this share of the rows read or more is the spec's mistake, likely.
NEARLY_ALL = 0.95


def keep_rejected(spec: Spec, run_dir: str, state: str = ".") -> None:
    """The rejected rows of a run the invalid-row gate stopped, where `pumphouse query` shows
    them (NAME_rejected), though nothing reaches the sink: they replace an earlier stopped
    run's, and the next load removes them (it reads the same inputs again)."""
    run = Path(run_dir)
    rejected = sorted(str(p) for p in (run / "rejected").glob("*.parquet"))
    if not rejected or spec.on_invalid != "quarantine":
        return
    sinks.remove_run(spec, GATED, state)
    src = f"read_parquet({texts(rejected)}, union_by_name = true)"
    with closing(connect(memory_bytes=spec.limits.memory, temp_dir=str(run / "tmp"))) as con:
        con.execute(
            f"CREATE TEMP TABLE rej AS {numbered_sql(f'SELECT * FROM {src}', spec.limits.batch_rows, ())}"
        )
        sinks.write_rejected(con, "rej", _batches(con, "rej"), spec, run, GATED, state)


def spec_culprit(run_dir: str, rows_read: int) -> str | None:
    """When one check of one column fails in (nearly) every row read, the spec is the likely
    culprit (a wrong type, format, name or delimiter), not the data: what to say; else None."""
    rejected = sorted(str(p) for p in (Path(run_dir) / "rejected").glob("*.parquet"))
    if not rejected or rows_read <= 0:
        return None
    # A type error names its row's value; the check is the same for every value.
    check = r"regexp_replace(e, '^(.*?): ''.*'' is not ([^ ]+)$', '\1: type \2', 's')"
    with closing(connect(memory_bytes=256 * 2**20)) as con:
        top = con.sql(
            f"SELECT c, count(DISTINCT (_source, _row)) AS n FROM (SELECT {check} AS c, _source, "
            f"_row FROM (SELECT unnest(_errors) AS e, _source, _row FROM read_parquet("
            f"{texts(rejected)}, union_by_name = true))) GROUP BY c ORDER BY n DESC, c LIMIT 1"
        ).fetchall()
    if not top or top[0][1] < NEARLY_ALL * rows_read:
        return None
    label, n = str(top[0][0]), int(top[0][1])
    column, _, failed = label.partition(": ")
    if failed.startswith("type "):
        ask = "is its type or format in the spec right?"
    elif failed == "not_nullable":
        ask = "is its name in the spec right, and for CSV the delimiter?"
    else:
        ask = "is that check in the spec right?"
    return (
        f"column {column} failed `{failed}` in {n} of {rows_read} rows: the spec, not the "
        f"data, is the likely culprit; {ask}"
    )


def _batches(con: Connection, table: str) -> int:
    return int(scalar(con, f"SELECT coalesce(max(_batch) + 1, 0) FROM {table}"))
