"""The pump end to end as a Prefect flow on a real server: files -> contract -> transforms -> parquet."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import duckdb
import pytest

from schemas.errors import DataError
from tests.data import expected, is_valid, landed, spec_text, write_orders

pytestmark = pytest.mark.usefixtures("prefect_server")


def _run(spec: Path, **kw: object) -> dict[str, object]:
    from flows.pump import pump

    return pump(spec_path=str(spec), **kw)  # type: ignore[arg-type]


def test_one_run_lands_exactly_the_valid_new_latest_rows(project: Path) -> None:
    records = write_orders(project / "in", files=3, rows=200)
    spec = project / "pumps" / "orders.yaml"
    spec.write_text(spec_text(batch_rows=70))
    summary = _run(spec)
    want = expected(records)
    assert landed("out/orders") == want
    invalid = sum(1 for r in records if not is_valid(r))
    assert summary["status"] == "ok"
    assert summary["rows_read"] == len(records) == 600
    assert summary["rows_rejected"] == invalid
    assert summary["rows_written"] == len(want)
    assert summary["rows_read"] == (
        summary["rows_rejected"]
        + summary["rows_filtered"]
        + summary["rows_old"]
        + summary["rows_duplicate"]
        + summary["rows_written"]
    )
    # rejected rows keep their original values, the failed checks, file and line
    con = duckdb.connect()
    rej = con.sql(
        "SELECT amount, status, _errors, _source, _row, _raw FROM read_parquet('out/orders/rejected/*.parquet') ORDER BY _source, _row"
    ).fetchall()
    assert len(rej) == invalid
    for amount, status, errors, source, row, raw in rej:
        assert source.endswith(".ndjson") and row >= 1
        line = Path(source).read_text().splitlines()[row - 1]
        assert raw == line
        if amount == "-1.0":
            assert "amount: greater_than_or_equal_to(0)" in errors
        elif status == "lost":
            assert any(e.startswith("status: isin") for e in errors)
        else:
            assert errors == ["_record: not a JSON object"] or errors[0].startswith("_record:")
    # high-water mark is the newest cursor loaded
    assert summary["hwm_after"] is not None and summary["hwm_after"].startswith("2026-03-08")


def test_next_runs_read_only_new_files_and_only_newer_rows(project: Path) -> None:
    first = write_orders(project / "in", files=2, rows=100, seed=2)
    spec = project / "pumps" / "orders.yaml"
    spec.write_text(spec_text())
    s1 = _run(spec)
    again = _run(spec)
    assert again["files"] == 0 and again["rows_read"] == 0 and again["rows_written"] == 0
    assert again["hwm_after"] == s1["hwm_after"]
    # a new day's export: later orders and later versions of earlier ones
    second = write_orders(project / "in", files=1, rows=100, seed=3, start_id=0, day=1)
    s3 = _run(spec)
    assert s3["files"] == 1 and s3["rows_read"] == 100
    rows = duckdb.sql(
        "SELECT count(*) FROM read_parquet('out/orders/data/**/*.parquet', hive_partitioning=true)"
    ).fetchall()
    assert rows[0][0] == len(expected(first)) + len(
        expected(second)
    )  # append: each run's deduplicated rows


@pytest.mark.reliability(
    "bad data",
    "a source file replaced in place with new content",
    "read again (its fingerprint changed)",
)
def test_a_replaced_file_is_read_again(project: Path) -> None:
    write_orders(project / "in", files=1, rows=50, seed=4)
    spec = project / "pumps" / "orders.yaml"
    spec.write_text(spec_text(glob="*.ndjson"))
    _run(spec)
    path = next((project / "in").glob("*.ndjson"))
    path.write_text(
        path.read_text()
        + json.dumps(
            {
                "order_id": 999,
                "customer": "c9",
                "amount": 1.0,
                "status": "paid",
                "updated_at": "2030-01-01T00:00:00Z",
            }
        )
        + "\n"
    )
    s = _run(spec)
    assert s["files"] == 1 and s["rows_written"] == 1  # only the row newer than the mark
    assert landed("out/orders")[999] == ("c9", 1.0, "paid", "2030-01-01T00:00:00Z")


def test_full_refresh_rebuilds_from_scratch(project: Path) -> None:
    records = write_orders(project / "in", files=2, rows=80, seed=5)
    spec = project / "pumps" / "orders.yaml"
    spec.write_text(spec_text())
    _run(spec)
    s = _run(spec, full_refresh=True)
    assert s["files"] == 2 and s["rows_read"] == 160
    assert landed("out/orders") == expected(records)


@pytest.mark.reliability(
    "limits",
    "more invalid rows than limits.max_invalid_ratio",
    "the run fails before loading; no row reaches the sink's data; the rejected rows are "
    "shown as NAME_rejected; state unchanged",
)
def test_too_many_invalid_rows_fail_before_anything_is_loaded(project: Path) -> None:
    write_orders(project / "in", files=1, rows=100, seed=6)
    (project / "in" / "orders-zz.ndjson").write_text("not json\n" * 50)
    spec = project / "pumps" / "orders.yaml"
    spec.write_text(spec_text(max_invalid_ratio=0.05))
    with pytest.raises(
        DataError,
        match=r"rows \(\d+\.\d%\) are invalid, over limits.max_invalid_ratio 5.0%; nothing was loaded",
    ) as caught:
        _run(spec)
    assert not (project / "out" / "orders" / "data").exists()
    import duckdb

    ((rejected,),) = duckdb.sql(
        "SELECT count(*) FROM 'out/orders/rejected/**/*.parquet'"
    ).fetchall()
    assert str(caught.value).startswith(f"{rejected} of 150 rows") and rejected >= 50
    from tasks.state.store import StateStore

    store = StateStore("orders")
    assert store.committed().files == {} and store.manifest() is None
    assert store.runs()[-1]["status"] == "failed"


def test_on_invalid_fail_and_drop(project: Path) -> None:
    write_orders(project / "in", files=1, rows=100, seed=7)
    spec = project / "pumps" / "orders.yaml"
    spec.write_text(spec_text(on_invalid="fail"))
    with pytest.raises(DataError, match="on_invalid is 'fail'"):
        _run(spec)
    spec.write_text(spec_text(on_invalid="drop"))
    s = _run(spec)
    assert s["rows_rejected"] > 0 and not (project / "out" / "orders" / "rejected").exists()


def test_csv_gzip_and_parquet_sources(project: Path) -> None:
    (project / "csv").mkdir()
    body = "order_id;customer;amount;status;updated_at\n1;c1;10.5;paid;2026-01-01T00:00:00Z\n2;NA;;open;2026-01-01 01:00:00+02:00\n3;c3;x;paid;NA\n"
    (project / "csv" / "a.csv.gz").write_bytes(gzip.compress(body.encode()))
    spec = project / "pumps" / "csvs.yaml"
    spec.write_text(
        spec_text(
            name="csvs", src="./csv/", glob="*.csv.gz", out="./out/csvs", max_invalid_ratio=0.5
        ).replace("  glob:", '  csv: {delimiter: ";"}\n  glob:')
    )
    s = _run(spec)
    assert (s["rows_read"], s["rows_rejected"], s["rows_written"]) == (3, 1, 2)
    assert landed("out/csvs") == {
        1: ("c1", 10.5, "paid", "2026-01-01T00:00:00Z"),
        2: (None, None, "open", "2025-12-31T23:00:00Z"),
    }
    duckdb.sql(
        "COPY (SELECT * FROM read_parquet('out/csvs/data/**/*.parquet', hive_partitioning=true)) TO 'in.parquet'"
    )
    (project / "pq").mkdir()
    Path("in.parquet").rename(project / "pq" / "a.parquet")
    spec2 = project / "pumps" / "pq.yaml"
    spec2.write_text(spec_text(name="pq", src="./pq/", glob="*.parquet", out="./out/pq"))
    s2 = _run(spec2)
    assert (s2["rows_read"], s2["rows_written"]) == (2, 2)
    assert landed("out/pq") == landed("out/csvs")


@pytest.mark.parametrize(
    ("src", "executor", "cores_bound"),
    [
        ("./in/", "local", True),
        ("file:///data/in/", "local", True),
        ("s3://bucket/in/", "local", False),  # waits on the network: all four at once
        ("./in/", "dask", False),  # workers have cores of their own
    ],
)
def test_local_files_are_staged_no_more_at_once_than_there_are_cores(
    src: str, executor: str, cores_bound: bool
) -> None:
    from flows.executor import Executor
    from flows.pump import _width, cores
    from schemas.loader import parse_spec

    spec = parse_spec(spec_text(src=src) + "  max_concurrency: 4\n")
    run_on = Executor(executor, "tcp://127.0.0.1:8786" if executor == "dask" else None)
    assert _width(spec, run_on) == (min(4, cores()) if cores_bound else 4)


def test_the_cores_are_the_affinity_s_where_there_is_one_else_the_machine_s(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """macOS has no os.sched_getaffinity: a run there counts the machine's cores."""
    import os

    from flows.pump import cores

    if hasattr(os, "sched_getaffinity"):
        assert cores() == len(os.sched_getaffinity(0))
        monkeypatch.delattr(os, "sched_getaffinity")
    assert cores() == os.cpu_count()


def test_kept_rows_stop_at_the_bytes_the_runs_duckdb_may_hold() -> None:
    """A batch is kept only while the DuckDB's tables hold less than the budget; each table
    names its file, which the load puts back as every row's `_source`."""
    from tasks.engine.db import connect
    from tasks.staging import kept

    con = connect()
    rows = "SELECT range AS _row, range * 2 AS v FROM range(100000)"
    assert kept.keep(con, rows, "00000-00000", "file:///in/a.ndjson", 2**30)
    assert not kept.keep(con, rows, "00001-00000", "file:///in/b.ndjson", 2**20)  # over 1 MiB
    assert kept.tables(con) == [("__ph_valid_00000_00000", "file:///in/a.ndjson")]
    assert con.sql(
        f"SELECT count(*), min(_source), max(_source) FROM ({kept.relation(kept.tables(con))})"
    ).fetchall() == [(100000, "file:///in/a.ndjson", "file:///in/a.ndjson")]
    kept.drop(con, 0)
    assert kept.tables(con) == []


def test_the_rejected_sample_follows_the_inputs_not_which_file_finished_first(
    project: Path,
) -> None:
    """Two files stage at once; the second, small one finishes first. The summary's sample
    still shows the first file's rejected rows first, as in every run of these inputs."""
    (project / "in").mkdir()
    bad = '{"order_id": 1, "customer": "c", "amount": -1.0, "status": "open", "updated_at": "2026-03-08T00:00:00Z"}'
    good = '{"order_id": %d, "customer": "c", "amount": 1.0, "status": "open", "updated_at": "2026-03-08T00:00:00Z"}'
    big = [bad, *(good % i for i in range(2, 30_000))]
    (project / "in" / "a.ndjson").write_text("\n".join(big) + "\n")
    (project / "in" / "b.ndjson").write_text(bad + "\n")
    spec = project / "pumps" / "orders.yaml"
    spec.write_text(spec_text(batch_rows=100_000))

    summary = _run(spec)

    assert summary["rows_rejected"] == 2
    assert [s.split(":")[0] for s in summary["rejected_sample"]] == ["a.ndjson", "b.ndjson"]


@pytest.mark.parametrize("room", [512, 2, 0])
def test_a_local_run_stages_and_loads_in_one_duckdb_that_closes_before_the_commit(
    project: Path, monkeypatch: pytest.MonkeyPatch, room: int
) -> None:
    """Its staged valid rows are tables in that DuckDB (tasks/staging/kept) while it has
    `room` for them, the rest Parquet files; the load reads both alike."""
    from tasks.engine import shared as _shared_duckdb
    from tasks.staging import kept

    opened: list[tuple[str, _shared_duckdb._Shared]] = []

    class Seen(dict[str, _shared_duckdb._Shared]):
        def __setitem__(self, name: str, engine: _shared_duckdb._Shared) -> None:
            opened.append((name, engine))
            super().__setitem__(name, engine)

    monkeypatch.setattr(_shared_duckdb, "_SHARED", Seen())
    monkeypatch.setattr(kept, "MAX_TABLES", room)
    took: list[bool] = []  # each staged batch: kept as a table?
    keep = kept.keep
    monkeypatch.setattr(kept, "keep", lambda *a: took.append(keep(*a)) or took[-1])
    records = write_orders(project / "in", files=5, rows=200)
    spec = project / "pumps" / "orders.yaml"
    spec.write_text(spec_text(batch_rows=70))

    summary = _run(spec)

    assert landed("out/orders") == expected(records)
    # A round a file (each is one block of the block reader; a round holds its 3 batches).
    assert len(took) == 5
    # Two files stage at once: each may find room for one more table.
    assert min(room, len(took)) <= took.count(True) <= min(room + 1, len(took))
    [(name, engine)] = opened
    assert name.endswith(f"/{summary['run_id']}")
    # a connection for each file, one to ask whether it kept rows (at the freeze), the load's
    assert (engine.opened, engine.users, engine.closing) == (7, 0, True)
    with pytest.raises(duckdb.ConnectionException, match="closed"):
        engine.con.execute("SELECT 1")
