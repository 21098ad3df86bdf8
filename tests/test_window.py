"""The incremental window across runs (CONTRACT §2): rows at the mark, late rows within
`lookback`, re-sent copies; for every sink, files and the http source."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
from deltalake import DeltaTable

from tests._http_servers import PagedAPI, Receiver, api_spec, serve

pytestmark = pytest.mark.usefixtures("prefect_server")

SINKS = {
    "parquet": "sink: {type: parquet, url: ./out/readings}\n",
    "delta-append": "sink: {type: delta, url: ./out/readings, mode: append}\n",
    "delta-merge": "sink: {type: delta, url: ./out/readings, mode: merge, key: [station, at]}\n",
    "http": "sink: {type: http, url: HOOK/hook, batch_rows: 2, retry_max_wait: 0.05}\n",
}


def _spec(sink: str, lookback: str = "0s") -> str:
    return (
        "name: readings\n"
        'source: {type: files, url: ./in/, glob: "*.ndjson"}\n'
        "schema:\n  columns:\n"
        "    station: {type: string}\n    at: {type: timestamp}\n    value: {type: float64}\n"
        f"transform:\n  incremental: {{cursor: at, lookback: {lookback}}}\n" + sink
    )


def _write(project: Path, name: str, *rows: tuple[str, str, float]) -> None:
    (project / "in").mkdir(exist_ok=True)
    lines = [
        json.dumps({"station": s, "at": f"2026-03-08T{t}:00Z", "value": v}) for s, t, v in rows
    ]
    (project / "in" / name).write_text("\n".join(lines) + "\n")


def _run(project: Path) -> dict[str, Any]:
    from flows.pump import pump

    return pump(spec_path=str(project / "pumps" / "readings.yaml"))


def _landed(kind: str, project: Path, hook: Receiver | None) -> Counter[tuple[Any, ...]]:
    """(station, HH:MM, value) of every row the sink holds, duplicates counted."""
    if kind == "http":
        assert hook is not None
        return Counter((r["station"], r["at"][11:16], r["value"]) for r in hook.by_key())
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    if kind == "parquet":
        rel = "read_parquet('out/readings/data/**/*.parquet')"
    else:
        con.register("t", DeltaTable(str(project / "out" / "readings")).to_pyarrow_table())
        rel = "t"
    rows = con.sql(f"SELECT station, strftime(\"at\", '%H:%M'), value FROM {rel}").fetchall()
    return Counter(rows)


@pytest.fixture
def hook() -> Iterator[Receiver]:
    app = Receiver()
    with serve(app):
        yield app


@pytest.mark.parametrize("kind", list(SINKS))
@pytest.mark.reliability(
    "across runs",
    "a late file with a row at the high-water mark's own value, and a re-sent copy of a row "
    "at the mark (parquet, delta append, delta merge, webhook)",
    "the late row is loaded once, the copy not again (with `>` the late row was lost for good)",
)
def test_a_row_at_the_mark_is_loaded_once(project: Path, kind: str, hook: Receiver) -> None:
    (project / "pumps" / "readings.yaml").write_text(_spec(SINKS[kind].replace("HOOK", hook.base)))
    _write(project, "a.ndjson", ("s1", "10:00", 1.0), ("s1", "11:00", 2.0), ("s2", "11:00", 3.0))
    first = _run(project)
    assert first["rows_written"] == 3 and first["hwm_after"].startswith("2026-03-08 11:00")
    # two stations report the same hour late; one of the rows at the mark comes again
    _write(project, "b.ndjson", ("s3", "11:00", 4.0), ("s1", "11:00", 2.0), ("s1", "10:30", 9.0))
    second = _run(project)
    assert (second["rows_written"], second["rows_old"]) == (1, 2)
    _write(project, "c.ndjson", ("s3", "11:00", 4.0), ("s2", "11:00", 3.0))
    third = _run(project)
    assert (third["rows_written"], third["rows_old"]) == (0, 2)
    want = {("s1", "10:00", 1.0), ("s1", "11:00", 2.0), ("s2", "11:00", 3.0), ("s3", "11:00", 4.0)}
    assert _landed(kind, project, hook) == Counter(want)


def test_lookback_takes_late_rows_once(project: Path) -> None:
    (project / "pumps" / "readings.yaml").write_text(_spec(SINKS["parquet"], lookback="2h"))
    _write(project, "a.ndjson", ("s1", "12:00", 1.0))
    _run(project)
    # 1.5 h late: in the window; 3 h late: not
    _write(project, "b.ndjson", ("s2", "10:30", 2.0), ("s3", "09:00", 3.0))
    second = _run(project)
    assert (second["rows_written"], second["rows_old"]) == (1, 1)
    _write(project, "c.ndjson", ("s2", "10:30", 2.0), ("s1", "12:00", 1.0))  # re-sent
    assert _run(project)["rows_written"] == 0
    _write(project, "d.ndjson", ("s4", "13:00", 4.0), ("s2", "10:30", 2.5))  # a changed value
    assert _run(project)["rows_written"] == 2
    # the mark is 13:00 now: 10:30 is out of the window, whatever its value
    _write(project, "e.ndjson", ("s2", "10:30", 7.0), ("s5", "11:30", 5.0))
    fifth = _run(project)
    assert (fifth["rows_written"], fifth["rows_old"]) == (1, 1)
    want = {("s1", "12:00", 1.0), ("s2", "10:30", 2.0), ("s4", "13:00", 4.0)}
    want |= {("s2", "10:30", 2.5), ("s5", "11:30", 5.0)}
    assert _landed("parquet", project, None) == Counter(want)


def test_state_from_before_windows_reads_with_the_old_mark_once(project: Path) -> None:
    """State written by a version that used `>` at the mark has no window: its rows at the
    mark were loaded, so they must not come again; the next run keeps a window."""
    (project / "pumps" / "readings.yaml").write_text(_spec(SINKS["parquet"]))
    _write(project, "a.ndjson", ("s1", "11:00", 1.0))
    _run(project)
    state = project / ".pumphouse" / "readings" / "state.json"
    data = json.loads(state.read_text())
    assert [c for c, _ in data.pop("seen")] == ["2026-03-08 11:00:00+00"]
    state.write_text(json.dumps(data))
    _write(project, "b.ndjson", ("s1", "11:00", 1.0), ("s2", "12:00", 2.0))
    assert _run(project)["rows_written"] == 1
    assert "seen" in json.loads(state.read_text())
    _write(project, "c.ndjson", ("s3", "12:00", 3.0))  # at the new mark: not lost
    assert _run(project)["rows_written"] == 1
    want = {("s1", "11:00", 1.0), ("s2", "12:00", 2.0), ("s3", "12:00", 3.0)}
    assert _landed("parquet", project, None) == Counter(want)


def test_http_source_reloads_a_record_changed_at_the_mark(project: Path) -> None:
    """An API changed a record and gave it the committed mark's `updated_at`; the API's
    `updated_since` is inclusive, so it also sends the unchanged records at the mark again."""
    rec = {"customer": "c1", "amount": 1.0, "status": "open"}
    records = [
        {"order_id": 1, **rec, "updated_at": "2026-03-08T10:00:00Z"},
        {"order_id": 2, **rec, "updated_at": "2026-03-08T11:00:00Z"},
        {"order_id": 3, **rec, "updated_at": "2026-03-08T11:00:00Z"},
    ]
    app = PagedAPI(records, "cursor", page_size=2)
    with serve(app) as url:
        (project / "pumps" / "orders.yaml").write_text(api_spec(url, batch_rows=10))
        from flows.pump import pump

        assert pump(spec_path="pumps/orders.yaml")["rows_written"] == 3
        records[2] = {**records[2], "amount": 5.0}
        records.append({"order_id": 4, **rec, "updated_at": "2026-03-08T11:00:00Z"})
        second = pump(spec_path="pumps/orders.yaml")
        assert app.seen[-1].query["updated_since"] == "2026-03-08T11:00:00Z"
    assert (second["rows_read"], second["rows_written"], second["rows_old"]) == (3, 2, 1)
    rows = duckdb.sql(
        "SELECT order_id, amount FROM read_parquet('out/orders/data/**/*.parquet') ORDER BY ALL"
    ).fetchall()
    assert rows == [(1, 1.0), (2, 1.0), (3, 1.0), (3, 5.0), (4, 1.0)]


def test_lookback_needs_a_date_or_timestamp_cursor(project: Path) -> None:
    """Refused by validate when the schema types the cursor; else when the data does,
    before anything loads, so a corrected spec runs at once (no open run is left)."""
    from tests.conftest import run_in_process

    spec = project / "pumps" / "readings.yaml"
    typed = _spec(SINKS["parquet"], lookback="2h").replace(
        "value: {type: float64}", "seq: {type: int64}"
    )
    spec.write_text(typed.replace("cursor: at", "cursor: seq"))
    checked = run_in_process("validate", str(spec), cwd=project)
    assert checked.returncode == 2
    assert "transform.incremental.lookback: needs a date or timestamp cursor ('seq' is int64" in (
        checked.stdout + checked.stderr
    )
    untyped = 'name: readings\nsource: {type: files, url: ./in/, glob: "*.ndjson"}\n'
    untyped += "transform:\n  incremental: {cursor: seq, lookback: 2h}\n" + SINKS["parquet"]
    spec.write_text(untyped)
    (project / "in").mkdir()
    (project / "in" / "a.ndjson").write_text('{"seq": 1}\n{"seq": 2}\n')
    with pytest.raises(Exception, match="needs a date or timestamp cursor"):
        _run(project)
    assert not (project / ".pumphouse" / "readings" / "manifest.json").exists()
    spec.write_text(untyped.replace("lookback: 2h", "lookback: 0s"))
    assert _run(project)["rows_written"] == 2


@pytest.mark.reliability(
    "across runs",
    "transform.incremental.lookback widened between runs (0s to 2h), copies of rows loaded "
    "before re-sent within the new lookback",
    "no row loaded before is loaded again: the window starts where earlier runs remember "
    "from (a warning says so) and reaches the whole lookback as the mark moves on",
)
def test_a_wider_lookback_never_reloads_rows_loaded_before(project: Path) -> None:
    spec = project / "pumps" / "readings.yaml"
    spec.write_text(_spec(SINKS["parquet"]))
    _write(project, "a.ndjson", ("s1", "08:00", 1.0), ("s1", "09:00", 2.0), ("s1", "10:00", 3.0))
    _run(project)
    spec.write_text(_spec(SINKS["parquet"], lookback="2h"))
    _write(project, "b.ndjson", ("s1", "08:00", 1.0), ("s1", "09:00", 2.0), ("s1", "10:00", 3.0))
    wider = _run(project)
    assert (wider["rows_written"], wider["rows_old"]) == (0, 3)
    (warning,) = wider["warnings"]
    assert "reaches further back than earlier runs remember" in warning
    # the mark moves on by more than the lookback: late rows within it are taken, once
    _write(project, "c.ndjson", ("s2", "13:00", 4.0))
    _run(project)
    _write(project, "d.ndjson", ("s3", "11:30", 5.0), ("s2", "13:00", 4.0))
    late = _run(project)
    assert (late["rows_written"], late["warnings"]) == (1, [])
    want = {("s1", "08:00", 1.0), ("s1", "09:00", 2.0), ("s1", "10:00", 3.0)}
    want |= {("s2", "13:00", 4.0), ("s3", "11:30", 5.0)}
    assert _landed("parquet", project, None) == Counter(want)
