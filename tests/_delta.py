"""Helpers for the Delta sink's tests: a delta spec, the table's rows as an analyst reads
them, the batch sequence numbers its commits carry, and an S3 API (moto in server mode, its
own process; bucket and storage_options helpers are tests._moto's)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest
from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError

from tests._moto import free_port
from tests.data import spec_text

APP = "pumphouse:orders"


def delta_spec(mode: str = "append", **kw: Any) -> str:
    """tests.data's orders spec with a delta sink (`mode`), partitioned by status."""
    return spec_text(**kw).replace("  type: parquet\n", f"  type: delta\n  mode: {mode}\n")


def table_rows(url: str, storage_options: dict[str, str] | None = None) -> Counter[tuple[Any, ...]]:
    """The table's order rows (order_id, customer, amount, status, updated_at as text)."""
    dt = _table(url, storage_options)
    if dt is None:
        return Counter()
    data = dt.to_pyarrow_table()
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.register("t", data)
    rows = con.sql(
        "SELECT order_id, customer, amount, status, strftime(updated_at, '%Y-%m-%dT%H:%M:%SZ') "
        "FROM t"
    ).fetchall()
    con.close()
    return Counter(rows)


def as_oracle(rows: Counter[tuple[Any, ...]]) -> dict[int, tuple[Any, ...]]:
    """Rows keyed by order, as tests.data.expected gives them; an order twice is an error."""
    out: dict[int, tuple[Any, ...]] = {}
    for oid, *rest in rows.elements():
        assert oid not in out, f"order {oid} is in the table twice"
        out[oid] = tuple(rest)
    return out


def commit_seqs(url: str, storage_options: dict[str, str] | None = None) -> list[int]:
    """The batch sequence numbers of the table's commits, oldest first (each must appear once)."""
    dt = _table(url, storage_options)
    history = [] if dt is None else dt.history()
    return [int(h["pumphouse.seq"]) for h in reversed(history) if "pumphouse.seq" in h]


def txn_version(url: str, storage_options: dict[str, str] | None = None) -> int:
    dt = _table(url, storage_options)
    return 0 if dt is None else (dt.transaction_version(APP) or 0)


def _table(url: str, storage_options: dict[str, str] | None) -> DeltaTable | None:
    try:
        return DeltaTable(url, storage_options=storage_options)
    except TableNotFoundError:
        return None


S3_KEYS = {"key": "delta-test-key", "secret": "delta-test-secret"}


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """A moto S3 server (server mode) on loopback, in its own process: deltalake waits on
    some requests holding the GIL, which would stall a server thread in this process (so
    tests._moto's in-process moto_s3 deadlocks deltalake's merge)."""
    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300  # a bound on a hang: a busy machine starts it slowly
    while True:
        try:
            httpx.get(f"{url}/moto-api/", timeout=2)
            break
        except httpx.HTTPError:
            assert server.poll() is None and time.monotonic() < deadline, "moto did not start"
            time.sleep(0.2)
    yield url
    server.terminate()
    server.wait(20)
