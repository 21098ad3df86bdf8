"""Shared fixtures: one real `prefect server` on loopback for the session, a fresh project folder per test.

The session's server (`prefect_server`, one per xdist worker) records only what the API
writes itself (flow runs, logs, artifacts, deployments): its services cost about as much CPU
as the flows it records, and few tests read what they keep. The tests that read task runs or
events (test_dask, test_cli's heartbeats) ask for `prefect_server_events` instead, a second
server that also keeps events and task runs, which one worker starts for all of them. A
per-test server would be simpler to reason about but costs a server start each; a
process-wide switch is not possible, as Prefect reads its settings once a process, hence the
events server's pumps run in subprocesses.
"""

from __future__ import annotations

import contextlib
import gc
import io
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import _forked as forked
from tests._prefect_server import DATABASE, QUIET, RECORDING, free_port, snapshot
from tests._prefect_server import prefect_server as server_of

REPO = Path(__file__).resolve().parent.parent
PUMPHOUSE = forked.PUMPHOUSE
VENV = Path(sys.executable).parent.parent


# Prefect reads its settings when it is first imported, which may be while pytest
# collects a test module; so the server's address is fixed here, before any import,
# and the `prefect_server` fixture starts the server there. A test that runs a flow
# without that fixture fails to connect instead of quietly starting another server.
PREFECT_HOME = tempfile.mkdtemp(prefix="prefect-home-")
PREFECT_PORT = free_port()
os.environ.update(
    {
        "PREFECT_API_URL": f"http://127.0.0.1:{PREFECT_PORT}/api",
        "PREFECT_HOME": PREFECT_HOME,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "WARNING",
        "DO_NOT_TRACK": "1",
    }
)
forked.freeze(dict(os.environ))  # what forked `pumphouse` commands start from


# How hard the property tests search, by HYPOTHESIS_PROFILE: `ci` (the default, `make test`)
# runs each property's own max_examples, `dev` (`make check`) a quarter of them, `deep` ten
# times as many (a longer search, e.g. before a release).
HYPOTHESIS_PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
SCALE = {"dev": 0.25, "ci": 1, "deep": 10}
assert HYPOTHESIS_PROFILE in SCALE, f"HYPOTHESIS_PROFILE is one of {', '.join(SCALE)}"


def examples(n: int) -> int:
    """A property's max_examples under the profile: `n` as written for `ci`."""
    return max(3, round(n * SCALE[HYPOTHESIS_PROFILE]))


# Module fixtures whose tests run on one xdist worker, in file order (`--dist loadgroup`):
# test_cli's `pumped` (its last test changes the project), test_deploy's `site` (a deployed
# project and a Prefect worker), test_dask's `world` (moto and a LocalCluster of 2 processes,
# and its `reference` run): costly to build twice. The tests of `prefect_server_events`, of every
# module, are one group too, so that one worker starts that server; test_dask's are in it with
# the rest of `world`'s tests. One group per test: the first that applies.
ONE_WORKER = {
    "prefect_server_events": "prefect_server_events",
    "world": "prefect_server_events",
    "pumped": "test_cli:pumped",
    "site": "test_deploy:site",
}


# Before xdist's own hook, which reads the groups.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that uses a Prefect server is marked `server` (`make check` leaves it out);
    the tests of a ONE_WORKER fixture are that fixture's xdist group."""
    for item in items:
        names = getattr(item, "fixturenames", ())
        if "prefect_server" in names or "prefect_server_events" in names:
            item.add_marker(pytest.mark.server)
        group = next((g for name, g in ONE_WORKER.items() if name in names), None)
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))


# A deployed run held back by its deployment's concurrency limit is tried again this soon
# (Prefect's default: 30 s), so that test_deploy's second missed run does not idle.
PROMPT = {"PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS": "2"}


@pytest.fixture(scope="session")
def _migrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the session server's database is copied as its start left it."""
    return tmp_path_factory.mktemp("prefect-db") / DATABASE


@pytest.fixture(scope="session")
def prefect_server(_migrated: Path) -> Iterator[str]:
    """A real Prefect server, started once for the session by the first test that asks for it.

    In-process flows and CLI subprocesses of the tests record there. It runs without the
    services that only some tests read from (tests/_prefect_server.py QUIET): it keeps no
    task runs and no events, and schedules no runs. A test that reads those asks for
    `prefect_server_events`.
    """
    with server_of(VENV, PREFECT_HOME, PREFECT_PORT, {**QUIET, **PROMPT}) as url:
        snapshot(Path(PREFECT_HOME), _migrated)  # before any test writes to it
        yield url
        from prefect.logging.handlers import APILogWorker

        APILogWorker.drain_all(timeout=5)  # ship the last log lines before the server goes away


@pytest.fixture(scope="session", autouse=True)
def _heartbeat_only_if_configured() -> Iterator[None]:
    """In-process flows (`pump(...)`) as `pumphouse run` runs them: no flow-run heartbeat
    unless configured. With Prefect's default, each flow's end waits for the heartbeat
    thread's next whole second (~0.65 s a run)."""
    from flows.orchestration import heartbeat_only_if_configured

    with heartbeat_only_if_configured():
        yield


@pytest.fixture(scope="session")
def migrated_database(prefect_server: str, _migrated: Path) -> Path:
    """A copy of the session server's database as its start left it (every migration
    applied, nothing else): a Prefect server or a `pumphouse run` whose PREFECT_HOME starts
    with it skips the migrations (tests/_prefect_server.py `seed`)."""
    return _migrated


@pytest.fixture(scope="session")
def _events_server(migrated_database: Path) -> Iterator[str]:
    home = tempfile.mkdtemp(prefix="prefect-home-events-")
    with server_of(VENV, home, settings=RECORDING, database=migrated_database) as url:
        yield url


@pytest.fixture
def prefect_server_events(_events_server: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A second real Prefect server, which also keeps events and the task runs made from
    them (tests/_prefect_server.py RECORDING), for the test's CLI subprocesses and its own
    Prefect client calls; its URL.

    Prefect's settings are read once a process, so the session server stays this process's:
    the test's subprocesses get this one's address in their environment (PREFECT_API_URL),
    and this process's client calls for the test's length (Prefect's temporary_settings).
    Its pumps run with run_cli: an in-process flow's log and event workers outlive the test.
    The tests that use it are one xdist group, so that one worker starts it (see above).
    """
    from prefect.settings import PREFECT_API_URL, temporary_settings

    monkeypatch.setenv("PREFECT_API_URL", _events_server)
    with temporary_settings(updates={PREFECT_API_URL: _events_server}):
        yield _events_server


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh project folder as the working directory (state, output and specs live here)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pumps").mkdir()
    return tmp_path


def run_cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run the `pumphouse` command in a process of its own: forked from this test process's
    pre-imported forkserver (tests/_forked.py: the same entry point, argv, folder,
    environment, exit code and kill -9, without seconds of imports), or the real binary
    when the call changes what the libraries read at import (PREFECT_*, -v, locale).

    Which to use: run_in_process for what the command prints and leaves behind; run_cli
    for a process of its own (signals, PUMPHOUSE_FAULT's kill -9, PUMPHOUSE_* settings);
    run_binary where the installed binary itself is the point (its imports, start-up,
    --help and Prefect's own console output, the embedded Prefect server)."""
    whole = {**os.environ, **(env or {})}
    if not forked.forkable(args, whole):
        return run_binary(*args, cwd=cwd, env=env, timeout=timeout)
    return forked.completed(args, cwd, whole, timeout)


def popen_cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> forked.Forked | subprocess.Popen[str]:
    """`pumphouse ARGS` started as run_cli starts it, not waited for: a Popen (or one in
    its shape) with text stdout and stderr captured."""
    whole = {**os.environ, **(env or {})}
    if not forked.forkable(args, whole):
        return subprocess.Popen(
            [PUMPHOUSE, *args],
            cwd=cwd,
            env=whole,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    return forked.Forked(args, cwd, whole)


def run_binary(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run the installed `pumphouse` binary in a fresh subprocess."""
    return subprocess.run(
        [PUMPHOUSE, *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_python(
    code: str, cwd: Path, env: dict[str, str], timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """`code` in a fresh Python of this venv, in `cwd`, with `env` as its environment and
    the repository on its path: for what only a new process shows (its first imports, a
    module's state before anything ran)."""
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        env={**env, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_in_process(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`pumphouse ARGS` through the command's own main() in this process, in `cwd`, with `env`
    as the whole environment when given: its exit code and what it printed, as run_cli gives
    them. For a test of what the command prints, exits with and leaves behind, where a
    subprocess would prove nothing more and only add seconds of imports (a `run` records on
    the `prefect_server` fixture's server). run_cli where the process is the point: signals,
    kill -9 (PUMPHOUSE_FAULT); run_binary for the real binary's imports, Prefect's own
    console output. Settings (PUMPHOUSE_*, PREFECT_*) are read once a process: a call that
    changes them needs run_cli."""
    from flows.cli import main

    if env is not None:
        changed = sorted(
            k
            for k in {*os.environ, *env}
            if k.startswith(("PUMPHOUSE_", "PREFECT_")) and env.get(k) != os.environ.get(k)
        )
        assert not changed, f"{changed} need a process of their own: use run_cli"

    saved_env, saved_argv, saved_cwd = dict(os.environ), sys.argv, os.getcwd()
    saved_sigterm = signal.getsignal(signal.SIGTERM)  # `run` sets its own
    out, err = io.StringIO(), io.StringIO()
    code: int | str | None = 0
    try:
        if env is not None:
            os.environ.clear()
            os.environ.update(env)
        sys.argv = ["pumphouse", *args]
        os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main()
    except SystemExit as e:
        code = e.code
    finally:
        signal.signal(signal.SIGTERM, saved_sigterm)
        gc.unfreeze()  # `run` freezes what its imports made: for its process's life, not ours
        os.chdir(saved_cwd)
        sys.argv = saved_argv
        os.environ.clear()
        os.environ.update(saved_env)
    assert isinstance(code, int | None), code
    return subprocess.CompletedProcess(
        [PUMPHOUSE, *args], code or 0, out.getvalue(), err.getvalue()
    )
