"""A secret named in a spec never reaches run history, state, artifacts or Prefect's logs."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from schemas.errors import PumpError

pytestmark = pytest.mark.usefixtures("prefect_server")

SECRET = "pump-s3cr3t-4711"
PAGE = 200
SPEC = """\
name: leaky
source:
  type: files
  url: s3://bucket/exports/
  format: ndjson
  storage_options:
    key: "${env:PUMP_SECRET}"
    secret: "${env:PUMP_SECRET}"
    client_kwargs: {endpoint_url: "http://127.0.0.1:9/${env:PUMP_SECRET}"}
    config_kwargs: {retries: {max_attempts: 1}, connect_timeout: 1}
    skip_instance_cache: true
sink: {type: parquet, url: ./out/leaky}
"""


async def _prefect_text() -> str:
    """Every log, artifact and flow run on the server (the session's, other tests' included):
    read page by page, since a read returns one page of the oldest first."""
    from prefect.client.orchestration import get_client

    async def every(read: Callable[..., Awaitable[list[Any]]]) -> list[Any]:
        found: list[Any] = []
        while page := await read(limit=PAGE, offset=len(found)):
            found += page
        return found

    async with get_client() as client:
        logs = await every(client.read_logs)
        artifacts = await every(client.read_artifacts)
        runs = await every(client.read_flow_runs)
    return "\n".join(
        [
            *(log.message for log in logs),
            *(str(a.data) + str(a.description) for a in artifacts),
            *(f"{r.name} {r.parameters} {r.state.message if r.state else ''}" for r in runs),
        ]
    )


@pytest.mark.reliability(
    "secrets",
    "a known secret in storage_options and a failing run",
    "zero hits of the secret in state, run history, artifacts and Prefect logs",
)
def test_a_failing_run_leaks_no_secret(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PUMP_SECRET", SECRET)
    (project / "pumps" / "leaky.yaml").write_text(SPEC)
    from flows.pump import pump

    with pytest.raises(PumpError) as failure:
        pump(spec_path="pumps/leaky.yaml")
    assert "***" in str(failure.value) and SECRET not in str(failure.value)
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=10)
    written = [p.read_text(errors="replace") for p in project.rglob("*") if p.is_file()]
    assert any('"status": "failed"' in text for text in written)  # the failure was recorded
    assert not [text for text in written if SECRET in text]
    prefect_text = asyncio.run(_prefect_text())
    assert "leaky" in prefect_text and SECRET not in prefect_text


@pytest.mark.reliability(
    "secrets",
    "a secret in the sink's URL (a webhook path) and a run that succeeds",
    "the run history and state keep the URL masked; the summary shows it masked",
)
def test_a_secret_in_the_sink_url_stays_out_of_the_run_history(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.data import spec_text, write_orders

    monkeypatch.setenv("HOOK_PATH", "T00/B00/hook-s3cr3t-0815")
    write_orders(project / "in", files=1, rows=20)
    text = spec_text().replace("url: ./out/orders", 'url: "./out/${env:HOOK_PATH}"')
    (project / "pumps" / "orders.yaml").write_text(text)
    from flows.pump import pump

    summary = pump(spec_path="pumps/orders.yaml")
    assert (summary["status"], summary["output"]) == ("ok", "./out/***")
    assert (project / "out/T00/B00/hook-s3cr3t-0815/data").is_dir()  # the real path was used
    history = (project / ".pumphouse/orders/runs.jsonl").read_text()
    assert '"output": "./out/***"' in history
    for path in (project / ".pumphouse").rglob("*"):
        if path.is_file() and path.suffix != ".parquet":
            assert "hook-s3cr3t-0815" not in path.read_text(errors="replace"), path
