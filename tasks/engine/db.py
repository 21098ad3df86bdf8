"""The one door to DuckDB: connection setup (memory, spill dir, UTC, the sandbox for user
expressions), fsspec, Arrow in and out."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import duckdb
import duckdb.func
import fsspec
import pyarrow as pa

from tasks.engine import json_numbers

Connection = duckdb.DuckDBPyConnection
Error = duckdb.Error  # what a query that DuckDB refuses raises
ConversionError = duckdb.ConversionException  # a value that does not convert to a type


def connect(
    memory_bytes: int = 2**30,
    temp_dir: str | None = None,
    threads: int | None = None,
    *,
    sandbox: Sequence[str] | None = None,
) -> Connection:
    """An in-memory DuckDB with a memory limit, a spill directory and UTC as its time zone.

    With `sandbox` (folders), it runs the spec's expressions (a filter): see lock()."""
    con = duckdb.connect(":memory:")
    con.execute(f"SET memory_limit = '{int(memory_bytes)}B'")
    if temp_dir:
        os.makedirs(temp_dir, exist_ok=True)
        con.execute(f"SET temp_directory = {quote(temp_dir)}")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    con.execute("SET preserve_insertion_order = false")
    # DuckDB draws a bar on stdout for a query past 2 s: inside `query --format json` output.
    con.execute("SET enable_progress_bar = false")
    con.execute("SET GLOBAL TimeZone = 'UTC'")  # GLOBAL: its cursors start in UTC too
    texts = "VARCHAR[]"
    con.create_function(
        json_numbers.SQL_NAME,
        json_numbers.as_written,
        ["VARCHAR", texts, texts],
        texts,
        null_handling=duckdb.func.SPECIAL,  # a NULL argument reaches it (and is kept)
        side_effects=False,
    )
    if sandbox is not None:
        lock(con, sandbox)
    return con


def lock(con: Connection, folders: Sequence[str]) -> None:
    """The second wall behind the filter guard: DuckDB installs and loads no extension, reads
    and writes files only under `folders` (the run's own: its staged batches, its spill
    folder), and refuses any later SET that would undo this.

    Arrow tables registered by Python stay readable: the sources are read by our readers
    (fsspec), never by DuckDB, so DuckDB needs no access to them."""
    con.execute("SET autoinstall_known_extensions = false")
    con.execute("SET autoload_known_extensions = false")
    # A trailing separator: /run/a must not let /run/ab through.
    allowed = ", ".join(quote(os.path.join(os.path.abspath(f), "")) for f in folders)
    con.execute(f"SET allowed_directories = [{allowed}]")
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")


def register_fs(con: Connection, fs: fsspec.AbstractFileSystem) -> None:
    """Let DuckDB read and write URLs of a non-local fsspec filesystem (memory://, s3://)."""
    protocols = fs.protocol if isinstance(fs.protocol, tuple | list) else (fs.protocol,)
    if "file" in protocols or "local" in protocols:
        return
    if not con.filesystem_is_registered(protocols[0]):
        con.register_filesystem(fs)


def quote(value: str) -> str:
    """A SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def literal_glob(path: str) -> str:
    """`path` as a glob pattern that matches only itself: DuckDB reads `*`, `?` and `[` in a
    path as a pattern (`out[1]` would match `out1`), each is put in a class of its own."""
    return re.sub(r"([*?\[])", r"[\1]", path)


def texts(values: Iterable[str]) -> str:
    """A SQL list literal of `values` as text: ['a', 'b']."""
    return "[" + ", ".join(quote(v) for v in values) + "]"


def ident(name: str) -> str:
    """A SQL identifier, always quoted."""
    return '"' + name.replace('"', '""') + '"'


def tokens(sql: str) -> list[tuple[int, str]]:
    """DuckDB's own lexer: (offset, token type) pairs, no connection needed. The types are
    identifier, numeric_const, string_const, operator, keyword and comment."""
    return [(start, kind.name) for start, kind in duckdb.tokenize(sql)]


def type_name(sql_type: str) -> str:
    """DuckDB's own spelling of a SQL type: INT and int4 are INTEGER."""
    return str(duckdb.sqltype(sql_type))


def interrupt(con: Connection) -> None:
    """Stop the query `con` is running, if any (safe from another thread)."""
    con.interrupt()


def signalled(error: BaseException) -> bool:
    """`error` is a query stopped by a signal (Ctrl-C, SIGTERM) in its thread: DuckDB raises
    this in place of the signal's own exception (interrupt() raises an InterruptException)."""
    return type(error) is RuntimeError and str(error) == "Query interrupted"


def execute(con: Connection, sql: str) -> None:
    """Run a statement that returns nothing (CREATE, COPY, SET)."""
    con.execute(sql)


def column_types(con: Connection, sql: str) -> list[tuple[str, str]]:
    """(name, DuckDB type) of each column of a query's result, without running it."""
    rel = con.sql(sql)
    return [(name, str(t)) for name, t in zip(rel.columns, rel.types, strict=True)]


def arrow(con: Connection, sql: str, params: list[Any] | None = None) -> pa.Table:
    """Run a query and return its whole result as an Arrow table (for small results)."""
    return con.sql(sql, params=params).to_arrow_table()


def batches(con: Connection, sql: str, rows: int) -> Iterator[pa.RecordBatch]:
    """Stream a query's result in Arrow record batches of at most `rows` rows."""
    yield from con.sql(sql).to_arrow_reader(rows)


def rows(con: Connection, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    """Run a query and return its whole result as Python tuples (for small results)."""
    return con.sql(sql, params=params).fetchall()


def scalar(con: Connection, sql: str, params: list[Any] | None = None) -> Any:
    """The first column of the first row, or None."""
    # DuckDB 2 relations have no fetchone(), and an unfinished execute() result
    # blocks the connection: fetch the (one-row) result whole.
    found = rows(con, sql, params)
    return found[0][0] if found else None
