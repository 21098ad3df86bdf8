"""A Prefect server for the bench's runs, started once on a free loopback port and stopped at
the end, as the tests do: pumphouse's flow time is measured with the server already up."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from flows.local_server import healthy


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def prefect_server(venv: Path) -> Iterator[str]:
    """Yield the API URL of a fresh server (its own PREFECT_HOME), stopped afterwards."""
    home = tempfile.mkdtemp(prefix="bench-prefect-")
    port = _free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": home,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_UI_ENABLED": "false",
        "PREFECT_LOGGING_SERVER_LEVEL": "WARNING",
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
        deadline = time.monotonic() + 120
        while not healthy(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"prefect server did not start; see {home}/server.log")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        shutil.rmtree(home, ignore_errors=True)
