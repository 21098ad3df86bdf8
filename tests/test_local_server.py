"""With no Prefect server configured, the first `pumphouse run` starts a local Prefect server
in the background and later runs reuse it; every run is a flow run recorded on it; it stops
by itself once no run has used it for a while."""

from __future__ import annotations

import fcntl
import json
import os
import re
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from flows.local_server import USE_FILE
from tests._http_servers import Answer, App, Seen, serve
from tests._prefect_server import seed, stop_local
from tests.conftest import PUMPHOUSE
from tests.data import spec_text, write_orders

# A first run starts its server on Prefect's port 4200 when that is free: two such runs at
# once on two xdist workers would race for it. These tests (and test_cli's embedded-default
# one) run on one worker, one after another.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("first_local_server")]


def _run(project: Path, home: Path, idle: int = 15) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["PREFECT_HOME"] = str(home)
    env["PUMPHOUSE_PREFECT_SERVER_IDLE"] = str(idle)
    return subprocess.run(
        [PUMPHOUSE, "run", "pumps/orders.yaml", "--json"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_first_run_starts_a_server_that_later_runs_reuse_then_it_stops(
    tmp_path: Path, migrated_database: Path
) -> None:
    project, home = tmp_path / "project", tmp_path / "prefect-home"
    seed(home, migrated_database)  # its migrations are the terminal test's (below)
    (project / "pumps").mkdir(parents=True)
    write_orders(project / "in", files=1, rows=50)
    (project / "pumps" / "orders.yaml").write_text(spec_text())
    try:
        # Held as a run holds it: the server cannot go idle between the two runs, however
        # slow the machine; once let go, it stops after 4 s without a run.
        with (home / USE_FILE).open("a+") as use:
            fcntl.flock(use, fcntl.LOCK_SH)
            first = _run(project, home, idle=4)
            assert first.returncode == 0, first.stderr
            assert "starting a local Prefect server at http://127.0.0.1:" in first.stderr
            record = json.loads((home / "pumphouse-server.json").read_text())
            assert (home / "server.pid").read_text().strip() == str(record["pid"])
            write_orders(project / "in", files=1, rows=50, seed=2, day=1)  # a new file to read
            second = _run(project, home, idle=4)
            assert second.returncode == 0, second.stderr
            assert "starting a local Prefect server" not in second.stderr
            assert json.loads(second.stdout)["files"] == 1
        runs = httpx.post(f"{record['url']}/flow_runs/filter", json={}, timeout=30).json()
        assert sorted(r["state_type"] for r in runs) == ["COMPLETED", "COMPLETED"]
        assert {r["name"] for r in runs} == {"pumps/orders.yaml"}
        deadline = time.monotonic() + 90  # idle for 4 s: the server and its keeper stop
        while (home / "server.pid").exists() and time.monotonic() < deadline:
            time.sleep(1)
        assert not (home / "server.pid").exists() and not (home / "pumphouse-server.json").exists()
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"{record['url']}/health", timeout=5)
    finally:
        stop_local(home)
    assert not (home / "server.pid").exists()


def test_a_first_run_on_a_terminal_names_the_wait_for_the_server_with_elapsed_seconds(
    tmp_path: Path,
) -> None:
    """The first run waits for the local server to start (its database made: tens of seconds
    on a busy machine); the progress bar says so, with the seconds spent, then pumps. The one
    first start here from an empty PREFECT_HOME: the others start from a migrated database."""
    from tests.test_command import on_a_terminal

    project, home = tmp_path / "project", tmp_path / "prefect-home"
    (project / "pumps").mkdir(parents=True)
    write_orders(project / "in", files=1, rows=50)
    (project / "pumps" / "orders.yaml").write_text(spec_text())
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(PREFECT_HOME=str(home), COLUMNS="100", LINES="24", TERM="xterm")
    try:
        shown = re.sub(
            r"\x1b\[[0-9;?]*[A-Za-z]",
            "",
            on_a_terminal("run", "pumps/orders.yaml", cwd=project, env=env),
        )
    finally:
        stop_local(home)
    assert "starting a local Prefect server at http://127.0.0.1:" in shown
    waits = re.findall(r"first run: starting Prefect's server .*? (\d+:\d\d:\d\d)", shown)
    assert waits, shown[-3000:]
    assert "pumping" in shown and "pump orders: ok" in shown


class _Stranger(App):
    """Something else on the port a gone server's record names: healthy, from another home."""

    def answer(self, req: Seen) -> Answer:
        if req.path == "/api/health":
            return Answer.json(True)
        if req.path == "/api/admin/settings":
            return Answer.json({"home": "/a/home/of/its/own"})
        return Answer(404, b"not here")


def test_a_stranger_on_the_recorded_port_is_not_adopted(
    tmp_path: Path, migrated_database: Path
) -> None:
    # The server this home started is gone (killed, the machine restarted) and another
    # answers /api/health where it was: the run starts this home's own server instead.
    project, home = tmp_path / "project", tmp_path / "prefect-home"
    (project / "pumps").mkdir(parents=True)
    seed(home, migrated_database)
    write_orders(project / "in", files=1, rows=20)
    (project / "pumps" / "orders.yaml").write_text(spec_text())
    stranger = _Stranger()
    try:
        with serve(stranger) as base:
            record = {"url": f"{base}/api", "pid": 0}
            (home / "pumphouse-server.json").write_text(json.dumps(record))
            done = _run(project, home)
        assert done.returncode == 0, done.stderr
        assert "starting a local Prefect server at http://127.0.0.1:" in done.stderr
        assert not [r.path for r in stranger.seen if r.path.startswith("/api/flow")]
        ours = json.loads((home / "pumphouse-server.json").read_text())["url"]
        assert ours != record["url"]
        runs = httpx.post(f"{ours}/flow_runs/filter", json={}, timeout=30).json()
        assert [r["state_type"] for r in runs] == ["COMPLETED"]
    finally:
        stop_local(home)
