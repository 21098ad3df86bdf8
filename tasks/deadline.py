"""limits.max_run_seconds: a run's deadline. Once it passes, the DuckDB queries of the run are
interrupted (again each second, so that one started just after is stopped too) and the steps
stop at their next batch; the run fails and leaves its state as a crash would.

Steps find their run's deadline through a context variable: Prefect's thread task runner
runs each task in a copy of the flow's context. Stage steps on Dask workers do not see it:
there the run stops once the flow has the step back.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
from collections.abc import Iterator

from schemas.errors import OutOfTime
from tasks._duckdb import Connection, interrupt

AGAIN_SECONDS = 1.0  # how often the interrupt is repeated once the deadline has passed

_current: contextvars.ContextVar[Deadline | None] = contextvars.ContextVar(
    "pumphouse_deadline", default=None
)


class Deadline:
    """One run's deadline, `seconds` after its `running()` block starts."""

    def __init__(self, seconds: float, ceiling: float) -> None:
        self.seconds, self.ceiling = seconds, ceiling
        self.expired = threading.Event()
        self._ended = threading.Event()
        self._watched: set[Connection] = set()
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        """The run: the deadline counts from here, for the steps started in this context."""
        token = _current.set(self)
        watchdog = threading.Thread(target=self._watchdog, name="pumphouse-deadline", daemon=True)
        watchdog.start()
        try:
            yield
        finally:
            self._ended.set()
            _current.reset(token)
            watchdog.join()

    @contextlib.contextmanager
    def watching(self, con: Connection) -> Iterator[None]:
        """While open, `con`'s queries are interrupted once the deadline has passed."""
        if self.expired.is_set():
            raise self.error()
        with self._lock:
            self._watched.add(con)
        try:
            yield
        finally:
            with self._lock:
                self._watched.discard(con)

    def error(self) -> OutOfTime:
        return OutOfTime(
            f"the run took longer than limits.max_run_seconds ({self.seconds:g} s) and was "
            "stopped; nothing is lost: the next run finishes it. Raise limits.max_run_seconds "
            f"(ceiling {self.ceiling:g} s), or lower limits.max_rows_per_run so that one run "
            "does less"
        )

    def _watchdog(self) -> None:
        if self._ended.wait(self.seconds):
            return
        self.expired.set()
        while True:
            with self._lock:
                for con in self._watched:
                    interrupt(con)
            if self._ended.wait(AGAIN_SECONDS):
                return


def passed() -> bool:
    """True once the current run's deadline has passed."""
    clock = _current.get()
    return clock is not None and clock.expired.is_set()


def check() -> None:
    """Between batches: OutOfTime once the current run's deadline has passed."""
    clock = _current.get()
    if clock is not None and clock.expired.is_set():
        raise clock.error()


@contextlib.contextmanager
def watch(con: Connection) -> Iterator[Connection]:
    """`con`, its queries interrupted once the current run's deadline (if any) has passed."""
    clock = _current.get()
    if clock is None:
        yield con
        return
    with clock.watching(con):
        yield con
