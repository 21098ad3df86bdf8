"""The webhook sink against a real local receiver: chunks and their Idempotency-Keys, both
formats, JSON values, retries that keep the key, 413 splits, 4xx that stop the run with
nothing undelivered marked done, resuming, safety; and whole runs into a webhook."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from schemas.errors import PumpError, RetriesSpent
from schemas.spec import Spec
from tasks.engine.db import connect
from tasks.io.http import HttpFailure
from tasks.sinks.load import Load
from tasks.sinks.webhook import PROGRESS, deliver
from tests._http_servers import Answer, App, Receiver, Seen, hook_spec, serve
from tests.conftest import run_in_process
from tests.data import expected, is_valid, write_orders

RUN = "20260308T000000Z-abc123"


def sink_spec(url: str, **sink: Any) -> Spec:
    return Spec.model_validate(
        {
            "name": "orders",
            "source": {"type": "files", "url": "./in/", "format": "ndjson"},
            "sink": {"type": "http", "url": f"{url}/hook", "retry_max_wait": 0.05, **sink},
            "limits": {"requests_per_second": 1000},
        }
    )


def rows_table(n: int, per_batch: int) -> pa.Table:
    """`n` rows numbered into load batches of `per_batch`, with lineage, as the load step makes them."""
    return pa.table(
        {
            "order_id": pa.array(range(n), pa.int64()),
            "amount": pa.array([math.nan if i == 3 else i / 4 for i in range(n)], pa.float64()),
            "price": pa.array([decimal.Decimal(f"{i}.10") for i in range(n)], pa.decimal128(12, 2)),
            "day": pa.array([dt.date(2026, 3, 8)] * n, pa.date32()),
            "updated_at": pa.array(
                [dt.datetime(2026, 3, 8, 1, 2, 3) + dt.timedelta(minutes=i) for i in range(n)],
                pa.timestamp("us"),
            ),
            "note": pa.array([None if i % 5 == 0 else f"n{i}" for i in range(n)], pa.string()),
            "_source": pa.array([f"/in/f{i // 7}.ndjson" for i in range(n)], pa.string()),
            "_row": pa.array([i % 7 + 1 for i in range(n)], pa.int64()),
            "_batch": pa.array([i // per_batch for i in range(n)], pa.int64()),
        }
    )


def want(n: int) -> list[dict[str, Any]]:
    return [
        {
            "order_id": i,
            "amount": None if i == 3 else i / 4,
            "price": f"{i}.10",
            "day": "2026-03-08",
            "updated_at": (dt.datetime(2026, 3, 8, 1, 2, 3) + dt.timedelta(minutes=i)).isoformat()
            + "Z",
            "note": None if i % 5 == 0 else f"n{i}",
        }
        for i in range(n)
    ]


def send(spec: Spec, run: Path, n: int = 25, per_batch: int = 10) -> None:
    con = connect()
    try:
        con.register("src", rows_table(n, per_batch))
        con.execute("CREATE TEMP TABLE out AS SELECT * FROM src")
        deliver(Load(con, "out", (n + per_batch - 1) // per_batch, spec, run, RUN))
    finally:
        con.close()


def keys(app: App) -> list[str]:
    return [s.headers.get("idempotency-key", "") for s in app.seen]


def key(batch: int, chunk: int, split: str = "") -> str:
    return f"orders-{RUN}-{batch:05d}-{chunk:05d}{split}"


# ---------------------------------------------------------------- chunks, keys, formats


def test_each_load_batch_goes_in_chunks_of_batch_rows_with_stable_keys(tmp_path: Path) -> None:
    app = Receiver()
    with serve(app) as base:
        send(sink_spec(base, batch_rows=4), tmp_path)
    # load batches of 10, 10, 5 rows; chunks of 4: 4+4+2, 4+4+2, 4+1
    assert [len(rows) for _, rows in app.accepted] == [4, 4, 2, 4, 4, 2, 4, 1]
    assert keys(app) == [
        key(0, 0), key(0, 1), key(0, 2), key(1, 0), key(1, 1), key(1, 2), key(2, 0), key(2, 1)
    ]  # fmt: skip
    assert app.rows() == want(25)
    assert {s.headers["content-type"] for s in app.seen} == {"application/x-ndjson"}
    first = app.seen[0].body.decode()
    assert first.endswith("\n") and len(first.splitlines()) == 4
    assert json.loads(first.splitlines()[0]) == want(1)[0]
    assert (tmp_path / PROGRESS).read_text().splitlines() == keys(app)


def test_json_format_posts_an_array(tmp_path: Path) -> None:
    app = Receiver()
    with serve(app) as base:
        send(sink_spec(base, batch_rows=100, format="json"), tmp_path, n=5)
    assert [s.headers["content-type"] for s in app.seen] == ["application/json"]
    assert json.loads(app.seen[0].body) == want(5)


def test_a_resumed_delivery_skips_what_was_delivered_and_resends_with_the_same_key(
    tmp_path: Path,
) -> None:
    app = Receiver()
    with serve(app) as base:
        spec = sink_spec(base, batch_rows=4)
        send(spec, tmp_path)
        first = list(app.accepted)
        send(spec, tmp_path)  # all noted: nothing is sent again
        assert app.accepted == first
        # an attempt killed after sending chunk 1.2 and before noting it, with a torn note
        progress = tmp_path / PROGRESS
        noted = progress.read_text().splitlines()
        progress.write_text("\n".join(noted[:5]) + "\n" + noted[5][:9])
        send(spec, tmp_path)
    assert keys(app)[8:] == [key(1, 2), key(2, 0), key(2, 1)]
    assert app.accepted[8:] == first[5:]  # the same rows under the same keys


@pytest.mark.reliability(
    "transient faults",
    "webhook answers 429 and 5xx",
    "retried with the same Idempotency-Key",
)
def test_429_and_5xx_are_retried_with_the_same_key(tmp_path: Path) -> None:
    app = Receiver(script=[(429, {"Retry-After": "0"}), 500, "reset", 503])
    with serve(app) as base:
        send(sink_spec(base, batch_rows=10), tmp_path, n=12, per_batch=12)
    assert keys(app) == [key(0, 0)] * 5 + [key(0, 1)]
    assert app.rows() == want(12)


@pytest.mark.reliability(
    "limits",
    "webhook answers 413 Payload Too Large",
    "the chunk is split in halves until it fits",
)
def test_413_splits_the_chunk_until_it_fits(tmp_path: Path) -> None:
    app = Receiver(max_rows=3)
    with serve(app) as base:
        send(sink_spec(base, batch_rows=8), tmp_path, n=10, per_batch=10)
    assert app.rows() == want(10)
    assert [k for k, _ in app.accepted] == [
        key(0, 0, ".0.0"), key(0, 0, ".0.1"), key(0, 0, ".1.0"), key(0, 0, ".1.1"), key(0, 1)
    ]  # fmt: skip
    assert [len(rows) for _, rows in app.accepted] == [2, 2, 2, 2, 2]


def test_413_on_a_single_row_fails(tmp_path: Path) -> None:
    app = Receiver(max_rows=0)
    with serve(app) as base, pytest.raises(PumpError) as caught:
        send(sink_spec(base, batch_rows=2), tmp_path, n=2, per_batch=2)
    assert str(caught.value) == (
        f"POST {base}/hook failed with HTTP 413, sink refused the request; "
        'the server said: {"error": "too large"}; a single row is too large for the webhook '
        f"(Idempotency-Key {key(0, 0, '.0')}): raise the webhook's size limit, or select "
        "fewer columns (transform.select)"
    )
    assert app.accepted == []


@pytest.mark.reliability(
    "bad data",
    "webhook answers another 4xx",
    "the run fails; only delivered chunks are marked done; the next run sends the rest",
)
def test_a_4xx_stops_and_what_was_not_delivered_is_not_marked_done(tmp_path: Path) -> None:
    app = Receiver(script=[None, None, 422])
    with serve(app) as base:
        spec = sink_spec(base, batch_rows=4)
        with pytest.raises(HttpFailure) as caught:
            send(spec, tmp_path)
        assert str(caught.value) == (
            f"POST {base}/hook failed with HTTP 422, sink refused the request; "
            'the server said: {"error": "scripted"}'
        )
        assert len(app.seen) == 3  # not retried
        assert (tmp_path / PROGRESS).read_text().splitlines() == [key(0, 0), key(0, 1)]
        send(spec, tmp_path)  # the next attempt sends the rest
    assert keys(app)[3:] == [key(0, 2), key(1, 0), key(1, 1), key(1, 2), key(2, 0), key(2, 1)]
    assert app.rows() == want(25)  # each row once


@pytest.mark.reliability(
    "secrets",
    "a secret in webhook headers with a failing webhook",
    "sent, never shown in errors or files",
)
def test_headers_with_secrets_are_sent_and_never_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOOK_TOKEN", "hook-secret-8675309")
    app = Receiver(script=[401])
    with serve(app) as base, pytest.raises(HttpFailure) as caught:
        send(
            sink_spec(base, headers={"Authorization": "Bearer ${env:HOOK_TOKEN}"}),
            tmp_path,
            n=1,
        )
    assert app.seen[0].headers["authorization"] == "Bearer hook-secret-8675309"
    assert str(caught.value) == (
        f"POST {base}/hook failed with HTTP 401, unauthorized: check the credentials in "
        'sink.headers; the server said: {"error": "scripted"}'
    )


def test_numbers_and_booleans_in_headers_are_sent_as_written(tmp_path: Path) -> None:
    app = Receiver()
    with serve(app) as base:
        send(sink_spec(base, headers={"X-Batch-Rows": 10, "X-Test": True}), tmp_path, n=1)
    assert (app.seen[0].headers["x-batch-rows"], app.seen[0].headers["x-test"]) == ("10", "true")


class Redirecting(Receiver):
    def __init__(self, status: int, target: str = "/hook") -> None:
        super().__init__()
        self.status, self.target = status, target

    def answer(self, req: Seen) -> Answer:
        if req.path == "/old":
            return Answer(self.status, b"", {"Location": self.target})
        return super().answer(req)


def test_a_307_on_the_same_origin_is_followed_with_the_body(tmp_path: Path) -> None:
    app = Redirecting(307)
    with serve(app) as base:
        spec = sink_spec(base)
        spec = spec.model_copy(update={"sink": spec.sink.model_copy(update={"url": f"{base}/old"})})
        send(spec, tmp_path, n=3)
    assert [s.path for s in app.seen] == ["/old", "/hook"]
    assert app.rows() == want(3)


@pytest.mark.parametrize("status", [301, 302, 303])
def test_a_redirect_that_would_drop_the_body_is_an_error(tmp_path: Path, status: int) -> None:
    app = Redirecting(status)
    with serve(app) as base:
        spec = sink_spec(base)
        spec = spec.model_copy(update={"sink": spec.sink.model_copy(update={"url": f"{base}/old"})})
        with pytest.raises(PumpError) as caught:
            send(spec, tmp_path, n=3)
    assert str(caught.value) == (
        f"POST {base}/old answered HTTP {status} (a redirect that would drop the body); "
        f"set sink.url to {base}/hook"
    )
    assert [s.path for s in app.seen] == ["/old"]


def test_a_redirect_to_another_origin_is_not_followed(tmp_path: Path) -> None:
    other = Receiver()
    with serve(other) as elsewhere:
        app = Redirecting(307, f"{elsewhere}/hook")
        with serve(app) as base:
            spec = sink_spec(base)
            spec = spec.model_copy(
                update={"sink": spec.sink.model_copy(update={"url": f"{base}/old"})}
            )
            with pytest.raises(PumpError) as caught:
                send(spec, tmp_path, n=3)
    assert other.seen == []
    assert "is on another origin than sink.url" in str(caught.value)


# ---------------------------------------------------------------- whole runs


def received(rows: list[dict[str, Any]]) -> dict[int, tuple[Any, ...]]:
    """The receiver's rows in the oracle's form; an order received twice fails."""
    out: dict[int, tuple[Any, ...]] = {}
    for r in rows:
        assert r["order_id"] not in out, f"order {r['order_id']} received twice"
        out[r["order_id"]] = (r["customer"], r["amount"], r["status"], r["updated_at"])
    return out


def run_pump() -> dict[str, Any]:
    from flows.pump import pump

    return dict(pump(spec_path="pumps/orders.yaml"))


@pytest.mark.usefixtures("prefect_server")
def test_a_run_posts_exactly_the_rows_a_parquet_sink_would_land(project: Path) -> None:
    import duckdb

    records = write_orders(project / "in", files=2, rows=150, seed=5)
    app = Receiver()
    with serve(app) as base:
        (project / "pumps" / "orders.yaml").write_text(hook_spec(base, 100, 30))
        s = run_pump()
    assert s["status"] == "ok" and s["rows_written"] == len(expected(records))
    assert received(app.rows()) == expected(records)
    assert len({k for k, _ in app.accepted}) == len(app.accepted)
    rejected = duckdb.sql(
        f"SELECT count(*) FROM read_parquet('{project}/.pumphouse/orders/rejected/*.parquet')"
    ).fetchall()[0][0]
    assert rejected == s["rows_rejected"] == sum(1 for r in records if not is_valid(r))


@pytest.mark.usefixtures("prefect_server")
def test_a_run_stopped_by_a_4xx_is_finished_by_the_next_without_doubles(project: Path) -> None:
    records = write_orders(project / "in", files=2, rows=150, seed=6)
    app = Receiver(script=[None, None, None, 400])
    with serve(app) as base:
        (project / "pumps" / "orders.yaml").write_text(hook_spec(base, 100, 30))
        with pytest.raises(HttpFailure):
            run_pump()
        assert len(app.accepted) == 3
        manifest = json.loads((project / ".pumphouse/orders/manifest.json").read_text())
        assert manifest["phase"] == "loading"
        assert not (project / ".pumphouse/orders/state.json").exists()
        s = run_pump()
    assert (s["status"], s["resumed"], s["run_id"]) == ("ok", True, manifest["run_id"])
    assert received(app.rows()) == expected(records)  # each row once: delivered chunks skipped
    assert json.loads((project / ".pumphouse/orders/state.json").read_text())["hwm"]


@pytest.mark.usefixtures("prefect_server")
@pytest.mark.parametrize("retries", [0, 2])
def test_sink_retries_is_how_often_a_failing_post_is_tried_again(
    project: Path, retries: int
) -> None:
    """`retries` is the whole story: the load step is not tried again around a POST that has
    had them (it would multiply them by the step's own tries)."""
    write_orders(project / "in", files=1, rows=20, seed=7)
    app = Receiver(script=[503] * 20)
    with serve(app) as base:
        text = hook_spec(base, 100, 30).replace(
            "  retry_max_wait: 0.05\n", f"  retry_max_wait: 0.05\n  retries: {retries}\n"
        )
        (project / "pumps" / "orders.yaml").write_text(text)
        with pytest.raises(RetriesSpent) as failed:
            run_pump()
    assert len(app.seen) == retries + 1
    assert f"failed {retries + 1} times in " in str(failed.value)
    assert len({r.headers["idempotency-key"] for r in app.seen}) == 1


@pytest.mark.usefixtures("prefect_server")
@pytest.mark.reliability(
    "transient faults",
    "a webhook that trickles its reply (a byte every 0.3 s, never done)",
    "sink.timeout bounds the whole request: retried per sink.retries, then the run fails "
    "naming the URL and the timeout",
)
def test_a_trickling_webhook_fails_the_run_at_the_timeout(project: Path) -> None:
    write_orders(project / "in", files=1, rows=20, seed=8)
    app = Receiver(script=[("trickle", 0.3)] * 5)
    with serve(app) as base:
        text = hook_spec(base, 100, 30).replace(
            "  retry_max_wait: 0.05\n", "  retry_max_wait: 0.05\n  timeout: 1s\n  retries: 0\n"
        )
        (project / "pumps" / "orders.yaml").write_text(text)
        done = run_in_process("run", "pumps/orders.yaml", "--json", cwd=project)
    assert done.returncode == 1, done.stderr
    (line,) = done.stdout.strip().splitlines()
    summary = json.loads(line)
    assert summary["status"] == "failed"
    assert summary["error"].startswith(f"POST {base}/hook failed 1 times in ")
    assert "last with no complete answer within sink.timeout (1s)" in summary["error"]
    assert len(app.seen) == 1
