"""The Delta Lake sink: append, merge and overwrite outcomes, latest-wins merges against the
table (ties, NULLs, keep: first), exactly-once batches, schema drift, query, compact,
--full-refresh and S3 (moto). Real DuckDB, real deltalake tables, real Prefect flows.

The merge rules are checked on `sink_delta.write_batches` directly, with the load step's
table (rows numbered into `_batch`es, lineage on) built by hand, so each case is exact; the
rest runs the pump.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pytest
from deltalake import DeltaTable

from schemas.errors import DataError, SpecError
from schemas.loader import parse_spec
from schemas.spec import Spec
from tasks.engine.db import connect
from tasks.sinks import delta as sink_delta
from tasks.sinks._delta_merge import match_predicate, update_predicate
from tasks.sinks.delta_storage import delta_options
from tasks.sinks.load import Load
from tests._delta import (  # noqa: F401 (s3_endpoint is a fixture)
    S3_KEYS,
    as_oracle,
    commit_seqs,
    delta_spec,
    s3_endpoint,
    table_rows,
    txn_version,
)
from tests._moto import free_port, make_bucket, storage_options
from tests.conftest import run_cli, run_in_process
from tests.data import expected, is_valid, spec_text, write_orders

T1, T2 = "2026-03-08 10:00:00+00", "2026-03-08 11:00:00+00"

UNIT_SPEC = """\
name: orders
source: {{type: files, url: ./in/, format: ndjson}}
{transform}
sink: {{type: delta, url: "{url}", mode: {mode}{extra}}}
"""


def unit_spec(url: Path, mode: str = "merge", dedup: str | None = None, extra: str = "") -> Spec:
    dedup = "{key: [id], order_by: ts, keep: latest}" if dedup is None else dedup
    transform = f"transform:\n  dedup: {dedup}" if dedup else ""
    return parse_spec(UNIT_SPEC.format(transform=transform, url=url, mode=mode, extra=extra))


Row = tuple[Any, ...]


def load(
    spec: Spec,
    rows: list[Row],
    seq_base: int,
    run: Path,
    columns: str = "id BIGINT; v VARCHAR; ts TIMESTAMPTZ",
) -> None:
    """Rows (values..., _batch) as the load step hands them to the sink, then write them.
    `columns`: "name TYPE" pairs separated by ';'."""
    con = connect()
    cols = [c.strip() for c in columns.split(";")]
    lineage = "_source VARCHAR, _row BIGINT, _batch BIGINT"
    con.execute(f"CREATE TEMP TABLE out ({', '.join(cols)}, {lineage})")
    width = len(cols)
    values = [(*r[:width], "in/f.ndjson", i, r[width]) for i, r in enumerate(rows)]
    if values:
        marks = ", ".join("?" * len(values[0]))
        con.executemany(f"INSERT INTO out VALUES ({marks})", values)
    batches = max((r[-1] for r in rows), default=-1) + 1
    sink_delta.write_batches(Load(con, "out", batches, spec, run, "run-1", seq_base))
    con.close()


def rows_of(url: Path) -> dict[Any, tuple[Any, ...]]:
    """id -> (v, ts as text); an id twice is an error."""
    con = connect()
    con.register("t", DeltaTable(str(url)).to_pyarrow_table())
    got: dict[Any, tuple[Any, ...]] = {}
    for oid, v, ts in con.sql("SELECT id, v, strftime(ts, '%H:%M') FROM t").fetchall():
        assert oid not in got, f"id {oid} twice"
        got[oid] = (v, ts)
    con.close()
    return got


# ---- merge: latest wins, also against the table ----------------------------------------------

TABLE = [  # id, v, ts, batch
    (1, "a", T1, 0),
    (2, "a", T2, 0),
    (3, "a", T1, 0),
    (4, "a", T1, 0),
    (5, "a", None, 0),
    (6, "a", None, 0),
    (None, "a", T1, 0),
]
CHANGES = [
    (1, "b", T2, 0),  # newer than the table's row
    (2, "b", T1, 0),  # older
    (3, "b", T1, 0),  # a tie
    (4, "b", None, 1),  # no order value; the table's row has one
    (5, "b", T1, 1),  # the table's row has none
    (6, "b", None, 1),  # neither has one: a tie
    (7, "b", T1, 1),  # a new key
    (None, "b", T2, 1),  # a NULL key matches the NULL key (as dedup groups them)
]


@pytest.mark.parametrize(
    ("dedup", "want"),
    [
        (  # the greatest order_by wins; NULL loses to any value; a tie goes to the newer run
            "{key: [id], order_by: ts, keep: latest}",
            {1: "b", 2: "a", 3: "b", 4: "a", 5: "b", 6: "b", 7: "b", None: "b"},
        ),
        (  # the smallest wins; NULL still loses; a tie keeps the table's (earlier) row
            "{key: [id], order_by: ts, keep: first}",
            {1: "a", 2: "b", 3: "a", 4: "a", 5: "b", 6: "a", 7: "b", None: "a"},
        ),
        (  # no dedup (validate refuses one without order_by), sink.key: the newer run wins
            "",
            {1: "b", 2: "b", 3: "b", 4: "b", 5: "b", 6: "b", 7: "b", None: "b"},
        ),
    ],
)
@pytest.mark.reliability(
    "bad data",
    "an older source row merging into a Delta table holding a newer one; ties; NULL order_by",
    "the newer row stays; ties and NULLs resolved by a fixed rule",
)
def test_merge_keeps_the_winner_per_key_against_the_table(
    tmp_path: Path, dedup: str, want: dict[Any, str]
) -> None:
    url = tmp_path / "t"
    spec = unit_spec(url, dedup=dedup, extra=", key: [id]")
    load(spec, TABLE, 0, tmp_path / "run")
    load(spec, CHANGES, 1, tmp_path / "run")
    got = rows_of(url)
    assert {k: v for k, (v, _) in got.items()} == want
    assert txn_version(str(url)) == 3 and commit_seqs(str(url)) == [1, 2, 3]


def test_merge_key_other_than_the_dedup_key_keeps_the_runs_latest_row(tmp_path: Path) -> None:
    """sink.key [id] without dedup: a key twice in one run (in two batches) -> the later
    arrival; twice with an order_by (dedup on another key) -> the greatest, across batches."""
    url = tmp_path / "t"
    spec = unit_spec(url, dedup="", extra=", key: [id]")
    load(spec, [(8, "x", T2, 0), (9, "x", T1, 0), (8, "y", T1, 1), (9, "y", T2, 1)], 0, tmp_path)
    assert rows_of(url) == {8: ("y", "10:00"), 9: ("y", "11:00")}
    url2 = tmp_path / "t2"
    spec2 = unit_spec(url2, dedup="{key: [v], order_by: ts}", extra=", key: [id]")
    load(spec2, [(8, "x", T2, 0), (8, "y", T1, 1), (8, "z", T1, 1)], 0, tmp_path)
    assert rows_of(url2) == {8: ("x", "11:00")}
    assert commit_seqs(str(url2)) == [1, 2]  # batch 1 lost every row to batch 0 and still commits


def test_a_merge_that_changes_nothing_still_records_its_batch(tmp_path: Path) -> None:
    url = tmp_path / "t"
    spec = unit_spec(url)
    load(spec, [(1, "a", T2, 0)], 0, tmp_path)
    load(spec, [(1, "old", T1, 0)], 1, tmp_path)
    assert rows_of(url) == {1: ("a", "11:00")}
    assert txn_version(str(url)) == 2 and commit_seqs(str(url)) == [1, 2]
    assert sink_delta.committed_seq(spec) == 2


def test_merge_predicates() -> None:
    assert match_predicate(["id", 'we"ird'], null_safe=False) == (
        't."id" = s."id" AND t."we""ird" = s."we""ird"'
    )
    assert match_predicate(["id"], null_safe=True) == 't."id" IS NOT DISTINCT FROM s."id"'
    spec = unit_spec(Path("/x"))
    assert update_predicate(spec.transform.dedup) == '(s."ts" >= t."ts" OR t."ts" IS NULL)'


# ---- exactly once: a batch the table holds is skipped -------------------------------------------


@pytest.mark.reliability(
    "crash",
    "a Delta load replayed after some of its batches committed",
    "the committed batches are skipped; each row once",
)
def test_a_replayed_run_skips_the_batches_the_table_holds(tmp_path: Path) -> None:
    """Append (where a batch twice would show): batch 0 committed by an attempt that died;
    the replay commits batches 1 and 2 only; a second replay commits nothing."""
    url = tmp_path / "t"
    spec = unit_spec(url, mode="append", dedup="")
    rows = [(i, "a", T1, i // 2) for i in range(6)]  # 3 batches of 2
    load(spec, rows[:2], 0, tmp_path)  # the attempt that died after its first batch
    assert commit_seqs(str(url)) == [1]
    load(spec, rows, 0, tmp_path)
    load(spec, rows, 0, tmp_path)
    assert rows_of(url) == {i: ("a", "10:00") for i in range(6)}
    assert commit_seqs(str(url)) == [1, 2, 3]
    state = sink_delta.committed_state(spec)
    assert state == {"pump": "orders", "run_id": "run-1", "batch": "3/3", "seq": "3", "hwm": ""}
    load(spec, [(9, "b", T2, 0)], 3, tmp_path)  # the next run goes on from there
    assert commit_seqs(str(url)) == [1, 2, 3, 4] and len(rows_of(url)) == 7


def test_overwrite_replaces_the_table_with_the_runs_rows_in_one_commit(tmp_path: Path) -> None:
    """A run's batches land in one commit (its app transaction is the run's last batch), so a
    reader sees the old rows or the new, never a part; a replay of a committed run is a no-op."""
    url = tmp_path / "t"
    spec = unit_spec(url, mode="overwrite", dedup="")
    load(spec, [(1, "a", T1, 0), (2, "a", T1, 1)], 0, tmp_path)
    load(spec, [(3, "b", T2, 0), (4, "b", T2, 1), (6, "b", T2, 2)], 2, tmp_path)
    assert rows_of(url) == {3: ("b", "11:00"), 4: ("b", "11:00"), 6: ("b", "11:00")}
    assert DeltaTable(str(url)).version() == 1  # versions 0 and 1: one commit a run
    load(spec, [(3, "b", T2, 0)], 2, tmp_path)  # the second run replayed: it is in the table
    assert rows_of(url) == {3: ("b", "11:00"), 4: ("b", "11:00"), 6: ("b", "11:00")}
    load(spec, [(3, "b", T2, 0), (5, "c", T2, 1)], 5, tmp_path)
    assert rows_of(url) == {3: ("b", "11:00"), 5: ("c", "11:00")}
    assert commit_seqs(str(url)) == [2, 5, 7] and txn_version(str(url)) == 7
    load(spec, [], 9, tmp_path)  # a run that loads no rows leaves the table as it is
    assert rows_of(url) == {3: ("b", "11:00"), 5: ("c", "11:00")}
    state = sink_delta.committed_state(spec)
    assert state == {"pump": "orders", "run_id": "run-1", "batch": "2/2", "seq": "7", "hwm": ""}


def test_remove_all_deletes_the_table_and_finishes_a_removal_killed_half_way(
    tmp_path: Path,
) -> None:
    url = tmp_path / "t"
    spec = unit_spec(url, mode="append", dedup="", extra=", partition_by: [v]")
    assert sink_delta.committed_seq(spec) == 0  # no table yet
    load(spec, [(1, "a", T1, 0), (2, "b", T1, 1)], 0, tmp_path)
    (url / "rejected").mkdir()
    (url / "rejected" / "part-r-00000.parquet").write_bytes(b"x")
    (url / "notes.txt").write_text("not the table's")
    next(url.glob("v=a")).rename(tmp_path / "gone")  # as if a removal died after this folder
    sink_delta.remove_all(spec)
    assert sorted(p.name for p in url.iterdir()) == ["notes.txt"]
    assert sink_delta.committed_seq(spec) == 0
    sink_delta.remove_all(spec)  # nothing left to do
    load(spec, [(3, "c", T2, 0)], 0, tmp_path)  # a new table starts its sequence again
    assert rows_of(url) == {3: ("c", "11:00")} and commit_seqs(str(url)) == [1]


# ---- types and schema drift ------------------------------------------------------------------


def test_types_land_as_delta_types(tmp_path: Path) -> None:
    """Naive timestamps become UTC `timestamp` (not timestamp_ntz); decimals stay decimals;
    unsigned and other types Delta lacks widen to one that keeps every value."""
    url = tmp_path / "t"
    spec = unit_spec(url, mode="append", dedup="")
    cols = "id BIGINT; naive TIMESTAMP; tz TIMESTAMPTZ; d DECIMAL(12,2); u UBIGINT; i INTEGER; day DATE"
    load(
        spec,
        [(1, "2026-03-08 10:00:00", T1, "12.34", 2**64 - 1, 7, "2026-03-08", 0)],
        0,
        tmp_path,
        columns=cols,
    )
    dt = DeltaTable(str(url))
    types = {f.name: str(f.type) for f in dt.schema().fields}
    assert types == {
        "id": 'PrimitiveType("long")',
        "naive": 'PrimitiveType("timestamp")',
        "tz": 'PrimitiveType("timestamp")',
        "d": 'PrimitiveType("decimal(12,2)")',
        "u": 'PrimitiveType("decimal(20,0)")',
        "i": 'PrimitiveType("integer")',
        "day": 'PrimitiveType("date")',
    }
    assert dt.protocol().writer_features is None  # no timestampNtz: plain readers read it
    row = dt.to_pyarrow_table().to_pylist()[0]
    assert row["naive"].isoformat() == "2026-03-08T10:00:00+00:00"
    assert str(row["d"]) == "12.34" and row["u"] == 2**64 - 1


@pytest.mark.parametrize("mode", ["append", "merge"])
def test_a_new_column_is_added_to_the_table(tmp_path: Path, mode: str) -> None:
    url = tmp_path / "t"
    spec = unit_spec(url, mode=mode)
    load(spec, [(1, "a", T1, 0)], 0, tmp_path)
    wide = "id BIGINT; v VARCHAR; ts TIMESTAMPTZ; w INTEGER"
    load(spec, [(2, "b", T2, 5, 0)], 1, tmp_path, columns=wide)
    got = sorted(DeltaTable(str(url)).to_pyarrow_table().to_pylist(), key=lambda r: r["id"])
    assert [(r["id"], r["v"], r["w"]) for r in got] == [(1, "a", None), (2, "b", 5)]
    # and a column the run no longer has stays, NULL in the new rows
    load(spec, [(3, "c", T2, 0)], 2, tmp_path)
    got = sorted(DeltaTable(str(url)).to_pyarrow_table().to_pylist(), key=lambda r: r["id"])
    assert [(r["id"], r["w"]) for r in got] == [(1, None), (2, 5), (3, None)]


def test_a_widening_type_change_is_cast_to_the_tables_type(tmp_path: Path) -> None:
    url = tmp_path / "t"
    spec = unit_spec(url, mode="append", dedup="")
    load(spec, [(1, 10, "1.5", 0)], 0, tmp_path, columns="id BIGINT; n BIGINT; d DECIMAL(10,2)")
    load(spec, [(2, 20, "2.5", 0)], 1, tmp_path, columns="id BIGINT; n INTEGER; d DECIMAL(6,1)")
    dt = DeltaTable(str(url))
    assert [str(f.type) for f in dt.schema().fields] == [
        'PrimitiveType("long")',
        'PrimitiveType("long")',
        'PrimitiveType("decimal(10,2)")',
    ]
    assert sorted(r["n"] for r in dt.to_pyarrow_table().to_pylist()) == [10, 20]


@pytest.mark.parametrize(
    ("table_type", "run_type", "message"),
    [
        (
            "INTEGER",
            "BIGINT",
            "column 'n' is integer in the Delta table at {url} but long in this run; writing it "
            "would lose data or change the table's type. Fix: give the column its old type again "
            "in the spec (type: int32), or rebuild the table with `pumphouse run SPEC --full-refresh`",
        ),
        (
            "DOUBLE",
            "VARCHAR",
            "column 'n' is double in the Delta table at {url} but string in this run; writing it "
            "would lose data or change the table's type. Fix: give the column its old type again "
            "in the spec (type: float64), or rebuild the table with `pumphouse run SPEC --full-refresh`",
        ),
        (
            "DECIMAL(12,2)",
            "DECIMAL(12,4)",
            "column 'n' is decimal(12,2) in the Delta table at {url} but decimal(12,4) in this "
            "run; writing it would lose data or change the table's type. Fix: give the column its "
            "old type again in the spec (type: decimal(12,2)), or rebuild the table with "
            "`pumphouse run SPEC --full-refresh`",
        ),
    ],
)
@pytest.mark.parametrize("mode", ["append", "merge"])
def test_a_lossy_type_change_is_a_clear_error(
    tmp_path: Path, table_type: str, run_type: str, message: str, mode: str
) -> None:
    url = tmp_path / "t"
    spec = unit_spec(url, mode=mode)
    load(
        spec,
        [(1, "a", T1, "1", 0)],
        0,
        tmp_path,
        columns=f"id BIGINT; v VARCHAR; ts TIMESTAMPTZ; n {table_type}",
    )
    with pytest.raises(DataError) as caught:
        load(
            spec,
            [(2, "b", T2, "2", 0)],
            1,
            tmp_path,
            columns=f"id BIGINT; v VARCHAR; ts TIMESTAMPTZ; n {run_type}",
        )
    assert str(caught.value) == message.format(url=url)
    assert commit_seqs(str(url)) == [1]  # nothing of the run was written


def test_a_different_partitioning_is_a_clear_error(tmp_path: Path) -> None:
    url = tmp_path / "t"
    load(unit_spec(url, mode="append"), [(1, "a", T1, 0)], 0, tmp_path)
    spec = unit_spec(url, mode="append", extra=", partition_by: [v]")
    with pytest.raises(DataError) as caught:
        load(spec, [(2, "b", T1, 0)], 1, tmp_path)
    assert str(caught.value) == (
        f"the Delta table at {url} is partitioned by [] but sink.partition_by is [v]; set "
        "sink.partition_by to [], or rebuild the table with `pumphouse run SPEC --full-refresh`"
    )


def test_overwrite_may_change_the_schema(tmp_path: Path) -> None:
    url = tmp_path / "t"
    spec = unit_spec(url, mode="overwrite", dedup="")
    load(spec, [(1, 1, 0)], 0, tmp_path, columns="id BIGINT; n INTEGER")
    load(spec, [(2, "x", 0)], 1, tmp_path, columns="id BIGINT; s VARCHAR")
    assert DeltaTable(str(url)).to_pyarrow_table().to_pylist() == [{"id": 2, "s": "x"}]


# ---- storage options and spec rules ------------------------------------------------------------


@pytest.mark.parametrize(
    ("fsspec", "delta"),
    [
        (
            {
                "key": "K",
                "secret": "S",
                "endpoint_url": "http://127.0.0.1:9000",
                "client_kwargs": {"region_name": "eu-west-1"},
            },
            {
                "AWS_ACCESS_KEY_ID": "K",
                "AWS_SECRET_ACCESS_KEY": "S",
                "AWS_ENDPOINT_URL": "http://127.0.0.1:9000",
                "AWS_REGION": "eu-west-1",
                "AWS_ALLOW_HTTP": "true",
                "conditional_put": "etag",
            },
        ),
        (
            {"token": "T", "client_kwargs": {"endpoint_url": "https://s3.example.com"}},
            {
                "AWS_SESSION_TOKEN": "T",
                "AWS_ENDPOINT_URL": "https://s3.example.com",
                "conditional_put": "etag",
            },
        ),
        (
            {"anon": True, "use_listings_cache": False, "config_kwargs": {"retries": {}}},
            {"AWS_SKIP_SIGNATURE": "true", "conditional_put": "etag"},
        ),
        (  # deltalake's own keys pass through; a locking provider replaces conditional put
            {"AWS_S3_LOCKING_PROVIDER": "dynamodb", "DELTA_DYNAMO_TABLE_NAME": "locks"},
            {"AWS_S3_LOCKING_PROVIDER": "dynamodb", "DELTA_DYNAMO_TABLE_NAME": "locks"},
        ),
        ({"aws_conditional_put": "etag"}, {"aws_conditional_put": "etag"}),
    ],
)
def test_storage_options_map_to_deltalake(fsspec: dict[str, Any], delta: dict[str, str]) -> None:
    assert delta_options(fsspec) == delta


@pytest.mark.parametrize(
    ("sink", "problem"),
    [
        (
            "{type: delta, url: ./lake/orders, mode: merge}",
            "pumps/o.yaml:4 sink.key: mode 'merge' needs a key: set sink.key or transform.dedup.key",
        ),
        (
            "{type: delta, url: './lake/out[1]'}",
            "pumps/o.yaml:4 sink.url: deltalake cannot open a table whose path holds '[' or ']'; "
            "name the folder without them",
        ),
        (
            "{type: delta, url: gs://lake/orders}",
            "pumps/o.yaml:4 sink.url: a delta table lives on a local path or an s3:// URL "
            "(got gs://); e.g. ./warehouse/orders or s3://bucket/orders",
        ),
    ],
)
def test_delta_spec_rules(sink: str, problem: str) -> None:
    text = f"name: o\nsource: {{type: files, url: ./in/, format: ndjson}}\n\nsink: {sink}\n"
    with pytest.raises(SpecError) as caught:
        parse_spec(text, "pumps/o.yaml")
    assert caught.value.problems == (problem,)


def test_delta_urls_that_are_fine() -> None:
    for url in ("./lake/o", "/abs/o", "file:///abs/o", "s3://b/o", "s3a://b/o"):
        text = f"name: o\nsource: {{type: files, url: ./in/, format: ndjson}}\nsink: {{type: delta, url: {url}}}\n"
        assert parse_spec(text).sink.url == url


# ---- the pump end to end --------------------------------------------------------------------

SPEC = "pumps/orders.yaml"
URL = "out/orders"


def _run(**kw: Any) -> dict[str, Any]:
    from flows.pump import pump

    return dict(pump(spec_path=SPEC, **kw))


@pytest.mark.usefixtures("prefect_server")
@pytest.mark.parametrize("mode", ["append", "merge", "overwrite"])
def test_two_runs_land_exactly_per_mode(project: Path, mode: str) -> None:
    """Run 1 reads day 0; run 2 reads day 1, whose orders are later versions of day 0's.
    append: each run's deduplicated rows; merge: one row per order, the latest of both;
    overwrite: run 2's rows only."""
    (project / SPEC).write_text(delta_spec(mode, batch_rows=60))
    day0 = write_orders(project / "in", files=2, rows=150, seed=3, day=0)
    first = _run()
    assert as_oracle(table_rows(URL)) == expected(day0)
    day1 = write_orders(project / "in", files=2, rows=150, seed=4, day=1)
    second = _run()
    assert second["files"] == 2 and second["rows_read"] == 300
    got = table_rows(URL)
    if mode == "append":
        assert got == Counter((k, *v) for k, v in expected(day0).items()) + Counter(
            (k, *v) for k, v in expected(day1).items()
        )
    elif mode == "merge":
        both = expected(day0 + day1)
        assert as_oracle(got) == both
        assert len(both) < len(expected(day0)) + len(expected(day1))  # orders did overlap
    else:
        assert as_oracle(got) == expected(day1)
    n = sum(-(-r["rows_written"] // 60) for r in (first, second))  # batches of 60 rows
    if mode == "overwrite":  # one commit a run, numbered by its last batch
        assert commit_seqs(URL) == [-(-first["rows_written"] // 60), n]
    else:
        assert commit_seqs(URL) == list(range(1, n + 1))
    state = json.loads((project / ".pumphouse/orders/state.json").read_text())
    assert state["seq"] == n == txn_version(URL)
    # the state in the table's last commit agrees with the committed state
    meta = sink_delta.committed_state(parse_spec((project / SPEC).read_text()))
    assert meta is not None and meta["seq"] == str(n)
    assert meta["hwm"] == state["hwm"] == second["hwm_after"]
    # rejected rows are parquet under URL/rejected/, of both runs
    con = connect()
    rejected = con.sql(f"SELECT count(*) FROM read_parquet('{URL}/rejected/*.parquet')").fetchall()
    assert rejected == [(sum(1 for r in day0 + day1 if not is_valid(r)),)]
    con.close()


@pytest.mark.usefixtures("prefect_server")
@pytest.mark.reliability(
    "bad data",
    "a lossy type change against an existing Delta table (float64 column now string)",
    "the run fails before writing with the column, both types and the fix; the table is "
    "unchanged; the run is dropped, so after the fix its inputs load",
)
def test_schema_evolution_and_lossy_drift_in_a_run(project: Path) -> None:
    """strict: false: a new source field becomes a new table column. A spec change that
    makes `amount` a string fails the run with the column, both types and the fix; the
    table is left as it was."""
    (project / SPEC).write_text(delta_spec("merge"))
    write_orders(project / "in", files=1, rows=50, seed=5, day=0)
    _run()
    extra = [
        {"order_id": 10_000 + i, "customer": "c9", "amount": 1.5, "status": "paid",
         "updated_at": "2026-03-10T00:00:00Z", "channel": "web"}
        for i in range(3)
    ]  # fmt: skip
    (project / "in" / "orders-05-000.ndjson").write_text(
        "\n".join(json.dumps(r) for r in extra) + "\n"
    )
    _run()
    data = DeltaTable(URL).to_pyarrow_table()
    assert "channel" in data.column_names
    channels = Counter(data.column("channel").to_pylist())
    assert channels["web"] == 3 and channels[None] == data.num_rows - 3

    version = DeltaTable(URL).version()
    spec = (
        (project / SPEC)
        .read_text()
        .replace("amount:     {type: float64, checks: {ge: 0}}", "amount:     {type: string}")
    )
    (project / SPEC).write_text(spec)
    later = {**extra[0], "updated_at": "2026-03-11T00:00:00Z"}
    (project / "in" / "orders-06-000.ndjson").write_text(json.dumps(later) + "\n")
    with pytest.raises(DataError) as caught:
        _run()
    assert str(caught.value) == (
        "column 'amount' is double in the Delta table at ./out/orders but string in this run; "
        "writing it would lose data or change the table's type. Fix: give the column its old "
        "type again in the spec (type: float64), or rebuild the table with "
        "`pumphouse run SPEC --full-refresh`"
    )
    assert DeltaTable(URL).version() == version
    assert not (project / ".pumphouse" / "orders" / "manifest.json").exists()

    # the refused run was dropped, not kept half done: with the spec fixed, its file loads
    (project / SPEC).write_text(
        spec.replace("amount:     {type: string}", "amount:     {type: float64, checks: {ge: 0}}")
    )
    assert _run()["rows_written"] == 1
    got = DeltaTable(URL).to_pyarrow_table().filter(pc.field("order_id") == 10_000).to_pylist()
    assert [r["updated_at"].isoformat() for r in got] == ["2026-03-11T00:00:00+00:00"]


CASE_SPEC = """\
name: orders
source: {type: files, url: ./src/, format: ndjson}
sink: {type: delta, url: ./wh/r2, mode: MODE}
"""


@pytest.mark.usefixtures("prefect_server")
@pytest.mark.parametrize(
    ("mode", "table", "later", "third"),
    [
        ("append", "a", "A", '{"id":3,"A":3}'),
        ("merge, key: [id]", "A", "a", '{"id":1,"a":9}'),  # run 3 updates id 1
    ],
)
def test_a_field_spelled_in_another_case_lands_in_the_tables_column(
    project: Path, mode: str, table: str, later: str, third: str
) -> None:
    """A field spelled `a` by one run and `A` by a later one (the run's columns are not
    case-sensitive) lands in the table's column, under the table's spelling; was: every
    later run failed with deltalake's "Duplicate field name (case-insensitive)"."""
    (project / SPEC).write_text(CASE_SPEC.replace("MODE", mode))
    (project / "src").mkdir()
    (project / "src" / "1.ndjson").write_text(f'{{"id":1,"{table}":1}}\n')
    _run()
    (project / "src" / "2.ndjson").write_text(f'{{"id":2,"{later}":2}}\n')
    _run()
    (project / "src" / "3.ndjson").write_text(third + "\n")
    _run()
    data = DeltaTable("wh/r2").to_pyarrow_table()
    assert [n for n in data.column_names if n.lower() == "a"] == [table]
    got = dict(zip(data.column("id").to_pylist(), data.column(table).to_pylist(), strict=True))
    assert got == ({1: 1, 2: 2, 3: 3} if mode == "append" else {1: 9, 2: 2})


@pytest.mark.usefixtures("prefect_server")
def test_query_compact_and_full_refresh(project: Path) -> None:
    """`pumphouse query` reads the table and its rejected rows; `compact` merges the small
    files of many small commits and vacuums, keeping every row and the rejected files;
    --full-refresh drops the table and rebuilds it."""
    (project / SPEC).write_text(delta_spec("merge", batch_rows=20))
    records: list[dict[str, Any]] = []
    for day in range(3):  # new orders each day: every merge adds small files
        records += write_orders(
            project / "in", files=1, rows=80, seed=7 + day, day=day, start_id=1000 * day
        )
        _run()
    want = expected(records)
    assert as_oracle(table_rows(URL)) == want

    q = run_in_process("query", SPEC, "SELECT count(*) AS n, count(DISTINCT order_id) AS k FROM orders",
                "--format", "json", cwd=project)  # fmt: skip
    assert q.returncode == 0, q.stderr
    assert json.loads(q.stdout) == [{"n": len(want), "k": len(want)}]
    q = run_in_process("query", SPEC, "SELECT count(*) AS n FROM orders_rejected", "--format", "csv",
                cwd=project)  # fmt: skip
    invalid = sum(1 for r in records if not is_valid(r))
    assert q.returncode == 0 and q.stdout.split() == ["n", str(invalid)], q.stderr

    rejected = sorted(p.name for p in (project / URL / "rejected").iterdir())
    before = len(DeltaTable(URL).file_uris())
    c = run_in_process("compact", SPEC, "--retention-hours", "0", cwd=project)
    assert c.returncode == 0, c.stderr
    dt = DeltaTable(URL)
    after = len(dt.file_uris())
    assert before > after == 2  # one file per status partition
    assert c.stdout.startswith(f"compacted: pump orders, {before} -> 2 files, ")
    assert as_oracle(table_rows(URL)) == want
    assert sorted(p.name for p in (project / URL / "rejected").iterdir()) == rejected
    data_files = [p for p in (project / URL).glob("status=*/*.parquet")]
    assert len(data_files) == 2 < before  # the files compaction replaced are gone
    assert txn_version(URL) == sum(1 for _ in commit_seqs(URL))  # compaction adds no batch

    refreshed = _run(full_refresh=True)
    assert refreshed["files"] == 3 and refreshed["rows_read"] == 240
    assert as_oracle(table_rows(URL)) == want
    n = -(-refreshed["rows_written"] // 20)
    assert commit_seqs(URL) == list(range(1, n + 1)) and txn_version(URL) == n
    assert len(list((project / URL / "rejected").iterdir())) == 1  # the new run's only


def test_compact_says_what_it_needs(project: Path) -> None:
    helped = run_in_process("compact", "--help", cwd=project)
    assert helped.returncode == 0 and "--retention-hours" in helped.stdout
    assert "vacuum" in helped.stdout and "rejected" in helped.stdout
    (project / SPEC).write_text(spec_text())
    c = run_in_process("compact", SPEC, cwd=project)
    assert c.returncode == 2
    assert c.stderr.strip() == f"error: compact works on delta sinks; {SPEC} has sink.type parquet"
    (project / SPEC).write_text(delta_spec("append"))
    c = run_in_process("compact", SPEC, cwd=project)
    assert c.returncode == 2
    assert c.stderr.strip() == "error: no Delta table at ./out/orders yet; run the pump first"


@pytest.mark.usefixtures("prefect_server")
def test_merge_into_s3(project: Path, s3_endpoint: str) -> None:  # noqa: F811
    """The same table on S3 (moto): fsspec-style storage_options drive both deltalake (the
    table) and s3fs (rejected rows); query reads it back."""
    make_bucket(s3_endpoint, "lake-delta", **S3_KEYS)
    options = storage_options(s3_endpoint, **S3_KEYS)
    text = delta_spec("merge", batch_rows=50).replace(
        "  url: ./out/orders\n",
        f"  url: s3://lake-delta/orders\n  storage_options: {options}\n",
    )
    (project / SPEC).write_text(text)
    day0 = write_orders(project / "in", files=1, rows=100, seed=9, day=0)
    _run()
    day1 = write_orders(project / "in", files=1, rows=100, seed=10, day=1)
    _run()
    spec = parse_spec(text)
    from tasks.sinks.delta_storage import storage_options as delta_storage

    opts = delta_storage(spec.sink)  # type: ignore[arg-type]
    assert as_oracle(table_rows("s3://lake-delta/orders", opts)) == expected(day0 + day1)
    assert commit_seqs("s3://lake-delta/orders", opts) == list(
        range(1, sink_delta.committed_seq(spec) + 1)
    )
    from tasks.sinks.query import run_query

    _, rows = run_query(spec, "SELECT count(*) FROM orders")
    assert rows == [(len(expected(day0 + day1)),)]
    _, rows = run_query(spec, "SELECT count(*) FROM orders_rejected")
    assert rows == [(sum(1 for r in day0 + day1 if not is_valid(r)),)]
    refreshed = _run(full_refresh=True)
    assert refreshed["rows_read"] == 200
    assert as_oracle(table_rows("s3://lake-delta/orders", opts)) == expected(day0 + day1)


@pytest.mark.usefixtures("prefect_server")
def test_a_missing_bucket_or_an_unreachable_store_says_what_to_do(
    project: Path,
    s3_endpoint: str,  # noqa: F811
) -> None:
    """deltalake's own errors (a chain of lines, colours, the store's XML) become one plain
    line naming the sink and the fix: exit 1, nothing else on stderr."""
    write_orders(project / "in", files=1, rows=20, seed=3)
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    cases = [
        (
            "s3://no-such-lake/orders",
            s3_endpoint,
            "error: sink s3://no-such-lake/orders: the bucket does not exist; create it, "
            "or fix the bucket name in the URL",
        ),
        (
            "s3://lake-down/orders",
            down,
            "error: sink s3://lake-down/orders: opening the Delta table failed after retries "
            "(Connection refused (os error 111)); the store is unavailable or throttling, "
            "run again later",
        ),
    ]
    for url, endpoint, line in cases:
        options = storage_options(endpoint, **S3_KEYS)
        text = delta_spec("merge").replace(
            "  url: ./out/orders\n", f"  url: {url}\n  storage_options: {options}\n"
        )
        (project / SPEC).write_text(text)
        done = run_cli("run", SPEC, cwd=project)
        assert done.returncode == 1
        assert done.stderr.strip() == line
        assert S3_KEYS["secret"] not in done.stdout + done.stderr


def test_what_deltalake_raises_is_sorted_by_what_to_do() -> None:
    """deltalake's storage errors, as object_store words them (colours included)."""
    from schemas.errors import TransientError
    from tasks.io.storage import object_store_error

    arrow = "\n          \x1b[31m↳\x1b[0m "
    xml = '<?xml version="1.0"?>\n<Error><Code>{}</Code><Message>m</Message></Error>'
    cases = [
        (f"Generic S3 error{arrow}404 Not Found{arrow}{xml.format('NoSuchBucket')}", DataError,
         "the bucket does not exist"),
        (f"Generic S3 error{arrow}403 Forbidden{arrow}{xml.format('InvalidAccessKeyId')}",
         DataError, "access denied (InvalidAccessKeyId); check the credentials in o"),
        (f"Generic LocalFileSystem error{arrow}Permission denied (os error 13)", DataError,
         "access denied (Permission denied (os error 13))"),
        (f"Generic S3 error{arrow}503 Service Unavailable{arrow}{xml.format('SlowDown')}",
         TransientError, "writing failed after retries (503 Service Unavailable)"),
        (f"Generic S3 error{arrow}error sending request{arrow}timed out", TransientError,
         "writing failed after retries (timed out)"),
        (f"Generic S3 error{arrow}Error performing PUT in 3s, after 10 retries{arrow}"
         "429 Too Many Requests", TransientError, "(429 Too Many Requests); the store is"),
    ]  # fmt: skip
    for text, kind, words in cases:
        found = object_store_error(OSError(text), "sink s3://b/t", "writing", "o")
        assert type(found) is kind and words in str(found), (text, found)
        assert "\x1b" not in str(found) and "<" not in str(found)
    assert object_store_error(OSError("Kernel error -> Schema mismatch"), "w", "d", "o") is None
