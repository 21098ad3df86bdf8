"""limits.max_run_seconds: a run's deadline. Once it passes, the DuckDB queries of the run are
interrupted (again each second, so that one started just after is stopped too) and the steps
stop at their next batch; the run fails and leaves its state as a crash would. A run torn
down by SIGTERM (Prefect raises it in the flow's thread) or Ctrl-C is past its deadline at
once, so that steps blocked in other threads end too: Prefect waits for them before the
command can exit. Anything else that blocks (an HTTP read) says how to stop it with
`on_expiry`.

The same watchdog keeps the run under its memory ceiling (tasks/run/memory.py): once the
process is over it, the run stops the same way, with an OutOfMemory error.

Steps find their run's deadline through a context variable: Prefect's thread task runner
runs each task in a copy of the flow's context. Stage steps on Dask workers do not see it:
there the run stops once the flow has the step back.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
import time
from collections.abc import Callable, Iterator

from schemas.errors import OutOfMemory, OutOfTime, Stopped
from tasks.engine.db import Connection, interrupt, signalled
from tasks.run.memory import SAMPLE_SECONDS, Ceiling, resident

AGAIN_SECONDS = 1.0  # how often the interrupt is repeated once the deadline has passed

_current: contextvars.ContextVar[Deadline | None] = contextvars.ContextVar(
    "pumphouse_deadline", default=None
)


class Deadline:
    """One run's deadline, `seconds` after its `running()` block starts, and its memory
    ceiling: `memory` bytes (limits.memory) over the process's memory at that start."""

    def __init__(self, seconds: float, ceiling: float, memory: int | None = None) -> None:
        self.seconds, self.ceiling, self.memory = seconds, ceiling, memory
        self.expired = threading.Event()
        self.terminated = False
        self.room: Ceiling | None = None
        self.used: int | None = None  # resident bytes when the memory ceiling stopped the run
        self._ended = threading.Event()
        self._stops: dict[object, Callable[[], None]] = {}
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        """The run: the deadline counts from here, for the steps started in this context."""
        token = _current.set(self)
        start = resident() if self.memory is not None else None
        self.room = None if start is None or self.memory is None else Ceiling(start, self.memory)
        watchdog = threading.Thread(target=self._watchdog, name="pumphouse-deadline", daemon=True)
        watchdog.start()
        try:
            yield
        except BaseException as e:
            # SIGTERM, Ctrl-C (an error of DuckDB's when it came during a query): the run is
            # over now
            if not isinstance(e, Exception) or signalled(e):
                self.terminated = True
                self._expire()
            raise
        finally:
            self._ended.set()
            _current.reset(token)
            watchdog.join()

    @contextlib.contextmanager
    def watching(self, con: Connection) -> Iterator[None]:
        """While open, `con`'s queries are interrupted once the deadline has passed."""
        with self.stopping(lambda: interrupt(con)):
            yield

    @contextlib.contextmanager
    def stopping(self, stop: Callable[[], None]) -> Iterator[None]:
        """While open, `stop` is called (from another thread, again each second) once the
        deadline has passed."""
        if self.expired.is_set():
            raise self.error()
        key = object()
        with self._lock:
            self._stops[key] = stop
        try:
            yield
        finally:
            with self._lock:
                del self._stops[key]

    def error(self) -> OutOfTime | OutOfMemory:
        if self.terminated:
            return Stopped("the run was stopped (SIGTERM or Ctrl-C); the next run finishes it")
        if self.room is not None and self.used is not None:
            return OutOfMemory(
                f"{self.room.explain(self.used)}; nothing is lost: the next run finishes it. "
                "Raise limits.memory, or lower limits.max_concurrency, limits.batch_rows or "
                "limits.batch_bytes so that less is held at once"
            )
        return OutOfTime(
            f"the run took longer than limits.max_run_seconds ({self.seconds:g} s) and was "
            "stopped; nothing is lost: the next run finishes it. Raise limits.max_run_seconds "
            f"(ceiling {self.ceiling:g} s), or lower limits.max_rows_per_run so that one run "
            "does less"
        )

    def _watchdog(self) -> None:
        due = time.monotonic() + self.seconds
        while not self._ended.wait(self._pause(due)):
            if self.expired.is_set() or time.monotonic() >= due:
                self._expire()
            elif self.room is not None and self.room.over(used := resident()):
                self.used = used
                self._expire()

    def _pause(self, due: float) -> float:
        """Seconds until the watchdog looks again."""
        if self.expired.is_set():
            return AGAIN_SECONDS
        left = max(0.0, due - time.monotonic())
        return left if self.room is None else min(left, SAMPLE_SECONDS)

    def _expire(self) -> None:
        self.expired.set()
        with self._lock:  # a stop is never called once its block has closed
            for stop in self._stops.values():
                stop()


def passed() -> bool:
    """True once the current run's deadline has passed."""
    clock = _current.get()
    return clock is not None and clock.expired.is_set()


def check() -> None:
    """Between batches: OutOfTime once the current run's deadline has passed."""
    clock = _current.get()
    if clock is not None and clock.expired.is_set():
        raise clock.error()


def sleep(seconds: float) -> None:
    """time.sleep, cut short by the current run's deadline passing (then OutOfTime)."""
    clock = _current.get()
    if clock is None:
        time.sleep(seconds)
        return
    clock.expired.wait(seconds)
    check()


@contextlib.contextmanager
def on_expiry(stop: Callable[[], None]) -> Iterator[None]:
    """While open, `stop` is called once the current run's deadline (if any) has passed;
    OutOfTime at once if it has already."""
    clock = _current.get()
    if clock is None:
        yield
        return
    with clock.stopping(stop):
        yield


@contextlib.contextmanager
def watch(con: Connection) -> Iterator[Connection]:
    """`con`, its queries interrupted once the current run's deadline (if any) has passed."""
    clock = _current.get()
    if clock is None:
        yield con
        return
    with clock.watching(con):
        yield con
