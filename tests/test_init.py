"""`pumphouse init` (CONTRACT §4): a spec written from a sample of the data that validates
and runs on that data as it is, every row landed and none rejected, for each file format and
for a JSON API in each pagination style; what it proposes, with why; what it refuses.

init, validate and run go through the command's main() in this process; a run whose store
is found from the environment alone (s3:// with AWS_*) is the real command in its own.
"""

from __future__ import annotations

import datetime as dt
import decimal
import gzip
import json
import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests._http_servers import PagedAPI, serve
from tests.conftest import run_cli, run_in_process

TOKEN = "tok-9f3Kq-never-in-a-spec"
STATUSES = ("open", "paid", "void")


def init_validate_run(
    project: Path, *args: str, env: dict[str, str] | None = None, own_process: bool = False
) -> dict[str, Any]:
    """init → validate → run; the run's summary and the spec written. `own_process`: the run
    is a process of its own, which reads `env` afresh."""
    made = run_in_process("init", *args, cwd=project)
    assert made.returncode == 0, made.stderr
    spec = made.stdout.split("wrote ", 1)[1].split(";", 1)[0]
    checked = run_in_process("validate", spec, cwd=project, env={**os.environ, **(env or {})})
    assert checked.returncode == 0, checked.stderr
    if own_process:
        ran = run_cli("run", spec, "--json", cwd=project, env=env)
    else:
        ran = run_in_process("run", spec, "--json", cwd=project, env={**os.environ, **(env or {})})
    assert ran.returncode == 0, ran.stderr
    summary: dict[str, Any] = json.loads(ran.stdout)
    summary["spec_text"] = (project / spec).read_text()
    summary["printed"] = made.stdout + made.stderr
    return summary


def landed_all(summary: dict[str, Any], rows: int) -> None:
    assert summary["status"] == "ok"
    assert (summary["rows_read"], summary["rows_written"]) == (rows, rows)
    assert (summary["rows_rejected"], summary["rows_duplicate"], summary["rows_old"]) == (0, 0, 0)


def when(i: int) -> dt.datetime:
    return dt.datetime(2026, 1, 1, tzinfo=dt.UTC) + dt.timedelta(minutes=37 * i)


# ---------------------------------------------------------------- files


def european_csv(folder: Path, rows: int) -> None:
    """`;`, dates as dd/mm/YYYY, amounts with a decimal comma, NA and empty cells."""
    folder.mkdir(parents=True)
    lines = ["bestell_id;kunde;betrag;menge;status;bestellt_am;updated_at"]
    for i in range(rows):
        day = dt.date(2025, 1, 1) + dt.timedelta(days=3 * i)
        amount = "NA" if i % 9 == 0 else f"{i % 50},{i % 100:02d}"
        lines.append(
            f"{1000 + i};{'' if i % 11 == 0 else f'Kunde {i}'};{amount};{i % 7};"
            f"{STATUSES[i % 3]};{day:%d/%m/%Y};{when(i):%Y-%m-%d %H:%M:%S}"
        )
    (folder / "bestellungen.csv").write_text("\n".join(lines) + "\n")


@pytest.mark.usefixtures("prefect_server")
def test_a_european_csv(project: Path) -> None:
    european_csv(project / "landing" / "eu_orders", 150)
    s = init_validate_run(project, "./landing/eu_orders/")
    landed_all(s, 150)
    text = s["spec_text"]
    assert "name: eu_orders\n" in text
    assert 'csv: {delimiter: ";", header: true, quote: "\\"", null_values: ["", NA]}' in text
    assert 'bestellt_am: {type: date, format: "%d/%m/%Y", nullable: false}' in text
    assert "betrag: {type: string}" in text  # a decimal comma stays text, NA is NULL
    assert "kunde: {type: string}" in text  # empty cells: nullable
    assert "# isin: 3 distinct values in 150 sampled rows" in text
    assert (
        'status: {type: string, nullable: false, checks: {isin: ["open", "paid", "void"]}}' in text
    )
    assert "# ge: 0: a count or amount, never below 0 in the sample" in text
    assert "menge: {type: int64, nullable: false, checks: {ge: 0}}" in text
    assert "incremental: {cursor: updated_at}" in text
    assert "dedup: {key: [bestell_id], order_by: updated_at}" in text
    assert "# key: unique and never empty in 150 sampled rows and named like a key" in text
    assert "url: ./warehouse/eu_orders" in text
    assert "the first 150 rows of 1 of 1 file(s)" in s["printed"]


@pytest.mark.usefixtures("prefect_server")
def test_gzip_ndjson_with_nested_objects(project: Path) -> None:
    folder = project / "landing" / "events"
    folder.mkdir(parents=True)
    rnd = random.Random(3)
    for part in range(2):
        with gzip.open(folder / f"part-{part}.ndjson.gz", "wt") as f:
            for i in range(part * 60, part * 60 + 60):
                rec: dict[str, Any] = {
                    "event_id": f"ev-{i:05d}",
                    "user": {"id": i % 13, "country": rnd.choice(["DE", "FR", "NO"])},
                    "tags": ["a", "b"][: i % 3],
                    "value": round(rnd.uniform(-5, 5), 3),
                    "modified_at": when(i).isoformat(),
                }
                if i % 4:
                    rec["note"] = "x"
                f.write(json.dumps(rec) + "\n")
    s = init_validate_run(project, "./landing/events/", "--name", "ev")
    landed_all(s, 120)
    text = s["spec_text"]
    assert "format: ndjson\n  compression: gzip\n" in text
    assert "# user: struct(id bigint, country varchar), kept as read (not declared)" in text
    assert "# tags: varchar[], kept as read (not declared)" in text
    assert "value: {type: float64, nullable: false}" in text  # below 0: no ge
    assert 'note: {type: string, checks: {isin: ["x"]}}' in text  # missing in some records
    assert "dedup: {key: [event_id], order_by: modified_at}" in text
    assert "the first 120 rows of 2 of 2 file(s)" in s["printed"]


@pytest.mark.usefixtures("prefect_server")
def test_a_json_array_file(project: Path) -> None:
    (project / "export").mkdir()
    records = [
        {"sku": f"S{i}", "name": f"item {i}", "price": None if i % 5 == 0 else i * 1.25,
         "in_stock": i % 2 == 0, "added": f"2025-02-{1 + i % 28:02d}", "color": STATUSES[i % 3]}
        for i in range(60)
    ]  # fmt: skip
    (project / "export" / "items.json").write_text(json.dumps(records, indent=1))
    s = init_validate_run(project, "export/items.json")
    landed_all(s, 60)
    text = s["spec_text"]
    assert "name: items\n" in text and "format: json\n" in text
    assert "price: {type: float64, checks: {ge: 0}}" in text
    assert "in_stock: {type: bool, nullable: false}" in text
    assert "added: {type: date, nullable: false}" in text
    assert "# no isin checks: 60 sampled rows are too few to tell (they need 100)" in text
    assert "dedup: {key: [sku], order_by: sku}" in text  # no last-change column


@pytest.mark.usefixtures("prefect_server")
def test_a_malformed_line_is_left_out_of_the_sample_and_rejected_by_the_run(
    project: Path,
) -> None:
    """Real files have a truncated line: the sample skips it (ids stay int64), the run rejects it."""
    (project / "landing").mkdir()
    lines = [json.dumps({"id": i, "status": STATUSES[i % 3]}) for i in range(30)]
    lines.insert(12, '{"id": 99, "status": "op')
    (project / "landing" / "a.ndjson").write_text("\n".join(lines) + "\n")
    made = run_in_process("init", "landing/", cwd=project)
    assert made.returncode == 0, made.stderr
    text = (project / "pumps" / "landing.yaml").read_text()
    assert "id: {type: int64, nullable: false}" in text
    ran = run_in_process("run", "pumps/landing.yaml", "--json", cwd=project)
    assert ran.returncode == 0, ran.stderr
    summary = json.loads(ran.stdout)
    assert (summary["rows_written"], summary["rows_rejected"]) == (30, 1)


@pytest.mark.usefixtures("prefect_server")
def test_a_bucket_prefix(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """s3:// through fsspec: the credentials and endpoint come from the environment, as the
    run's do; the spec names neither."""
    import boto3

    from tests._moto import REGION, make_bucket, moto_s3

    with moto_s3() as endpoint:
        make_bucket(endpoint, "drops")
        env = {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": REGION,
        }
        for name, value in env.items():
            monkeypatch.setenv(name, value)  # init runs in this process
        client = boto3.client("s3", endpoint_url=endpoint, region_name=REGION)
        for part in range(2):
            body = "".join(
                json.dumps(
                    {"id": part * 100 + i, "status": STATUSES[i % 3], "at": when(i).isoformat()}
                )
                + "\n"
                for i in range(100)
            )
            client.put_object(
                Bucket="drops", Key=f"purchases/2026/{part}.ndjson", Body=body.encode()
            )
        # the spec names no endpoint: a fresh process finds it in the environment alone
        summary = init_validate_run(project, "s3://drops/purchases/", env=env, own_process=True)
    landed_all(summary, 200)
    text = summary["spec_text"]
    assert 'url: "s3://drops/purchases/"' in text and "name: purchases\n" in text
    assert "id: {type: int64, nullable: false}" in text
    assert "testing" not in text and endpoint not in text


@pytest.mark.usefixtures("prefect_server")
def test_parquet(project: Path) -> None:
    (project / "lake").mkdir()
    n = 200
    table = pa.table({
        "id": pa.array(range(n), pa.int32()),
        "total": pa.array([decimal.Decimal(f"{i}.{i % 100:02d}") for i in range(n)], pa.decimal128(10, 2)),
        "kind": pa.array([("a", "b")[i % 2] for i in range(n)]),
        "updated_at": pa.array([when(i) for i in range(n)], pa.timestamp("us", tz="UTC")),
        "ratio": pa.array([None if i == 7 else i / 3 for i in range(n)], pa.float64()),
    })  # fmt: skip
    pq.write_table(table, project / "lake" / "payments.parquet")
    s = init_validate_run(project, "lake/payments.parquet", "--sample-rows", "150")
    landed_all(s, n)  # the sample is 150 rows; the run reads all
    text = s["spec_text"]
    assert "format: parquet\n" in text
    assert 'total: {type: "decimal(10,2)", nullable: false, checks: {ge: 0}}' in text
    assert 'kind: {type: string, nullable: false, checks: {isin: ["a", "b"]}}' in text
    assert "dedup: {key: [id], order_by: updated_at}" in text
    assert "the first 150 rows of 1 of 1 file(s)" in s["printed"]


# ---------------------------------------------------------------- a JSON API


def api_records(n: int) -> list[dict[str, Any]]:
    return [
        {"id": i, "status": STATUSES[i % 3], "amount": i * 2.5,
         "customer": {"name": f"c{i % 4}"}, "updated_at": when(i).strftime("%Y-%m-%dT%H:%M:%SZ")}
        for i in range(n)
    ]  # fmt: skip


@pytest.fixture
def api(request: pytest.FixtureRequest) -> Iterator[tuple[PagedAPI, str]]:
    style, token = request.param if isinstance(request.param, tuple) else (request.param, None)
    app = PagedAPI(api_records(23), style, token=token)
    with serve(app) as base:
        yield app, base


QUERIES = {"link_header": "", "next_url": "", "cursor": "", "offset": "?limit=5&offset=0",
           "page": "?page=1&limit=5"}  # fmt: skip
PAGINATE = {
    "link_header": "paginate: {style: link_header}",
    "next_url": 'paginate: {style: next_url, next_url: "links.next"}',
    "cursor": 'paginate: {style: cursor, cursor_path: "meta.next_cursor", cursor_param: cursor}',
    "offset": 'paginate: {style: offset, offset_param: offset, limit_param: limit, page_size: 5, has_more_path: "meta.has_more"}',
    "page": 'paginate: {style: page, page_param: page, limit_param: limit, page_size: 5, has_more_path: "meta.has_more"}',
}


@pytest.mark.usefixtures("prefect_server")
@pytest.mark.parametrize("api", list(PAGINATE), indirect=True)
def test_an_api_in_each_pagination_style(project: Path, api: tuple[PagedAPI, str]) -> None:
    app, base = api
    # a name no other test's pump has: runs are recorded on the worker's one Prefect server
    s = init_validate_run(project, f"{base}/v1/orders{QUERIES[app.style]}", "--name", "api_orders")
    landed_all(s, 23)
    text = s["spec_text"]
    assert f'  url: "{base}/v1/orders"\n  records: data\n  {PAGINATE[app.style]}\n' in text
    assert '# customer: struct("name" varchar), kept as read (not declared)' in text
    assert "updated_at: {type: timestamp, nullable: false}" in text
    assert "dedup: {key: [id], order_by: updated_at}" in text


@pytest.mark.usefixtures("prefect_server")
@pytest.mark.parametrize("api", [("link_header", TOKEN)], indirect=True)
def test_an_api_token_is_never_written(project: Path, api: tuple[PagedAPI, str]) -> None:
    _, base = api
    refused = run_in_process("init", f"{base}/v1/orders", cwd=project)
    assert (refused.returncode, refused.stderr) == (2, (
        f"error: GET {base}/v1/orders: HTTP 401, the API wants credentials; give them with "
        "--header 'Authorization: Bearer TOKEN'\n"
    ))  # fmt: skip
    assert not (project / "pumps" / "orders.yaml").exists()
    s = init_validate_run(
        project, f"{base}/v1/orders?api_key={TOKEN}", "--header", f"Authorization: Bearer {TOKEN}",
        env={"ORDERS_TOKEN": TOKEN, "ORDERS_API_KEY": TOKEN},
    )  # fmt: skip
    landed_all(s, 23)
    assert TOKEN not in s["spec_text"] and TOKEN not in s["printed"]
    assert 'headers: {Authorization: "Bearer ${env:ORDERS_TOKEN}"}' in s["spec_text"]
    assert 'params: {api_key: "${env:ORDERS_API_KEY}"}' in s["spec_text"]
    assert "set ORDERS_TOKEN before validate and run" in s["printed"]


# ---------------------------------------------------------------- refusals


def test_an_existing_spec_is_kept_unless_force(project: Path) -> None:
    european_csv(project / "in" / "orders", 5)
    (project / "pumps" / "orders.yaml").write_text("# mine\n")
    kept = run_in_process("init", "in/orders/", cwd=project)
    assert (kept.returncode, kept.stderr) == (
        2, "error: pumps/orders.yaml exists; keep it, or pass --force to write over it\n"
    )  # fmt: skip
    assert (project / "pumps" / "orders.yaml").read_text() == "# mine\n"
    forced = run_in_process("init", "in/orders/", "--force", cwd=project)
    assert forced.returncode == 0, forced.stderr
    assert "name: orders\n" in (project / "pumps" / "orders.yaml").read_text()


def test_bad_inputs_are_one_line_and_exit_2(project: Path) -> None:
    (project / "empty").mkdir()
    (project / "blob").mkdir()
    (project / "blob" / "image.bin").write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR" * 10)
    cases = {
        ("empty/",): "error: empty/: no files there; give a folder, file or glob that holds "
        "csv, json, ndjson or parquet files",
        ("nowhere/",): "error: nowhere/: no files there; give a folder, file or glob that holds "
        "csv, json, ndjson or parquet files",
        ("blob/",): f"error: {project}/blob/image.bin: binary content, not csv, json, ndjson or "
        "parquet; give the files' folder or a glob that names only data files",
        ("blob/", "--name", "Blob"): "error: --name 'Blob': a pump name is [a-z][a-z0-9_]*, "
        "e.g. orders_eu",
    }
    for args, message in cases.items():
        got = run_in_process("init", *args, cwd=project)
        assert (got.returncode, got.stderr) == (2, message + "\n"), args
    assert list((project / "pumps").iterdir()) == []


@pytest.mark.parametrize("api", ["link_header"], indirect=True)
def test_an_api_address_not_found(project: Path, api: tuple[PagedAPI, str]) -> None:
    _, base = api
    got = run_in_process("init", f"{base}/v2/nothing", cwd=project)
    assert (got.returncode, got.stderr) == (
        2, f"error: GET {base}/v2/nothing: HTTP 404, not found; is the URL right?\n"
    )  # fmt: skip


def test_names_a_spec_cannot_declare_are_kept_as_read(project: Path) -> None:
    """A MongoDB-style `_id` is pumphouse's reserved kind of name: not declared, not a key;
    a name with a space or one YAML reads as a boolean is quoted."""
    (project / "dump").mkdir()
    (project / "dump" / "x.jsonl").write_text(
        "".join(
            json.dumps({"_id": f"a{i}", "OrderID": i, "Order Date": "2024-01-02", "true": 1}) + "\n"
            for i in range(3)
        )
    )
    made = run_in_process("init", "dump", cwd=project)
    assert made.returncode == 0, made.stderr
    text = (project / "pumps" / "dump.yaml").read_text()
    assert "    # _id: string, kept as read (a name starting with _ is not declared)\n" in text
    assert '    "Order Date": {type: date, nullable: false}\n' in text
    assert '    "true": {type: int64, nullable: false}\n' in text
    assert "dedup: {key: [OrderID], order_by: OrderID}" in text
    checked = run_in_process("validate", "pumps/dump.yaml", cwd=project)
    assert (checked.returncode, checked.stdout) == (0, "ok: pumps/dump.yaml (pump dump)\n")
