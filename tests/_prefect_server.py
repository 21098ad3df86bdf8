"""A Prefect server of its own, on a loopback port, stopped (and its PREFECT_HOME removed) at
the end: the tests' session (each xdist worker) runs its flows against one (tests/conftest.py),
and the bench measures pumphouse's flow time with one already up (bench imports it from here;
the tests never import bench/)."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from flows.local_server import serves


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# The server's services that only a few tests need, off: the API itself writes flow runs,
# logs, artifacts, deployments and work pools, but task runs are written by the task-run
# recorder (from the runs' events), events by the event persister, a schedule's runs by the
# scheduler; the rest is housekeeping on a timer (late runs, leases, workers' health). On a
# small machine the CPU they take is the tests'.
QUIET = {
    f"PREFECT_SERVER_SERVICES_{name}_ENABLED": "false"
    for name in (
        "TASK_RUN_RECORDER",
        "EVENT_PERSISTER",
        "TRIGGERS",
        "SCHEDULER",
        "LATE_RUNS",
        "FOREMAN",
        "PAUSE_EXPIRATIONS",
        "CANCELLATION_CLEANUP",
        "REPOSSESSOR",
        "CLEANUP_RECONCILER",
    )
}

# QUIET, but events and the task runs made from them are kept, for the tests that read them;
# events are written within half a second (Prefect's default: 5 s), so those tests wait less.
# (The task-run recorder writes each at once; a flush interval under its default keeps a
# core busy while it idles.)
RECORDING = {
    **QUIET,
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_ENABLED": "true",
    "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_ENABLED": "true",
    "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_FLUSH_INTERVAL": "0.5",
}


@contextmanager
def prefect_server(
    venv: Path,
    home: str | None = None,
    port: int | None = None,
    settings: Mapping[str, str] | None = None,
    database: Path | None = None,
) -> Iterator[str]:
    """Yield the API URL of a fresh server of `venv`'s Prefect: PREFECT_HOME `home` (a new
    temporary folder by default), `port` (a free one by default), Prefect `settings` (e.g.
    QUIET) over its defaults, starting from a copy of `database` (see `snapshot`) if given."""
    home = home or tempfile.mkdtemp(prefix="bench-prefect-")
    port = port or free_port()
    if database is not None:
        seed(Path(home), database)
    env = {
        **os.environ,
        "PREFECT_HOME": home,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_UI_ENABLED": "false",
        "PREFECT_LOGGING_SERVER_LEVEL": "WARNING",
        **(settings or {}),
    }
    env.pop("PREFECT_API_URL", None)
    log = open(os.path.join(home, "server.log"), "wb")  # noqa: SIM115
    argv = [
        str(venv / "bin" / "prefect"),
        "server",
        "start",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/api"
    try:
        # A bound on a hang, not on speed: on a machine busy with other work a first start
        # (its database migrated) has taken minutes.
        deadline = time.monotonic() + 300
        # Our own server (its settings name `home`), not a neighbour's that took the port.
        while not serves(url, Path(home)):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"prefect server did not start; see {home}/server.log")
            time.sleep(0.3)
        yield url
    finally:
        stop(proc, timeout=20)
        log.close()
        shutil.rmtree(home, ignore_errors=True)


def stop(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM, then SIGKILL if it has not ended within `timeout` seconds."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# Where Prefect keeps its SQLite database by default.
DATABASE = "prefect.db"


def snapshot(home: Path, to: Path) -> None:
    """A consistent copy of the database of the server running from `home` (SQLite's online
    backup), taken while it holds only what its start made: every migration applied. A
    server started from a copy skips the migrations, about half of a first start's CPU."""
    with (
        contextlib.closing(sqlite3.connect(home / DATABASE)) as live,
        contextlib.closing(sqlite3.connect(to)) as copy,
    ):
        live.backup(copy)


def seed(home: Path, database: Path) -> None:
    """Put a copy of `database` (see `snapshot`) where a Prefect server from `home` finds it."""
    home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(database, home / DATABASE)


def stop_local(home: Path) -> None:
    """`prefect server stop` for the local server a `pumphouse run` started from `home`."""
    prefect = str(Path(sys.executable).with_name("prefect"))
    env = {**os.environ, "PREFECT_HOME": str(home)}
    subprocess.run([prefect, "server", "stop"], env=env, capture_output=True, timeout=120)
