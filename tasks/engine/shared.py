"""One DuckDB shared by the pieces of work a process runs at once (a run's files staged side
by side), each in a connection of its own: one buffer pool, one set of worker threads.

A DuckDB's first queries cost more than its later ones: staging orders-1m's 4 files in one
DuckDB takes ~0.5 CPU-s (~20%) less than in a DuckDB each.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass

from tasks.engine.db import Connection, connect
from tasks.run import deadline


@dataclass
class _Shared:
    con: Connection
    users: int = 0  # connections open on it now
    opened: int = 0  # connections opened on it in all
    closing: bool = False  # its `shared` block has ended: the last user closes it


_SHARED: dict[str, _Shared] = {}
_LOCK = threading.Lock()


@contextmanager
def shared(
    name: str,
    memory_bytes: int,
    temp_dir: str | None = None,
    *,
    sandbox: Sequence[str] | None = None,
) -> Iterator[None]:
    """While open, `session(..., shared=name)` in this process connects to one DuckDB with
    `memory_bytes` (for them all), `temp_dir` and `sandbox` (see tasks.engine.db.connect). It
    closes once the block and its last connection have ended (a failed run may leave steps
    running for a moment)."""
    with _LOCK:
        if name in _SHARED:
            raise ValueError(
                f"a shared DuckDB for {name} is open already in this process; end that "
                "`shared` block before opening another under the same name"
            )
        engine = _SHARED[name] = _Shared(connect(memory_bytes, temp_dir, sandbox=sandbox))
    try:
        yield
    finally:
        with _LOCK:
            del _SHARED[name]
            engine.closing = True
            last = engine.users == 0
        if last:
            engine.con.close()


@contextmanager
def session(
    memory_bytes: int,
    temp_dir: str | None = None,
    *,
    shared: str | None = None,
    sandbox: Sequence[str] | None = None,
) -> Iterator[Connection]:
    """A connection for one piece of work, closed after it (its temp tables go with it): to
    the DuckDB named `shared` when one is open in this process (with its settings), else to a
    DuckDB of its own with `memory_bytes`, `temp_dir` and `sandbox` (see tasks.engine.db.connect)."""
    found = _join(shared)
    if found is None:
        with closing(connect(memory_bytes, temp_dir, sandbox=sandbox)) as own, deadline.watch(own):
            yield own
        return
    engine, con = found
    try:
        with deadline.watch(con):
            yield con
    finally:
        con.close()
        _leave(engine)


def _join(name: str | None) -> tuple[_Shared, Connection] | None:
    """A new connection to the DuckDB named `name`, counted; None if none is open."""
    with _LOCK:
        engine = _SHARED.get(name) if name is not None else None
        if engine is None:
            return None
        con = engine.con.cursor()
        engine.users += 1
        engine.opened += 1
        return engine, con


def _leave(engine: _Shared) -> None:
    with _LOCK:
        engine.users -= 1
        last = engine.closing and engine.users == 0
    if last:
        engine.con.close()
