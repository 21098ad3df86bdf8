"""A secret named in a spec never reaches run history, state, artifacts or Prefect's logs."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import duckdb
import pytest
from prefect.logging.handlers import APILogWorker

from schemas.errors import PumpError
from tests._http_servers import EchoAuth, Files, serve
from tests.conftest import PREFECT_HOME, run_cli

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


# ---------------------------------------------------------------- every form, every byte

PATH_TOKEN = "tok-Pa7h-2718281828"  # in a files source's URL path
USER_PASS = "pw-Us3r-1414213562"  # in its user:password@, as Basic auth (aiohttp: no '\' there)
ODD_PASS = 'p\\a"ss-wörd-1732'  # a backslash, a quote, a non-ASCII char (httpx takes it)


def forms_of(secret: str, user: str | None = None) -> set[bytes]:
    """Every form a secret may take on the way out: as it is, percent-encoded (quote and
    quote_plus), escaped as repr() and JSON print it, and with `user` the base64 of
    `user:secret` that Basic auth sends."""
    found = {secret, quote(secret, safe=""), quote(secret), quote_plus(secret)}
    found |= {repr(secret)[1:-1], json.dumps(secret)[1:-1]}
    found |= {json.dumps(secret, ensure_ascii=False)[1:-1]}
    if user is not None:
        found.add(base64.b64encode(f"{user}:{secret}".encode()).decode())
    return {f.encode() for f in found}


def leaks(forms: set[bytes], *texts: str) -> list[str]:
    """Where any of `forms` is: in `texts`, in every file of the project (the working
    directory: output, state, staging, rejected) or of the Prefect server's home (its
    database, logs and storage)."""
    found = [
        f"output {i}" for i, text in enumerate(texts) if any(f in text.encode() for f in forms)
    ]
    for folder in (Path.cwd(), Path(PREFECT_HOME)):
        for path in folder.rglob("*"):
            if path.is_file() and any(f in path.read_bytes() for f in forms):
                found.append(str(path))
    return found


@pytest.mark.reliability(
    "secrets",
    "secrets in a files source's URL: one in the path, one as user:password@ (Basic auth); "
    "a run killed after staging (the run open), then the run that finishes it",
    "the file is read; state knows it by its path below the source URL; the manifest and the "
    "`_source` of staged and rejected rows keep the URL as the spec writes it (`${env:NAME}`); no form of either secret (raw, percent-encoded, "
    "repr/JSON-escaped, Basic auth's base64) in any byte of the project, the output or the "
    "Prefect server's database",
)
def test_a_secret_in_a_files_source_url_is_stored_as_its_reference(project: Path) -> None:
    from tests.data import expected, landed, spec_text, write_orders

    records = write_orders(project / "data", files=1, rows=300)
    (only,) = (project / "data").iterdir()
    body = only.read_bytes()
    shutil.rmtree(project / "data")
    app = Files({f"/{PATH_TOKEN}/orders.ndjson": body}, user="reader", password=USER_PASS)
    env = {"PATH_TOKEN": PATH_TOKEN, "USER_PASS": USER_PASS}
    with serve(app) as base:
        host = base.removeprefix("http://")
        written = f"http://reader:${{env:USER_PASS}}@{host}/${{env:PATH_TOKEN}}/orders.ndjson"
        (project / "pumps" / "orders.yaml").write_text(spec_text(src=f'"{written}"'))
        killed = run_cli(
            "run", "pumps/orders.yaml", cwd=project, env={**env, "PUMPHOUSE_FAULT": "staged"}
        )
        assert killed.returncode < 0  # killed with the run open, its files staged
        manifest = json.loads((project / ".pumphouse/orders/manifest.json").read_text())
        assert [i["url"] for i in manifest["inputs"]] == [written]
        staged = project.glob(".pumphouse/orders/**/*.parquet")
        assert {s for f in staged for s in _column(f, "_source")} == {written}
        done = run_cli("run", "pumps/orders.yaml", "--json", cwd=project, env=env)
    assert json.loads(done.stdout)["status"] == "ok", done.stderr
    assert landed("out/orders") == expected(records)
    assert {s.path for s in app.seen} == {f"/{PATH_TOKEN}/orders.ndjson"}  # resolved at use
    # state knows the file by its path below the source URL, which holds no secret
    assert list(json.loads((project / ".pumphouse/orders/state.json").read_text())["files"]) == [
        "orders.ndjson"
    ]
    assert set(_column("out/orders/rejected/*.parquet", "_source")) == {written}
    history = run_cli("status", "pumps/orders.yaml", cwd=project, env=env)
    forms = forms_of(PATH_TOKEN) | forms_of(USER_PASS, user="reader")
    APILogWorker.drain_all(timeout=10)
    assert not leaks(forms, killed.stdout, killed.stderr, done.stdout, done.stderr, history.stdout)
    assert not leaks(forms, asyncio.run(_prefect_text()))


@pytest.mark.reliability(
    "secrets",
    "an http source with user:password@ in its URL (a password with a backslash, a quote and "
    "a non-ASCII char), killed with the run open, whose API answers 401 echoing the "
    "Authorization header back",
    "exit 1 with the 401 and the body masked; no form of the password (raw, percent-encoded, "
    "repr/JSON-escaped, Basic auth's base64) in stderr, --json, run history, state, the "
    "manifest of the open run (which keeps `${env:NAME}`) or the Prefect server's states, "
    "logs and artifacts",
)
def test_basic_auth_from_a_url_stays_masked_when_a_401_echoes_it(project: Path) -> None:
    from tests._http_servers import api_spec

    app, env = EchoAuth(), {"ODD_PASS": ODD_PASS}
    with serve(app) as base:
        host = base.removeprefix("http://")
        spec = api_spec(f"http://api-user:${{env:ODD_PASS}}@{host}", 10, "  retries: 0\n")
        (project / "pumps" / "orders.yaml").write_text(spec)
        killed = run_cli(
            "run", "pumps/orders.yaml", cwd=project, env={**env, "PUMPHOUSE_FAULT": "planned"}
        )
        assert killed.returncode < 0  # killed with the run open
        manifest = json.loads((project / ".pumphouse/orders/manifest.json").read_text())
        assert manifest["inputs"][0]["url"] == f"http://api-user:${{env:ODD_PASS}}@{host}/v1/orders"
        failed = run_cli("run", "pumps/orders.yaml", "--json", cwd=project, env=env)
    basic = base64.b64encode(f"api-user:{ODD_PASS}".encode()).decode()
    assert app.seen[0].headers["authorization"] == f"Basic {basic}"  # it was sent, and echoed
    assert failed.returncode == 1
    assert json.loads(failed.stdout)["status"] == "failed"
    assert (
        "failed with HTTP 401" in failed.stderr and '"authorization": "Basic ***"' in failed.stderr
    )
    assert (project / ".pumphouse/orders/runs.jsonl").exists()
    history = run_cli("status", "pumps/orders.yaml", cwd=project, env=env)
    APILogWorker.drain_all(timeout=10)
    prefect_text = asyncio.run(_prefect_text())
    assert "failed with HTTP 401" in prefect_text  # the failure reached Prefect
    assert leaks({b"failed with HTTP 401"})  # and its database, which `leaks` reads
    forms = forms_of(ODD_PASS, user="api-user")
    outputs = (killed.stdout, killed.stderr, failed.stdout, failed.stderr, history.stdout)
    assert not leaks(forms, *outputs, prefect_text)


@pytest.mark.reliability(
    "secrets",
    "`validate` of a spec whose message quotes a value holding a secret with a backslash, a "
    "quote and a non-ASCII char (printed in its repr() form)",
    "exit 2 with the problem; no form of the secret in the output",
)
def test_validate_masks_a_secret_in_its_repr_form(project: Path) -> None:
    spec = 'name: leaky\nsource: {type: files, url: "./in/${env:ODD_PASS}"}\nsink: {type: parquet, url: ./out}\n'
    (project / "pumps" / "leaky.yaml").write_text(spec)
    done = run_cli("validate", "pumps/leaky.yaml", cwd=project, env={"ODD_PASS": ODD_PASS})
    assert done.returncode == 2
    assert "source.format" in done.stderr and "./in/***" in done.stderr
    assert not leaks(forms_of(ODD_PASS), done.stdout, done.stderr)


def _column(parquet: str | Path, name: str) -> list[str]:
    return [r[0] for r in duckdb.sql(f"SELECT {name} FROM read_parquet('{parquet}')").fetchall()]


@pytest.mark.parametrize("secret", [ODD_PASS, "k+y/w=th%ch&rs", "plain-s3cr3t-0815"])
def test_every_form_of_a_secret_is_masked_and_a_url_keeps_its_reference(
    secret: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from schemas.loader import resolve
    from schemas.secrets import redact, remember, remember_credentials, remember_written, written

    remember(secret)
    remember_credentials(f"https://user:{quote(secret, safe='')}@host/x")  # as a URL must hold it
    for form in forms_of(secret, user="user"):
        assert redact(f"<{form.decode()}>") == "<***>", form
    remember_written(f"s3://bucket/{secret}/", {secret: "${env:ANY_NAME}"})
    url = f"s3://bucket/{secret}/x.ndjson"
    assert written(url, f"s3://bucket/{secret}/") == "s3://bucket/${env:ANY_NAME}/x.ndjson"
    assert written(url, "s3://bucket/") == "s3://bucket/***/x.ndjson"  # not its references
    monkeypatch.setenv("ANY_NAME", secret)
    assert resolve(written(url, f"s3://bucket/{secret}/")) == url  # resolved again at use
