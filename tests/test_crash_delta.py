"""CONTRACT §2 for the Delta sink, with real processes: `kill -9` at every step boundary and
at random moments; the next run must leave the table exactly as one clean run does.

The machinery (runs in subprocesses, fault points, soaks) is tests/test_crash.py's. What is
compared here: the table's rows (a multiset, so a batch committed twice would show), the
batch sequence numbers its commits carry (each exactly once, in order: a replayed batch was
recognised and skipped), the rejected rows and files, and the committed state.
"""

from __future__ import annotations

import json
import signal
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests._delta import as_oracle, commit_seqs, delta_spec, table_rows, txn_version
from tests.data import expected, write_orders
from tests.test_crash import (
    POINTS,
    ROWS,
    SINK,
    SPEC,
    STATE,
    copy_inputs,
    kill_soak,
    manifest_of,
    outcome,
    pump_run,
    run_here,
    six_files_run_once,
    summary_of,
    timed_run,
)

pytestmark = pytest.mark.usefixtures("prefect_server")

BATCH_ROWS = 250


@dataclass(frozen=True)
class TableOutcome:
    rows: Counter[tuple[Any, ...]]  # the table's rows as an analyst reads them
    seqs: list[int]  # the batch sequence number of each commit, oldest first
    txn: int  # the table's app transaction version for the pump
    rejected: Counter[tuple[Any, ...]]
    rejected_files: Counter[str]  # under URL/rejected/, run ids masked
    files: dict[str, str]  # committed state: files read
    hwm: str | None
    seq: int  # committed state: the batch sequence


def table_outcome(folder: Path) -> TableOutcome:
    base = outcome(folder)  # rejected rows, the sink's files, the committed state
    url = str(folder / SINK)
    state = json.loads((folder / STATE / "state.json").read_text())
    return TableOutcome(
        rows=table_rows(url),
        seqs=commit_seqs(url),
        txn=txn_version(url),
        rejected=base.rejected,
        rejected_files=Counter({p: n for p, n in base.layout.items() if p.startswith("rejected/")}),
        files=base.files,
        hwm=base.hwm,
        seq=int(state["seq"]),
    )


def assert_same(got: TableOutcome, want: TableOutcome) -> None:
    """Field by field, so a failure names what differs."""
    assert got.rows == want.rows
    assert got.seqs == want.seqs == list(range(1, want.txn + 1))
    assert got.txn == want.txn == got.seq == want.seq
    assert got.rejected == want.rejected
    assert got.rejected_files == want.rejected_files
    assert got.files == want.files
    assert got.hwm == want.hwm


def new_project(folder: Path, mode: str = "append", batch_rows: int = BATCH_ROWS) -> Path:
    (folder / "pumps").mkdir(parents=True, exist_ok=True)
    (folder / "in").mkdir(exist_ok=True)
    (folder / SPEC).write_text(delta_spec(mode, batch_rows=batch_rows))
    return folder


# ---- 1. a crash at every step boundary, append (where a batch twice would show) ----------------


@dataclass(frozen=True)
class Clean:
    inputs: Path
    records: list[dict[str, Any]]
    outcome: TableOutcome
    summary: dict[str, Any]


@pytest.fixture(scope="module")
def clean_delta(tmp_path_factory: pytest.TempPathFactory, prefect_server: str) -> Iterator[Clean]:
    """6 files x 300 rows (invalid rows, later versions of earlier orders), one clean run."""
    inputs, records, ref, summary = six_files_run_once(tmp_path_factory, new_project)
    result = table_outcome(ref)
    assert as_oracle(result.rows) == expected(records)
    assert result.txn >= 4 and summary["rows_written"] > 3 * BATCH_ROWS  # several batches
    yield Clean(inputs, records, result, summary)


@pytest.mark.parametrize("fault", POINTS)
@pytest.mark.reliability(
    "crash",
    "kill -9 at each step boundary of a Delta (append) run, mid-write between batch commits and after the commit before the state write",
    "each batch is committed exactly once (app transaction version = batch sequence; a replayed batch is skipped); the table equals one clean run row by row",
)
def test_a_delta_run_killed_at_a_step_boundary_is_finished_by_the_next_run(
    project: Path, clean_delta: Clean, fault: str
) -> None:
    """Killed (SIGKILL) at a step boundary; the next run resumes the run, skips the batches
    the table already holds, commits the rest, and the project equals the clean one's."""
    new_project(project)
    copy_inputs(clean_delta.inputs, project)
    url = str(project / SINK)

    crashed = pump_run(project, fault)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    manifest = manifest_of(project)
    assert manifest is not None
    point, _, nth = fault.partition(":")
    total = clean_delta.outcome.txn
    # what the killed run left in the table: whole batches, each with its sequence number
    if point == "loaded_batch":
        assert commit_seqs(url) == list(range(1, int(nth) + 1)) and txn_version(url) == int(nth)
    elif point in ("loaded", "state_written"):
        assert commit_seqs(url) == list(range(1, total + 1))
    else:
        assert commit_seqs(url) == [] and txn_version(url) == 0
    if point != "state_written":
        assert not (project / STATE / "state.json").exists()

    recovered = summary_of(pump_run(project))
    assert recovered["resumed"] is True and recovered["run_id"] == manifest["run_id"]
    for key in ("files", "rows_read", "rows_rejected", "rows_duplicate", "rows_written"):
        assert recovered[key] == clean_delta.summary[key], key
    assert manifest_of(project) is None
    assert_same(table_outcome(project), clean_delta.outcome)
    assert as_oracle(table_rows(url)) == expected(clean_delta.records)

    after = run_here(project)
    assert (after["files"], after["rows_read"], after["rows_written"]) == (0, 0, 0)
    assert_same(table_outcome(project), clean_delta.outcome)


@pytest.mark.parametrize("resumed_rows", [1000, 100])
@pytest.mark.reliability(
    "crash",
    "kill -9 after 2 batch commits of a Delta (append) run, then limits.batch_rows raised or lowered before the next run",
    "the resumed run cuts its batches as the run that started did: each batch (app transaction version) committed once; the table equals one clean run row by row",
)
def test_a_resumed_delta_run_commits_the_batches_it_started_with(
    project: Path, clean_delta: Clean, resumed_rows: int
) -> None:
    new_project(project)
    copy_inputs(clean_delta.inputs, project)
    crashed = pump_run(project, "loaded_batch:2")
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    new_project(project, batch_rows=resumed_rows)

    recovered = summary_of(pump_run(project))
    assert recovered["resumed"] is True
    assert recovered["rows_written"] == clean_delta.summary["rows_written"]
    assert_same(table_outcome(project), clean_delta.outcome)
    assert as_oracle(table_rows(str(project / SINK))) == expected(clean_delta.records)


@pytest.mark.reliability(
    "crash",
    "kill -9 after 2 batch commits of a Delta append run, then sink.mode changed to merge before the next run",
    "the resumed run is refused (exit 2) naming sink.mode, its old and new value and the fix; with the old value back it finishes as one clean run",
)
def test_a_resumed_run_refuses_a_spec_that_changes_where_rows_land(
    project: Path, clean_delta: Clean
) -> None:
    new_project(project)
    copy_inputs(clean_delta.inputs, project)
    crashed = pump_run(project, "loaded_batch:2")
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    new_project(project, "merge")

    refused = pump_run(project)
    assert refused.returncode == 2, refused.stderr
    assert 'sink.mode was "append", now "merge"' in refused.stderr + refused.stdout
    assert "Put the old value back" in refused.stderr + refused.stdout
    assert commit_seqs(str(project / SINK)) == [1, 2] and manifest_of(project) is not None

    new_project(project)
    assert summary_of(pump_run(project))["resumed"] is True
    assert_same(table_outcome(project), clean_delta.outcome)


@pytest.mark.reliability(
    "crash",
    "Delta overwrite with limits.max_rows_per_run: one export read in three runs (one file each), the second killed after its first batch commit",
    "one logical overwrite: the first slice replaces the table, the rest append (the killed slice skips its committed batch); the table holds the whole export, none of the old rows",
)
def test_an_overwrite_stopped_at_max_rows_per_run_replaces_the_table_once(project: Path) -> None:
    inputs = project / "inputs"
    old = write_orders(inputs / "old", files=1, rows=ROWS, seed=31)
    export = write_orders(inputs / "new", files=3, rows=ROWS, seed=32, day=1)
    folder = new_project(project / "p", "overwrite", batch_rows=100)
    copy_inputs(inputs / "old", folder)
    run_here(folder)
    assert as_oracle(table_rows(str(folder / SINK))) == expected(old)
    limited = delta_spec("overwrite", batch_rows=100)
    (folder / SPEC).write_text(limited + "  max_rows_per_run: 300\n  max_concurrency: 1\n")
    copy_inputs(inputs / "new", folder)

    first = summary_of(pump_run(folder))
    assert (first["files"], first["inputs_left"]) == (1, 2)
    killed = pump_run(folder, "loaded_batch:1")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert summary_of(pump_run(folder))["resumed"] is True
    last = summary_of(pump_run(folder))
    assert (last["files"], last["inputs_left"]) == (1, 0)
    assert summary_of(pump_run(folder))["files"] == 0

    slices = [expected(export[i * ROWS : (i + 1) * ROWS]) for i in range(3)]
    want = sum((Counter((k, *v) for k, v in s.items()) for s in slices), Counter())
    assert table_rows(str(folder / SINK)) == want
    got = table_outcome(folder)
    assert got.seqs == sorted(set(got.seqs)) and got.txn == got.seq


# ---- 2. merge: a crash in the second run, against the rows the first run left ------------------


@pytest.mark.parametrize("fault", ["loaded_batch:2", "loaded", "state_written"])
@pytest.mark.reliability(
    "crash",
    "kill -9 mid-load of a Delta merge run, after loading and after the state write",
    "the table equals a clean run's: one row per key, the latest",
)
def test_a_merge_run_killed_mid_load_ends_as_a_clean_one(project: Path, fault: str) -> None:
    """Run 1 loads files 0-2; run 2 (files 3-5: later versions of many of those orders) is
    killed; the next run finishes it. Same table as two clean runs, one row per order."""
    inputs = project / "inputs"
    records = write_orders(inputs, files=6, rows=ROWS, seed=12)
    first = [f"orders-00-00{i}.ndjson" for i in range(3)]
    second = [f"orders-00-00{i}.ndjson" for i in range(3, 6)]
    ref = new_project(project / "ref", "merge")
    crashed = new_project(project / "crashed", "merge")
    for folder in (ref, crashed):
        copy_inputs(inputs, folder, first)
        run_here(folder)
        copy_inputs(inputs, folder, second)
    run_here(ref)

    killed = pump_run(crashed, fault)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert summary_of(pump_run(crashed))["resumed"] is True
    want = table_outcome(ref)
    assert_same(table_outcome(crashed), want)
    assert as_oracle(want.rows) == expected(records)


# ---- 3. kill -9 at random moments -------------------------------------------------------------


@pytest.mark.reliability(
    "soak",
    "random kill -9 during Delta runs",
    "the table equals one clean run row by row",
)
def test_random_kills_leave_the_table_as_one_clean_run_would(project: Path) -> None:
    """Twelve files, all there before the first run; eight runs killed at random moments
    (timed from one clean run of the same input, which is also the reference)."""
    inputs = project / "inputs"
    records = write_orders(inputs, files=12, rows=ROWS, seed=21)
    clean = new_project(project / "clean", batch_rows=100)
    copy_inputs(inputs, clean)
    timing = timed_run(clean)
    soaked = new_project(project / "soak", batch_rows=100)
    copy_inputs(inputs, soaked)

    soak = kill_soak(soaked, inputs, kills=8, seed=8, timing=timing, arrivals={})

    assert soak.killed_mid_run() >= 1, soak
    assert soak.groups == [sorted(p.name for p in inputs.glob("*.ndjson"))]
    assert_same(table_outcome(soaked), table_outcome(clean))
    assert as_oracle(table_rows(str(soaked / SINK))) == expected(records)


@pytest.mark.slow
@pytest.mark.reliability(
    "soak",
    "random kill -9 into a Delta merge table while new exports arrive",
    "one row per key, the latest of all exports",
)
def test_random_kills_while_new_exports_arrive_into_a_merge_table(project: Path) -> None:
    """Fourteen runs killed at random moments while exports of later days arrive, merge mode:
    however the files were grouped into runs, the table holds one row per order, the latest
    valid one of everything read, and every batch was committed once."""
    inputs = project / "inputs"
    records: list[dict[str, Any]] = []
    arrivals: dict[int, list[str]] = {}
    for after, day, n in [(-1, 0, 4), *((2 * d - 1, d, 1) for d in range(1, 7))]:
        made = write_orders(inputs, files=n, rows=ROWS, seed=200 + day, day=day)
        records += made
        arrivals[after] = [f"orders-{day:02d}-{f:03d}.ndjson" for f in range(n)]
    soaked = new_project(project / "soak", "merge", batch_rows=100)
    copy_inputs(inputs, soaked, arrivals.pop(-1))
    scratch = new_project(project / "scratch", "merge", batch_rows=100)
    copy_inputs(inputs, scratch, [p.name for p in (soaked / "in").iterdir()])
    timing = timed_run(scratch)

    soak = kill_soak(soaked, inputs, kills=14, seed=14, timing=timing, arrivals=arrivals)

    assert soak.killed_mid_run("loading") >= 1, soak
    got = table_outcome(soaked)
    assert got.seqs == list(range(1, got.txn + 1)) and got.txn == got.seq
    assert as_oracle(got.rows) == expected(records)
