"""The webhook sink (`sink.type: http`): POST each batch, with an Idempotency-Key stable across replays."""

from __future__ import annotations

from pathlib import Path

from schemas.errors import NotSupportedYet
from schemas.spec import Spec
from tasks._duckdb import Connection


def deliver(con: Connection, table: str, batches: int, spec: Spec, run: Path, run_id: str) -> None:
    raise NotSupportedYet(
        "sink.type 'http' is valid but not supported by this build yet; use sink.type parquet"
    )
