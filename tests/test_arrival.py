"""Dedup ties by arrival (CONTRACT §2): the later file by modification time, then path, then
the later line; an http source's records in page order. Real runs, and a Hypothesis oracle."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.loader import parse_spec
from tasks.run.load import load_run
from tasks.sources.files.listing import SourceFile
from tasks.sources.inputs import Input, input_json, input_of
from tests._http_servers import PagedAPI, api_spec, serve
from tests.conftest import examples
from tests.data import landed

SPEC = """\
name: fix
source: {{type: files, url: {src}, glob: "*.ndjson"}}
schema:
  columns:
    id: {{type: int64}}
    v: {{type: int64, nullable: true}}
    note: {{type: string}}
transform:
  dedup: {{key: [id], order_by: v, keep: {keep}}}
sink: {{type: parquet, url: {out}}}
"""


def _write(path: Path, rows: list[tuple[int, int | None]], mtime: float) -> None:
    """NDJSON rows (id, v), each noted `NAME:LINE`, with the modification time set."""
    lines = [
        json.dumps({"id": i, "v": v, "note": f"{path.name}:{n}"})
        for n, (i, v) in enumerate(rows, 1)
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    os.utime(path, (mtime, mtime))


def _run(project: Path, keep: str) -> dict[int, str]:
    from flows.pump import pump

    spec = project / "pumps" / "fix.yaml"
    spec.write_text(SPEC.format(src="./in/", out="./out/fix", keep=keep))
    summary = pump(spec_path=str(spec))
    assert summary["status"] == "ok"
    return _landed("out/fix")


def _landed(url: str) -> dict[int, str]:
    rows = duckdb.sql(f"SELECT id, note FROM read_parquet('{url}/data/**/*.parquet')").fetchall()
    assert len(rows) == len({i for i, _ in rows})  # one row per key
    return dict(rows)


@pytest.mark.usefixtures("prefect_server")
@pytest.mark.parametrize(
    ("keep", "a_later", "kept"),
    [
        ("latest", True, "a.ndjson:1"),
        ("first", True, "b.ndjson:1"),
        ("latest", False, "b.ndjson:1"),
        ("first", False, "a.ndjson:1"),
    ],
)
def test_a_correction_written_later_wins_though_its_name_sorts_first(
    project: Path, keep: str, a_later: bool, kept: str
) -> None:
    early, late = 1_700_000_000.0, 1_700_000_600.0
    _write(project / "in" / "b.ndjson", [(1, 5)], late if not a_later else early)
    _write(project / "in" / "a.ndjson", [(1, 5)], late if a_later else early)
    assert _run(project, keep) == {1: kept}


@pytest.mark.usefixtures("prefect_server")
@pytest.mark.parametrize(("keep", "kept"), [("latest", "b.ndjson:1"), ("first", "a.ndjson:1")])
def test_files_with_the_same_modification_time_arrive_by_path(
    project: Path, keep: str, kept: str
) -> None:
    same = 1_700_000_000.0
    _write(project / "in" / "b.ndjson", [(1, 5)], same)
    _write(project / "in" / "a.ndjson", [(1, 5)], same)
    assert _run(project, keep) == {1: kept}


@pytest.mark.usefixtures("prefect_server")
@pytest.mark.parametrize(("keep", "kept"), [("latest", "a.ndjson:3"), ("first", "a.ndjson:1")])
def test_within_one_file_the_later_line_arrives_later(project: Path, keep: str, kept: str) -> None:
    _write(project / "in" / "a.ndjson", [(1, 5), (2, 1), (1, 5)], 1_700_000_000.0)
    assert _run(project, keep) == {1: kept, 2: "a.ndjson:2"}


@pytest.mark.usefixtures("prefect_server")
@pytest.mark.reliability(
    "crash",
    "a run stopped after planning (its manifest saved); a correction file's modification time then changes "
    "so that it would no longer be the later file",
    "the next run finishes the run and breaks dedup ties by the modification times frozen "
    "at its start: the correction's row is kept",
)
def test_a_resumed_run_orders_by_the_modification_times_frozen_at_its_start(
    project: Path,
) -> None:
    from tasks.run.plan import plan_run
    from tasks.state.store import StateStore

    _write(project / "in" / "b.ndjson", [(1, 5)], 1_700_000_000.0)
    _write(project / "in" / "a.ndjson", [(1, 5)], 1_700_000_600.0)
    spec = SPEC.format(src="./in/", out="./out/fix", keep="latest")
    manifest, _ = plan_run(parse_spec(spec), StateStore("fix"))  # a run killed after planning
    assert {Path(f.url).name: f.mtime for f in manifest.inputs if isinstance(f, SourceFile)} == {
        "a.ndjson": 1_700_000_600.0,
        "b.ndjson": 1_700_000_000.0,
    }
    os.utime(project / "in" / "b.ndjson", (1_700_000_900.0, 1_700_000_900.0))
    assert _run(project, "latest") == {1: "a.ndjson:1"}


@pytest.mark.usefixtures("prefect_server")
def test_a_delta_merge_without_dedup_keeps_the_later_arrival_per_key(project: Path) -> None:
    from deltalake import DeltaTable

    from flows.pump import pump

    _write(project / "in" / "b.ndjson", [(1, 5), (2, 1)], 1_700_000_000.0)
    _write(project / "in" / "a.ndjson", [(1, 5)], 1_700_000_600.0)
    text = SPEC.format(src="./in/", out="./lake/fix", keep="latest")
    text = text.replace("transform:\n  dedup: {key: [id], order_by: v, keep: latest}\n", "")
    text = text.replace("type: parquet,", "type: delta, mode: merge, key: [id],")
    spec = project / "pumps" / "fix.yaml"
    spec.write_text(text)
    assert pump(spec_path=str(spec))["status"] == "ok"
    rows = DeltaTable("lake/fix").to_pyarrow_table().to_pylist()
    assert sorted((r["id"], r["note"]) for r in rows) == [(1, "a.ndjson:1"), (2, "b.ndjson:2")]


def test_a_manifest_from_before_modification_times_still_loads() -> None:
    old = {"url": "/in/a.ndjson", "size": 3, "fingerprint": "3:1.5"}
    f = input_of(old)
    assert isinstance(f, SourceFile) and f.mtime == 0.0
    assert input_of(input_json(f)) == f


@pytest.mark.usefixtures("prefect_server")
def test_an_http_sources_records_arrive_in_page_order(project: Path) -> None:
    # Pages of 7 with cursor tokens base64("o7") = "bzc=", base64("o14") = "bzE0": the third
    # page's URL sorts before the second's, so URL order would keep the second page's row.
    records = [
        {
            "order_id": i,
            "customer": "c1",
            "amount": 1.0,
            "status": "paid",
            "updated_at": f"2026-03-08T00:{i:02d}:00Z",
        }
        for i in range(21)
    ]
    records[17] = {**records[10], "customer": "late"}
    with serve(PagedAPI(records, "cursor")) as base:
        (project / "pumps" / "orders.yaml").write_text(api_spec(base, 100))
        from flows.pump import pump

        summary = pump(spec_path="pumps/orders.yaml")
    assert summary["status"] == "ok" and summary["rows_read"] == 21
    assert landed("out/orders")[10][0] == "late"


# ---------------------------------------------------------------- the rule, as an oracle

files = st.dictionaries(
    st.sampled_from(["a", "b", "c", "d"]),  # path
    st.tuples(
        st.sampled_from([100.0, 200.0, 300.0]),  # mtime, with ties
        st.lists(st.tuples(st.integers(0, 3), st.one_of(st.none(), st.integers(0, 2))), max_size=6),
    ),
    min_size=1,
    max_size=4,
)


def _oracle(
    data: dict[str, tuple[float, list[tuple[int, int | None]]]], keep: str
) -> dict[int, str]:
    """Per id, the row the contract keeps: the best `v` (NULLs last), ties by arrival."""
    best: dict[int, tuple[Any, ...]] = {}
    for path, (mtime, rows) in data.items():
        for line, (i, v) in enumerate(rows, 1):
            arrival = (mtime, path, line)
            if keep == "latest":
                rank = (v is not None, v or 0, arrival)
            else:  # the smallest v, the earliest arrival: negate both
                rank = (v is not None, -(v or 0), (-mtime, _neg(path), -line))
            if i not in best or rank > best[i][0]:
                best[i] = (rank, f"{path}:{line}")
    return {i: note for i, (_, note) in best.items()}


def _neg(s: str) -> str:
    return "".join(chr(0x10FFFF - ord(c)) for c in s)


@settings(max_examples=examples(25), deadline=None)
@given(files, st.sampled_from(["latest", "first"]))
def test_the_load_keeps_the_row_the_contracts_arrival_rule_keeps(
    data: dict[str, tuple[float, list[tuple[int, int | None]]]], keep: str
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        out = root / "out"
        spec = parse_spec(SPEC.format(src=str(root / "in"), out=str(out), keep=keep))
        run = root / "run"
        (run / "valid").mkdir(parents=True)
        inputs: list[Input] = []
        # Staged as the stage step leaves them: one parquet per file, lineage `_source`, `_row`.
        for n, (path, (mtime, rows)) in enumerate(sorted(data.items())):
            url = str(root / "in" / f"{path}.ndjson")
            inputs.append(SourceFile(url, 1, "x", mtime))
            if rows:
                table = pa.table(
                    {
                        "id": pa.array([i for i, _ in rows], pa.int64()),
                        "v": pa.array([v for _, v in rows], pa.int64()),
                        "note": [f"{path}:{line}" for line in range(1, len(rows) + 1)],
                        "_source": [url] * len(rows),
                        "_row": pa.array(range(1, len(rows) + 1), pa.int64()),
                    }
                )
                pq.write_table(table, run / "valid" / f"{n:05d}-00000.parquet")
        load_run(spec, str(run), "run-1", None, 0, str(root / "state"), inputs=inputs)
        got = _landed(str(out)) if out.exists() else {}
    assert got == _oracle(data, keep)
