"""Staging on Dask: `pumphouse run --executor dask --cluster ADDRESS` against a real
`distributed.LocalCluster` of 2 worker processes, with the source, the sink and the staged
batches in S3 (moto in server mode, every request's credentials checked).

Every run on the cluster is the real command in a subprocess, recorded on the session's Prefect
server (on the one that keeps events, `prefect_server_events`, where a test reads the runs'
task runs). Each outcome is compared with one local run of the same pump, row by row: the
sink's rows, the rejected rows (every column), the files the sink holds (run ids masked) and
the committed state.
The workers resolve the S3 credentials from their own environment (`${env:NAME}` in the spec).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pytest

from flows.executor import Executor, choose
from schemas.errors import PumpError, UsageError
from schemas.settings import Settings
from tasks.run.summary import Counts
from tasks.staging import folder as staging
from tests._moto import (
    Keys,
    enforce_auth,
    free_port,
    make_bucket,
    moto_s3,
    options_json,
    s3,
    s3_spec,
    upload,
)
from tests.conftest import run_cli, run_in_process
from tests.data import expected, is_valid, spec_text, write_orders

pytestmark = pytest.mark.usefixtures("prefect_server")

SPEC = "pumps/orders.yaml"
FILES, ROWS = 6, 300
KEY_VARS = ("PUMP_S3_KEY", "PUMP_S3_SECRET")


# ---- a bucket, a cluster, one local run to compare with --------------------------------------


@dataclass(frozen=True)
class World:
    endpoint: str
    keys: Keys
    bucket: str
    fs: Any
    records: list[dict[str, Any]]
    address: str  # the Dask scheduler's
    cluster: Any  # distributed.LocalCluster
    client: Any  # distributed.Client

    def env(self, staged: bool = True) -> dict[str, str]:
        """What the pump's environment holds: credentials the spec names, and the staging URL."""
        env = dict(zip(KEY_VARS, (self.keys.key, self.keys.secret), strict=True))
        env["PUMPHOUSE_STAGING_STORAGE_OPTIONS"] = options_json(self.endpoint)
        env["PUMPHOUSE_STAGING_URL"] = f"s3://{self.bucket}/staging" if staged else ""
        return env

    def in_process_env(self) -> dict[str, str]:
        """The test's environment and the credentials the spec names (no PUMPHOUSE_* change:
        a local run, or one refused before it starts, can go in process)."""
        named = {k: v for k, v in self.env().items() if not k.startswith("PUMPHOUSE_")}
        return {**os.environ, **named}

    def worker_pids(self) -> dict[str, int]:
        return dict(self.client.run(os.getpid))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """moto with credential checks, a bucket holding 6 input files, and a LocalCluster of 2
    worker processes (one thread each) whose environment has the credentials and nothing else
    of the pump's; a task whose workers die twice fails (allowed-failures 1)."""
    import dask
    from distributed import Client, LocalCluster

    with moto_s3() as endpoint, enforce_auth(endpoint) as keys:
        bucket = f"dask-{uuid.uuid4().hex[:12]}"
        make_bucket(endpoint, bucket, keys.key, keys.secret)
        fs = s3(endpoint, keys.key, keys.secret)
        src = tmp_path_factory.mktemp("inputs")
        records = write_orders(src, files=FILES, rows=ROWS, seed=5)
        upload(fs, src, bucket)
        worker_env = {
            "PUMP_S3_KEY": keys.key,
            "PUMP_S3_SECRET": keys.secret,
            "PUMPHOUSE_STAGING_STORAGE_OPTIONS": options_json(endpoint),
        }
        # distributed sets OMP_NUM_THREADS, PYTHONHASHSEED, ... in this process's environment
        # for the workers it spawns; later tests' commands would then not fork (tests/_forked).
        saved = dict(os.environ)
        with (
            restored_environ(saved),
            dask.config.set({"distributed.scheduler.allowed-failures": 1}),
            LocalCluster(
                n_workers=2,
                threads_per_worker=1,
                processes=True,
                dashboard_address=":0",  # a free port: 8787 may be taken
                env=worker_env,
            ) as cluster,
            Client(cluster) as client,
        ):
            client.run(_warm_up)  # imports Prefect and the stage step once per worker
            yield World(
                endpoint, keys, bucket, fs, records, cluster.scheduler_address, cluster, client
            )


@contextlib.contextmanager
def restored_environ(saved: dict[str, str]) -> Iterator[None]:
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _warm_up() -> None:
    import tasks.run.steps  # noqa: F401


def healthy(w: World, timeout: float = 120) -> None:
    """Wait until the cluster has 2 workers, none set to die, and nothing left to run."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            w.client.wait_for_workers(2, timeout=5)
            faults = w.client.run(_fault)
            if any(faults.values()):  # e.g. a plugin's teardown that never reached a worker
                w.client.run(_clear_fault, workers=[a for a, f in faults.items() if f])
            elif len(faults) == 2 and not w.cluster.scheduler.tasks:
                w.client.run(_warm_up)
                return
        except TimeoutError:  # fewer than 2 workers: one may be gone for good
            _revive(w)
        except OSError:
            pass
        assert time.monotonic() < deadline, "the cluster did not settle"
        time.sleep(0.5)


def _revive(w: World) -> None:
    """Bring back a worker whose nanny closed for good (seen on CI after its workers died in a
    row): the cluster keeps its 2 named workers, whatever the test before did to it."""
    from distributed.core import Status

    gone = (Status.closing, Status.closed, Status.failed)
    for name, nanny in list(w.cluster.workers.items()):
        if nanny.status in gone:
            del w.cluster.workers[name]  # so that the cluster starts one under its name
    w.cluster.scale(2)  # starts the named workers it has none for


def _fault() -> str | None:
    return os.environ.get("PUMPHOUSE_FAULT")  # in the worker process it runs in


def _clear_fault() -> None:
    os.environ.pop("PUMPHOUSE_FAULT", None)  # in the worker process it runs in


def _set_fault(point: str) -> None:
    os.environ["PUMPHOUSE_FAULT"] = point  # in the worker process it runs in


@dataclass(frozen=True)
class Outcome:
    rows: Counter[tuple[Any, ...]]  # every column of every sink row (a multiset)
    rejected: Counter[tuple[Any, ...]]
    layout: Counter[str]  # sink files, run ids masked
    files: dict[str, str]  # committed: input URL -> fingerprint
    hwm: str | None


def outcome(w: World, project: Path, sink: str) -> Outcome:
    """What the run left: the sink's rows (read by DuckDB from a copy of the sink's objects,
    fetched whole: DuckDB over fsspec asks moto, in this process, for each file in several
    ranges), its file names, and the committed state."""
    names = [p.removeprefix(f"{w.bucket}/{sink}/") for p in w.fs.find(f"{w.bucket}/{sink}")]
    state = json.loads((project / ".pumphouse/orders/state.json").read_text())
    with tempfile.TemporaryDirectory() as copy:
        w.fs.get([f"{w.bucket}/{sink}/{n}" for n in names], [f"{copy}/{n}" for n in names])
        con = duckdb.connect()
        con.execute("SET TimeZone = 'UTC'")

        def rows(sql: str) -> Counter[tuple[Any, ...]]:
            rel = con.sql(sql)
            return Counter(tuple(_plain(v) for v in values) for values in rel.fetchall())

        return Outcome(
            rows(
                f"SELECT * FROM read_parquet('{copy}/data/**/*.parquet', hive_partitioning = true)"
            ),
            rows(f"SELECT * FROM read_parquet('{copy}/rejected/*.parquet', union_by_name = true)"),
            Counter(re.sub(r"part-\d{8}T\d{6}Z-[0-9a-f]{6}-", "part-RUN-", n) for n in names),
            state["files"],
            state["hwm"],
        )


def _plain(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def new_project(w: World, folder: Path, sink: str) -> Path:
    (folder / "pumps").mkdir(parents=True, exist_ok=True)
    (folder / SPEC).write_text(s3_spec(w.bucket, w.endpoint, sink=sink, batch_rows=100))
    return folder


def pump_run(
    w: World, project: Path, *args: str, staged: bool = True
) -> subprocess.CompletedProcess[str]:
    return run_cli("run", SPEC, "--json", *args, cwd=project, env=w.env(staged))


def on_dask(w: World, project: Path, staged: bool = True) -> subprocess.CompletedProcess[str]:
    return pump_run(w, project, "--executor", "dask", "--cluster", w.address, staged=staged)


def summary_of(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert proc.returncode == 0, proc.stderr
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


@dataclass(frozen=True)
class Reference:
    outcome: Outcome
    summary: dict[str, Any]


@pytest.fixture(scope="module")
def reference(world: World, tmp_path_factory: pytest.TempPathFactory) -> Reference:
    """One local run of the pump (no Dask, no staging URL): what every Dask run must equal."""
    project = new_project(world, tmp_path_factory.mktemp("local"), "local/orders")
    # a local run needs no staging URL: in this process
    summary = summary_of(
        run_in_process("run", SPEC, "--json", cwd=project, env=world.in_process_env())
    )
    got = outcome(world, project, "local/orders")
    assert summary["files"] == FILES and summary["batches"] >= 2 * FILES
    assert len(got.rows) == len(expected(world.records))  # the oracle agrees
    assert sum(got.rejected.values()) == sum(1 for r in world.records if not is_valid(r)) > 0
    return Reference(got, summary)


def assert_same(got: Outcome, want: Outcome) -> None:
    """Field by field, so a failure names what differs."""
    assert got.rows == want.rows
    assert got.rejected == want.rejected
    assert got.layout == want.layout
    assert got.files == want.files
    assert got.hwm == want.hwm


COUNTS = ("files", "rows_read", "rows_rejected", "rows_filtered", "rows_duplicate", "rows_written")


def staged_left(w: World) -> list[str]:
    return list(w.fs.find(f"{w.bucket}/staging"))


def prefect_records(since: datetime) -> str:
    """Everything Prefect holds about the flow runs started since `since`: the flow runs
    (parameters included), their task runs and their logs, as text."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterStartTime,
        LogFilter,
        LogFilterFlowRunId,
    )
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=10)
    runs_since = FlowRunFilter(start_time=FlowRunFilterStartTime(after_=since))

    async def read() -> str:
        async with get_client() as client:
            flows = await client.read_flow_runs(flow_run_filter=runs_since)
            tasks = await client.read_task_runs(flow_run_filter=runs_since)
            logs = await client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[f.id for f in flows]))
            )
        assert flows and tasks and logs
        return "\n".join(r.model_dump_json() for r in [*flows, *tasks, *logs])

    return asyncio.run(read())


def stage_states(since: datetime) -> Counter[str]:
    """The states of the stage task runs of the flow runs started since `since`."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterStartTime,
        TaskRunFilter,
        TaskRunFilterName,
    )

    async def read() -> Counter[str]:
        async with get_client() as client:
            runs = await client.read_task_runs(
                flow_run_filter=FlowRunFilter(start_time=FlowRunFilterStartTime(after_=since)),
                task_run_filter=TaskRunFilter(name=TaskRunFilterName(like_="stage")),
            )
        return Counter(str(r.state_name) for r in runs)

    return asyncio.run(read())


# ---- a run on the cluster lands what a local run lands -------------------------------------


@pytest.mark.usefixtures("prefect_server_events")  # reads task runs
def test_a_dask_run_lands_exactly_what_a_local_run_lands(
    world: World, reference: Reference, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the S3 staging URL, and on the workers' shared disk without one; both workers
    stage. The spec reaches the workers with `${env:NAME}`, never the S3 credentials, and they
    are in no output and nothing Prefect recorded of these runs."""
    from distributed.diagnostics.plugin import SchedulerPlugin
    from distributed.protocol.pickle import dumps

    from schemas.loader import load_spec

    class Where(SchedulerPlugin):
        name = "where-stage-ran"

        def __init__(self) -> None:
            self.workers: Counter[str] = Counter()

        def transition(self, key: Any, start: str, finish: str, *args: Any, **kw: Any) -> None:
            if finish == "memory" and "stage" in str(key) and kw.get("worker"):
                self.workers[kw["worker"]] += 1

    where = Where()
    world.cluster.scheduler.add_plugin(where)
    since = datetime.now(UTC)
    try:
        for staged, sink in ((True, "dask-s3/orders"), (False, "dask-disk/orders")):
            project = new_project(world, tmp_path / sink.split("/")[0], sink)
            done = on_dask(world, project, staged=staged)
            summary = summary_of(done)
            for key in COUNTS:
                assert summary[key] == reference.summary[key], key
            assert_same(outcome(world, project, sink), reference.outcome)
            assert staged_left(world) == []  # the flow deletes what it collected
            for text in (done.stdout, done.stderr):
                assert world.keys.secret not in text
    finally:
        world.cluster.scheduler.remove_plugin(name=where.name)
    recorded = prefect_records(since)
    assert world.address in recorded  # the `cluster` parameter, and the flow's log line
    for name, value in world.env().items():
        monkeypatch.setenv(name, value)
    shipped = dumps(load_spec(tmp_path / "dask-s3" / SPEC))  # as Dask sends it to a worker
    for secret in (world.keys.key, world.keys.secret):
        assert secret not in recorded and secret.encode() not in shipped
    assert sum(where.workers.values()) == 2 * FILES
    assert len(where.workers) == 2, where.workers  # both workers staged


# ---- a worker killed mid-run ----------------------------------------------------------------


@pytest.mark.reliability(
    "crash",
    "kill -9 of a Dask worker process while it stages a file (after writing its batches to the S3 staging URL, before it reports back), on a LocalCluster of 2 worker processes",
    "Dask runs that stage step again on a live worker; the run completes and sink, rejected rows, file layout and state equal a local run's; a rerun reads nothing and changes nothing",
)
@pytest.mark.usefixtures("prefect_server_events")  # reads task runs
def test_a_worker_killed_while_staging_is_replaced_and_the_run_completes(
    world: World, reference: Reference, tmp_path: Path
) -> None:
    before = world.worker_pids()
    victim = sorted(before)[0]
    world.client.run(_set_fault, "stage_written", workers=[victim])  # this process only
    project = new_project(world, tmp_path, "killed-once/orders")
    since = datetime.now(UTC)

    summary = summary_of(on_dask(world, project))

    after = world.worker_pids()
    assert before[victim] not in after.values()  # it died, and its nanny started another
    assert before[sorted(before)[1]] in after.values()  # the other one lived on
    for key in COUNTS:
        assert summary[key] == reference.summary[key], key
    assert_same(outcome(world, project, "killed-once/orders"), reference.outcome)

    # the flow run's stage task runs, the killed one's included, are all Completed in Prefect
    assert stage_states(since) == Counter({"Completed": FILES})

    again = summary_of(on_dask(world, project))
    assert (again["files"], again["rows_read"], again["rows_written"]) == (0, 0, 0)
    assert_same(outcome(world, project, "killed-once/orders"), reference.outcome)


@pytest.mark.reliability(
    "crash",
    "every Dask worker process dies (kill -9) whenever it finishes staging a file, so each stage step's workers die twice (allowed-failures 1)",
    "the run fails cleanly while staging (exit 1, a message naming the cluster and the workers' logs); nothing in the sink, no state, no open run; the rerun on healthy workers equals a local run",
)
def test_workers_that_keep_dying_fail_the_run_cleanly_and_a_rerun_is_right(
    world: World, reference: Reference, tmp_path: Path
) -> None:
    from distributed.diagnostics.plugin import WorkerPlugin

    class Doomed(WorkerPlugin):
        """Every worker, the ones nannies start anew included, dies at its first staged file."""

        name = "doomed"

        def setup(self, worker: Any) -> None:
            _set_fault("stage_written")

        def teardown(self, worker: Any) -> None:
            os.environ.pop("PUMPHOUSE_FAULT", None)

    project = new_project(world, tmp_path, "doomed/orders")
    world.client.register_plugin(Doomed())
    try:
        failed = on_dask(world, project)
    finally:
        # CommClosedError (an OSError) when a worker dies mid-broadcast; the scheduler forgot it
        with contextlib.suppress(OSError):
            world.client.unregister_worker_plugin(Doomed.name)
        assert Doomed.name not in world.cluster.scheduler.worker_plugins
        healthy(world)

    assert failed.returncode == 1, failed.stderr
    message = failed.stderr.strip().splitlines()[-1]
    assert re.match(
        rf"error: input s3://{world.bucket}/in/orders-00-00\d.ndjson: the Dask workers staging "
        rf"it died 2 times \(cluster {world.address}\); see the workers' logs",
        message,
    ), message
    assert world.address in message and "Traceback" not in failed.stderr
    state = project / ".pumphouse/orders"
    assert not (state / "state.json").exists() and not (state / "manifest.json").exists()
    assert world.fs.find(f"{world.bucket}/doomed/orders/data") == []

    summary_of(on_dask(world, project))
    assert_same(outcome(world, project, "doomed/orders"), reference.outcome)
    world.fs.rm(f"{world.bucket}/staging", recursive=True)  # killed attempts' uploads


# ---- what is asked for, and what cannot work ---------------------------------------------------


def test_the_executor_is_chosen_from_the_run_then_the_platform() -> None:
    platform = Settings(executor="dask", dask_cluster="tcp://sched:8786")
    assert choose(None, None, Settings()) == Executor("local", None)
    assert choose(None, "tcp://a:8786", Settings()) == Executor("dask", "tcp://a:8786")
    assert choose(None, None, platform) == Executor("dask", "tcp://sched:8786")
    assert choose("dask", "tcp://b:1", platform) == Executor("dask", "tcp://b:1")
    assert choose("local", None, platform) == Executor("local", None)
    cases = [
        ("spark", None, "executor 'spark' is not one pumphouse has; valid: local, dask"),
        ("dask", None, "executor dask needs the Dask scheduler's address: pass --cluster"),
        ("local", "tcp://a:1", "--cluster tcp://a:1 needs --executor dask"),
    ]
    for executor, cluster, text in cases:
        with pytest.raises(UsageError, match=re.escape(text)):
            choose(executor, cluster, Settings())


def test_dask_without_the_dask_extra_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A base install has no Dask: a run that asks for it (command line or platform) says
    which extra to install, before it starts."""
    from typer.testing import CliRunner

    from flows.cli import app

    monkeypatch.setitem(sys.modules, "prefect_dask", None)  # Python's "not installed"
    fix = "install the dask extra (pip install 'pumphouse[dask]', or uv sync --extra dask)"
    platform = Settings(executor="dask", dask_cluster="tcp://sched:8786")
    for executor, cluster, config in [("dask", "tcp://a:8786", Settings()), (None, None, platform)]:
        with pytest.raises(
            UsageError,
            match=r"executor dask needs Dask, and prefect_dask is not installed in .*: "
            + re.escape(fix),
        ):
            choose(executor, cluster, config)
    assert choose("local", None, platform) == Executor("local", None)
    (tmp_path / "pumps").mkdir()
    (tmp_path / "pumps" / "orders.yaml").write_text(spec_text())
    monkeypatch.chdir(tmp_path)
    argv = ["run", "pumps/orders.yaml", "--executor", "dask", "--cluster", "tcp://a:8786"]
    result = CliRunner().invoke(app, argv)
    assert isinstance(result.exception, UsageError) and fix in str(result.exception)


def test_batches_the_flow_cannot_see_fail_the_run(tmp_path: Path) -> None:
    """Workers on other machines without a staging URL stage onto their own disks."""
    counts = Counts(rows_read=10, rows_staged=7, rows_rejected=3)
    with pytest.raises(PumpError, match="set PUMPHOUSE_STAGING_URL") as failure:
        staging.collect(str(tmp_path), str(tmp_path), 3, "in/x.csv", counts, keeps_rejected=True)
    assert (
        f"input in/x.csv: its stage step reported 7 valid rows, but {tmp_path}/valid holds 0"
        in str(failure.value)
    )


def test_staged_batches_travel_through_the_staging_url_once(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a worker uploads is what the flow gets, once: an attempt Dask runs again replaces
    its own earlier upload, an input with nothing to stage uploads nothing, and the flow
    leaves nothing behind."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    for name, value in world.env().items():
        monkeypatch.setenv(name, value)
    config = Settings(
        staging_url=f"s3://{world.bucket}/trip/",
        staging_storage_options=options_json(world.endpoint),
    )
    run_dir = str(tmp_path / "orders/staging/RUN1")

    def stage(where: str, batches: list[tuple[str, str, int]]) -> None:  # as a worker does
        with staging.workspace(where, config) as local:
            for kind, name, rows in batches:
                (Path(local) / kind).mkdir(parents=True, exist_ok=True)
                pq.write_table(pa.table({"n": list(range(rows))}), Path(local) / kind / name)

    where = staging.target(run_dir, 2, config)
    assert re.fullmatch(rf"s3://{world.bucket}/trip/orders/RUN1/00002-[0-9a-f]{{8}}", where)
    stage(where, [("valid", "00002-00000.parquet", 3), ("valid", "00002-00001.parquet", 2)])
    stage(where, [("valid", "00002-00000.parquet", 4), ("rejected", "00002-00000.parquet", 1)])
    staging.collect(where, run_dir, 2, "in/b", Counts(rows_staged=4, rows_rejected=1), True, config)
    assert sorted(str(p.relative_to(run_dir)) for p in Path(run_dir).rglob("*.parquet")) == [
        "rejected/00002-00000.parquet",
        "valid/00002-00000.parquet",
    ]
    nothing = staging.target(run_dir, 3, config)
    stage(nothing, [])
    staging.collect(nothing, run_dir, 3, "in/c", Counts(rows_read=5, rows_old=5), True, config)
    assert world.fs.find(f"{world.bucket}/trip") == []


def test_a_cluster_that_cannot_be_reached_or_named_fails_clearly(
    world: World, tmp_path: Path
) -> None:
    project = new_project(world, tmp_path, "unreachable/orders")
    missing = run_in_process(
        "run", SPEC, "--executor", "dask", cwd=project, env=world.in_process_env()
    )
    assert missing.returncode == 2
    assert missing.stderr.strip() == (
        "error: executor dask needs the Dask scheduler's address: pass --cluster "
        "tcp://HOST:8786 or set PUMPHOUSE_DASK_CLUSTER"
    )

    nowhere = f"tcp://127.0.0.1:{free_port()}"
    env = {**world.env(), "DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "2s"}
    down = run_cli("run", SPEC, "--cluster", nowhere, cwd=project, env=env)
    assert down.returncode == 1
    assert "Traceback" not in down.stderr
    assert f"error: could not reach the Dask scheduler at {nowhere} (" in down.stderr
    assert not (project / ".pumphouse/orders/manifest.json").exists()
