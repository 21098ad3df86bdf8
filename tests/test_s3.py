"""Every storage path on S3, against a real S3 API: moto in server mode on loopback.

Credentials are checked (moto's IAM auth is on for this module), runs are the real
`pumphouse` command (in this process unless the run is killed, changes pumphouse's settings,
or is searched for leaked secrets in all it prints), rows are read back with plain DuckDB over the bucket, and a fault
proxy in front of moto answers 503 SlowDown, drops connections, or fails every request.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from schemas.errors import DataError, PumpError, SpecError
from schemas.loader import parse_spec
from tests._moto import (
    FaultProxy,
    Faults,
    Keys,
    enforce_auth,
    make_bucket,
    moto_s3,
    options_json,
    put_objects,
    s3,
    s3_spec,
    storage_options,
    upload,
)
from tests.conftest import run_cli, run_in_process
from tests.data import expected, write_orders

pytestmark = pytest.mark.usefixtures("prefect_server")

ROWS = 200  # per file


# ---- fixtures and helpers ---------------------------------------------------------------


@pytest.fixture(scope="module")
def moto_server() -> Iterator[str]:
    with moto_s3() as endpoint:
        yield endpoint


@pytest.fixture(scope="module")
def keys(moto_server: str) -> Iterator[Keys]:
    """moto checks every request's credentials while this module runs; these pass."""
    with enforce_auth(moto_server) as made:
        yield made


@pytest.fixture
def bucket(moto_server: str, keys: Keys) -> str:
    name = f"pump-{uuid.uuid4().hex[:12]}"
    make_bucket(moto_server, name, keys.key, keys.secret)
    return name


@pytest.fixture
def env(keys: Keys) -> dict[str, str]:
    """What the pump's environment holds: the credentials the specs name as ${env:...}."""
    return {"PUMP_S3_KEY": keys.key, "PUMP_S3_SECRET": keys.secret}


@pytest.fixture
def fs(moto_server: str, keys: Keys) -> Any:
    """The bucket as the tests see it (an s3fs filesystem with the checked credentials)."""
    return s3(moto_server, keys.key, keys.secret)


def given_orders(project: Path, fs: Any, bucket: str, files: int) -> list[dict[str, Any]]:
    """`files` order files of ROWS rows, written to project/src and uploaded to the bucket."""
    records = write_orders(project / "src", files=files, rows=ROWS)
    upload(fs, project / "src", bucket)
    return records


def land_later(
    project: Path, fs: Any, bucket: str, seed: int, start_id: int, name: str = "orders-01-000"
) -> list[dict[str, Any]]:
    """One more file of later orders (a day on), uploaded to the bucket as in/NAME.ndjson."""
    folder = project / f"later-{seed}"
    records = write_orders(folder, files=1, rows=ROWS, seed=seed, start_id=start_id, day=1)
    fs.put_file(str(folder / "orders-01-000.ndjson"), f"{bucket}/in/{name}.ndjson")
    return records


def landed_s3(fs: Any, url: str) -> dict[int, tuple[Any, ...]]:
    """The sink's rows as an analyst reads them: plain DuckDB over the bucket."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.register_filesystem(fs)
    rows = con.sql(
        "SELECT order_id, customer, amount, status, strftime(updated_at, '%Y-%m-%dT%H:%M:%SZ') "
        f"FROM read_parquet('{url}/data/**/*.parquet', hive_partitioning = true)"
    ).fetchall()
    out: dict[int, tuple[Any, ...]] = {}
    for oid, *rest in rows:
        assert oid not in out, f"order {oid} landed twice"
        out[oid] = tuple(rest)
    return out


def run(project: Path, spec: str, env: dict[str, str], *extra: str) -> dict[str, Any]:
    """`pumphouse run SPEC --json` with `env` added to the environment: in this process when
    `env` only holds what the spec names (${env:...}), in its own when it sets PUMPHOUSE_*."""
    if any(name.startswith("PUMPHOUSE_") for name in env):
        done = run_cli("run", spec, "--json", *extra, cwd=project, env=env)
    else:
        done = run_in_process("run", spec, "--json", *extra, cwd=project, env={**os.environ, **env})
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def hwm(records: list[dict[str, Any]]) -> str:
    return max(r["updated_at"] for r in records if r.get("status") not in (None, "void"))


def prefect_text(spec_paths: list[str]) -> str:
    """Everything Prefect recorded for the flow runs of these specs: logs and artifacts."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        FlowRunFilter,
        FlowRunFilterName,
        LogFilter,
        LogFilterFlowRunId,
    )
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=10)

    async def read() -> str:
        async with get_client() as client:
            runs = await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=spec_paths))
            )
            ids = [r.id for r in runs]
            assert ids, f"no flow runs named {spec_paths}"
            logs = await client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=ids))
            )
            artifacts = await client.read_artifacts(
                artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=ids))
            )
        return "\n".join(
            [
                *(log.message for log in logs),
                *(f"{a.data} {a.description} {a.metadata_}" for a in artifacts),
            ]
        )

    return asyncio.run(read())


def everything_written(project: Path, fs: Any, bucket: str) -> list[tuple[str, bytes]]:
    """Every file the runs left: in the project folder and in the bucket."""
    files = [(str(p), p.read_bytes()) for p in project.rglob("*") if p.is_file()]
    files += [(key, fs.cat_file(key)) for key in fs.find(bucket)]
    return files


def assert_nowhere(secret: str, *texts: str, files: list[tuple[str, bytes]] = ()) -> None:  # type: ignore[assignment]
    for text in texts:
        assert secret not in text
    leaked = [name for name, data in files if secret.encode() in data]
    assert not leaked, f"the secret is in {leaked}"


# ---- source, sink and credentials -------------------------------------------------------


def test_env_credentials_land_exact_rows_and_a_replaced_file_is_read_again(
    project: Path, bucket: str, moto_server: str, fs: Any, env: dict[str, str]
) -> None:
    records = given_orders(project, fs, bucket, files=3)
    (project / "pumps" / "orders.yaml").write_text(s3_spec(bucket, moto_server))

    first = run(project, "pumps/orders.yaml", env)
    assert (first["status"], first["files"], first["rows_read"]) == ("ok", 3, 3 * ROWS)
    sink = f"s3://{bucket}/out/orders"
    assert landed_s3(fs, sink) == expected(records)
    rejected = duckdb.connect()
    rejected.register_filesystem(fs)
    bad = rejected.sql(f"SELECT count(*) FROM read_parquet('{sink}/rejected/*.parquet')")
    assert bad.fetchall()[0][0] == first["rows_rejected"] > 0

    again = run(project, "pumps/orders.yaml", env)
    assert (again["files"], again["rows_read"], again["rows_written"]) == (0, 0, 0)

    # The same name, new content (later orders, a day on): a new etag, so it is read again.
    replaced = land_later(project, fs, bucket, seed=7, start_id=10_000, name="orders-00-001")
    third = run(project, "pumps/orders.yaml", env)
    assert (third["files"], third["rows_read"]) == (1, ROWS)
    assert landed_s3(fs, sink) == {**expected(records), **expected(replaced, hwm(records))}

    done = run_in_process(
        "query",
        "pumps/orders.yaml",
        "SELECT count(*) AS n FROM orders",
        "--format",
        "json",
        cwd=project,
        env={**os.environ, **env},
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [{"n": len(landed_s3(fs, sink))}]


@pytest.mark.reliability(
    "secrets",
    "S3 credentials from Prefect Secret blocks (${secret:NAME}), moto checking every signature",
    "exact rows land; the key and secret are in no output, Prefect log, artifact, state file or object in the bucket (rejected rows included)",
)
def test_secret_block_credentials_work_and_leak_nowhere(
    project: Path, bucket: str, moto_server: str, keys: Keys, fs: Any
) -> None:
    from prefect.blocks.system import Secret

    Secret(value=keys.key).save("pumps3key", overwrite=True)
    Secret(value=keys.secret).save("pumps3secret", overwrite=True)
    records = given_orders(project, fs, bucket, files=2)
    opts = storage_options(moto_server, "${secret:pumps3key}", "${secret:pumps3secret}")
    (project / "pumps" / "vault.yaml").write_text(s3_spec(bucket, moto_server, opts, name="vault"))

    done = run_cli("run", "pumps/vault.yaml", "--json", cwd=project)  # no credentials in env
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["rows_rejected"] > 0  # rejected rows were written too
    assert landed_s3(fs, f"s3://{bucket}/out/orders") == expected(records)
    files = everything_written(project, fs, bucket)
    for secret in (keys.secret, keys.key):
        assert_nowhere(
            secret, done.stdout, done.stderr, prefect_text(["pumps/vault.yaml"]), files=files
        )


@pytest.mark.reliability(
    "secrets",
    "a wrong S3 secret given as ${env:NAME}",
    "exit 1 with `access denied ... check the credentials in source.storage_options`; the wrong secret is in no output, Prefect log, artifact, state or bucket object",
)
def test_wrong_credentials_fail_clearly_and_leak_nowhere(
    project: Path, bucket: str, moto_server: str, keys: Keys, fs: Any
) -> None:
    given_orders(project, fs, bucket, files=1)
    wrong = "wrong-" + keys.secret[::-1]
    (project / "pumps" / "denied.yaml").write_text(s3_spec(bucket, moto_server, name="denied"))

    done = run_cli(
        "run",
        "pumps/denied.yaml",
        cwd=project,
        env={"PUMP_S3_KEY": keys.key, "PUMP_S3_SECRET": wrong},
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    message = done.stderr.strip().splitlines()[-1]
    assert f"source.url s3://{bucket}/in/: access denied (PermissionError: " in message
    assert "check the credentials in source.storage_options" in message
    state = project / ".pumphouse" / "denied"
    assert not (state / "state.json").exists() and not (state / "manifest.json").exists()
    runs = [json.loads(line) for line in (state / "runs.jsonl").read_text().splitlines()]
    assert [r["status"] for r in runs] == ["failed"]
    assert_nowhere(
        wrong,
        done.stdout,
        done.stderr,
        prefect_text(["pumps/denied.yaml"]),
        files=everything_written(project, fs, bucket),
    )


def test_storage_failures_say_what_to_fix(
    project: Path,
    bucket: str,
    moto_server: str,
    keys: Keys,
    env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Missing bucket, missing folder, unknown key, wrong secret, an option s3fs does not
    take: each a pumphouse error naming the URL and the fix, never botocore's own."""
    from tasks.sources.files.listing import list_files

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    cases = [
        (f"s3://no-such-{bucket}/in/", {}, DataError, "the bucket does not exist; create it"),
        (f"s3://{bucket}/nothing-here.ndjson", {}, DataError, "no such file or folder"),
        (
            f"s3://{bucket}/in/",
            {"key": "AKIAUNKNOWN000000000"},
            DataError,
            "access denied (PermissionError: Forbidden); check the credentials in source.storage_options",
        ),
        (
            f"s3://{bucket}/in/",
            {"secret": "not-the-secret"},
            DataError,
            "access denied (PermissionError: Forbidden); check the credentials in source.storage_options",
        ),
        (
            f"s3://{bucket}/in/",
            {"regoin": "eu-west-1"},
            SpecError,
            "source.storage_options holds an option this filesystem does not take",
        ),
    ]
    for url, override, error, text in cases:
        opts = storage_options(moto_server, skip_instance_cache=True)
        spec = parse_spec(
            f"name: x\nsource: {{type: files, url: '{url}', format: ndjson, "
            f"storage_options: {opts}}}\nsink: {{type: parquet, url: ./out}}\n"
        )
        source = spec.source.model_copy(
            update={"storage_options": {**spec.source.storage_options, **override}}  # type: ignore[union-attr]
        )
        with pytest.raises(PumpError) as failure:
            list_files(source)  # type: ignore[arg-type]
        assert type(failure.value) is error
        assert text in str(failure.value), str(failure.value)
        assert f"source.url {url}: " in str(failure.value)


def test_what_s3fs_and_botocore_raise_is_sorted_by_what_to_do() -> None:
    """The exceptions s3fs leaves after its own retries, by kind (the classes are botocore's
    and s3fs's own; the messages are what S3 says)."""
    import errno

    from botocore.exceptions import (
        ClientError,
        ConnectionClosedError,
        EndpointConnectionError,
        NoCredentialsError,
        ReadTimeoutError,
    )
    from fsspec.exceptions import FSTimeoutError
    from s3fs.errors import translate_boto_error

    from tasks.io.storage import kind

    def s3_error(code: str, message: str) -> BaseException:
        answer = {"Error": {"Code": code, "Message": message}}
        return translate_boto_error(ClientError(answer, "GetObject"))

    url = "http://127.0.0.1:9/b"
    assert [
        kind(e)
        for e in (
            s3_error("SlowDown", "Please reduce your request rate."),
            s3_error("InternalError", "We encountered an internal error."),
            s3_error(
                "PreconditionFailed",
                "At least one of the pre-conditions you specified did not hold",
            ),
            ConnectionClosedError(endpoint_url=url),
            EndpointConnectionError(endpoint_url=url),
            ReadTimeoutError(endpoint_url=url),
            FSTimeoutError(),
            OSError(errno.ECONNRESET, "Connection reset by peer"),
            s3_error("AccessDenied", "Access Denied"),
            s3_error("InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist"),
            s3_error("NoSuchBucket", "The specified bucket does not exist"),
            s3_error("NoSuchKey", "The specified key does not exist."),
            NoCredentialsError(),
            s3_error("InvalidBucketName", "The specified bucket is not valid."),
            s3_error("PermanentRedirect", "The bucket is in another region"),
            TypeError("AioSession.__init__() got an unexpected keyword argument 'regoin'"),
            ValueError("not a storage failure"),
            DataError("already ours"),
        )
    ] == [
        *["transient"] * 8,
        "denied",
        "denied",
        "missing",
        "missing",
        "no_credentials",
        "refused",
        "refused",
        "bad_option",
        None,
        None,
    ]


# ---- new_files_only on a bucket ------------------------------------------------------------


def test_more_than_1000_objects_are_listed_and_only_new_ones_planned(
    project: Path,
    bucket: str,
    moto_server: str,
    fs: Any,
    env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tasks.run.plan import plan_run
    from tasks.sources.files.listing import SourceFile
    from tasks.state.store import Committed, StateStore

    put_objects(bucket, {f"in/d{i % 3}/f{i:05d}.ndjson": b'{"order_id": 1}\n' for i in range(1205)})
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with FaultProxy(moto_server) as proxy:
        text = s3_spec(bucket, proxy.url).replace('glob: "*.ndjson"', 'glob: "**/*.ndjson"')
        spec = parse_spec(text)
        store = StateStore("orders")
        manifest, resumed = plan_run(spec, store)
        listings = [line for line in proxy.traffic.lines if "list-type=2" in line]
    assert len(listings) >= 2  # S3 pages at 1,000 keys: the listing followed the token
    assert not resumed and len(manifest.inputs) == 1205
    assert [f.url for f in manifest.inputs] == sorted(
        f"s3://{bucket}/in/d{i % 3}/f{i:05d}.ndjson" for i in range(1205)
    )
    etag = fs.info(f"{bucket}/in/d0/f00000.ndjson")["ETag"].strip('"')
    files = [f for f in manifest.inputs if isinstance(f, SourceFile)]
    assert {f.fingerprint for f in files} == {f"{etag}:16"}
    store.commit(Committed(files={f.url: f.fingerprint for f in files}), {})
    fs.pipe(
        {
            f"{bucket}/in/d1/f99999.ndjson": b'{"order_id": 2}\n',  # new
            f"{bucket}/in/d0/f00003.ndjson": b'{"order_id": 3}\n',  # replaced, same size
        }
    )
    with FaultProxy(moto_server) as proxy:
        spec = parse_spec(s3_spec(bucket, proxy.url).replace('"*.ndjson"', '"**/*.ndjson"'))
        manifest, _ = plan_run(spec, store)
    assert [f.url for f in manifest.inputs] == [
        f"s3://{bucket}/in/d0/f00003.ndjson",
        f"s3://{bucket}/in/d1/f99999.ndjson",
    ]


@pytest.mark.reliability(
    "crash",
    "a file lands in the bucket while a run killed after planning is still open",
    "the resumed run reads only its frozen inputs, the next run reads the new file: none skipped, none doubled",
)
def test_a_file_that_lands_mid_run_is_read_by_the_next_run(
    project: Path, bucket: str, moto_server: str, fs: Any, env: dict[str, str]
) -> None:
    records = given_orders(project, fs, bucket, files=2)
    (project / "pumps" / "orders.yaml").write_text(s3_spec(bucket, moto_server))
    killed = run_cli(
        "run", "pumps/orders.yaml", cwd=project, env={**env, "PUMPHOUSE_FAULT": "planned"}
    )
    assert killed.returncode == -9  # planned: its inputs are frozen, nothing read yet

    late = land_later(project, fs, bucket, seed=5, start_id=20_000)
    resumed = run(project, "pumps/orders.yaml", env)
    assert (resumed["resumed"], resumed["files"], resumed["rows_read"]) == (True, 2, 2 * ROWS)
    nxt = run(project, "pumps/orders.yaml", env)
    assert (nxt["resumed"], nxt["files"], nxt["rows_read"]) == (False, 1, ROWS)
    assert landed_s3(fs, f"s3://{bucket}/out/orders") == {
        **expected(records),
        **expected(late, hwm(records)),
    }


# ---- faults --------------------------------------------------------------------------------


@pytest.mark.reliability(
    "transient faults",
    "S3 answers 503 SlowDown to every 4th request and drops every 7th connection after answering (a proxy in front of moto)",
    "retried with backoff; the sink holds exactly the rows of a clean run",
)
def test_503s_and_dropped_connections_still_land_exact_rows(
    project: Path, bucket: str, moto_server: str, fs: Any, env: dict[str, str]
) -> None:
    records = given_orders(project, fs, bucket, files=4)
    with FaultProxy(moto_server, Faults(slow_down=4, reset=7)) as proxy:
        (project / "pumps" / "orders.yaml").write_text(s3_spec(bucket, proxy.url))
        summary = run(project, "pumps/orders.yaml", env)
        assert proxy.traffic.faults["slow_down"] >= 5 and proxy.traffic.faults["reset"] >= 3
        assert any(line.startswith("PUT ") for line in proxy.traffic.lines)  # the sink too
    assert (summary["files"], summary["rows_read"]) == (4, 4 * ROWS)
    assert landed_s3(fs, f"s3://{bucket}/out/orders") == expected(records)


@pytest.mark.reliability(
    "transient faults",
    "every S3 request fails with 503 while listing, after a committed run",
    "exit 1 saying to run again later; state, manifest and sink unchanged",
)
def test_a_listing_that_always_fails_changes_no_state(
    project: Path, bucket: str, moto_server: str, fs: Any, env: dict[str, str]
) -> None:
    records = given_orders(project, fs, bucket, files=1)
    spec = project / "pumps" / "orders.yaml"
    spec.write_text(s3_spec(bucket, moto_server))
    run(project, "pumps/orders.yaml", env)
    state = project / ".pumphouse" / "orders" / "state.json"
    before = state.read_bytes()

    land_later(project, fs, bucket, seed=3, start_id=30_000)
    with FaultProxy(moto_server, Faults(slow_down=1)) as proxy:  # every request: 503
        spec.write_text(s3_spec(bucket, proxy.url))
        done = run_cli("run", "pumps/orders.yaml", cwd=project, env=env)
        assert proxy.traffic.faults["slow_down"] >= 5  # botocore's retries, with backoff
        assert all(line.endswith(" 503") for line in proxy.traffic.lines)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert (
        f"source.url s3://{bucket}/in/: listing failed after retries (OSError: Service "
        "Unavailable); the store is unavailable or throttling, run again later"
    ) in done.stderr
    assert state.read_bytes() == before
    assert not (state.parent / "manifest.json").exists()
    assert landed_s3(fs, f"s3://{bucket}/out/orders") == expected(records)


# ---- state in the bucket ---------------------------------------------------------------------


@pytest.mark.reliability(
    "crash",
    "state in S3 (PUMPHOUSE_STATE_DIR=s3://...); kill -9 after the 2nd load batch on one machine, resumed on another without its staging",
    "the second machine stages the frozen inputs again and replays the load; the sink equals one clean run; the next run reads only new files",
)
def test_state_in_a_bucket_survives_a_run_killed_on_one_machine_and_resumed_on_another(
    project: Path, bucket: str, moto_server: str, keys: Keys, fs: Any, env: dict[str, str]
) -> None:
    records = given_orders(project, fs, bucket, files=3)
    (project / "pumps" / "orders.yaml").write_text(s3_spec(bucket, moto_server, batch_rows=100))
    from prefect.blocks.system import Secret

    Secret(value=keys.secret).save("pumps3state", overwrite=True)
    state_env = {
        **env,
        "PUMPHOUSE_STATE_DIR": f"s3://{bucket}/state",
        "PUMPHOUSE_STATE_STORAGE_OPTIONS": options_json(
            moto_server, secret="${secret:pumps3state}"
        ),
    }
    machine_a = {**state_env, "PUMPHOUSE_WORK_DIR": str(project / "machine-a")}
    machine_b = {**state_env, "PUMPHOUSE_WORK_DIR": str(project / "machine-b")}

    killed = run_cli(
        "run",
        "pumps/orders.yaml",
        cwd=project,
        env={**machine_a, "PUMPHOUSE_FAULT": "loaded_batch:2"},
    )
    assert killed.returncode == -9  # two load batches are in the sink, the run is open
    manifest = json.loads(fs.cat_file(f"{bucket}/state/orders/manifest.json"))
    assert manifest["phase"] == "loading"
    assert not fs.exists(f"{bucket}/state/orders/state.json")

    resumed = run(project, "pumps/orders.yaml", machine_b)  # no staging here: stage again
    assert (resumed["resumed"], resumed["run_id"]) == (True, manifest["run_id"])
    assert resumed["rows_read"] == 3 * ROWS
    assert landed_s3(fs, f"s3://{bucket}/out/orders") == expected(records)
    committed = json.loads(fs.cat_file(f"{bucket}/state/orders/state.json"))
    assert len(committed["files"]) == 3 and committed["hwm"] is not None
    assert not fs.exists(f"{bucket}/state/orders/manifest.json")

    late = land_later(project, fs, bucket, seed=9, start_id=40_000)
    nxt = run(project, "pumps/orders.yaml", machine_a)  # machine A's old staging is not reused
    assert (nxt["resumed"], nxt["files"], nxt["rows_read"]) == (False, 1, ROWS)
    assert landed_s3(fs, f"s3://{bucket}/out/orders") == {
        **expected(records),
        **expected(late, hwm(records)),
    }

    status = run_cli("status", "pumps/orders.yaml", cwd=project, env=machine_b)
    assert status.returncode == 0, status.stderr
    assert "ok" in status.stdout
    history = fs.cat_file(f"{bucket}/state/orders/runs.jsonl").decode().splitlines()
    assert [json.loads(line)["status"] for line in history] == ["ok", "ok"]
    assert not list(project.rglob("state.json")) and not list(project.rglob("manifest.json"))
    for secret in (keys.secret, keys.key):
        assert_nowhere(secret, files=everything_written(project, fs, bucket))

    reset = run_cli("reset", "pumps/orders.yaml", "--yes", cwd=project, env=machine_b)
    assert reset.returncode == 0, reset.stderr
    assert fs.find(f"{bucket}/state/") == [f"{bucket}/state/orders/runs.jsonl"]  # history stays


def test_the_state_store_works_the_same_on_an_fsspec_url(project: Path) -> None:
    """The StateStore API over `memory://` (the same code path as s3://, without a server)."""
    import fsspec

    from schemas.errors import UsageError
    from schemas.settings import Settings
    from tasks.state.store import Committed, Manifest, StateStore

    url = f"memory://state-{uuid.uuid4().hex[:8]}"
    store = StateStore("orders", Settings(state_dir=url, work_dir=str(project / "work")))
    assert (store.location, store.root) == (f"{url}/orders", project / "work" / "orders")
    assert (store.committed(), store.manifest(), store.runs()) == (Committed(), None, [])
    manifest = Manifest(run_id="r1", started_at=1.0, inputs=[], hwm_before=None)
    store.save_manifest(manifest)
    assert store.manifest() == manifest and not store.staged_here("r1")
    manifest.phase = "loading"
    store.save_manifest(manifest)
    assert store.manifest() == manifest and not store.staged_here("r1")
    store.mark_staged("r1")
    assert store.staged_here("r1")
    store.commit(Committed(hwm="5", files={"a": "f"}, seq=2), {"status": "ok"})
    assert store.committed() == Committed(hwm="5", files={"a": "f"}, seq=2)
    assert store.manifest() is None and not store.staging.exists()
    assert store.runs() == [{"status": "ok"}]
    store.mark_refresh(True)
    with store.lock():
        store.reset()
    assert store.committed() == Committed() and store.refresh_pending()
    assert store.runs() == [{"status": "ok"}]  # the history stays, for `status`
    assert (store.root / "lock").exists()
    fs = fsspec.filesystem("memory")
    kept = sorted(p.rsplit("/", 1)[1] for p in fs.find(f"{url}/orders"))
    assert kept == ["refresh.pending", "runs.jsonl"]
    fs.pipe_file(f"{url}/orders/state.json", b"{not json")
    with pytest.raises(PumpError, match=f"state file {url}/orders/state.json is damaged"):
        store.committed()

    bad = Settings(state_dir=url, state_storage_options="{key: 1}")
    with pytest.raises(UsageError, match="PUMPHOUSE_STATE_STORAGE_OPTIONS is not valid JSON"):
        StateStore("orders", bad).committed()


# ---- streaming -------------------------------------------------------------------------------


@pytest.mark.reliability(
    "limits",
    "a 61.5 MB object read from S3",
    "fetched in 8 MiB ranges: at most 10 MiB before the first batch, every byte once in all",
)
def test_a_big_object_is_read_in_ranges_not_downloaded_whole(
    project: Path, bucket: str, moto_server: str, keys: Keys, fs: Any
) -> None:
    from tasks.sources.files.listing import list_files
    from tasks.sources.files.read import read_batches

    line = b'{"order_id": 1, "customer": "c1", "amount": 1.5, "status": "open", "pad": "%s"}\n'
    block = b"".join(line % (b"x" * (i % 50)) for i in range(1000))
    fs.pipe_file(f"{bucket}/big/orders.ndjson", block * 600)  # 61.5 MB
    size = fs.info(f"{bucket}/big/orders.ndjson")["size"]
    assert size > 58 * 2**20
    with FaultProxy(moto_server) as proxy:
        text = (
            f"name: big\nsource: {{type: files, url: 's3://{bucket}/big/', format: ndjson, "
            f"storage_options: {storage_options(proxy.url, keys.key, keys.secret)}}}\n"
            "sink: {type: parquet, url: ./out}\nlimits: {batch_rows: 5000}\n"
        )
        spec = parse_spec(text)
        [file] = list_files(spec.source)  # type: ignore[arg-type]
        batches = read_batches(spec.source, file, spec.limits)  # type: ignore[arg-type]
        first = next(batches)
        fetched = proxy.traffic.body_bytes[f"{bucket}/big/orders.ndjson"]
        assert first.table.num_rows == 5000
        assert fetched <= 10 * 2**20  # the first range (1 MiB read + 8 MiB ahead), no more
        rows = first.table.num_rows + sum(b.table.num_rows for b in batches)
        total = proxy.traffic.body_bytes[f"{bucket}/big/orders.ndjson"]
    assert rows == 600_000
    assert size <= total < size + 10 * 2**20  # every byte fetched once, in ~8 MiB ranges
    gets = [ln for ln in proxy.traffic.lines if ln.startswith(f"GET /{bucket}/big/")]
    assert len(gets) >= size // (10 * 2**20)


def test_the_bucket_under_another_prefix_and_endpoint_spelling_reads_nothing_again(
    project: Path, bucket: str, moto_server: str, fs: Any, env: dict[str, str]
) -> None:
    """Files are known by their path below source.url and their content (the etag): the
    same objects copied under another prefix, reached at another spelling of the
    endpoint, are not read again."""
    given_orders(project, fs, bucket, files=2)
    spec = project / "pumps" / "orders.yaml"
    spec.write_text(s3_spec(bucket, moto_server))
    assert run(project, "pumps/orders.yaml", env)["rows_read"] == 2 * ROWS
    for path in fs.find(f"{bucket}/in/"):
        fs.copy(path, path.replace(f"{bucket}/in/", f"{bucket}/mirror/in/"))
    text = s3_spec(bucket, f"{moto_server}/").replace(
        f"s3://{bucket}/in/", f"s3://{bucket}/mirror/in/"
    )
    spec.write_text(text)
    again = run(project, "pumps/orders.yaml", env)
    assert (again["files"], again["rows_read"], again["warnings"]) == (0, 0, [])
