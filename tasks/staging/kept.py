"""A local run's staged valid rows kept as tables in the run's one DuckDB (see
tasks/engine/shared) instead of Parquet files written by the stage step and read back by the
load step: in a local run both steps use that DuckDB.

Kept rows go with the DuckDB: a run stopped between its stage and load steps has no `.staged`
marker (tasks/state/store.mark_staged), so the next run stages the run's frozen inputs again
(flows/pump._restage). Only a files source's rows are kept (each table is one file's, its URL
the table's comment, so no row carries it). An http source's rows go to files, as do those
that find no room: past MAX_TABLES, or once the DuckDB's tables hold a quarter of its memory
(a large run's rows would spill, and its load needs the memory).

Table names: `__ph_valid_NNNNN_BBBBB` (NNNNN: the input's index, BBBBB: the batch), one per
staged batch name of tasks/staging/stage.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tasks.engine.db import Connection, ident, quote, scalar
from tasks.engine.shared import session

PREFIX = "__ph_valid_"
# Tables the load step reads together (one UNION ALL BY NAME); past this, batches are files.
MAX_TABLES = 512

# Run folders whose stage steps keep rows in the run's DuckDB -> the bytes its tables may hold.
_KEEPING: dict[str, int] = {}
_LOCK = threading.Lock()


@contextmanager
def keeping(run_dir: str, memory: int) -> Iterator[None]:
    """While open, the stage steps of the run at `run_dir` in this process keep valid rows in
    the run's shared DuckDB (which the caller opens around this block, with `memory`)."""
    with _LOCK:
        _KEEPING[run_dir] = memory // 4
    try:
        yield
    finally:
        with _LOCK:
            _KEEPING.pop(run_dir, None)


def room(run_dir: str) -> int | None:
    """The bytes the tables of the run's DuckDB may hold when it keeps rows; None if not."""
    with _LOCK:
        return _KEEPING.get(str(run_dir))


def any_kept(run_dir: str | Path) -> bool:
    """Whether the run's DuckDB holds kept rows (then they are not all on disk)."""
    if room(str(run_dir)) is None:
        return False
    with session(64 * 2**20, shared=str(run_dir)) as con:
        return bool(tables(con))


def keep(con: Connection, rows: str, name: str, url: str, budget: int) -> bool:
    """Keep `rows` (a query without `_source`) of the file at `url` as the table for the
    staged batch `name`; False (nothing kept) once the DuckDB holds MAX_TABLES, or its tables
    (the stage steps' own included) `budget` bytes."""
    held = scalar(
        con,
        "SELECT coalesce(sum(memory_usage_bytes + temporary_storage_bytes), 0) "
        "FROM duckdb_memory() WHERE tag = 'IN_MEMORY_TABLE'",
    )
    if int(held) >= budget or len(tables(con)) >= MAX_TABLES:
        return False
    table = ident(_table(name))
    con.execute(f"CREATE OR REPLACE TABLE {table} AS {rows}")
    con.execute(f"COMMENT ON TABLE {table} IS {quote(url)}")
    return True


def drop(con: Connection, index: int) -> None:
    """Drop input `index`'s tables (its stage step starts over)."""
    for table, _ in tables(con, f"{PREFIX}{index:05d}_"):
        con.execute(f"DROP TABLE IF EXISTS {ident(table)}")


def tables(con: Connection, prefix: str = PREFIX) -> list[tuple[str, str]]:
    """The kept tables (name, file URL), by name."""
    return [
        (str(t), str(c))
        for t, c in con.execute(
            "SELECT table_name, comment FROM duckdb_tables() WHERE schema_name = 'main' "
            "AND database_name = current_database() AND starts_with(table_name, $1) "
            "ORDER BY table_name",
            [prefix],
        ).fetchall()
    ]


def relation(kept: list[tuple[str, str]]) -> str:
    """The rows of the `kept` tables, each with its file's URL as `_source`."""
    return " UNION ALL BY NAME ".join(
        f"SELECT {quote(url)} AS _source, * FROM {ident(table)}" for table, url in kept
    )


def _table(name: str) -> str:
    return PREFIX + name.replace("-", "_")
