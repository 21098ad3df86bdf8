"""`pumphouse serve` (CONTRACT §1 webhook source, §4): the real receiver process on a free
port, real files in its buffer, then the real `pumphouse run` landing them in parquet."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import duckdb
import httpx
import pytest

from schemas.errors import SpecError
from schemas.loader import parse_spec
from tasks.receive.inbox import file_name
from tests._prefect_server import free_port
from tests._prefect_worker import wait_for, worker
from tests.conftest import PUMPHOUSE, run_cli, run_in_process

TOKEN = "tok-9f3a1c77e2b54d08-partner"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
JSON = {**AUTH, "Content-Type": "application/json"}
BUFFER = Path(".pumphouse/_inbox/partner")

SPEC = """
name: partner
source: {{type: webhook, token: "${{env:PARTNER_TOKEN}}", max_body_bytes: 1KiB}}
schema:
  columns:
    n: {{type: int64, nullable: false}}
sink: {{type: parquet, url: ./warehouse/partner}}
limits: {{requests_per_second: {rate}}}
"""
SLOW = """
name: slow
source: {type: webhook, path: /hooks/slow, token: "${env:PARTNER_TOKEN}"}
sink: {type: parquet, url: ./warehouse/slow}
limits: {requests_per_second: 0.01}
"""


@dataclass
class Receiver:
    url: str
    process: subprocess.Popen[bytes]


def start(project: Path, specs: tuple[str, ...], port: int) -> subprocess.Popen[bytes]:
    """`pumphouse serve SPECS` in `project`, its output appended to serve.log, once /healthz
    answers."""
    with open(project / "serve.log", "ab") as log:
        process = subprocess.Popen(
            [PUMPHOUSE, "serve", *specs, "--port", str(port)],
            cwd=project,
            env={**os.environ, "PARTNER_TOKEN": TOKEN},
            stdout=log,
            stderr=log,
        )
    while True:  # no deadline: the test's timeout stops a receiver that never starts
        if process.poll() is not None:
            raise AssertionError((project / "serve.log").read_text())
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.2)


@contextmanager
def receiving(project: Path, *specs: str) -> Iterator[Receiver]:
    """The receiver of `specs` on a free port; killed (SIGKILL) on the way out if running."""
    port = free_port()
    process = start(project, specs, port)
    try:
        yield Receiver(f"http://127.0.0.1:{port}", process)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


def write_specs(project: Path, rate: float = 1000) -> None:
    (project / "pumps" / "partner.yaml").write_text(SPEC.format(rate=rate))
    (project / "pumps" / "slow.yaml").write_text(SLOW)


def buffered(project: Path) -> list[dict[str, object]]:
    """Every record in the buffer's files, in file-name order."""
    files = sorted((project / BUFFER).glob("**/*.ndjson"))
    return [json.loads(line) for f in files for line in f.read_text().splitlines()]


def landed(project: Path) -> list[int]:
    rows = duckdb.sql(
        f"SELECT n FROM read_parquet('{project}/warehouse/partner/**/*.parquet') ORDER BY n"
    ).fetchall()
    return [r[0] for r in rows]


def test_every_answer_of_the_receiver_then_a_run_lands_the_bodies_once(
    project: Path, prefect_server: str
) -> None:
    write_specs(project)
    with receiving(project, "pumps/partner.yaml", "pumps/slow.yaml") as r:
        post = f"{r.url}/ingest/partner"
        health = httpx.get(f"{r.url}/healthz")
        assert health.status_code == 200
        assert [(p["name"], p["path"]) for p in health.json()["pumps"]] == [
            ("partner", "/ingest/partner"),
            ("slow", "/hooks/slow"),
        ]

        one = httpx.post(post, headers=JSON, content=b'{"n": 1}')
        assert (one.status_code, one.json()) == (202, {"status": "accepted", "records": 1})
        assert buffered(project) == [{"n": 1}]  # durable before the answer

        keyed = {**JSON, "Idempotency-Key": "order-2"}
        array = b'[{"n": 2},\n {"n": 3}]'
        assert httpx.post(post, headers=keyed, content=array).status_code == 202
        again = httpx.post(post, headers=keyed, content=array)
        assert (again.status_code, again.json()) == (200, {"status": "duplicate"})
        ndjson = {**AUTH, "Content-Type": "application/x-ndjson; charset=utf-8"}
        assert (
            httpx.post(post, headers=ndjson, content=b'{"n": 4}\n\n{"n": 5}\n').status_code == 202
        )
        assert buffered(project) == [{"n": n} for n in range(1, 6)]

        refused = [
            (httpx.post(post, headers=ndjson, content=b'{"n": 6}\n{"n": 7\n'), 400, "line 2"),
            (httpx.post(post, headers=JSON, content=b'{"n": 6}\n[1]'), 400, "line 2"),
            (httpx.post(post, headers=JSON, content=b"[1]"), 400, "item 1"),
            (httpx.post(post, headers={"Content-Type": "application/json"}, content=b"{}"), 401, "token"),
            (httpx.post(post, headers={**JSON, "Authorization": "Bearer nope"}, content=b"{}"), 401, "token"),
            (httpx.post(post, headers={**AUTH, "Content-Type": "text/csv"}, content=b"n\n6"), 415, "Content-Type"),
            (httpx.post(post, headers=JSON, content=b'{"n": 6, "pad": "' + b"x" * 2000 + b'"}'), 413, "max_body_bytes"),
            # no Content-Length: the body is streamed and cut at the limit
            (httpx.post(post, headers=JSON, content=iter([b'{"n": 6, "pad": "', b"x" * 2000, b'"}'])), 413, "max_body_bytes"),
        ]  # fmt: skip
        for response, status, says in refused:
            assert (response.status_code, says in response.json()["error"]) == (status, True)
        assert len(buffered(project)) == 5  # nothing refused was kept

        slow = f"{r.url}/hooks/slow"
        assert httpx.post(slow, headers=JSON, content=b'{"a": 1}').status_code == 202
        over = httpx.post(slow, headers=JSON, content=b'{"a": 2}')
        assert over.status_code == 429
        assert int(over.headers["Retry-After"]) >= 1

        counts = httpx.get(f"{r.url}/healthz").json()["pumps"][0]
        assert (counts["accepted"], counts["duplicate"], counts["refused"]) == (3, 1, 8)

    done = run_in_process("run", "pumps/partner.yaml", "--json", cwd=project)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["rows_written"] == 5
    assert landed(project) == [1, 2, 3, 4, 5]
    again = run_in_process("run", "pumps/partner.yaml", "--json", cwd=project)
    assert json.loads(again.stdout)["rows_written"] == 0
    assert landed(project) == [1, 2, 3, 4, 5]


EXACT = (
    '{"n": 7, "pi": 3.141592653589793238462643383279, "big": 100000000000000000000000000000000000000000.5, '
    '"tiny": 0.12345678901234567890123, "e": 1E+2, "z": -0.0, "c": 1.10}'
)


@pytest.mark.usefixtures("prefect_server")
def test_numbers_are_stored_as_written_and_a_body_the_run_would_refuse_gets_400(
    project: Path,
) -> None:
    """A decimal never passes through a double on its way to the buffer; a repeated key and a
    field named like pumphouse's own columns are refused at the door, where the partner hears
    it, not by every later run of the pump."""
    write_specs(project)
    with receiving(project, "pumps/partner.yaml") as r:
        post = f"{r.url}/ingest/partner"
        assert httpx.post(post, headers=JSON, content=EXACT.encode()).status_code == 202
        stored = next((project / BUFFER).glob("**/*.ndjson")).read_text()
        for written in ("3.141592653589793238462643383279", "100000000000000000000000000000000000000000.5",
                        "0.12345678901234567890123", '"c":1.10', '"z":-0.0'):  # fmt: skip
            assert written in stored, stored
        twice = httpx.post(post, headers=JSON, content=b'{"n": 8, "n": 9}')
        assert twice.status_code == 400
        assert "key 'n' appears twice in one record" in twice.json()["error"]
        ours = httpx.post(post, headers=JSON, content=b'[{"n": 8}, {"n": 9, "_source": "x"}]')
        assert ours.status_code == 400
        assert ours.json()["error"].startswith("item 2: field '_source' has the name of one of")
    done = run_in_process("run", "pumps/partner.yaml", "--json", cwd=project)
    assert done.returncode == 0, done.stderr
    row = duckdb.sql(
        f"SELECT n, pi::VARCHAR AS pi, tiny::VARCHAR AS tiny FROM read_parquet('{project}/warehouse/partner/**/*.parquet')"
    ).fetchall()
    assert row == [(7, "3.141592653589793238462643383279", "0.12345678901234567890123")]


def test_bodies_the_run_could_not_land_get_400_store_nothing_and_keep_no_key(
    project: Path,
) -> None:
    """Nesting deeper than the parser can follow (was a 500, a RecursionError in the log), a
    lone surrogate (was a 500 and a reset), an empty key, keys equal ignoring case and a key
    holding a control character (were 202, then every run failed): each is a 400 naming
    where, nothing is stored, its key is not kept (the same key with a good body is stored),
    and the log has no traceback."""
    (project / "pumps" / "partner.yaml").write_text(SPEC.format(rate=1000).replace("1KiB", "64KiB"))
    deep = "[" * 256 + "1.5" + "]" * 256  # 256 levels inside the record: 257 in all
    bad = [
        ("json", "[" * 2040 + "]" * 2040),
        ("json", '{"n": 1, "x": ' + deep + "}"),
        ("ndjson", '{"n": 1}\n\n{"n": 2, "x": ' + deep + "}"),
        ("json", '{"n": 1, "x": "\\ud800"}'),
        ("ndjson", '{"n": 1}\n{"n": 2, "y": ["\\udc00"]}'),
        ("json", '{"n": 1, "": 2}'),
        ("json", '[{"n": 1}, {"n": 2, "Name": "a", "name": "b"}]'),
        ("json", '{"id": 22, "a\\u0000": 1, "a": 3}'),
        ("ndjson", '{"n": 1}\n{"n": 2, "del\\u007f": 2}'),
    ]
    good = [
        {"n": 1, "x": json.loads(deep[2:-2])},  # in an array: 256 levels, the most there may be
        {"n": 2, "name": "\U0001f600", "pair": "\U0001f600"},  # a pair is one character
        {"n": 3, "Name": "a"},  # keys differing in case across records: the run's to handle
    ]
    with receiving(project, "pumps/partner.yaml") as r:
        post = f"{r.url}/ingest/partner"
        answers = []
        for i, (kind, body) in enumerate(bad):
            headers = {**JSON, "Content-Type": f"application/{kind}", "Idempotency-Key": f"k{i}"}
            refused = httpx.post(post, headers=headers, content=body.encode())
            answers.append((refused.status_code, refused.json()["error"]))
            assert buffered(project) == []
        good_body = (
            '[{"n": 1, "x": ' + deep[2:-2] + '}, {"n": 2, "name": "\U0001f600", '
            '"pair": "\\ud83d\\ude00"}, {"n": 3, "Name": "a"}]'
        )
        for i in range(len(bad)):  # no key was kept: each is stored now, once
            keyed = {**JSON, "Idempotency-Key": f"k{i}"}
            assert httpx.post(post, headers=keyed, content=good_body.encode()).status_code == 202
    nesting = "nesting deeper than 256 levels of arrays and objects"
    surrogate = "not valid UTF-8 text: a lone surrogate"
    assert answers == [
        (400, f"line 1: {nesting} (column 257); flatten the record"),
        (400, f"line 1: {nesting} (column 270); flatten the record"),
        (400, f"line 3: {nesting} (column 270); flatten the record"),
        (400, f"item 1: key 'x': {surrogate} \\ud800 (one half of a \\uXXXX pair without "
              "the other); send the pair, or the character itself in UTF-8"),
        (400, f"line 2: key 'y': {surrogate} \\udc00 (one half of a \\uXXXX pair without "
              "the other); send the pair, or the character itself in UTF-8"),
        (400, 'item 1: a key is empty (""); the run names a column by its key, so give each '
              "field a name"),
        (400, "item 2: keys 'Name' and 'name' differ only in case; the run's columns are not "
              "case-sensitive, so rename one of them"),
        (400, "item 1: key 'a\\u0000' holds a control character; rename it"),
        (400, "line 2: key 'del\\u007f' holds a control character; rename it"),
    ]  # fmt: skip
    assert buffered(project) == good * len(bad)
    log = (project / "serve.log").read_text()
    assert "Traceback" not in log and "Error" not in log, log


@pytest.mark.reliability(
    "secrets",
    "the receiver's token (${env:}) sent right and wrong, bodies stored, duplicates, refusals",
    "zero hits of the token in every file the receiver leaves: buffer, keys, lock, its log",
)
def test_the_token_is_in_no_file_the_receiver_leaves(project: Path) -> None:
    write_specs(project)
    with receiving(project, "pumps/partner.yaml") as r:
        post = f"{r.url}/ingest/partner"
        keyed = {**JSON, "Idempotency-Key": "k1"}
        assert httpx.post(post, headers=keyed, content=b'{"n": 1}').status_code == 202
        assert httpx.post(post, headers=keyed, content=b'{"n": 1}').status_code == 200
        wrong = {**JSON, "Authorization": f"Bearer {TOKEN}x"}
        assert httpx.post(post, headers=wrong, content=b'{"n": 2}').status_code == 401
        assert httpx.post(post, headers=JSON, content=b"{").status_code == 400
        r.process.send_signal(signal.SIGTERM)
        r.process.wait()
    left = [p for p in project.rglob("*") if p.is_file()]
    assert project / "serve.log" in left
    assert any(p.suffix == ".ndjson" for p in left)
    assert [p for p in left if TOKEN.encode() in p.read_bytes()] == []


def test_a_body_the_buffer_cannot_take_is_answered_503_and_its_retry_is_stored(
    project: Path,
) -> None:
    """A file where the year's folder should be: the write fails as on a full disk. The
    key was claimed before the write, but names no file, so the retry stores the body."""
    write_specs(project)
    with receiving(project, "pumps/partner.yaml") as r:
        post = f"{r.url}/ingest/partner"
        years = {time.gmtime().tm_year, time.gmtime(time.time() + 60).tm_year}
        for year in years:
            (project / BUFFER / str(year)).write_text("in the way")
        keyed = {**JSON, "Idempotency-Key": "k-503"}
        failed = httpx.post(post, headers=keyed, content=b'{"n": 1}')
        assert failed.status_code == 503
        assert buffered(project) == []
        for year in years:
            (project / BUFFER / str(year)).unlink()
        assert httpx.post(post, headers=keyed, content=b'{"n": 1}').status_code == 202
        assert httpx.post(post, headers=keyed, content=b'{"n": 1}').status_code == 200
    assert buffered(project) == [{"n": 1}]


def test_a_second_receiver_for_the_same_buffer_is_refused(project: Path) -> None:
    write_specs(project)
    with receiving(project, "pumps/partner.yaml"):
        second = run_cli(
            "serve", "pumps/partner.yaml", "--port", str(free_port()), cwd=project,
            env={"PARTNER_TOKEN": TOKEN},
        )  # fmt: skip
    assert second.returncode == 1
    assert "another `pumphouse serve` receives into" in second.stderr


BODIES = 500
KILLS = 4
CLIENTS = 8


@pytest.mark.slow
@pytest.mark.reliability(
    "crash",
    "500 numbered bodies posted by 8 clients with Idempotency-Keys and retries (every 5th sent again after its answer); the receiver (pumphouse serve) killed with kill -9 and restarted 4 times while they post",
    "every body is answered (202, or 200 when a kill came between its file and the answer), none 202 twice; the buffer holds each number exactly once, and after `pumphouse run` the sink does too",
)
def test_kill_9_soak_stores_each_body_once(project: Path, prefect_server: str) -> None:
    write_specs(project)
    port = free_port()
    accepted: Counter[int] = Counter()  # 202s per number (a kill may turn one into a 200)
    answered: set[int] = set()
    todo = list(range(BODIES))
    lock = threading.Lock()
    stop = threading.Event()

    def post_until_answered(client: httpx.Client, n: int) -> int:
        headers = {**JSON, "Idempotency-Key": f"body-{n}"}
        while True:
            try:
                got = client.post(
                    f"http://127.0.0.1:{port}/ingest/partner",
                    headers=headers,
                    content=json.dumps({"n": n}).encode(),
                )
            except httpx.TransportError:  # the receiver is down: retry, as a sender does
                time.sleep(0.05)
                continue
            if got.status_code in (200, 202):
                return got.status_code
            assert got.status_code in (429, 503), got.text
            time.sleep(0.05)

    def client() -> None:
        with httpx.Client(timeout=30) as c:
            while not stop.is_set():
                with lock:
                    if not todo:
                        return
                    n = todo.pop(0)  # counted as done from here: a kill lands mid-flight
                status = post_until_answered(c, n)
                with lock:
                    answered.add(n)
                    accepted[n] += status == 202
                if n % 5 == 0:
                    assert post_until_answered(c, n) == 200

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    process = start(project, ("pumps/partner.yaml",), port)
    try:
        for t in threads:
            t.start()
        for kill in range(1, KILLS + 1):
            while True:  # kill when the clients are a kill's share further, mid-flight
                with lock:
                    if BODIES - len(todo) >= kill * BODIES // (KILLS + 1):
                        break
                time.sleep(0.01)
            process.kill()
            process.wait()
            process = start(project, ("pumps/partner.yaml",), port)
        for t in threads:
            t.join()
    finally:
        stop.set()
        process.kill()
        process.wait()
    assert answered == set(range(BODIES))
    # No number was answered 202 twice; one stored just before a kill is answered 200 on retry.
    assert max(accepted.values()) == 1
    numbers = Counter(int(str(rec["n"])) for rec in buffered(project))
    assert sorted(numbers) == list(range(BODIES))
    assert set(numbers.values()) == {1}

    done = run_in_process("run", "pumps/partner.yaml", "--json", cwd=project)
    assert done.returncode == 0, done.stderr
    assert landed(project) == list(range(BODIES))


def test_file_names_sort_by_arrival() -> None:
    now = time.time()
    names = [file_name(now) for _ in range(1000)] + [file_name(now + 1)]
    assert names == sorted(names) and len(set(names)) == len(names)
    assert names[0].startswith(time.strftime("%Y/%m/%d/%H%M%S-", time.gmtime(now)))


WEBHOOK = """
name: partner
source: {source}
sink: {{type: parquet, url: ./warehouse/partner}}
"""


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{type: webhook}", "source.token: missing required key 'token'"),
        ("{type: webhook, token: hunter2}", "source.token: write the token as a reference"),
        ('{type: webhook, token: "${env:PARTNER_TOKEN}", url: x}', "source.url: unknown key 'url'"),
        ('{type: webhook, token: "${env:PARTNER_TOKEN}", path: ingest}', "source.path"),
        (
            '{type: webhook, token: "${env:PARTNER_TOKEN}", max_body_bytes: 1GiB}',
            "over the ceiling of 64.0MiB",
        ),
    ],
)
def test_bad_webhook_sources_are_refused(
    source: str, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PARTNER_TOKEN", TOKEN)
    with pytest.raises(SpecError) as e:
        parse_spec(WEBHOOK.format(source=source), "pumps/partner.yaml")
    assert message in "\n".join(e.value.problems)


def test_a_webhook_source_validates(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARTNER_TOKEN", TOKEN)
    spec = parse_spec(
        WEBHOOK.format(source='{type: webhook, token: "${env:PARTNER_TOKEN}"}'), "p.yaml"
    )
    assert spec.source.type == "webhook"
    assert TOKEN not in spec.model_dump_json()  # resolved by serve only


def test_serve_refuses_a_spec_it_cannot_serve(project: Path) -> None:
    write_specs(project)
    files = project / "pumps" / "files.yaml"
    files.write_text(
        "name: files\nsource: {type: files, url: ./in/, format: ndjson}\n"
        "sink: {type: parquet, url: ./warehouse/files}\n"
    )
    not_webhook = run_in_process("serve", "pumps/files.yaml", cwd=project)
    assert not_webhook.returncode == 2
    assert "serve receives for source.type webhook only" in not_webhook.stderr
    env = {k: v for k, v in os.environ.items() if k != "PARTNER_TOKEN"}
    no_token = subprocess.run(
        [PUMPHOUSE, "serve", "pumps/partner.yaml", "--port", str(free_port())],
        cwd=project, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert no_token.returncode == 2
    assert "environment variable PARTNER_TOKEN is not set" in no_token.stderr


def test_a_bucket_buffer_takes_bodies_and_a_run_reads_them(
    project: Path, prefect_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A buffer in S3 (moto): each body one PUT; a key seen is 200; a bucket that is not
    there is 503 with nothing kept; the run reads the bucket's files."""
    from tests._moto import ADMIN, make_bucket, moto_s3, s3, storage_options

    monkeypatch.setenv("PUMP_S3_KEY", ADMIN["key"])
    monkeypatch.setenv("PUMP_S3_SECRET", ADMIN["secret"])
    with moto_s3() as endpoint:
        make_bucket(endpoint, "drop")
        opts = storage_options(endpoint)
        for name, bucket in (("partner", "drop"), ("gone", "no-such-bucket")):
            (project / "pumps" / f"{name}.yaml").write_text(
                f"name: {name}\n"
                f'source: {{type: webhook, token: "${{env:PARTNER_TOKEN}}", '
                f"buffer: s3://{bucket}/partner/, storage_options: {opts}}}\n"
                "schema: {columns: {n: {type: int64}}}\n"
                f"sink: {{type: parquet, url: ./warehouse/{name}}}\n"
            )
        with receiving(project, "pumps/partner.yaml", "pumps/gone.yaml") as r:
            keyed = {**JSON, "Idempotency-Key": "k"}
            post = f"{r.url}/ingest/partner"
            assert (
                httpx.post(post, headers=keyed, content=b'[{"n": 1}, {"n": 2}]').status_code == 202
            )
            assert (
                httpx.post(post, headers=keyed, content=b'[{"n": 1}, {"n": 2}]').status_code == 200
            )
            assert (
                httpx.post(f"{r.url}/ingest/gone", headers=JSON, content=b'{"n": 3}').status_code
                == 503
            )
        log = (project / "serve.log").read_text()
        assert "warning: pump gone: cannot write to its buffer s3://no-such-bucket/partner" in log
        fs = s3(endpoint)
        bodies = [p for p in fs.find("drop/partner") if p.endswith(".ndjson")]
        assert len(bodies) == 1 and fs.cat_file(bodies[0]) == b'{"n":1}\n{"n":2}\n'
        assert TOKEN.encode() not in b"".join(fs.cat_file(p) for p in fs.find("drop"))
        done = run_in_process("run", "pumps/partner.yaml", "--json", cwd=project)
    assert done.returncode == 0, done.stderr
    assert landed(project) == [1, 2]


def test_one_key_sent_many_times_at_once_is_stored_once(project: Path) -> None:
    """Sixteen senders post one body with one key together: bodies that arrive together
    are written as one group, and a key twice in a group is stored once."""
    write_specs(project)
    with receiving(project, "pumps/partner.yaml") as r:
        headers = {**JSON, "Idempotency-Key": "same"}
        go = threading.Barrier(16)

        def send() -> int:
            go.wait()
            return httpx.post(
                f"{r.url}/ingest/partner", headers=headers, content=b'{"n": 1}', timeout=60
            ).status_code

        with ThreadPoolExecutor(16) as pool:
            statuses = Counter(pool.map(lambda _: send(), range(16)))
    assert statuses == Counter({202: 1, 200: 15})
    assert buffered(project) == [{"n": 1}]


def test_keys_sent_again_while_their_group_is_on_its_way_are_stored_once(project: Path) -> None:
    """Sixteen senders post the same 40 keyed bodies, four at a time from the same starting
    point, so a key often arrives while the group holding it is still being written (groups
    are written several at once; the body waits for that group): each key is answered 202
    once, 200 every other time, and stored once."""
    write_specs(project)
    keys = 40
    with receiving(project, "pumps/partner.yaml") as r:

        def send(sender: int) -> list[tuple[int, int]]:
            with httpx.Client(timeout=60) as client:
                order = [(sender // 4 + i) % keys for i in range(keys)]
                return [
                    (n, client.post(
                        f"{r.url}/ingest/partner",
                        headers={**JSON, "Idempotency-Key": f"key-{n}"},
                        content=json.dumps({"n": n}).encode(),
                    ).status_code)
                    for n in order
                ]  # fmt: skip

        with ThreadPoolExecutor(16) as pool:
            answers = [a for sent in pool.map(send, range(16)) for a in sent]
    assert Counter(status for n, status in answers if status == 202) == Counter({202: keys})
    assert Counter(n for n, status in answers if status == 202) == Counter(range(keys))
    assert Counter(status for _, status in answers) == Counter({202: keys, 200: 15 * keys})
    assert sorted(int(str(rec["n"])) for rec in buffered(project)) == list(range(keys))


def test_status_shows_the_receivers_counts_kept_across_restarts(project: Path) -> None:
    """`status` shows the answers the receiver gave (accepted, duplicate, refused), saved
    beside its keys: they survive a stop and add up over restarts."""
    write_specs(project)
    never = run_in_process("status", "pumps/partner.yaml", "--json", cwd=project)
    assert json.loads(never.stdout)[0]["receiver"] == {"accepted": 0, "duplicate": 0, "refused": 0}
    post = "{url}/ingest/partner"
    keyed = {**JSON, "Idempotency-Key": "k-1"}
    for round_ in (1, 2):
        with receiving(project, "pumps/partner.yaml") as r:
            assert httpx.post(
                post.format(url=r.url), headers=keyed, content=b'{"n": 1}'
            ).status_code == (202 if round_ == 1 else 200)
            assert (
                httpx.post(post.format(url=r.url), headers=JSON, content=b'{"n": 2}').status_code
                == 202
            )
            assert (
                httpx.post(post.format(url=r.url), headers=keyed, content=b'{"n": 1}').status_code
                == 200
            )
            assert (
                httpx.post(post.format(url=r.url), headers=AUTH, content=b"{}").status_code == 415
            )
            r.process.send_signal(signal.SIGTERM)  # a stop, as a supervisor does it
            r.process.wait()
    shown = run_in_process("status", "pumps/partner.yaml", "--json", cwd=project)
    assert json.loads(shown.stdout)[0]["receiver"] == {"accepted": 3, "duplicate": 3, "refused": 2}
    text = run_in_process("status", "pumps/partner.yaml", cwd=project)
    assert "  received         3 accepted, 3 duplicate, 2 refused\n" in text.stdout


@pytest.mark.slow
def test_a_deployed_pump_lands_what_serve_received(project: Path, prefect_server: str) -> None:
    """`pumphouse deploy` of a webhook-source pump, run by a real process worker in the
    project folder: the run lands the bodies `serve` stored, once."""
    from prefect.client.orchestration import get_client

    write_specs(project)
    with receiving(project, "pumps/partner.yaml") as r:
        for n in (1, 2, 3):
            keyed = {**JSON, "Idempotency-Key": f"n-{n}"}
            sent = httpx.post(f"{r.url}/ingest/partner", headers=keyed, content=f'{{"n": {n}}}')
            assert sent.status_code == 202
    deployed = run_cli("deploy", "pumps/partner.yaml", "--pool", "serve-pumps", cwd=project)
    assert deployed.returncode == 0, deployed.stderr
    assert "deployed pump/partner on pool serve-pumps" in deployed.stdout
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("pump/partner")
        flow_run = client.create_flow_run_from_deployment(deployment.id)
    log = project / "worker.log"
    with worker("serve-pumps", project, log):
        done = wait_for(flow_run.id, worker_log=log)
    assert done.state.is_completed(), (done.state, log.read_text()[-3000:])
    assert landed(project) == [1, 2, 3]
