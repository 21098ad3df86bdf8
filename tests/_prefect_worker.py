"""A real Prefect process worker for tests, and waiting for flow runs it executes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from uuid import UUID

from tests._prefect_server import stop

PREFECT = str(Path(sys.executable).with_name("prefect"))


@contextmanager
def worker(pool: str, cwd: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`prefect worker start --pool POOL --type process`, started in `cwd`, polling every second."""
    env = {**os.environ, "PREFECT_WORKER_QUERY_SECONDS": "1"}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [PREFECT, "worker", "start", "--pool", pool, "--type", "process"],
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            yield proc
        finally:
            stop(proc, timeout=30)


def wait_for(
    flow_run_id: UUID, done: Any = None, timeout: float = 240, worker_log: Path | None = None
) -> Any:
    """The flow run once `done(flow_run)` holds (default: its state is final)."""
    from prefect.client.orchestration import get_client

    def final(run: Any) -> bool:
        return run.state is not None and run.state.is_final()

    check = done or final
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            run = client.read_flow_run(flow_run_id)
            if check(run):
                return run
            if time.monotonic() > deadline:
                tail = worker_log.read_text()[-3000:] if worker_log else ""
                raise AssertionError(f"flow run {flow_run_id} is still {run.state}\n{tail}")
            time.sleep(0.5)
