"""CONTRACT §2 over sequences of runs (Hypothesis): files arriving late, rows at and around
the mark, appended files, replaced files, re-sent copies, kill -9 at a step boundary.

The oracle is the contract's rule run by hand: a run reads the new files whole, the tail of
a file that grew, a replaced file whole; of those rows it keeps the ones at or above the
committed mark minus `lookback` that no earlier run loaded; dedup keeps one per key (the
highest value). An append sink then holds each run's rows once; a merge sink one row per key.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pytest
from deltalake import DeltaTable
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests._http_servers import Receiver, serve
from tests.conftest import examples, run_cli

pytestmark = pytest.mark.usefixtures("prefect_server")

Row = tuple[str, int, int]  # station, hour, value
SINKS = {
    "parquet": "sink: {type: parquet, url: ./out/r}\n",
    "delta-append": "sink: {type: delta, url: ./out/r, mode: append}\n",
    "delta-merge": "sink: {type: delta, url: ./out/r, mode: merge}\n",
    "http": "sink: {type: http, url: HOOK/hook, batch_rows: 3, retry_max_wait: 0.05}\n",
}
KILLS = [None, "planned", "staged_file", "staged", "loaded_batch", "loaded", "state_written"]


def _spec(sink: str, lookback: int) -> str:
    return (
        "name: r\n"
        'source: {type: files, url: ./in/, glob: "*.ndjson"}\n'
        "schema:\n  columns:\n"
        "    station: {type: string}\n    at: {type: timestamp}\n    value: {type: int64}\n"
        "transform:\n"
        f"  incremental: {{cursor: at, lookback: {lookback}h}}\n"
        "  dedup: {key: [station, at], order_by: value, keep: latest}\n"
        "limits: {batch_rows: 2}\n" + sink
    )


def _line(row: Row) -> str:
    s, h, v = row
    return json.dumps({"station": s, "at": f"2026-03-08T{h:02d}:00:00Z", "value": v}) + "\n"


rows = st.lists(
    st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(0, 6), st.integers(0, 3)),
    min_size=1,
    max_size=4,
)
step = st.one_of(
    st.tuples(st.just("new"), rows),
    st.tuples(st.just("append"), rows),  # to the newest file
    st.tuples(st.just("resend"), st.just([])),  # a copy of the oldest file, under a new name
    st.tuples(st.just("replace"), rows),  # the oldest file rewritten
)
runs = st.lists(
    st.tuples(st.lists(step, min_size=1, max_size=2), st.sampled_from(KILLS)),
    min_size=2,
    max_size=4,
)


@dataclass
class Oracle:
    """The contract's rule, by hand."""

    lookback: int
    mark: int | None = None
    seen: set[Row] = field(default_factory=set)
    loaded: list[Row] = field(default_factory=list)  # every row written, in order

    def run(self, read: list[Row]) -> None:
        since = None if self.mark is None else self.mark - self.lookback
        new = [r for r in read if since is None or r[1] >= since]
        fresh = [r for r in new if r not in self.seen]
        if new:
            self.mark = max([self.mark or 0, *(r[1] for r in new)])
        best: dict[tuple[str, int], Row] = {}
        for r in fresh:
            if (r[0], r[1]) not in best or r[2] > best[(r[0], r[1])][2]:
                best[(r[0], r[1])] = r
        self.loaded += best.values()
        assert self.mark is not None or not fresh
        low = (self.mark or 0) - self.lookback
        self.seen = {r for r in self.seen | set(fresh) if r[1] >= low}

    def expected(self, kind: str) -> Counter[Row]:
        if kind != "delta-merge":
            return Counter(self.loaded)
        best: dict[tuple[str, int], Row] = {}
        for r in self.loaded:
            if (r[0], r[1]) not in best or r[2] >= best[(r[0], r[1])][2]:
                best[(r[0], r[1])] = r
        return Counter(best.values())


def _landed(kind: str, hook: Receiver) -> Counter[Row]:
    if kind == "http":
        return Counter((r["station"], int(r["at"][11:13]), r["value"]) for r in hook.by_key())
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    if kind == "parquet":
        if not Path("out/r/data").exists():
            return Counter()
        rel = "read_parquet('out/r/data/**/*.parquet')"
    else:
        if not Path("out/r/_delta_log").exists():
            return Counter()
        con.register("t", DeltaTable("out/r").to_pyarrow_table())
        rel = "t"
    got = con.sql(f'SELECT station, hour("at"), value FROM {rel}').fetchall()
    return Counter((str(s), int(h), int(v)) for s, h, v in got)


def _apply(steps: list[tuple[str, list[Row]]], files: list[list[Row]]) -> None:
    """Change the source folder as `steps` say (`files`: each file's rows, in order)."""
    for what, new in steps:
        if what == "append" and files:
            with open(f"in/f{len(files) - 1:03d}.ndjson", "a") as out:
                out.write("".join(_line(r) for r in new))
            files[-1] = files[-1] + new
            continue
        if what == "replace" and files:  # every earlier line changes
            replaced = [(s, h, (v + 1) % 4) for s, h, v in files[0]] + new
            Path("in/f000.ndjson").write_text("".join(_line(r) for r in replaced))
            files[0] = replaced
            continue
        content = list(files[0]) if what == "resend" and files else new
        if content:
            Path(f"in/f{len(files):03d}.ndjson").write_text("".join(_line(r) for r in content))
            files.append(content)


def _to_read(files: list[list[Row]], before: list[list[Row]]) -> list[Row]:
    """The rows the next run reads: a new file whole, a grown one's new lines, a changed
    one whole (`before`: the files as the last run saw them)."""
    read: list[Row] = []
    for i, rows in enumerate(files):
        seen = before[i] if i < len(before) else []
        read += rows[len(seen) :] if rows[: len(seen)] == seen else rows
    return read


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(SINKS))
@pytest.mark.reliability(
    "across runs",
    "Hypothesis over sequences of runs: late files, rows at and around the mark, appended, "
    "replaced and re-sent files, kill -9 at any step boundary, lookback 0 or 1 h; parquet, "
    "delta append, delta merge, webhook",
    "the sink holds exactly what the contract's rule gives: nothing lost, nothing doubled",
)
@settings(
    max_examples=examples(5),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(plan=runs, lookback=st.sampled_from([0, 1]))
def test_runs_deliver_exactly_the_contracts_rows(
    kind: str, plan: list[tuple[list[tuple[str, list[Row]]], str | None]], lookback: int
) -> None:
    from flows.pump import pump

    hook = Receiver()
    with tempfile.TemporaryDirectory() as tmp, serve(hook), contextlib.chdir(tmp):
        Path("pumps").mkdir()
        Path("in").mkdir()
        Path("pumps/r.yaml").write_text(_spec(SINKS[kind].replace("HOOK", hook.base), lookback))
        oracle, files = Oracle(lookback), []
        for n, (steps, kill) in enumerate(plan):
            before = [list(f) for f in files]
            _apply(steps, files)
            read = _to_read(files, before)
            if kill:
                run_cli("run", "pumps/r.yaml", cwd=Path(tmp), env={"PUMPHOUSE_FAULT": kill})
            summary: dict[str, Any] = pump(spec_path="pumps/r.yaml")
            assert summary["status"] == "ok"
            oracle.run(read)
            assert _landed(kind, hook) == oracle.expected(kind), (n, steps, kill)
