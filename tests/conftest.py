"""Shared fixtures: one real `prefect server` on loopback for the session, a fresh project folder per test."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._prefect_server import free_port
from tests._prefect_server import prefect_server as server_of

REPO = Path(__file__).resolve().parent.parent
PUMPHOUSE = str(Path(sys.executable).with_name("pumphouse"))


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


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[str]:
    """A real Prefect server, started once for the session by the first test that asks for it.

    In-process flows and CLI subprocesses of the tests record there.
    """
    with server_of(Path(sys.executable).parent.parent, PREFECT_HOME, PREFECT_PORT) as url:
        yield url
        from prefect.logging.handlers import APILogWorker

        APILogWorker.drain_all(timeout=5)  # ship the last log lines before the server goes away


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh project folder as the working directory (state, output and specs live here)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pumps").mkdir()
    return tmp_path


def run_cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run the real `pumphouse` command in a subprocess."""
    return subprocess.run(
        [PUMPHOUSE, *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
