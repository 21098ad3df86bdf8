"""The webhook sink (`sink.type: http`): POST each batch, with an Idempotency-Key stable across replays.

Load batch k of the run is sent in chunks of `sink.batch_rows` rows, in a fixed order, as
ndjson or a JSON array. The key of chunk c is `NAME-RUN-k-c` (a chunk the webhook refuses
as too large, HTTP 413, is split in halves keyed `...-c.0` and `...-c.1`), so the same rows
carry the same key whenever they are sent again: after a retry, or when a killed run is
finished by the next one. Delivered keys are noted in the run's staging folder, and a
resumed run skips them; a chunk sent but not yet noted is sent again with its key.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math
from collections.abc import Iterator
from typing import Any

from schemas.errors import PumpError
from schemas.loader import resolve_mapping
from schemas.spec import HttpSink
from tasks.engine.db import Connection, ident
from tasks.engine.db import batches as arrow_batches
from tasks.internal import LOADED
from tasks.io.files import LocalFiles
from tasks.io.http import Client, HttpFailure, Manners, utc_iso
from tasks.run import faults
from tasks.sinks.load import Load

PROGRESS = "http_delivered.txt"  # one delivered Idempotency-Key per line
CONTENT_TYPES = {"ndjson": "application/x-ndjson", "json": "application/json"}


def deliver(load: Load) -> None:
    """POST every row of the load (numbered by `_batch`) to `sink.url`, each exactly once per
    key."""
    con, table, spec, run_id = load.con, load.table, load.spec, load.run_id
    sink = spec.sink
    assert isinstance(sink, HttpSink)
    manners = Manners(
        timeout=sink.timeout,
        requests_per_second=spec.limits.requests_per_second,
        retries=sink.retries,
        max_wait=sink.retry_max_wait,
        max_bytes=64 * 1024,
        cap_is_error=False,
        where="sink",
    )
    notes = LocalFiles(load.run)
    done = delivered(notes.read(PROGRESS))
    order = ", ".join([*(ident(p) for p in sink.partition_by), "_source", "_row"])
    with Client(sink.url, resolve_mapping(sink.headers), manners) as client:
        post = _Poster(client, sink, done, notes)
        for k in range(load.batches):
            sql = f"SELECT * EXCLUDE ({', '.join(LOADED)}) FROM {table} WHERE _batch = {k} ORDER BY {order}"
            for c, rows in enumerate(chunks(con, sql, sink.batch_rows)):
                post.send(rows, f"{spec.name}-{run_id}-{k:05d}-{c:05d}")
            faults.point("loaded_batch")


def delivered(progress: bytes | None) -> set[str]:
    """The keys an earlier attempt of this run delivered (a torn last line is not one)."""
    text = (progress or b"").decode("utf-8")
    return {line[:-1] for line in text.splitlines(keepends=True) if line.endswith("\n")}


def chunks(con: Connection, sql: str, size: int) -> Iterator[list[dict[str, Any]]]:
    """The query's rows as JSON-ready dicts, `size` at a time (the last chunk may be shorter)."""
    pending: list[dict[str, Any]] = []
    for batch in arrow_batches(con, sql, size):
        for row in batch.to_pylist():
            pending.append({k: jsonable(v) for k, v in row.items()})
            if len(pending) == size:
                yield pending
                pending = []
    if pending:
        yield pending


def jsonable(value: Any) -> Any:
    """A value as JSON carries it: timestamps as ISO-8601 UTC (`Z`), dates as ISO-8601,
    decimals as strings (every digit kept), NaN and infinities as null."""
    if isinstance(value, dt.datetime):
        return utc_iso(value)
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    return value


def body(rows: list[dict[str, Any]], fmt: str) -> bytes:
    if fmt == "json":
        return json.dumps(rows, ensure_ascii=False, separators=(",", ":")).encode()
    return "".join(
        json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n" for r in rows
    ).encode()


class _Poster:
    """Sends chunks, splits one the webhook finds too large, notes each delivered key."""

    def __init__(self, client: Client, sink: HttpSink, done: set[str], notes: LocalFiles) -> None:
        self.client, self.sink, self.done, self.notes = client, sink, done, notes

    def send(self, rows: list[dict[str, Any]], key: str) -> None:
        if key in self.done:
            return
        headers = {"Idempotency-Key": key, "Content-Type": CONTENT_TYPES[self.sink.format]}
        try:
            self.client.post(self.sink.url, body(rows, self.sink.format), headers)
        except HttpFailure as e:
            if e.status != 413:
                raise
            if len(rows) == 1:
                raise PumpError(
                    f"{e}; a single row is too large for the webhook (Idempotency-Key {key}): "
                    "raise the webhook's size limit, or select fewer columns (transform.select)"
                ) from None
            half = (len(rows) + 1) // 2
            self.send(rows[:half], f"{key}.0")
            self.send(rows[half:], f"{key}.1")
            return
        self.notes.append_line(PROGRESS, key)
        self.done.add(key)
