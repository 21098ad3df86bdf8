"""tasks/_shared_duckdb: sessions under one name share a database (its memory limit,
its tables) but keep their own temp tables, and it closes only once its block and its last
session have ended."""

from __future__ import annotations

import contextlib
from pathlib import Path

import duckdb
import pytest

from tasks import _shared_duckdb
from tasks._duckdb import scalar
from tasks._shared_duckdb import session, shared

MiB = 2**20


def test_sessions_under_one_name_share_a_duckdb_and_keep_their_temp_tables(
    tmp_path: Path,
) -> None:
    with (
        shared("run", 96 * MiB, str(tmp_path / "tmp")),
        session(MiB, shared="run") as a,
        session(MiB, shared="run") as b,
    ):
        a.execute("CREATE TABLE everyone AS SELECT 1 AS v")
        a.execute("CREATE TEMP TABLE mine AS SELECT 2 AS v")
        assert scalar(b, "SELECT v FROM everyone") == 1
        with pytest.raises(duckdb.CatalogException, match="mine"):
            b.execute("SELECT v FROM mine")
        b.execute("CREATE TEMP TABLE mine AS SELECT 3 AS v")  # the same name, its own table
        assert (scalar(a, "SELECT v FROM mine"), scalar(b, "SELECT v FROM mine")) == (2, 3)
        for con in (a, b):  # the shared DuckDB's settings, and each session's own
            assert scalar(con, "SELECT current_setting('memory_limit')") == "96.0 MiB"
            assert scalar(con, "SELECT current_setting('temp_directory')") == str(tmp_path / "tmp")
            assert scalar(con, "SELECT current_setting('TimeZone')") == "UTC"
            assert scalar(con, "SELECT current_setting('preserve_insertion_order')") is False
        assert _shared_duckdb._SHARED["run"].opened == 2
    with session(64 * MiB, shared="run") as own:  # the block has ended: a DuckDB of its own
        assert scalar(own, "SELECT current_setting('memory_limit')") == "64.0 MiB"
        with pytest.raises(duckdb.CatalogException, match="everyone"):
            own.execute("SELECT v FROM everyone")
    with shared("run", 96 * MiB), session(64 * MiB, shared="other") as own:
        assert scalar(own, "SELECT current_setting('memory_limit')") == "64.0 MiB"


def test_a_shared_duckdb_closes_after_its_block_and_its_last_session() -> None:
    with contextlib.ExitStack() as late:
        with shared("run", 64 * MiB):
            engine = _shared_duckdb._SHARED["run"].con
            with (
                pytest.raises(
                    ValueError, match="for run is open already in this process; end that"
                ),
                shared("run", MiB),
            ):
                pass
            con = late.enter_context(session(MiB, shared="run"))
            con.execute("CREATE TABLE t AS SELECT 41 AS v")
        # The block has ended with a session still at work: the DuckDB stays for it...
        assert "run" not in _shared_duckdb._SHARED
        assert scalar(con, "SELECT v + 1 FROM t") == 42
        assert scalar(engine, "SELECT count(*) FROM t") == 1
    # ...and closes with it.
    with pytest.raises(duckdb.ConnectionException, match="closed"):
        engine.execute("SELECT 1")
    with shared("run", 64 * MiB):  # the name is free again
        engine = _shared_duckdb._SHARED["run"].con
    with pytest.raises(duckdb.ConnectionException, match="closed"):
        engine.execute("SELECT 1")  # no session was open: it closed with its block


def test_a_session_that_fails_still_lets_its_shared_duckdb_close() -> None:
    with shared("run", 64 * MiB):
        engine = _shared_duckdb._SHARED["run"]
        with pytest.raises(duckdb.CatalogException), session(MiB, shared="run") as con:
            con.execute("SELECT * FROM nowhere")
        assert (engine.users, engine.opened) == (0, 1)
    with pytest.raises(duckdb.ConnectionException, match="closed"):
        engine.con.execute("SELECT 1")
