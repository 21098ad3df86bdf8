"""CONTRACT §2 for the http source and the webhook sink, with real processes: `kill -9` at
every step boundary (and, for the webhook, with a POST in flight), then a plain run.

The http source (an API on loopback) into a parquet sink: the next run must leave the sink,
the rejected rows and the state exactly as one clean run does, row by row. Files into the
webhook sink (a receiver on loopback): the receiver must hold every row of one clean run at
least once, and exactly those rows once deduplicated by Idempotency-Key, as a receiver that
honours the key keeps them. The machinery (runs, manifests, outcomes) is tests/test_crash.py's.
"""

from __future__ import annotations

import json
import os
import signal
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pytest

from tests._http_servers import (
    Answer,
    PagedAPI,
    Receiver,
    Seen,
    api_orders,
    api_spec,
    as_counter,
    hook_spec,
    serve,
)
from tests.data import expected, landed, write_orders
from tests.test_crash import (
    SINK,
    SPEC,
    STATE,
    Outcome,
    assert_same,
    copy_inputs,
    kill_soak,
    manifest_of,
    outcome,
    popen_run,
    pump_run,
    run_here,
    summary_of,
    timed_run,
)

pytestmark = pytest.mark.usefixtures("prefect_server")

POINTS = [
    "planned",
    "staged_file",
    "staged",
    "loaded_batch:1",
    "loaded_batch:2",
    "loaded",
    "state_written",
]
RECORDS = api_orders(150, seed=7)
LOAD_ROWS = 25  # limits.batch_rows: several load batches, so a kill can fall between them
HOOK_ROWS = 10  # sink.batch_rows: several POSTs per load batch
COUNTS = ("rows_read", "rows_rejected", "rows_duplicate", "rows_written", "hwm_after")


def source_project(folder: Path, api: str) -> Path:
    (folder / "pumps").mkdir(parents=True, exist_ok=True)
    (folder / SPEC).write_text(api_spec(api, LOAD_ROWS))
    return folder


def sink_project(folder: Path, inputs: Path, hook: str) -> Path:
    (folder / "pumps").mkdir(parents=True, exist_ok=True)
    (folder / "in").mkdir(exist_ok=True)
    (folder / SPEC).write_text(hook_spec(hook, LOAD_ROWS, HOOK_ROWS))
    copy_inputs(inputs, folder)
    return folder


@dataclass(frozen=True)
class SinkOutcome:
    """What a webhook run leaves: the rows received, rejected rows (in the state), the mark."""

    rows: Counter[tuple[Any, ...]]
    deduped: Counter[tuple[Any, ...]]
    rejected: Counter[tuple[Any, ...]]
    hwm: str | None


def sink_outcome(folder: Path, receiver: Receiver) -> SinkOutcome:
    rejected: Counter[tuple[Any, ...]] = Counter()
    files = folder / STATE / "rejected"
    if list(files.glob("*.parquet")):
        rel = duckdb.sql(f"SELECT * FROM read_parquet('{files}/*.parquet', union_by_name = true)")
        for values in rel.fetchall():
            row = dict(zip(rel.columns, values, strict=True))
            row["_source"], row["_errors"] = os.path.basename(row["_source"]), tuple(row["_errors"])
            rejected[tuple(sorted(row.items()))] += 1
    state = json.loads((folder / STATE / "state.json").read_text())
    return SinkOutcome(
        as_counter(receiver.rows()), as_counter(receiver.by_key()), rejected, state["hwm"]
    )


@dataclass(frozen=True)
class Clean:
    api: str
    inputs: Path
    records: list[dict[str, Any]]
    source: Outcome
    source_summary: dict[str, Any]
    sink: SinkOutcome
    sink_summary: dict[str, Any]


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory, prefect_server: str) -> Iterator[Clean]:
    """The API (up for the whole module), the input files, and one clean run of each pump."""
    with serve(PagedAPI(RECORDS, "cursor")) as api:
        ref = source_project(tmp_path_factory.mktemp("clean-source"), api)
        source_summary = summary_of(pump_run(ref))
        source = outcome(ref)
        assert source.rows == Counter((k, *v) for k, v in expected(RECORDS).items())
        assert source_summary["batches"] >= 1 and source_summary["rows_written"] > 2 * LOAD_ROWS

        inputs = tmp_path_factory.mktemp("inputs")
        records = write_orders(inputs, files=2, rows=100, seed=17)
        receiver = Receiver()
        with serve(receiver) as hook:
            ref = sink_project(tmp_path_factory.mktemp("clean-sink"), inputs, hook)
            sink_summary = summary_of(pump_run(ref))
        sink = sink_outcome(ref, receiver)
        want = as_counter([received_form(k, v) for k, v in expected(records).items()])
        assert sink.rows == sink.deduped == want
        assert sink_summary["rows_written"] > 2 * LOAD_ROWS
        yield Clean(api, inputs, records, source, source_summary, sink, sink_summary)


def received_form(oid: int, rest: tuple[Any, ...]) -> dict[str, Any]:
    customer, amount, status, updated_at = rest
    return {
        "order_id": oid,
        "customer": customer,
        "amount": amount,
        "status": status,
        "updated_at": updated_at,
    }


def crash_then_recover(folder: Path, fault: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run with the fault (it must kill the run), then plainly: (the manifest the killed run
    left, the summary of the run that finished it)."""
    crashed = pump_run(folder, fault)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    manifest = manifest_of(folder)
    assert manifest is not None, "every fault point is after the run's manifest is saved"
    point = fault.partition(":")[0]
    assert manifest["phase"] == ("staging" if point in ("planned", "staged_file") else "loading")
    assert (folder / STATE / "state.json").exists() == (point == "state_written")
    recovered = summary_of(pump_run(folder))
    assert (recovered["resumed"], recovered["run_id"]) == (True, manifest["run_id"])
    assert manifest_of(folder) is None
    return manifest, recovered


@pytest.mark.parametrize("fault", POINTS)
@pytest.mark.reliability(
    "crash",
    "kill -9 at each step boundary of an http-source run",
    "the next run finishes it with the same frozen cursor; sink, rejected rows and state equal one clean run",
)
def test_an_http_source_run_killed_at_a_step_boundary_is_finished_by_the_next_run(
    project: Path, clean: Clean, fault: str
) -> None:
    source_project(project, clean.api)
    _, recovered = crash_then_recover(project, fault)
    for key in COUNTS:
        assert recovered[key] == clean.source_summary[key], key
    assert_same(outcome(project), clean.source)
    assert landed(str(project / SINK)) == expected(RECORDS)

    # the next run asks from the mark, and nothing it reads is new (the API answers from
    # the mark on: the row at the mark is read again and dropped as old)
    after = run_here(project)
    assert (after["resumed"], after["rows_written"], after["rows_old"]) == (False, 0, 1)
    assert (outcome(project).rows, outcome(project).hwm) == (clean.source.rows, clean.source.hwm)


@pytest.mark.parametrize("fault", POINTS)
@pytest.mark.reliability(
    "crash",
    "kill -9 at each step boundary of a webhook-sink run",
    "every row arrives at least once; deduplicated by Idempotency-Key exactly one clean run; delivered chunks are not re-sent",
)
def test_a_webhook_run_killed_at_a_step_boundary_is_finished_by_the_next_run(
    project: Path, clean: Clean, fault: str
) -> None:
    receiver = Receiver()
    with serve(receiver) as hook:
        sink_project(project, clean.inputs, hook)
        _, recovered = crash_then_recover(project, fault)
    for key in COUNTS:
        assert recovered[key] == clean.sink_summary[key], key
    got, want = sink_outcome(project, receiver), clean.sink
    assert not want.rows - got.rows, "a row never reached the webhook"
    assert got.deduped == want.deduped  # what a receiver that honours Idempotency-Key keeps
    assert got.rows == want.rows  # at step boundaries, no chunk was even sent twice
    assert (got.rejected, got.hwm) == (want.rejected, want.hwm)


@pytest.mark.parametrize(("load_rows", "hook_rows"), [(100, 50), (10, 3)])
@pytest.mark.reliability(
    "crash",
    "kill -9 after 2 load batches of a webhook-sink run, then limits.batch_rows and sink.batch_rows raised or lowered before the next run",
    "the resumed run cuts its chunks as the run that started did: the same Idempotency-Keys, no delivered chunk sent again; deduplicated by key exactly one clean run",
)
def test_a_resumed_webhook_run_sends_the_chunks_it_started_with(
    project: Path, clean: Clean, load_rows: int, hook_rows: int
) -> None:
    receiver = Receiver()
    with serve(receiver) as hook:
        sink_project(project, clean.inputs, hook)
        crashed = pump_run(project, "loaded_batch:2")
        assert crashed.returncode == -signal.SIGKILL, crashed.stderr
        (project / SPEC).write_text(hook_spec(hook, load_rows, hook_rows))
        assert summary_of(pump_run(project))["resumed"] is True
    got, want = sink_outcome(project, receiver), clean.sink
    assert got.rows == want.rows  # no chunk sent twice, none under a second key
    assert got.deduped == want.deduped
    assert len({key for key, _ in receiver.accepted}) == len(receiver.accepted)


class KillingReceiver(Receiver):
    """Takes POST number `nth`, then kills the run before answering it: the run never learns
    that chunk was delivered."""

    def __init__(self, nth: int) -> None:
        super().__init__()
        self.nth, self.pid = nth, 0

    def answer(self, req: Seen) -> Answer:
        ans = super().answer(req)
        if len(self.accepted) == self.nth and self.pid:
            os.kill(self.pid, signal.SIGKILL)
            self.pid = 0
        return ans


@pytest.mark.reliability(
    "crash",
    "kill -9 with a webhook POST in flight",
    "that chunk is re-sent under the same Idempotency-Key; deduplicated, exactly one clean run",
)
def test_a_webhook_run_killed_with_a_post_in_flight_resends_it_under_the_same_key(
    project: Path, clean: Clean
) -> None:
    receiver = KillingReceiver(nth=4)
    with serve(receiver) as hook:
        sink_project(project, clean.inputs, hook)
        proc = popen_run(project)
        receiver.pid = proc.pid
        proc.communicate(timeout=300)
        assert proc.returncode == -signal.SIGKILL
        assert len(receiver.accepted) == 4
        recovered = summary_of(pump_run(project))
    assert recovered["resumed"] is True
    keys = [k for k, _ in receiver.accepted]
    assert keys[4] == keys[3]  # the chunk in flight, sent again with its key
    assert len(keys) == len(set(keys)) + 1
    got = sink_outcome(project, receiver)
    assert got.deduped == clean.sink.deduped
    assert got.rows - clean.sink.rows == as_counter(receiver.accepted[3][1])  # that one chunk twice
    assert (got.rejected, got.hwm) == (clean.sink.rejected, clean.sink.hwm)


@pytest.mark.reliability(
    "soak",
    "random kill -9 during runs of an http source (an API on loopback), then completion",
    "sink, rejected rows and state equal one clean run row by row",
)
def test_random_kills_of_an_http_source_run(project: Path, clean: Clean) -> None:
    timing = timed_run(source_project(project / "timing", clean.api))
    soaked = source_project(project / "soak", clean.api)

    soak = kill_soak(
        soaked,
        project,
        kills=8,
        seed=5,
        timing=timing,
        arrivals={},
        # settled: a run that resumes nothing and finds nothing new past the mark
        settled=lambda s: not s["resumed"] and s["rows_written"] == 0,
    )

    assert soak.killed_mid_run() >= 1, soak
    assert_same(outcome(soaked), clean.source)
    assert landed(str(soaked / SINK)) == expected(RECORDS)
