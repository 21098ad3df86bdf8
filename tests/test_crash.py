"""CONTRACT §2 with real processes: `kill -9` at every step boundary and at random moments,
concurrent runs of one pump, and a stale lock. Every test compares rows exactly.

Each `pumphouse run` here is the real command in a subprocess, recorded on the session's
Prefect server. A crashed run's outcome is compared with clean runs of the same input in a
separate project folder: the sink's rows, the rejected rows (every column), the files the sink
holds (run ids masked) and the committed state (files read, fingerprints, high-water mark).
Inputs are copied with their modification times, so fingerprints (`size:mtime`) match too.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pytest

from schemas.errors import BusyError
from tests._forked import Forked
from tests.conftest import popen_cli, run_cli
from tests.data import expected, is_valid, landed, spec_text, write_orders

pytestmark = pytest.mark.usefixtures("prefect_server")

SPEC = "pumps/orders.yaml"
Started = Forked | subprocess.Popen[str]  # popen_cli: forked, or the real binary
SINK = "out/orders"
STATE = ".pumphouse/orders"
# Small enough that the load has several batches, and batch 1 straddles status=open and
# status=paid: a load killed after its 2nd batch has files in two partition folders.
BATCH_ROWS = 250
# Soaks load in small batches: a load of many files lasts long enough to be killed in.
SOAK_BATCH_ROWS = 100
ROWS = 300  # per file; write_orders timestamps are a minute apart, so 6 files span 30 h


# ---- what a project folder holds after runs -------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """Everything a run leaves that a user or the next run can see."""

    rows: Counter[tuple[Any, ...]]  # sink rows as an analyst reads them (a multiset)
    rejected: Counter[tuple[Any, ...]]  # every column, `_source` as the file's base name
    layout: Counter[str]  # sink files, run ids masked
    files: dict[str, str]  # committed: file base name -> fingerprint
    hwm: str | None


def outcome(folder: Path) -> Outcome:
    sink = folder / SINK
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    rows: Counter[tuple[Any, ...]] = Counter()
    if list((sink / "data").rglob("*.parquet")):
        rows.update(
            con.sql(
                "SELECT order_id, customer, amount, status, "
                "strftime(updated_at, '%Y-%m-%dT%H:%M:%SZ') "
                f"FROM read_parquet('{sink}/data/**/*.parquet', hive_partitioning = true)"
            ).fetchall()
        )
    rejected: Counter[tuple[Any, ...]] = Counter()
    if list((sink / "rejected").glob("*.parquet")):
        rel = con.sql(
            f"SELECT * FROM read_parquet('{sink}/rejected/*.parquet', union_by_name = true)"
        )
        for values in rel.fetchall():
            row = dict(zip(rel.columns, values, strict=True))
            row["_source"] = os.path.basename(row["_source"])
            row["_errors"] = tuple(row["_errors"])
            rejected[tuple(sorted(row.items()))] += 1
    layout = Counter(
        re.sub(r"part-\d{8}T\d{6}Z-[0-9a-f]{6}-", "part-RUN-", str(p.relative_to(sink)))
        for p in sink.rglob("*")
        if p.is_file()
    )
    state = json.loads((folder / STATE / "state.json").read_text())
    files = {os.path.basename(url): fp for url, fp in state["files"].items()}
    return Outcome(rows, rejected, layout, files, state["hwm"])


def assert_same(got: Outcome, want: Outcome) -> None:
    """Field by field, so a failure names what differs."""
    assert got.rows == want.rows
    assert got.rejected == want.rejected
    assert got.layout == want.layout
    assert got.files == want.files
    assert got.hwm == want.hwm


def as_rows(oracle: dict[int, tuple[Any, ...]]) -> Counter[tuple[Any, ...]]:
    return Counter((oid, *rest) for oid, rest in oracle.items())


# ---- projects and runs ---------------------------------------------------------------------


def new_project(folder: Path, batch_rows: int = BATCH_ROWS) -> Path:
    (folder / "pumps").mkdir(parents=True, exist_ok=True)
    (folder / "in").mkdir(exist_ok=True)
    (folder / SPEC).write_text(spec_text(batch_rows=batch_rows))
    return folder


def copy_inputs(src: Path, folder: Path, names: list[str] | None = None) -> None:
    """Copy input files with their modification times (so their fingerprints match)."""
    for path in sorted(src.glob("*.ndjson")):
        if names is None or path.name in names:
            shutil.copy2(path, folder / "in" / path.name)


def pump_run(
    folder: Path, fault: str | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    if fault:
        env["PUMPHOUSE_FAULT"] = fault
    return run_cli("run", SPEC, "--json", cwd=folder, env=env)


def summary_of(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert proc.returncode == 0, proc.stderr
    line = [x for x in proc.stdout.splitlines() if x.startswith("{")][-1]
    return dict(json.loads(line))


def manifest_of(folder: Path) -> dict[str, Any] | None:
    """The open run's manifest, if there is one (written atomically, so never torn)."""
    try:
        return dict(json.loads((folder / STATE / "manifest.json").read_text()))
    except FileNotFoundError:
        return None


def committed_files(folder: Path) -> set[str]:
    path = folder / STATE / "state.json"
    if not path.exists():
        return set()
    return {os.path.basename(u) for u in json.loads(path.read_text())["files"]}


def popen_run(folder: Path, **env: str) -> Started:
    return popen_cli("run", SPEC, "--json", cwd=folder, env=env)


def run_here(folder: Path) -> dict[str, Any]:
    """One run in this process (the same flow, without a process start-up), in `folder`."""
    from flows.pump import pump

    cwd = os.getcwd()
    os.chdir(folder)
    try:
        return dict(pump(spec_path=SPEC))
    finally:
        os.chdir(cwd)


def per_file(records: list[dict[str, Any]], day: int) -> dict[str, list[dict[str, Any]]]:
    """write_orders' records by the file they are in."""
    files = len(records) // ROWS
    return {
        f"orders-{day:02d}-{f:03d}.ndjson": records[f * ROWS : (f + 1) * ROWS] for f in range(files)
    }


# ---- 1. a crash at every step boundary ------------------------------------------------------


@dataclass(frozen=True)
class Clean:
    inputs: Path
    records: list[dict[str, Any]]
    outcome: Outcome
    summary: dict[str, Any]


def six_files_run_once(
    factory: pytest.TempPathFactory, new: Callable[[Path], Path]
) -> tuple[Path, list[dict[str, Any]], Path, dict[str, Any]]:
    """The crash modules' reference: 6 files x ROWS (invalid rows, later versions of earlier
    orders) and one clean run of them in a project `new` makes. The inputs, their records,
    the project and the run's summary."""
    inputs = factory.mktemp("inputs")
    records = write_orders(inputs, files=6, rows=ROWS, seed=11)
    ref = new(factory.mktemp("clean"))
    copy_inputs(inputs, ref)
    return inputs, records, ref, summary_of(pump_run(ref))


@pytest.fixture(scope="module", autouse=True)
def clean_six(tmp_path_factory: pytest.TempPathFactory, prefect_server: str) -> Iterator[Clean]:
    """6 files x 300 rows (invalid rows, later versions of earlier orders) and one clean run.

    The commands of this module are forked from the test process's forkserver
    (tests/_forked.py), so the runs timed and killed below all start alike.
    """
    inputs, records, ref, summary = six_files_run_once(tmp_path_factory, new_project)
    result = outcome(ref)
    # the reference itself is right: exactly the oracle, several batches, both partitions
    assert result.rows == as_rows(expected(records))
    assert sum(result.rejected.values()) == sum(1 for r in records if not is_valid(r))
    assert summary["batches"] >= 6 and summary["rows_written"] >= 3 * BATCH_ROWS
    assert {p.split("/")[1] for p in result.layout if p.startswith("data/")} == {
        "status=open",
        "status=paid",
    }
    yield Clean(inputs, records, result, summary)


def data_files(folder: Path) -> list[Path]:
    return sorted((folder / SINK / "data").rglob("*.parquet")) if (folder / SINK).exists() else []


POINTS = [
    "planned",
    "staged_file:1",
    "staged_file:2",
    "staged",
    "loaded_batch:1",
    "loaded_batch:2",
    "loaded",
    "state_written",
]


@pytest.mark.parametrize("fault", POINTS)
@pytest.mark.reliability(
    "crash",
    "kill -9 at each step boundary of a parquet run: after planning, after each staged file, after staging, after each load batch, after loading, after the state write",
    "the next run finishes the interrupted run with its frozen inputs; sink, rejected rows, file layout and state equal one clean run",
)
def test_a_run_killed_at_a_step_boundary_is_finished_by_the_next_run(
    project: Path, clean_six: Clean, fault: str
) -> None:
    """`PUMPHOUSE_FAULT=point[:n]` kills the run (SIGKILL) the nth time it reaches a step
    boundary. Every point is after the run's manifest is saved, so the next run resumes
    that run: same run id, same inputs, and the project ends exactly as a clean run's."""
    new_project(project)
    copy_inputs(clean_six.inputs, project)

    crashed = pump_run(project, fault)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr

    # where it died: what the killed run left behind
    manifest = manifest_of(project)
    assert manifest is not None, "every fault point is after the run's manifest is saved"
    assert len(manifest["inputs"]) == 6
    point = fault.partition(":")[0]
    want_phase = "staging" if point in ("planned", "staged_file") else "loading"
    assert manifest["phase"] == want_phase
    written = data_files(project)
    reference_files = sum(n for p, n in clean_six.outcome.layout.items() if p.startswith("data/"))
    if point == "loaded_batch":
        n = int(fault.partition(":")[2])
        assert 0 < len(written) < reference_files
        assert len({f.name.rsplit("-", 1)[0] for f in written}) == n  # n batches in place
        if n == 2:
            assert {f.parent.name for f in written} == {"status=open", "status=paid"}
    elif point in ("loaded", "state_written"):
        assert len(written) == reference_files
    else:
        assert written == []
    if want_phase == "loading" and point != "state_written":
        # A local run keeps its staged valid rows in its DuckDB (tasks/staging/kept), not on
        # disk: no marker says its staging is here, so the next run stages the inputs again.
        run = project / STATE / "staging" / manifest["run_id"]
        assert not (run / ".staged").exists()
        assert not list(run.glob("valid/*.parquet"))
        assert list(run.glob("rejected/*.parquet"))
    if point == "state_written":
        state = outcome(project)
        assert (state.files, state.hwm) == (clean_six.outcome.files, clean_six.outcome.hwm)
    else:
        assert not (project / STATE / "state.json").exists()

    # the next run finishes it, with the same inputs and the same run id
    recovered = summary_of(pump_run(project))
    assert recovered["resumed"] is True
    assert recovered["run_id"] == manifest["run_id"]
    for key in ("files", "rows_read", "rows_rejected", "rows_duplicate", "rows_written"):
        assert recovered[key] == clean_six.summary[key], key
    assert recovered["hwm_after"] == clean_six.summary["hwm_after"]
    assert manifest_of(project) is None
    assert_same(outcome(project), clean_six.outcome)
    assert landed(str(project / SINK)) == expected(clean_six.records)

    # and then there is nothing left to read
    after = run_here(project)
    assert (after["resumed"], after["files"], after["rows_read"], after["rows_written"]) == (
        False,
        0,
        0,
        0,
    )
    assert_same(outcome(project), clean_six.outcome)


@pytest.mark.parametrize("resumed_rows", [1000, 100])
@pytest.mark.reliability(
    "crash",
    "kill -9 after 2 load batches of a parquet run, then limits.batch_rows raised or lowered before the next run",
    "the resumed run cuts its batches as the run that started did (frozen in its manifest): sink, file layout and state equal one clean run; the next run uses the new value",
)
def test_a_resumed_run_loads_with_the_batching_it_started_with(
    project: Path, clean_six: Clean, resumed_rows: int
) -> None:
    new_project(project)
    copy_inputs(clean_six.inputs, project)
    crashed = pump_run(project, "loaded_batch:2")
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    (project / SPEC).write_text(spec_text(batch_rows=resumed_rows))

    recovered = summary_of(pump_run(project))
    assert recovered["resumed"] is True
    assert recovered["batches"] == clean_six.summary["batches"]
    assert_same(outcome(project), clean_six.outcome)
    assert landed(str(project / SINK)) == expected(clean_six.records)


@pytest.mark.reliability(
    "crash",
    "kill -9 after 1 load batch of a local run (its staged rows kept in its DuckDB), then one "
    "of its input files moved away, then put back truncated, before the next runs",
    "each next run refuses, naming the file and saying to restore it (the run reads its inputs "
    "again to finish); nothing more lands and the run stays open; once the file is back whole, "
    "the run finishes and the project equals one clean run",
)
def test_a_run_killed_while_loading_needs_its_inputs_to_finish(
    project: Path, clean_six: Clean
) -> None:
    new_project(project)
    copy_inputs(clean_six.inputs, project)
    assert pump_run(project, "loaded_batch:1").returncode == -signal.SIGKILL
    written = data_files(project)
    moved = sorted((project / "in").glob("*.ndjson"))[2]
    away = project / moved.name
    moved.rename(away)

    refused = pump_run(project)
    assert refused.returncode == 1, refused.stderr
    assert f"{moved}: the file is gone since this run listed it" in refused.stderr
    assert "restore the file as it was and run again" in refused.stderr
    assert manifest_of(project) is not None
    assert data_files(project) == written

    # truncated instead: never loaded as it is now
    whole = away.read_bytes()
    moved.write_bytes(whole[: len(whole) // 3])
    shutil.copystat(away, moved)
    refused = pump_run(project)
    assert refused.returncode == 1, refused.stderr
    listed = f"{len(whole):,}"
    assert f"{moved}: the file is shorter ({len(whole) // 3:,} bytes, listed with {listed})" in (
        refused.stderr
    )
    assert "restore the file as it was and run again" in refused.stderr
    assert data_files(project) == written

    away.replace(moved)
    assert summary_of(pump_run(project))["resumed"] is True
    assert_same(outcome(project), clean_six.outcome)


@pytest.mark.reliability(
    "crash",
    "kill -9 after 1 load batch of a local run (its staged rows kept in its DuckDB), then the "
    "whole project moved to another folder; and apart, one input rewritten in place (same "
    "size and modification time, other bytes)",
    "moved: the next run finishes the run from the files where they are now, and the project "
    "equals one clean run; rewritten: the next run refuses, naming the file, and lands nothing",
)
def test_a_run_killed_while_loading_finishes_in_a_moved_project_and_refuses_a_rewritten_file(
    tmp_path: Path, clean_six: Clean
) -> None:
    first = new_project(tmp_path / "first")
    copy_inputs(clean_six.inputs, first)
    assert pump_run(first, "loaded_batch:1").returncode == -signal.SIGKILL
    moved = tmp_path / "moved"
    first.rename(moved)
    recovered = summary_of(pump_run(moved))
    assert recovered["resumed"] is True
    assert_same(outcome(moved), clean_six.outcome)

    other = new_project(tmp_path / "other")
    copy_inputs(clean_six.inputs, other)
    assert pump_run(other, "loaded_batch:1").returncode == -signal.SIGKILL
    written = data_files(other)
    victim = sorted((other / "in").glob("*.ndjson"))[1]
    body = victim.read_bytes()
    stat = victim.stat()
    victim.write_bytes(body.replace(b'"paid"', b'"open"'))
    os.utime(victim, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    refused = pump_run(other)
    assert refused.returncode == 1, refused.stderr
    assert f"{victim}: the file changed since this run listed it" in refused.stderr
    assert data_files(other) == written


def test_a_manifest_from_before_the_frozen_batching_resumes_with_the_spec(
    project: Path, clean_six: Clean
) -> None:
    """A run killed by an older pumphouse has no `frozen` in its manifest: it is finished
    with the spec as it is (the same, here), and the project equals a clean run's."""
    new_project(project)
    copy_inputs(clean_six.inputs, project)
    assert pump_run(project, "loaded_batch:2").returncode == -signal.SIGKILL
    path = project / STATE / "manifest.json"
    old = json.loads(path.read_text())
    del old["frozen"]
    path.write_text(json.dumps(old))

    assert summary_of(pump_run(project))["resumed"] is True
    assert_same(outcome(project), clean_six.outcome)


GLOBBY = "./wh/o?t[1]/orders"  # a sink path with glob characters: each taken literally


def rows_at(sink: Path) -> Counter[tuple[Any, ...]]:
    """The sink's rows, from its files listed literally (DuckDB would glob the path)."""
    files = [str(p) for p in sorted((sink / "data").rglob("*.parquet"))]
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    listed = "[" + ", ".join(f"'{f}'" for f in files) + "]"
    rows = con.sql(
        "SELECT order_id, customer, amount, status, strftime(updated_at, '%Y-%m-%dT%H:%M:%SZ') "
        f"FROM read_parquet({listed}, hive_partitioning = true)"
    ).fetchall()
    con.close()
    return Counter(rows)


@pytest.mark.reliability(
    "crash",
    "a parquet sink at ./wh/o?t[1]/orders (glob characters in its path): kill -9 after 4 load batches, the staging lost (as on another machine), resumed with a lower max_rows_per_run, so the replay writes fewer batches",
    "the replay removes every file the killed attempt wrote (sink paths taken literally, never globbed): the sink equals clean runs with that limit row by row; `pumphouse query` sees every row",
)
def test_a_sink_path_with_glob_characters_is_taken_literally(
    project: Path, clean_six: Clean
) -> None:
    limited = spec_text(out=GLOBBY, batch_rows=BATCH_ROWS) + (
        "  max_rows_per_run: 600\n  max_concurrency: 1\n"
    )
    clean = new_project(project / "clean")
    (clean / SPEC).write_text(limited)
    copy_inputs(clean_six.inputs, clean)
    while run_here(clean)["files"]:
        pass
    folder = new_project(project / "crashed")
    (folder / SPEC).write_text(spec_text(out=GLOBBY, batch_rows=BATCH_ROWS))
    copy_inputs(clean_six.inputs, folder)
    crashed = pump_run(folder, "loaded_batch:4")
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    assert len(list((folder / GLOBBY / "data").rglob("*.parquet"))) >= 4
    shutil.rmtree(folder / STATE / "staging")
    (folder / SPEC).write_text(limited)

    first = summary_of(pump_run(folder))
    assert (first["resumed"], first["files"], first["inputs_left"]) == (True, 2, 4)
    while run_here(folder)["files"]:
        pass
    want = rows_at(clean / GLOBBY)
    assert rows_at(folder / GLOBBY) == want and sum(want.values()) > 3 * BATCH_ROWS

    sql = "SELECT count(*) AS n, count(DISTINCT order_id) AS d FROM orders"
    done = run_cli("query", SPEC, sql, "--format", "csv", cwd=folder)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["n,d", f"{sum(want.values())},{len({r[0] for r in want})}"]


@pytest.mark.reliability(
    "crash",
    "a killed run resumed with a lower max_rows_per_run",
    "the resumed run loads only what it staged now; the rest waits for the next run; nothing lost or doubled",
)
def test_a_resumed_run_that_stages_less_loads_only_what_it_staged(
    project: Path, clean_six: Clean
) -> None:
    """Killed while staging four files at once; before the next run the spec is changed to
    `max_rows_per_run: 300, max_concurrency: 1`, so the resumed run stages only the first
    file. What the killed attempt had staged of the others must not reach the sink: they
    are read by the next run, and no row may land twice."""
    new_project(project)
    copy_inputs(clean_six.inputs, project)
    crashed = pump_run(project, "staged_file:2")
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    limited = spec_text(batch_rows=BATCH_ROWS) + "  max_rows_per_run: 300\n  max_concurrency: 1\n"
    (project / SPEC).write_text(limited)

    first = run_here(project)
    assert (first["resumed"], first["files"], first["rows_read"]) == (True, 1, ROWS)
    assert committed_files(project) == {"orders-00-000.ndjson"}
    runs = [first]
    while runs[-1]["files"]:
        runs.append(run_here(project))
    assert [r["files"] for r in runs] == [1, 1, 1, 1, 1, 1, 0]

    # an append sink receives each run's deduplicated rows: here, one run per file
    files = per_file(clean_six.records, day=0)
    got = outcome(project)
    assert got.rows == sum((as_rows(expected(recs)) for recs in files.values()), Counter())
    assert max(Counter((r[0], r[4]) for r in got.rows.elements()).values()) == 1
    assert got.rejected == clean_six.outcome.rejected
    assert (got.files, got.hwm) == (clean_six.outcome.files, clean_six.outcome.hwm)


# ---- 2. kill -9 at random moments -----------------------------------------------------------


@dataclass
class Soak:
    """What happened: per process (when it was killed, exit code, the open run it left:
    phase, inputs, files written to the sink), and the groups of files runs committed
    together, in order."""

    trace: list[tuple[str, int, str]]
    groups: list[list[str]]

    def killed_mid_run(self, phase: str = "") -> int:
        """Kills that left a run with inputs open (not before planning, not after commit),
        in `phase` if given."""
        return sum(
            1
            for _, code, left in self.trace
            if code and left != "-" and left.split(":")[1] != "0" and left.startswith(phase)
        )


@dataclass(frozen=True)
class Timing:
    """One clean `pumphouse run` here, in seconds from its start: when it held the lock,
    when it began to load, when it had committed, when it exited; and the inputs it read."""

    locked: float
    loading: float
    committed: float
    exited: float
    inputs: int = 1

    def delay(self, rnd: random.Random, k: int) -> tuple[str, float]:
        """(the moment it counts from, seconds): in turn, a kill while the run plans and
        stages (from when it holds the lock), one while it loads, one anywhere in it. A
        kill while loading is a fraction of that run's own load (see load_delay)."""
        if k % 3 == 0:
            return "lock", rnd.uniform(0.0, self.loading - self.locked)
        if k % 3 == 1:
            return "loading", rnd.uniform(0.0, 0.9)
        return "start", rnd.uniform(0.5, self.exited + 1.0)

    def load_delay(self, fraction: float, inputs: int) -> float:
        """`fraction` of the time a run loading `inputs` files takes: loading grows with the
        files (a resumed run of 2 new files loads far quicker than the 16 timed)."""
        return fraction * (self.committed - self.loading) * inputs / max(self.inputs, 1)


def holds_lock(folder: Path, proc: Started) -> bool:
    """Whether `proc` has taken the pump's lock (its pid is what the holder writes there)."""
    try:
        return (folder / STATE / "lock").read_text().startswith(f"pid {proc.pid} ")
    except FileNotFoundError:
        return False


def reached(folder: Path, proc: Started, moment: str) -> bool:
    """Whether `proc` is past `moment`: "start", "lock" (holds it) or "loading" (holds it
    and its run's manifest says loading)."""
    if moment == "start":
        return True
    if not holds_lock(folder, proc):
        return False
    m = manifest_of(folder)
    return moment == "lock" or (m is not None and m["phase"] == "loading")


def timed_run(folder: Path) -> Timing:
    started = time.monotonic()
    proc = popen_run(folder)
    locked = planned = loading = committed = 0.0
    inputs = 1
    while proc.poll() is None:
        now = time.monotonic() - started
        m = manifest_of(folder)
        if not locked and holds_lock(folder, proc):
            locked = now
        if not planned and m is not None:
            planned = now
        if not loading and m is not None and m["phase"] == "loading":
            loading, inputs = now, len(m["inputs"])
        if planned and not committed and m is None:
            committed = now
        time.sleep(0.005)
    exited = time.monotonic() - started
    committed = committed or exited
    _, err = proc.communicate()
    assert proc.returncode == 0, err
    timing = Timing(locked, loading, committed, exited, inputs)
    assert 0 < locked <= planned < loading < committed <= exited, timing
    return timing


def kill_soak(
    folder: Path,
    inputs: Path,
    *,
    kills: int,
    seed: int,
    timing: Timing,
    arrivals: dict[int, list[str]],
    settled: Callable[[dict[str, Any]], bool] | None = None,
) -> Soak:
    """Start `pumphouse run` and SIGKILL it after a random delay, `kills` times; after the
    processes numbered in `arrivals`, copy those files in (a new export arriving). Then run
    without kills until a run reads nothing new.

    Delays come from `timing`, one clean run of similar input measured first. A third of
    the kills fall anywhere from 0.5 s to that run's duration + 1 s, start-up included;
    since start-up can be most of a run, the others fall while the run
    plans and stages (counted from when it holds the lock) or while it loads (counted
    from when its manifest says so).
    """
    rnd = random.Random(seed)
    soak = Soak([], [])
    done = committed_files(folder)

    def observe(when: str, code: int) -> None:
        nonlocal done
        now = committed_files(folder)
        if now - done:
            soak.groups.append(sorted(now - done))
        done = now
        m = manifest_of(folder)
        left = "-"
        if m:  # the open run: phase, inputs, and files it has written to the sink so far
            written = [f for f in data_files(folder) if f"part-{m['run_id']}-" in f.name]
            left = f"{m['phase']}:{len(m['inputs'])}:{len(written)}"
        soak.trace.append((when, code, left))

    for k in range(kills):
        moment, delay = timing.delay(rnd, k)
        proc = popen_run(folder)
        deadline = time.monotonic() + 120
        while proc.poll() is None and not reached(folder, proc, moment):
            assert time.monotonic() < deadline, f"the run never reached {moment}"
            time.sleep(0.005)
        if moment == "loading":  # `delay` is a fraction of this run's load
            m = manifest_of(folder)
            delay = timing.load_delay(delay, len(m["inputs"]) if m else timing.inputs)
        try:
            _, err = proc.communicate(timeout=delay)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            _, err = proc.communicate()
        assert proc.returncode in (0, -signal.SIGKILL), err
        observe(f"{moment}+{delay:.2f}s", proc.returncode)
        if k in arrivals:
            copy_inputs(inputs, folder, arrivals[k])
    for _ in range(len(arrivals) + 2):
        s = run_here(folder)  # the same flow, without a process start-up
        observe("not killed", 0)
        if settled(s) if settled else (not s["resumed"] and s["files"] == s["rows_read"] == 0):
            return soak
    raise AssertionError(f"the pump never settled: {soak}")


@pytest.mark.reliability(
    "soak",
    "random kill -9 during runs over a multi-file input, then completion",
    "sink, rejected rows and state equal one clean run row by row",
)
def test_random_kills_leave_the_sink_as_one_clean_run_would(project: Path) -> None:
    """Twelve files, all there before the first run; eight runs killed at random moments.

    With every file present from the start, the first run's manifest freezes all twelve
    and every later run finishes that same run, so one clean run of the same input is the
    exact reference: same rows, rejected rows, sink files and state; it is also the run
    that times the kills. (When files arrive
    between kills, what an append sink receives depends on how files were grouped into
    runs; that case is the slow test below.)
    """
    inputs = project / "inputs"
    records = write_orders(inputs, files=12, rows=ROWS, seed=21)
    clean = new_project(project / "clean", SOAK_BATCH_ROWS)
    copy_inputs(inputs, clean)
    timing = timed_run(clean)
    soaked = new_project(project / "soak", SOAK_BATCH_ROWS)
    copy_inputs(inputs, soaked)

    soak = kill_soak(soaked, inputs, kills=8, seed=8, timing=timing, arrivals={})

    assert soak.killed_mid_run() >= 1, soak
    assert soak.groups == [sorted(p.name for p in inputs.glob("*.ndjson"))]
    assert_same(outcome(soaked), outcome(clean))
    assert landed(str(soaked / SINK)) == expected(records)


@pytest.mark.slow
@pytest.mark.reliability(
    "soak",
    "25 random kill -9 over a 40-file input while new exports keep arriving between kills",
    "every row lands exactly once; equal to clean runs of the same input sequence",
)
def test_random_kills_while_new_exports_arrive(project: Path) -> None:
    """Twenty-five runs killed at random moments over 40 files, new exports arriving between kills.

    An append sink receives each run's deduplicated rows, so the result depends on which
    files ran together. The soak observes that grouping (the files each commit adds to the
    state), then a clean reference replays it: each group copied in and run once, without
    kills. The soaked project must equal it exactly, and both must equal the oracle: per
    group, the valid, non-void, latest row per order. Each export is a later day than the
    one before (also with later versions of earlier orders), so the high-water mark never
    drops a row of a later group. Also asserted directly: no source row landed twice, and
    every order's latest valid version landed.
    """
    inputs = project / "inputs"
    files: dict[str, list[dict[str, Any]]] = {}
    arrivals: dict[int, list[str]] = {}
    # 16 files first (they span 80 hours), then two files of a later day after every other
    # kill, 40 files in all; each group starts after the one before ends
    for after, day, n in [(-1, 0, 16), *((2 * d - 1, 4 * d, 2) for d in range(1, 13))]:
        batch = per_file(write_orders(inputs, files=n, rows=ROWS, seed=100 + day, day=day), day)
        files.update(batch)
        arrivals[after] = sorted(batch)
    soaked = new_project(project / "soak", SOAK_BATCH_ROWS)
    copy_inputs(inputs, soaked, arrivals.pop(-1))
    scratch = new_project(project / "scratch", SOAK_BATCH_ROWS)  # times a run like the soak's first
    copy_inputs(inputs, scratch, [p.name for p in (soaked / "in").iterdir()])
    timing = timed_run(scratch)

    soak = kill_soak(soaked, inputs, kills=25, seed=25, timing=timing, arrivals=arrivals)

    assert soak.killed_mid_run("staging") >= 1 and soak.killed_mid_run("loading") >= 2, soak
    assert sorted(n for g in soak.groups for n in g) == sorted(files)
    ref = new_project(project / "ref", SOAK_BATCH_ROWS)
    for group in soak.groups:
        copy_inputs(inputs, ref, group)
        s = run_here(ref)
        assert (s["resumed"], s["files"]) == (False, len(group))
    got = outcome(soaked)
    assert_same(got, outcome(ref))
    oracle: Counter[tuple[Any, ...]] = Counter()
    for group in soak.groups:
        oracle += as_rows(expected([r for name in group for r in files[name]]))
    assert got.rows == oracle
    assert max(Counter((r[0], r[4]) for r in got.rows.elements()).values()) == 1
    latest = as_rows(expected([r for name in sorted(files) for r in files[name]]))
    assert not latest - got.rows, "an order's latest version is missing"


# ---- 3. runs at the same time ------------------------------------------------------------


@pytest.mark.reliability(
    "concurrency",
    "two `pumphouse run` processes of one pump at the same time",
    "one loads; the other exits 1 saying the pump is already running; no duplicates",
)
def test_two_runs_at_once_one_loads_and_the_other_says_so(project: Path, clean_six: Clean) -> None:
    """Two `pumphouse run` started together: one loads, the other fails at once and says why.

    Whichever takes the lock is paused (SIGSTOP) until the other has exited, so the two
    overlap whatever the machine's speed: a slow run, as seen by the second one.
    """
    new_project(project)
    copy_inputs(clean_six.inputs, project)

    procs = [popen_run(project), popen_run(project)]
    deadline = time.monotonic() + 120
    while not any(holds_lock(project, p) for p in procs):
        assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
        assert time.monotonic() < deadline, "no run took the lock"
        time.sleep(0.005)
    win, lose = (0, 1) if holds_lock(project, procs[0]) else (1, 0)
    procs[win].send_signal(signal.SIGSTOP)
    try:
        out, err = procs[lose].communicate(timeout=120)
    finally:
        procs[win].send_signal(signal.SIGCONT)
    won_out, won_err = procs[win].communicate(timeout=120)

    assert (procs[win].returncode, procs[lose].returncode) == (0, 1), (won_err, err)
    assert "error: pump 'orders' is already running" in err
    assert f"(pid {procs[win].pid} since " in err
    assert "wait for that run to finish" in err
    assert json.loads(out.splitlines()[-1])["status"] == "failed"
    s = json.loads(won_out.splitlines()[-1])
    assert (s["status"], s["resumed"], s["files"]) == ("ok", False, 6)
    assert_same(outcome(project), clean_six.outcome)  # loaded once: no row twice, none lost
    assert run_here(project)["rows_read"] == 0


@pytest.mark.reliability(
    "concurrency",
    "a run killed while holding the lock",
    "the lock dies with the process; the next run is not blocked",
)
def test_a_killed_run_leaves_no_lock_behind(project: Path, clean_six: Clean) -> None:
    """kill -9 a run holding the lock: the next run takes it at once and finishes the run."""
    new_project(project)
    copy_inputs(clean_six.inputs, project)
    first = popen_run(project)
    deadline = time.monotonic() + 120
    while manifest_of(project) is None:  # planned: it holds the lock
        assert first.poll() is None, first.communicate()
        assert time.monotonic() < deadline, "the run never planned"
        time.sleep(0.02)
    first.send_signal(signal.SIGKILL)
    first.communicate()
    assert first.returncode == -signal.SIGKILL
    assert (project / STATE / "lock").read_text().startswith(f"pid {first.pid} ")

    # no wait for the lock (the default): a lock still held would refuse this run at once
    s = summary_of(pump_run(project))
    assert s["resumed"] is True
    assert_same(outcome(project), clean_six.outcome)


# ---- 4. two flow runs in one process ----------------------------------------------------------


@pytest.mark.reliability(
    "concurrency",
    "two flow runs of one pump in one process",
    "one loads, the other fails with BusyError; no duplicates",
)
def test_two_flow_runs_in_one_process(project: Path) -> None:
    """The lock is per run, not per process: two flow runs in two threads of one process.

    The second starts once the first holds the lock and reads (the progress hook the CLI's
    bar uses tells when), and the first reads on once the second has returned: so they
    overlap whatever the machine's speed.
    """
    from flows.pump import pump
    from tasks.run import progress
    from tasks.state.store import StateStore

    records = write_orders(project / "in", files=6, rows=1_000, seed=41)
    (project / SPEC).write_text(spec_text(batch_rows=500))
    reading, second_done = threading.Event(), threading.Event()
    results: list[object] = [None, None]

    def hold_first_read(what: str, amount: int) -> None:
        if what == "rows" and not reading.is_set():
            reading.set()
            second_done.wait(120)

    def run(i: int) -> None:
        try:
            results[i] = pump(spec_path=SPEC)
        except Exception as e:
            results[i] = e
        finally:
            if i == 1:
                second_done.set()

    stop = progress.listen(hold_first_read)
    try:
        first = threading.Thread(target=run, args=(0,))
        first.start()
        assert reading.wait(120), "the first run never started reading"
        second = threading.Thread(target=run, args=(1,))
        second.start()
        second.join(120)
        first.join(120)
    finally:
        stop()
    assert isinstance(results[1], BusyError), results
    assert f"already running (pid {os.getpid()} since " in str(results[1])
    assert isinstance(results[0], dict), results
    assert (results[0]["status"], results[0]["rows_read"]) == ("ok", 6_000)
    assert landed(SINK) == expected(records)
    assert [r["status"] for r in StateStore("orders").runs()] == ["failed", "ok"]
    assert StateStore("orders").manifest() is None


@pytest.mark.reliability(
    "crash",
    "kill -9 in the middle of --full-refresh (output removed, state not yet reset)",
    "the next run redoes the refresh; the sink equals one clean run",
)
def test_a_full_refresh_killed_half_way_is_finished_by_the_next_run(project: Path) -> None:
    """Output removed, state not yet reset, then kill -9: a plain next run must not leave the sink empty."""
    records = write_orders(project / "in", files=2, rows=100, seed=11)
    (project / "pumps" / "orders.yaml").write_text(spec_text())
    assert run_cli("run", "pumps/orders.yaml", cwd=project).returncode == 0
    killed = run_cli(
        "run",
        "pumps/orders.yaml",
        "--full-refresh",
        cwd=project,
        env={"PUMPHOUSE_FAULT": "refresh_output_removed"},
    )
    assert killed.returncode == -9
    assert not (project / "out" / "orders" / "data").exists()
    again = run_cli("run", "pumps/orders.yaml", "--json", cwd=project)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["rows_read"] == 200
    assert landed("out/orders") == expected(records)


# ---- 1b. runs stopped at max_rows_per_run, killed --------------------------------------------

CUT = "  max_rows_per_run: 600\n  max_concurrency: 1\n"  # 2 files of 300 rows per run


def newest_first(clean: Clean, folder: Path) -> list[list[dict[str, Any]]]:
    """The six files named so that they are listed newest first (exports not in cursor
    order), copied with their modification times; returns each run's records, in the
    order the runs read them (two files a run)."""
    files = per_file(clean.records, day=0)
    names = sorted(files)
    for i, name in enumerate(reversed(names)):
        shutil.copy2(clean.inputs / name, folder / "in" / f"x{i}.ndjson")
    newest = [files[n] for n in reversed(names)]
    return [newest[0] + newest[1], newest[2] + newest[3], newest[4] + newest[5]]


@pytest.fixture(scope="module")
def clean_cut(tmp_path_factory: pytest.TempPathFactory, clean_six: Clean) -> Outcome:
    """Clean runs of the six files listed newest first, stopped at max_rows_per_run."""
    ref = new_project(tmp_path_factory.mktemp("clean-cut"))
    (ref / SPEC).write_text(spec_text(batch_rows=BATCH_ROWS) + CUT)
    groups = newest_first(clean_six, ref)
    runs = [run_here(ref)]
    while runs[-1]["files"]:
        runs.append(run_here(ref))
    assert [r["files"] for r in runs] == [2, 2, 2, 0]
    result = outcome(ref)
    # Each run lands its own two files, none hidden by the mark the run before committed.
    assert result.rows == sum((as_rows(expected(g)) for g in groups), Counter())
    return result


@pytest.mark.parametrize(
    ("run", "fault"), [(r, f) for r in (1, 2) for f in ("staged", "loaded", "state_written")]
)
@pytest.mark.reliability(
    "crash",
    "kill -9 after staging, after loading and after the state write of a run stopped at "
    "max_rows_per_run, and of the next run (which reads what it left), on files listed "
    "newest first",
    "the next runs finish it and go on: sink, rejected rows, file layout and state equal "
    "clean runs with the same limit; no row is hidden by the mark",
)
def test_a_killed_run_stopped_at_max_rows_per_run_is_finished_and_the_rest_goes_on(
    project: Path, clean_six: Clean, clean_cut: Outcome, run: int, fault: str
) -> None:
    new_project(project)
    (project / SPEC).write_text(spec_text(batch_rows=BATCH_ROWS) + CUT)
    newest_first(clean_six, project)
    if run == 2:
        assert run_here(project)["files"] == 2

    crashed = pump_run(project, fault)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    manifest = manifest_of(project)
    assert manifest is not None and manifest["phase"] == "loading"
    assert [os.path.basename(f["url"]) for f in manifest["inputs"]] == (
        ["x0.ndjson", "x1.ndjson"] if run == 1 else ["x2.ndjson", "x3.ndjson"]
    )
    assert len(manifest["rest"]) == (4 if run == 1 else 2)

    runs = [run_here(project)]
    assert (runs[0]["resumed"], runs[0]["run_id"]) == (True, manifest["run_id"])
    while runs[-1]["files"]:
        runs.append(run_here(project))
    assert [r["files"] for r in runs] == ([2, 2, 2, 0] if run == 1 else [2, 2, 0])
    assert_same(outcome(project), clean_cut)
    assert "rest" not in json.loads((project / STATE / "state.json").read_text())


@pytest.mark.reliability(
    "crash",
    "kill -9 after planning, then the planned file grows before the next run",
    "the next run finishes the run with the file as it is then and commits that version: "
    "every row lands once, and the file is not read again",
)
def test_a_file_that_changed_before_an_interrupted_run_was_finished_is_read_once(
    project: Path,
) -> None:
    new_project(project)
    records = write_orders(project / "in", files=1, rows=40, seed=31)
    crashed = pump_run(project, "planned")
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    planned = manifest_of(project)
    assert planned is not None and len(planned["inputs"]) == 1
    grown = write_orders(project / "more", files=1, rows=10, seed=32, start_id=1_000, day=2)
    path = project / "in" / "orders-00-000.ndjson"
    with path.open("a") as f:
        f.write((project / "more" / "orders-02-000.ndjson").read_text())

    first = run_here(project)
    again = run_here(project)
    assert (first["resumed"], first["files"]) == (True, 1)
    assert first["rows_read"] == 50
    assert (again["resumed"], again["files"], again["rows_read"]) == (False, 0, 0)
    assert landed(str(project / SINK)) == expected([*records, *grown])
    assert committed_files(project) == {"orders-00-000.ndjson"}
    state = json.loads((project / STATE / "state.json").read_text())
    (entry,) = state["files"].values()
    assert entry["size"] == path.stat().st_size and entry["fp"].startswith(f"{entry['size']}:")
