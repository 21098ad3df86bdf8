"""The Delta Lake sink (`sink.type: delta`): append, merge or overwrite, one commit per batch."""

from __future__ import annotations

from pathlib import Path

from schemas.errors import NotSupportedYet
from schemas.spec import Spec
from tasks._duckdb import Connection


def write_batches(
    con: Connection, table: str, batches: int, spec: Spec, run: Path, run_id: str, seq_base: int
) -> None:
    raise NotSupportedYet(
        "sink.type 'delta' is valid but not supported by this build yet; use sink.type parquet"
    )


def committed_seq(spec: Spec) -> int:
    return 0


def remove_all(spec: Spec) -> None:
    return None
