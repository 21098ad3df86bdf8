"""`pumphouse deploy` and scheduled pumps (CONTRACT §4 deploy, §2 one run at a time).

Against the session's real `prefect server`: deploy a project's pumps, read the deployments
and schedules back through the API, trigger runs, and let a real process worker started in
the project folder execute them; then check the rows in the sink, the flow runs' states,
their artifacts and `pumphouse status`. Missed schedules are flow runs scheduled in the past
(what the scheduler leaves behind while no worker runs); DST is checked on the schedule
the server keeps, with the scheduler's own date computation.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

import pytest
import yaml
from typer.testing import CliRunner

from flows.cli import app
from schemas.errors import UsageError
from schemas.loader import load_spec
from tasks.run.deployment import ENTRYPOINT, WORKDIR_STEP, describe, prefect_key, spec_parameter
from tasks.run.summary import Counts, Summary
from tests._prefect_worker import PREFECT, wait_for, worker
from tests.conftest import PUMPHOUSE, REPO, run_in_process
from tests.data import expected, landed, spec_text, write_orders

BERLIN = "Europe/Berlin"
# Schedules that cannot fire while the tests run (but dep_dst's, which only pumps its own data).
PUMPS: dict[str, tuple[str, str] | None] = {
    "dep_orders": ("0 6 1 1 *", BERLIN),
    "dep_late": None,
    "dep_busy": None,
    "dep_dst": ("30 2 * * *", BERLIN),
}


def pump_spec(name: str, schedule: tuple[str, str] | None = None) -> str:
    text = spec_text(name=name, src=f"./in/{name}/", out=f"./out/{name}")
    if schedule:
        text += f'schedule:\n  cron: "{schedule[0]}"\n  timezone: {schedule[1]}\n'
    return text


def pumphouse(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The real command; `env` entries override the test's environment."""
    done = subprocess.run(
        [PUMPHOUSE, *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "Traceback" not in done.stdout + done.stderr, done.stderr
    return done


def in_process(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The same command through its main() in this process, with the test's settings: what it
    prints and exits with, without a process start (`pumphouse` where the process matters)."""
    done = run_in_process(*args, cwd=cwd)
    assert "Traceback" not in done.stdout + done.stderr, done.stderr
    return done


def client() -> Any:
    from prefect.client.orchestration import get_client

    return get_client(sync_client=True)


def summary_of(flow_run_id: UUID, pump: str) -> Any:
    """The run's `pump-NAME` artifact."""
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        ArtifactFilterKey,
    )

    with client() as c:
        (artifact,) = c.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=[prefect_key(pump)]),
                flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]),
            )
        )
    return artifact


def status_row(stdout: str, pump: str) -> list[str]:
    """The pump's block in `status` (flows/status.py) as cells: pump, last run, outcome, rows
    read, written, rejected, high-water mark, open run, recent runs, next run."""
    lines = stdout.splitlines()
    start = lines.index(pump) + 1
    block = itertools.takewhile(lambda line: line.startswith("  "), lines[start:])
    said = dict(re.split(r" {2,}", line.strip(), maxsplit=1) for line in block)
    when, _, outcome = said["last run"].partition("  ")
    rows = re.fullmatch(r"(\S+) read, (\S+) written, (\S+) rejected", said["rows"])
    assert rows is not None, said
    return [
        pump, when, outcome or "-", *rows.groups(), said["high-water mark"],
        *(said.get(k, "-") for k in ("open run", "recent runs", "next run")),
    ]  # fmt: skip


# ---------------------------------------------------------------- the deployment, as data


def test_prefect_yaml_holds_what_pumphouse_deploy_creates() -> None:
    """`prefect deploy --all` and `pumphouse deploy` describe the bundled pumps alike."""
    doc = yaml.safe_load((REPO / "prefect.yaml").read_text())
    want = {}
    for path in sorted((REPO / "pumps").glob("*.yaml")):
        spec = load_spec(str(path))
        want[spec.name] = describe(spec, path.relative_to(REPO).as_posix())
    have = {d["name"]: d for d in doc["deployments"]}
    for name in sorted(want.keys() - have.keys()):
        entry = yaml.safe_dump([want[name]], sort_keys=False)
        raise AssertionError(f"prefect.yaml has no deployment for pumps/{name}.yaml; add:\n{entry}")
    assert have == want
    assert doc["pull"] is None  # prefect deploy then runs the flow in the folder it deploys from


def test_describe_a_deployment(tmp_path: Path) -> None:
    spec_file = tmp_path / "orders.yaml"
    spec_file.write_text(pump_spec("orders", ("*/5 * * * *", BERLIN)))
    assert describe(load_spec(str(spec_file)), "pumps/orders.yaml", workdir="/srv/project") == {
        "name": "orders",
        "description": "Pump orders: runs pumps/orders.yaml through the generic pumphouse flow.",
        "entrypoint": "flows.pump.pump",
        "parameters": {"spec_path": "pumps/orders.yaml"},
        "tags": ["pumphouse", "pump:orders"],
        "work_pool": {"name": "pumphouse", "job_variables": {}},
        "concurrency_limit": {"limit": 1, "collision_strategy": "ENQUEUE"},
        "schedules": [{"cron": "*/5 * * * *", "timezone": BERLIN}],
        "pull": [{WORKDIR_STEP: {"directory": "/srv/project"}}],
    }
    spec_file.write_text(pump_spec("orders_eu"))
    docker = describe(
        load_spec(str(spec_file)), "pumps/eu.yaml", "docker-pool", "/app", "acme/pumps:1"
    )
    assert docker["schedules"] == []  # no schedule: runs when triggered
    assert docker["work_pool"] == {
        "name": "docker-pool",
        "job_variables": {"image": "acme/pumps:1"},
    }
    assert docker["pull"] == [{WORKDIR_STEP: {"directory": "/app"}}]
    assert prefect_key("orders_eu") == "pump-orders-eu"  # artifact keys allow no `_`


def test_the_spec_parameter_is_relative_to_the_project_folder(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "pumps").mkdir(parents=True)
    for given in ("pumps/x.yaml", "./pumps/../pumps/x.yaml", str(project / "pumps" / "x.yaml")):
        assert spec_parameter(Path(given), project) == "pumps/x.yaml"
    with pytest.raises(UsageError) as e:
        spec_parameter(tmp_path / "x.yaml", project)
    assert str(e.value) == (
        f"{tmp_path / 'x.yaml'} is outside the project folder {project}; a deployment runs in "
        "the project folder, so deploy specs that live there (e.g. pumps/NAME.yaml)"
    )


# ---------------------------------------------------------------- the artifact


def test_the_artifact_tells_counts_bytes_durations_marks_output_and_the_error() -> None:
    s = Summary(pump="orders", run_id="R1", output="./out/orders", workdir="/srv/project")
    s.counts = Counts(
        files=2, bytes=1234, rows_read=10, rows_rejected=1, rows_filtered=2, rows_old=3
    )
    s.rows_duplicate, s.rows_written = 1, 3
    s.hwm_before, s.hwm_after, s.inputs_left = None, "2026-03-08 01:39:00+00", 2
    s.started_at, s.seconds = "2026-01-01T00:00:00Z", 2.5
    s.durations = {"commit": 0.125, "plan": 0.25, "load": 0.75, "stage": 1.5}
    s.status, s.error = "failed", "bad | thing\nsecond line"
    assert s.to_markdown() == (
        "## pump `orders`: failed\n\n"
        "run `R1`, started 2026-01-01T00:00:00Z\n\n"
        "**error:** bad \\| thing second line\n\n"
        "| step | value |\n|---|---|\n"
        "| files read | 2 |\n"
        "| bytes read | 1234 |\n"
        "| rows read | 10 |\n"
        "| rows rejected (invalid) | 1 |\n"
        "| rows filtered out | 2 |\n"
        "| rows not newer than the mark | 3 |\n"
        "| duplicate rows dropped | 1 |\n"
        "| rows written | 3 |\n"
        "| high-water mark before | - |\n"
        "| high-water mark after | 2026-03-08 01:39:00+00 |\n"
        "| inputs left for the next run | 2 |\n"
        "| output | ./out/orders (in /srv/project) |\n"
        "| seconds | 2.5 |\n"
        "\n"
        "| step | seconds |\n|---|---|\n"
        "| plan | 0.25 |\n"
        "| stage | 1.5 |\n"
        "| load | 0.75 |\n"
        "| commit | 0.125 |\n"
    )
    meta = s.to_metadata()
    assert all(isinstance(v, str) for v in meta.values())
    assert (meta["rows_read"], meta["hwm_before"], meta["error"]) == ("10", "", s.error)
    assert meta["inputs_left"] == "2"
    assert "durations" not in meta

    s3 = Summary(pump="orders", run_id="R2", output="s3://bucket/orders")
    with pytest.raises(ValueError), s3.step("load"):
        time.sleep(0.01)
        raise ValueError("boom")
    assert s3.durations["load"] >= 0.01  # a failing step still counts its time
    assert "| output | s3://bucket/orders |" in s3.to_markdown()


# ---------------------------------------------------------------- deploy refuses


@pytest.mark.subprocess
def test_deploy_needs_a_server(tmp_path: Path) -> None:
    (tmp_path / "pumps").mkdir()
    (tmp_path / "pumps" / "a.yaml").write_text(pump_spec("a"))
    write_orders(tmp_path / "in" / "a", files=1, rows=5)
    done = pumphouse(
        "deploy", cwd=tmp_path, env={"PREFECT_API_URL": "", "PREFECT_HOME": str(tmp_path)}
    )
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.strip() == (
        "error: no Prefect server is configured: start one (`prefect server start`), set "
        "PREFECT_API_URL=http://127.0.0.1:4200/api, then deploy again"
    )


@pytest.mark.usefixtures("prefect_server")
def test_deploy_refusals_and_a_container_pool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound

    project = tmp_path / "project"
    (project / "pumps").mkdir(parents=True)
    write_orders(project / "in" / "dep_ok", files=1, rows=5)
    (project / "pumps" / "ok.yaml").write_text(pump_spec("dep_ok"))
    (project / "pumps" / "broken.yaml").write_text(pump_spec("dep_broken") + "sceduel: {}\n")
    broken = in_process("deploy", cwd=project)
    assert (broken.returncode, broken.stdout) == (2, "")
    lines = broken.stderr.strip().splitlines()
    assert lines[0].startswith("pumps/broken.yaml:") and "sceduel" in lines[0]
    assert lines[-1] == "nothing deployed: 1 spec(s) have problems; fix them and deploy again"
    with client() as c, pytest.raises(ObjectNotFound):
        c.read_deployment_by_name("pump/dep_ok")  # not even the good one

    (project / "pumps" / "broken.yaml").unlink()
    (project / "pumps" / "twin.yaml").write_text(pump_spec("dep_ok"))
    (tmp_path / "elsewhere.yaml").write_text(pump_spec("dep_ok"))
    monkeypatch.chdir(project)  # the rest in this process: the same command, without start-up
    refusals = {
        ("deploy",): "pumps/ok.yaml and pumps/twin.yaml both name pump 'dep_ok'; a pump name is "
        "unique (it names the deployment, state and output)",
        ("deploy", str(tmp_path / "elsewhere.yaml")): f"{tmp_path / 'elsewhere.yaml'} is outside "
        f"the project folder {project}; a deployment runs in the project folder, so deploy specs "
        "that live there (e.g. pumps/NAME.yaml)",
        ("deploy", "pumps/ok.yaml", "--workdir", "opt/pumps"): "--workdir 'opt/pumps' is not an "
        "absolute path; give the project folder as the worker sees it, e.g. /opt/pumphouse",
        ("deploy", "pumps/ok.yaml", "--pool", " "): "--pool needs a work pool's name, e.g. "
        "--pool pumphouse",
        ("deploy", "pumps/ok.yaml", "--image", "acme/pumps:1"): "--image is for Docker and "
        "Kubernetes pools; work pool 'pumphouse' is of type process and runs flows on the "
        "worker's machine",
    }
    with client() as c:
        c.create_work_pool(WorkPoolCreate(name="dep-docker", type="docker"))
    refusals[("deploy", "pumps/ok.yaml", "--pool", "dep-docker")] = (
        "work pool 'dep-docker' is of type docker: its flow runs do not see this folder; pass "
        "--workdir with the project folder inside the image (and --image unless the pool names one)"
    )
    for args, message in refusals.items():
        result = CliRunner().invoke(app, list(args))
        assert isinstance(result.exception, UsageError), (args, result.output)
        assert str(result.exception) == message
    with client() as c, pytest.raises(ObjectNotFound):
        c.read_deployment_by_name("pump/dep_ok")

    # a container pool: the project folder in the image, and the image (not run here)
    args = ["deploy", "pumps/ok.yaml", "--pool", "dep-docker", "--workdir", "/opt/pumphouse"]
    result = CliRunner().invoke(app, [*args, "--image", "acme/pumps:1"])
    assert result.exit_code == 0, (result.exception, result.output)
    with client() as c:
        d = c.read_deployment_by_name("pump/dep_ok")
        assert (d.work_pool_name, d.job_variables) == ("dep-docker", {"image": "acme/pumps:1"})
        assert d.pull_steps == [{WORKDIR_STEP: {"directory": "/opt/pumphouse"}}]
        c.delete_deployment(d.id)


# ---------------------------------------------------------------- deployed, with a worker


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, prefect_server: str) -> Iterator[dict[str, Any]]:
    """A project with four pumps deployed by `pumphouse deploy`, and a process worker in it."""
    from prefect.exceptions import ObjectNotFound

    project = tmp_path_factory.mktemp("deployed")
    (project / "pumps").mkdir()
    records = {}
    for i, (name, schedule) in enumerate(PUMPS.items()):
        records[name] = write_orders(project / "in" / name, files=2, rows=60, seed=70 + i)
        (project / "pumps" / f"{name}.yaml").write_text(pump_spec(name, schedule))
    with client() as c:
        try:
            c.read_work_pool("pumphouse")
            pool_existed = True
        except ObjectNotFound:
            pool_existed = False
    deployed = pumphouse("deploy", cwd=project)
    assert deployed.returncode == 0, deployed.stderr
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    with worker("pumphouse", project, log):
        yield {
            "project": project,
            "records": records,
            "deployed": deployed,
            "pool_existed": pool_existed,
            "log": log,
        }


def test_deploy_creates_one_deployment_per_pump(site: dict[str, Any]) -> None:
    project, out = site["project"], site["deployed"].stdout
    lines = out.strip().splitlines()
    if not site["pool_existed"]:
        assert lines.pop(0) == "created work pool pumphouse (type process)"
    assert lines == [  # pumps/*.yaml, in order
        "deployed pump/dep_busy on pool pumphouse, no schedule: runs when triggered",
        "deployed pump/dep_dst on pool pumphouse, schedule 30 2 * * * (Europe/Berlin)",
        "deployed pump/dep_late on pool pumphouse, no schedule: runs when triggered",
        "deployed pump/dep_orders on pool pumphouse, schedule 0 6 1 1 * (Europe/Berlin)",
        f"runs in {project.resolve()}; start a worker there: prefect worker start --pool pumphouse",
    ]
    with client() as c:
        assert c.read_work_pool("pumphouse").type == "process"
        for name, schedule in PUMPS.items():
            d = c.read_deployment_by_name(f"pump/{name}")
            assert d.entrypoint == ENTRYPOINT
            assert d.parameters == {"spec_path": f"pumps/{name}.yaml"}
            assert d.work_pool_name == "pumphouse"
            assert d.pull_steps == [{WORKDIR_STEP: {"directory": str(project.resolve())}}]
            assert d.tags == ["pumphouse", f"pump:{name}"]
            assert d.global_concurrency_limit is not None and d.global_concurrency_limit.limit == 1
            assert d.concurrency_options is not None
            assert d.concurrency_options.collision_strategy == "ENQUEUE"
            assert d.enforce_parameter_schema is True
            assert "spec_path" in d.parameter_openapi_schema["properties"]
            kept = [(s.schedule.cron, s.schedule.timezone, s.active) for s in d.schedules]
            assert kept == ([(*schedule, True)] if schedule else [])
            assert c.read_global_concurrency_limit_by_name(prefect_key(name)).limit == 1
        first_id = c.read_deployment_by_name("pump/dep_orders").id

    # deploying again updates in place: the new schedule replaces the old one
    spec = project / "pumps" / "dep_orders.yaml"
    spec.write_text(pump_spec("dep_orders", ("0 7 1 1 *", BERLIN)))
    again = in_process("deploy", "pumps/dep_orders.yaml", cwd=project)
    assert again.returncode == 0, again.stderr
    assert (
        "deployed pump/dep_orders on pool pumphouse, schedule 0 7 1 1 * (Europe/Berlin)"
        in again.stdout
    )
    assert "created work pool" not in again.stdout
    with client() as c:
        d = c.read_deployment_by_name("pump/dep_orders")
    assert d.id == first_id
    assert [(s.schedule.cron, s.schedule.timezone) for s in d.schedules] == [("0 7 1 1 *", BERLIN)]


@pytest.mark.slow
def test_a_triggered_run_is_executed_by_the_worker_in_the_project_folder(
    site: dict[str, Any],
) -> None:
    project, records = site["project"], site["records"]["dep_orders"]
    with client() as c:
        d = c.read_deployment_by_name("pump/dep_orders")
        flow_run = c.create_flow_run_from_deployment(d.id)
    done = wait_for(flow_run.id, worker_log=site["log"])
    assert done.state.is_completed(), (done.state, site["log"].read_text()[-3000:])
    assert "pump:dep_orders" in done.tags
    want = expected(records)
    assert landed(str(project / "out" / "dep_orders")) == want  # relative paths: the project

    artifact = summary_of(flow_run.id, "dep_orders")
    markdown, meta = str(artifact.data), artifact.metadata_
    assert (meta["status"], meta["rows_read"]) == ("ok", str(len(records)))
    assert meta["rows_written"] == str(len(want))
    assert f"| rows written | {len(want)} |" in markdown
    assert f"| output | ./out/dep_orders (in {project.resolve()}) |" in markdown
    for step in ("plan", "stage", "load", "commit"):
        assert re.search(rf"^\| {step} \| \d+(\.\d+)? \|$", markdown, re.M), markdown

    # status asks Prefect when a server is configured, local state otherwise: the same run
    from_prefect = in_process("status", "pumps/dep_orders.yaml", cwd=project)
    assert from_prefect.returncode == 0, from_prefect.stderr
    assert "runs from Prefect at http://127.0.0.1:" in from_prefect.stdout
    cells = status_row(from_prefect.stdout, "dep_orders")
    assert cells[:6] == [
        "dep_orders", meta["started_at"], "ok", meta["rows_read"], meta["rows_written"],
        meta["rows_rejected"],
    ]  # fmt: skip
    assert (cells[6], cells[7], cells[8]) == (meta["hwm_after"], "-", "ok")
    local = pumphouse("status", "pumps/dep_orders.yaml", cwd=project, env={"PREFECT_API_URL": ""})
    assert "runs from local state (no Prefect server configured)" in local.stdout
    assert status_row(local.stdout, "dep_orders")[:9] == cells[:9]
    assert status_row(local.stdout, "dep_orders")[9] == "-"  # no next run known
    down = pumphouse(
        "status",
        "pumps/dep_orders.yaml",
        cwd=project,
        env={"PREFECT_API_URL": "http://127.0.0.1:9/api"},
    )
    assert down.returncode == 0
    assert down.stderr.strip() == (
        "warning: Prefect at http://127.0.0.1:9/api did not answer (ConnectError); "
        "showing runs from local state"
    )
    assert status_row(down.stdout, "dep_orders")[:9] == cells[:9]


@pytest.mark.slow
def test_missed_schedules_run_one_at_a_time_and_load_once(site: dict[str, Any]) -> None:
    """Two runs whose time passed while no worker ran (what a missed schedule leaves): the
    worker runs both, never side by side; the first loads everything, the second nothing."""
    from prefect.states import Scheduled

    project, records = site["project"], site["records"]["dep_late"]
    now = dt.datetime.now(dt.UTC)
    with client() as c:
        d = c.read_deployment_by_name("pump/dep_late")
        ids = [
            c.create_flow_run_from_deployment(
                d.id, state=Scheduled(scheduled_time=now - dt.timedelta(minutes=minutes))
            ).id
            for minutes in (30, 15)
        ]
    runs = sorted((wait_for(i, worker_log=site["log"]) for i in ids), key=lambda r: r.start_time)
    assert all(r.state.is_completed() for r in runs), [r.state for r in runs]
    first, second = runs
    assert first.end_time <= second.start_time  # one at a time
    with client() as c:  # held back by the deployment's concurrency limit, not by luck
        assert "AwaitingConcurrencySlot" in [s.name for s in c.read_flow_run_states(second.id)]
    read = [summary_of(r.id, "dep_late").metadata_["rows_read"] for r in runs]
    assert read == [str(len(records)), "0"]
    assert landed(str(project / "out" / "dep_late")) == expected(records)  # no row twice


@pytest.mark.slow
def test_a_run_that_finds_the_pump_busy_loads_nothing_and_says_why(site: dict[str, Any]) -> None:
    """Another flow run holds the pump's concurrency limit: a deployed run fails at once, or,
    told to wait (PUMPHOUSE_LOCK_WAIT_SECONDS), waits for it and then runs."""
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.concurrency.sync import concurrency

    project, records = site["project"], site["records"]["dep_busy"]
    state_dir = project / ".pumphouse" / "dep_busy"
    with client() as c:
        d = c.read_deployment_by_name("pump/dep_busy")
    with concurrency(prefect_key("dep_busy"), lease_duration=60, strict=True):
        with client() as c:
            refused_id = c.create_flow_run_from_deployment(d.id).id
        refused = wait_for(refused_id, worker_log=site["log"])
        assert refused.state.is_failed()
        why = (
            "pump 'dep_busy' is already running: another flow run holds Prefect's concurrency "
            "limit 'pump-dep-busy'; wait for that run to finish, then run again"
        )
        assert why in refused.state.message
        assert not (project / "out" / "dep_busy").exists()
        assert not (state_dir / "state.json").exists()
        assert f"**error:** {why}" in str(summary_of(refused_id, "dep_busy").data)
        status = in_process("status", "pumps/dep_busy.yaml", cwd=project)
        assert status_row(status.stdout, "dep_busy")[2].startswith(f"failed: {why}")

        with client() as c:
            patient_id = c.create_flow_run_from_deployment(
                d.id, job_variables={"env": {"PUMPHOUSE_LOCK_WAIT_SECONDS": "120"}}
            ).id
        # it takes the pump's lock (then asks for the limit, right away) before we let go
        taken_by_refused = (state_dir / "lock").read_text()
        wait_for(patient_id, lambda _: (state_dir / "lock").read_text() != taken_by_refused)
        time.sleep(5)
    patient = wait_for(patient_id, worker_log=site["log"])
    assert patient.state.is_completed(), patient.state
    assert landed(str(project / "out" / "dep_busy")) == expected(records)
    # the run's process sends its last logs as it exits, which can be after its final state
    held = r"holding Prefect's concurrency limit 'pump-dep-busy' after waiting \d+\.\d s"
    deadline = time.monotonic() + 30
    while True:
        with client() as c:
            logs = [
                log.message
                for log in c.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[patient_id])))
            ]
        if any(re.search(held, m) for m in logs) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert any(re.search(held, m) for m in logs), logs


def test_a_schedule_keeps_its_time_zone_across_dst(site: dict[str, Any]) -> None:
    """The server keeps cron and time zone; its scheduler's dates around the 2026 switches.

    Spring (29 March, 02:00 -> 03:00): a daily 02:30 run happens at 03:30. Autumn
    (25 October, 03:00 -> 02:00): it happens once, and quarter-hourly runs skip the repeated
    hour: a 75-minute gap, never a second run for the same wall-clock time. Either way the
    next run reads what is new by the files read and the high-water mark, not by the clock.
    """
    from prefect.server.schemas.schedules import CronSchedule

    with client() as c:
        (kept,) = c.read_deployment_by_name("pump/dep_dst").schedules
    assert (kept.schedule.cron, kept.schedule.timezone) == ("30 2 * * *", BERLIN)
    daily = CronSchedule(cron=kept.schedule.cron, timezone=kept.schedule.timezone)

    def dates(schedule: CronSchedule, start: dt.datetime, end: dt.datetime) -> list[Any]:
        return list(asyncio.run(schedule.get_dates(start=start, end=end)))

    berlin = ZoneInfo(BERLIN)
    spring = dates(
        daily, dt.datetime(2026, 3, 28, tzinfo=berlin), dt.datetime(2026, 3, 31, tzinfo=berlin)
    )
    assert [d.isoformat() for d in spring] == [
        "2026-03-28T02:30:00+01:00",
        "2026-03-29T03:30:00+02:00",
        "2026-03-30T02:30:00+02:00",
    ]
    autumn = dates(
        daily, dt.datetime(2026, 10, 24, tzinfo=berlin), dt.datetime(2026, 10, 27, tzinfo=berlin)
    )
    assert [d.isoformat() for d in autumn] == [
        "2026-10-24T02:30:00+02:00",
        "2026-10-25T02:30:00+02:00",
        "2026-10-26T02:30:00+01:00",
    ]
    quarterly = CronSchedule(cron="*/15 * * * *", timezone=BERLIN)
    utc = dates(
        quarterly,
        dt.datetime(2026, 10, 25, 0, tzinfo=dt.UTC),
        dt.datetime(2026, 10, 25, 2, 30, tzinfo=dt.UTC),
    )
    assert [d.astimezone(dt.UTC).strftime("%H:%M") for d in utc] == [
        "00:00", "00:15", "00:30", "00:45", "02:00", "02:15", "02:30",
    ]  # fmt: skip


@pytest.mark.slow
def test_prefect_deploy_all_creates_the_same_deployments(
    site: dict[str, Any], tmp_path: Path
) -> None:
    """prefect.yaml and `pumphouse deploy` agree, down to what the server stores."""
    from prefect.exceptions import ObjectNotFound

    project = tmp_path / "bundled"
    shutil.copytree(REPO / "pumps", project / "pumps")
    shutil.copy(REPO / "prefect.yaml", project / "prefect.yaml")
    names = [d["name"] for d in yaml.safe_load((REPO / "prefect.yaml").read_text())["deployments"]]

    def stored(name: str) -> dict[str, Any]:
        with client() as c:
            d = c.read_deployment_by_name(f"pump/{name}")
        seen = d.model_dump(
            mode="json",
            include={
                "name", "description", "entrypoint", "parameters", "tags", "work_pool_name",
                "pull_steps", "job_variables", "concurrency_options", "enforce_parameter_schema",
                "parameter_openapi_schema", "paused",
            },
        )  # fmt: skip
        seen["limit"] = d.global_concurrency_limit.limit if d.global_concurrency_limit else None
        seen["schedules"] = [(s.schedule.cron, s.schedule.timezone, s.active) for s in d.schedules]
        return seen

    try:
        ours = in_process("deploy", cwd=project)
        assert ours.returncode == 0, ours.stderr
        by_pumphouse = {name: stored(name) for name in names}
        theirs = subprocess.run(
            [PREFECT, "--no-prompt", "deploy", "--all"],
            cwd=project,
            env=os.environ.copy(),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert theirs.returncode == 0, theirs.stdout + theirs.stderr
        assert {name: stored(name) for name in names} == by_pumphouse
        where = [{WORKDIR_STEP: {"directory": str(project.resolve())}}]
        assert all(d["pull_steps"] == where for d in by_pumphouse.values())
    finally:
        with client() as c:  # their schedules must not run the bundled pumps on the worker
            for name in names:
                with contextlib.suppress(ObjectNotFound):
                    c.delete_deployment(c.read_deployment_by_name(f"pump/{name}").id)
