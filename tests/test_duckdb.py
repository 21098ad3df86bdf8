"""tasks/engine/shared: sessions under one name share a database (its memory limit,
its tables) but keep their own temp tables, and it closes only once its block and its last
session have ended."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import threading
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from schemas.errors import DataError, OutOfTime
from schemas.loader import parse_spec
from tasks.engine import shared as _shared_duckdb
from tasks.engine.db import scalar
from tasks.engine.shared import session, shared
from tasks.run import deadline
from tasks.run.deadline import Deadline
from tasks.sources.files.listing import list_files
from tasks.staging import stage

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


@pytest.mark.reliability(
    "hostile spec",
    "a filter that got past the guard runs CAST(status AS INET), getenv(), read_csv('/etc/passwd'), "
    "or the run's connection is asked to LOAD, INSTALL, write outside the run or undo its settings",
    "the staging connection refuses: no extension installed or loaded, no file outside the "
    "run's folder, settings locked; the run's own staging still works",
)
def test_the_connection_that_runs_filters_is_locked(tmp_path: Path) -> None:
    run, outside = tmp_path / "run", tmp_path / "run-not"  # a sibling with the same prefix
    run.mkdir()
    outside.mkdir()
    (outside / "secret.csv").write_text("a\n1\n")
    with (
        shared("run", 64 * MiB, str(run / "tmp"), sandbox=[str(run)]),
        session(MiB, shared="run") as con,
    ):
        con.register("raw", pa.table({"status": ["10.0.0.1", "open"]}))
        con.execute(f"COPY (SELECT * FROM raw) TO '{run}/valid.parquet' (FORMAT parquet)")
        assert scalar(con, f"SELECT count(*) FROM read_parquet('{run}/valid.parquet')") == 2
        refused = [
            ("LOAD inet", "Loading external extensions is disabled"),
            ("INSTALL inet", "disabled by configuration"),
            ("SELECT count(*) FROM raw WHERE CAST(status AS INET) IS NULL", 'name "INET"'),
            ("SELECT count(*) FROM raw WHERE getenv('HOME') IS NULL", "getenv does not exist"),
            ("SELECT count(*) FROM read_csv('/etc/passwd')", "disabled by configuration"),
            (f"SELECT count(*) FROM read_csv('{outside}/secret.csv')", "disabled by configuration"),
            (f"COPY raw TO '{outside}/x.parquet' (FORMAT parquet)", "disabled by configuration"),
            ("SET enable_external_access = true", "the configuration has been locked"),
            ("SET autoload_known_extensions = true", "the configuration has been locked"),
            ("SET allowed_directories = ['/']", "the configuration has been locked"),
        ]
        for sql, message in refused:
            with pytest.raises(duckdb.Error, match=message):
                con.execute(sql)
    assert sorted(p.name for p in outside.iterdir()) == ["secret.csv"]


def test_a_filter_past_the_guard_fails_the_stage_step_and_installs_nothing(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    (src / "a.ndjson").write_text('{"id": 1, "status": "10.0.0.1"}\n')
    cases = [
        ("CAST(status AS INET) IS NULL", 'Type with name "INET" is not in the catalog'),
        ("getenv('HOME') IS NULL", "getenv does not exist"),
        ("(SELECT count(*) FROM read_csv('/etc/passwd')) > 0", "disabled by configuration"),
    ]
    for expr, message in cases:
        # parse_spec without the loader's filter check: as if the guard had let it through.
        spec = parse_spec(
            f'name: f\nsource: {{type: files, url: {src}, glob: "*.ndjson"}}\n'
            f'transform: {{filter: "{expr}"}}\nsink: {{type: parquet, url: ./out}}\n',
            "f.yaml",
        )
        [file] = list_files(spec.source)
        for width in (0, 2):  # a DuckDB of its own, and the run's shared one
            run = tmp_path / f"run{width}"
            with contextlib.ExitStack() as stack:
                if width:
                    stack.enter_context(stage.one_engine(spec, str(run), width))
                with pytest.raises(DataError, match=re.escape(message)):
                    stage.stage_file(spec, str(run), 0, file, None)


@pytest.mark.reliability(
    "limits",
    "a query that would run for hours (a CPU-bound scan) on a connection of a run with "
    "limits.max_run_seconds: 1, in a session of its own and in the run's shared DuckDB",
    "the deadline interrupts the query; the step raises, and a later session of the run is "
    "refused with the limit's message",
)
def test_the_deadline_interrupts_a_running_query() -> None:
    endless = "SELECT sum(hash(i)) FROM range(1000000000000) t(i)"
    for name in ("own", "run"):
        clock = Deadline(1, 60)
        with clock.running(), shared("run", 64 * MiB):
            with pytest.raises(duckdb.InterruptException), session(MiB, shared=name) as con:
                con.execute(endless)
            assert clock.expired.is_set()
            with pytest.raises(OutOfTime, match=r"limits.max_run_seconds \(1 s\)"):
                deadline.check()
            with pytest.raises(OutOfTime), session(MiB, shared=name):
                pass


def test_a_signal_during_a_query_stops_the_run_as_ctrl_c_does() -> None:
    """DuckDB turns a signal that comes while it runs a query in the main thread (Ctrl-C,
    SIGTERM: a load step's query) into an error of its own, the signal's exception lost: the
    run is stopped all the same (its other steps' queries interrupted), with the stop's
    message, not the query's."""

    class Stop(BaseException):  # what a stop signal's handler raises, as KeyboardInterrupt
        pass

    def stop(signum: int, frame: object) -> None:
        raise Stop

    before = signal.signal(signal.SIGUSR1, stop)
    clock = Deadline(60, 60)
    try:
        with clock.running(), shared("run", 64 * MiB), session(MiB, shared="run") as con:
            threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGUSR1)).start()
            con.execute("SELECT sum(hash(i)) FROM range(1000000000000) t(i)")
    except RuntimeError as e:  # DuckDB's; Stop itself if the signal came before the query
        assert str(e) == "Query interrupted"
    except Stop:
        pass
    finally:
        signal.signal(signal.SIGUSR1, before)
    assert clock.terminated and clock.expired.is_set()
    assert str(clock.error()) == (
        "the run was stopped (SIGTERM or Ctrl-C); the next run finishes it"
    )
