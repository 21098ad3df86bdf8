"""A Load: what the load step hands a sink to write (see tasks/sinks/registry).

The run's rows are a table on the load step's DuckDB connection, numbered by `_batch`
0..batches-1, lineage (`_source`, `_row`) still on. A sink writes them idempotently for a
replay of the same run: its batches are the run's sequence numbers seq_base + k + 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from schemas.spec import Spec
from tasks.engine.db import Connection


@dataclass(frozen=True)
class Load:
    con: Connection
    table: str
    batches: int
    spec: Spec
    run: Path  # the run's work folder (a sink's progress notes, spill)
    run_id: str
    seq_base: int = 0  # batches committed by the pump's runs before this one
    hwm: str | None = None  # the high-water mark the run will commit (a Delta commit records it)
