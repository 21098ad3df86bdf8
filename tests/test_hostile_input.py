"""Bad data and hostile values end to end, and the limits that bound a run (issue 7).

Every test runs the real flow on a real Prefect server and asserts what landed, what was
rejected (with its file and line) and what the sink folder holds, exactly.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
import pytest

from tasks.engine.db import connect, scalar
from tests._http_servers import Answer, PagedAPI, Seen, api_orders, api_spec, serve
from tests.conftest import run_cli, run_in_process
from tests.data import expected, is_valid, landed, spec_text, write_orders

pytestmark = pytest.mark.usefixtures("prefect_server")

GOOD = {"customer": "c1", "amount": 1.5, "status": "open", "updated_at": "2026-03-08T10:00:00Z"}


def _run(spec: Path, **kw: object) -> dict[str, Any]:
    from flows.pump import pump

    return pump(spec_path=str(spec), **kw)  # type: ignore[arg-type]


def _line(order_id: int, **over: Any) -> str:
    return json.dumps({"order_id": order_id, **GOOD, **over})


def _rejected(folder: str) -> list[tuple[str, int, list[str]]]:
    con = duckdb.connect()
    rows = con.sql(
        f"SELECT _source, _row, _errors FROM read_parquet('{folder}/rejected/*.parquet', "
        "union_by_name = true) ORDER BY _source, _row"
    ).fetchall()
    return [(os.path.basename(s), int(r), list(e)) for s, r, e in rows]


@pytest.mark.reliability(
    "bad data",
    "one run over malformed JSON lines, wrong types, non-UTF-8 bytes, a BOM, an empty file, "
    "duplicate keys in a record, a record over max_record_bytes and a 10 MB single JSON string",
    "each bad record is rejected with its file, line and reason; every good record loads; "
    "the run succeeds without holding the big records",
)
def test_every_kind_of_bad_record_is_rejected_and_the_rest_loads(project: Path) -> None:
    src = project / "in"
    src.mkdir()
    (src / "a-malformed.ndjson").write_text(
        "\n".join([_line(1), '{"order_id": 2, "amount": ', "not json at all", _line(3)]) + "\n"
    )
    (src / "b-types.ndjson").write_text(
        "\n".join([_line(4, amount="lots"), _line(5, updated_at="yesterday"), _line(6)]) + "\n"
    )
    (src / "c-latin1.ndjson").write_bytes(
        _line(7).encode()
        + b"\n"
        + _line(8, customer="M-ller").encode().replace(b"-", b"\xfc")
        + b"\n"
    )
    (src / "d-bom.ndjson").write_bytes(b"\xef\xbb\xbf" + _line(9).encode() + b"\r\n")
    (src / "e-empty.ndjson").write_bytes(b"")
    (src / "f-dupkeys.ndjson").write_text(
        '{"order_id": 10, "order_id": 11, "customer": "c1", "amount": 2.0, "status": "paid", '
        '"updated_at": "2026-03-08T10:00:00Z"}\n' + _line(12) + "\n"
    )
    (src / "g-big.ndjson").write_text(
        "\n".join([_line(13, customer="x" * (2 * 2**20)), _line(14)]) + "\n"
    )
    (src / "h-10mb-string.ndjson").write_text(
        json.dumps("y" * (10 * 2**20)) + "\n" + _line(15) + "\n"
    )
    spec = project / "pumps" / "orders.yaml"
    spec.write_text(spec_text(max_invalid_ratio=0.9) + "  max_record_bytes: 1MiB\n")

    summary = _run(spec)

    assert summary["status"] == "ok"
    got = landed("out/orders")
    # order 10/11: of duplicate keys in one record the first counts (DuckDB's JSON rule),
    # every run alike; duplicate CSV header names are refused (tests/test_read.py)
    assert sorted(got) == [1, 3, 6, 7, 9, 10, 12, 14, 15]
    rejected = _rejected("out/orders")
    where = [(f, r) for f, r, _ in rejected]
    assert where == [
        ("a-malformed.ndjson", 2),
        ("a-malformed.ndjson", 3),
        ("b-types.ndjson", 1),
        ("b-types.ndjson", 2),
        ("c-latin1.ndjson", 2),
        ("g-big.ndjson", 1),
        ("h-10mb-string.ndjson", 1),
    ]
    reasons = {(f, r): " ".join(e) for f, r, e in rejected}
    assert "amount" in reasons[("b-types.ndjson", 1)]
    assert "updated_at" in reasons[("b-types.ndjson", 2)]
    assert "UTF-8" in reasons[("c-latin1.ndjson", 2)]
    assert "max_record_bytes" in reasons[("g-big.ndjson", 1)]
    assert summary["rows_rejected"] == len(rejected) == 7
    assert summary["rows_read"] == 16


QUOTES_SPEC = """\
name: people
source: {type: files, url: ./in/, format: csv}
schema:
  columns:
    id: {type: int64, nullable: false}
    name: {type: string}
sink: {type: parquet, url: ./out/people}
limits: {max_record_bytes: 1KiB, max_invalid_ratio: 0.5}
"""


@pytest.mark.reliability(
    "bad data",
    "`pumphouse run` over a CSV file whose quote never closes (60 lines, within "
    "max_record_bytes) and one with a quoted field of 1,000 lines over it in its middle",
    "each is one rejected row, saying the line its quote opened on or its exact size; the rows "
    "before them and after the closing quote land, none of the quoted lines does",
)
def test_csv_quotes_decide_where_records_end_in_a_run(project: Path) -> None:
    (project / "in").mkdir()
    open_quote = 'id,name\n1,alice\n2,"bob\n' + "".join(f"{i},name{i}\n" for i in range(3, 61))
    (project / "in" / "a.csv").write_text(open_quote)
    quoted = '4,"' + "y\n" * 1000 + 'y"'
    (project / "in" / "b.csv").write_text(f'id,name\n3,carol\n{quoted}\n5,"e\nf"\n6,g\n')
    (project / "pumps" / "people.yaml").write_text(QUOTES_SPEC)

    done = run_in_process("run", "pumps/people.yaml", "--json", cwd=project)

    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert (summary["status"], summary["rows_read"], summary["rows_written"]) == ("ok", 6, 4)
    assert summary["rows_rejected"] == 2
    con = duckdb.connect()
    got = con.sql("SELECT id, name FROM read_parquet('out/people/data/*.parquet') ORDER BY id")
    assert got.fetchall() == [(1, "alice"), (3, "carol"), (5, "e\nf"), (6, "g")]
    rejected = [(f, r, " ".join(e)) for f, r, e in _rejected("out/people")]
    assert rejected == [
        (
            "a.csv",
            3,
            "_record: not valid CSV: the quote opened on line 3 is never closed, so the record "
            "runs to the end of the file",
        ),
        (
            "b.csv",
            3,
            f"_record: record is {len(quoted)} bytes, over limits.max_record_bytes (1024)",
        ),
    ]


@pytest.mark.reliability(
    "hostile spec",
    "partition values such as `../../x`, `/etc` and `..` in the partition column",
    "every file lands inside the sink's data folder; nothing is written outside it",
)
def test_partition_values_cannot_write_outside_the_sink(project: Path) -> None:
    src = project / "in"
    src.mkdir()
    values = ["../../x", "/etc", "..", "a/../../b", "open"]
    (src / "p.ndjson").write_text(
        "\n".join(_line(i, status=v) for i, v in enumerate(values)) + "\n"
    )
    spec = project / "pumps" / "orders.yaml"
    text = spec_text().replace("checks: {isin: [open, paid, void]}", "nullable: true")
    spec.write_text(text)
    before = {p for p in project.rglob("*") if p.is_file()}

    summary = _run(spec)

    assert summary["rows_written"] == 5
    sink = (project / "out" / "orders" / "data").resolve()
    new = {p for p in project.rglob("*") if p.is_file()} - before
    written = [p for p in new if p.suffix == ".parquet"]
    assert written and all(sink in p.resolve().parents for p in written), written
    outside = [p for p in new if not p.resolve().is_relative_to(project / "out")]
    assert all(p.resolve().is_relative_to(project / ".pumphouse") for p in outside), outside
    con = duckdb.connect()
    back = con.sql(
        f"SELECT status FROM read_parquet('{sink}/**/*.parquet', hive_partitioning = true)"
    ).fetchall()
    assert sorted(v for (v,) in back) == sorted(values)


@pytest.mark.reliability(
    "limits",
    "limits.memory: 64MiB on a run that dedups 200k rows",
    "DuckDB runs under that memory limit with a spill folder; the run completes with exact rows",
)
def test_memory_limit_bounds_the_engine_and_the_run_completes(project: Path) -> None:
    con = connect(memory_bytes=64 * 2**20, temp_dir=str(project / "spill"))
    assert scalar(con, "SELECT current_setting('memory_limit')") in ("64.0 MiB", "61.0 MiB")
    assert scalar(con, "SELECT current_setting('temp_directory')") == str(project / "spill")
    con.close()
    records = write_orders(project / "in", files=4, rows=50_000, seed=3)
    spec = project / "pumps" / "orders.yaml"
    spec.write_text(spec_text(batch_rows=20_000) + "  memory: 64MiB\n")

    summary = _run(spec)

    assert summary["status"] == "ok"
    assert landed("out/orders") == expected(records)


@pytest.mark.reliability(
    "limits",
    "max_rows_per_run below the input, batch_rows below a file",
    "each run stops cleanly at the limit (whole files); the next runs go on from there; "
    "no sink file holds more than batch_rows rows; together they land every row once",
)
def test_max_rows_per_run_stops_cleanly_and_the_next_run_goes_on(project: Path) -> None:
    records = write_orders(project / "in", files=5, rows=300, seed=5)
    per_file = [records[i * 300 : (i + 1) * 300] for i in range(5)]
    spec = project / "pumps" / "orders.yaml"
    spec.write_text(spec_text(batch_rows=120) + "  max_rows_per_run: 600\n  max_concurrency: 1\n")

    runs = [_run(spec) for _ in range(4)]

    assert [r["files"] for r in runs] == [2, 2, 1, 0]
    assert [r["rows_read"] for r in runs] == [600, 600, 300, 0]
    want: Counter[int] = Counter()
    hwm = None
    for group in (per_file[0:2], per_file[2:4], per_file[4:5]):
        rows = [r for f in group for r in f]
        want.update(expected(rows, hwm).keys())
        hwm = max(r["updated_at"] for r in rows if is_valid(r) and r["status"] != "void")
    con = duckdb.connect()
    landed_ids = Counter(
        oid
        for (oid,) in con.sql(
            "SELECT order_id FROM read_parquet('out/orders/data/**/*.parquet', hive_partitioning = true)"
        ).fetchall()
    )
    assert landed_ids == want
    sizes = [
        pq.ParquetFile(p).metadata.num_rows for p in Path("out/orders/data").rglob("*.parquet")
    ]
    assert max(sizes) <= 120


@pytest.mark.reliability(
    "limits",
    "max_rows_per_run below the input, and the files left for the next run hold older "
    "cursors than those read first (exports not in time order); a new file arrives meanwhile",
    "the next run reads the files left over against the mark the cut run started with, "
    "before the new file: every valid row lands once, as one run without the limit would land it",
)
def test_files_left_by_max_rows_per_run_are_not_hidden_by_the_mark(project: Path) -> None:
    src = project / "in"
    newer = write_orders(project / "tmp-newer", files=1, rows=300, seed=7, day=5)
    older = write_orders(project / "tmp-older", files=1, rows=300, seed=8, start_id=5_000)
    src.mkdir()
    # Listed (by URL) newest first: the run the limit cuts reads the newest rows first.
    (project / "tmp-newer" / "orders-05-000.ndjson").rename(src / "a.ndjson")
    (project / "tmp-older" / "orders-00-000.ndjson").rename(src / "b.ndjson")
    spec = project / "pumps" / "orders.yaml"
    spec.write_text(spec_text(batch_rows=120) + "  max_rows_per_run: 300\n  max_concurrency: 1\n")

    first = _run(spec)
    shown = run_cli("status", str(spec), cwd=project, env={"COLUMNS": "250"})
    assert "1 input(s) left for the next run" in shown.stdout, shown.stdout
    # The file left over grows before the next run: it is read as it is then.
    grown = write_orders(project / "tmp-grown", files=1, rows=20, seed=10, start_id=6_000)
    with (src / "b.ndjson").open("a") as f:
        f.write((project / "tmp-grown" / "orders-00-000.ndjson").read_text())
    later = write_orders(project / "tmp-later", files=1, rows=30, seed=9, start_id=9_000, day=9)
    (project / "tmp-later" / "orders-09-000.ndjson").rename(src / "0-later.ndjson")
    second = _run(spec)
    third = _run(spec)
    fourth = _run(spec)

    assert [r["files"] for r in (first, second, third, fourth)] == [1, 1, 1, 0]
    assert [r["rows_read"] for r in (first, second, third, fourth)] == [300, 320, 30, 0]
    want = {**expected(newer), **expected(older + grown), **expected(later)}
    assert len(want) > 400
    assert landed("out/orders") == want
    # The mark ends where one run without the limit would have left it (the newest row).
    assert fourth["hwm_before"].startswith("2026-03-17")
    # The second run read b.ndjson against the first run's starting mark (none), not the
    # first run's mark, and did not move the committed mark back.
    assert second["hwm_before"] is None
    assert second["hwm_after"] == first["hwm_after"]


class _SlowPages(PagedAPI):
    """A cursor-paginated API that takes `delay` seconds over each page."""

    def __init__(self, records: list[dict[str, Any]], delay: float) -> None:
        super().__init__(records, "cursor", page_size=5)
        self.delay = delay

    def answer(self, req: Seen) -> Answer:
        page = super().answer(req)
        page.action, page.delay = "slow", self.delay
        return page


@pytest.mark.reliability(
    "limits",
    "limits.max_run_seconds: 1 on a run whose http source answers slowly (12 pages, 0.5 s each)",
    "the run stops at the limit: exit 1, status failed, an error naming limits.max_run_seconds "
    "and the fix; the run stays open as a crash leaves it, and the rerun with a large limit "
    "finishes it: every valid row lands exactly once",
)
def test_max_run_seconds_stops_a_slow_run_and_the_next_run_finishes_it(project: Path) -> None:
    records = api_orders(60, seed=8)
    app = _SlowPages(records, delay=0.5)
    spec = project / "pumps" / "orders.yaml"
    with serve(app) as base:
        spec.write_text(api_spec(base, batch_rows=5) + "  max_run_seconds: 1\n")
        first = run_cli("run", "pumps/orders.yaml", "--json", cwd=project)
        assert first.returncode == 1, first.stderr
        summary = json.loads(first.stdout)
        assert summary["status"] == "failed"
        assert summary["error"] == (
            "the run took longer than limits.max_run_seconds (1 s) and was stopped; nothing is "
            "lost: the next run finishes it. Raise limits.max_run_seconds (ceiling 604800 s), or "
            "lower limits.max_rows_per_run so that one run does less"
        )
        assert (project / ".pumphouse/orders/manifest.json").exists()  # open, as after a crash
        assert not list(project.glob("out/orders/data/**/*.parquet"))
        asked = len(app.seen)
        assert asked < 12  # it stopped before the source's last page

        app.delay = 0.0
        spec.write_text(api_spec(base, batch_rows=5) + "  max_run_seconds: 3600\n")
        second = _run(spec)
        third = _run(spec)

    assert (second["status"], second["resumed"]) == ("ok", True)
    assert landed("out/orders") == expected(records)
    assert (third["status"], third["rows_written"]) == ("ok", 0)
