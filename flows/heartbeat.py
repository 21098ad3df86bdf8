"""Prefect's flow-run heartbeat, stopped as soon as the run ends.

Prefect 3 sends a heartbeat event for every flow run (every 180 s by default) from a thread
that sleeps one second at a time; when the run ends, the engine waits for that thread, so
every run ends up to a second late (0.5 s on average: a sixth of a small pump's whole
command). `install()` swaps in the same loop waiting on its stop event instead of sleeping:
the same heartbeats at the same times, the same events, no wait at the end.

Installed only over the very function it was copied from (PREFECTS_SOURCE: the sha256 of
its source, Prefect 3.9.1); over any other Prefect's own is left alone, and
tests/test_heartbeat.py fails, to have the copy compared again.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import inspect
import threading
from collections.abc import Iterator
from typing import Any

# sha256 of inspect.getsource(prefect.flow_engine._send_heartbeats) in Prefect 3.9.1
PREFECTS_SOURCE = "83e152cb73a04e977ca181188e99b3d583c894892b5456043b2eb51e45dbe996"
_prefects_own: Any = None


def install() -> bool:
    """Use the prompt heartbeat for this process's flow runs; False where Prefect differs."""
    from prefect import flow_engine

    global _prefects_own
    current = getattr(flow_engine, "_send_heartbeats", None)
    if current is send_heartbeats:
        return True
    _prefects_own = current
    if current is None or source_hash(current) != PREFECTS_SOURCE:
        return False
    flow_engine._send_heartbeats = send_heartbeats
    return True


def source_hash(function: Any) -> str:
    """sha256 of a function's source ("" when it has none to read)."""
    try:
        return hashlib.sha256(inspect.getsource(function).encode()).hexdigest()
    except (OSError, TypeError):
        return ""


def prefects_own() -> Any:
    """Prefect's own `_send_heartbeats`, as it was before install()."""
    from prefect import flow_engine

    return _prefects_own or flow_engine._send_heartbeats


@contextlib.contextmanager
def send_heartbeats(engine: Any, join_on_exit: bool = True) -> Iterator[None]:
    """Prefect's `_send_heartbeats`, the thread waiting on its stop event between beats."""
    from prefect.flow_engine import MINIMUM_HEARTBEAT_INTERVAL

    seconds = engine.heartbeat_seconds
    if seconds is None:
        yield
        return
    seconds = max(seconds, MINIMUM_HEARTBEAT_INTERVAL)
    resource, related = engine._build_heartbeat_event_template()
    stop = threading.Event()

    def beat() -> None:
        while not stop.is_set():
            run = engine.flow_run
            if run and run.state and run.state.is_final():
                return
            try:
                engine._emit_flow_run_heartbeat(resource, related)
            except Exception:
                engine.logger.debug("Failed to emit heartbeat", exc_info=True)
            if stop.wait(seconds):
                return

    # The thread sees the caller's settings (PREFECT_API_URL), as Prefect's does.
    context = contextvars.copy_context()
    thread = threading.Thread(target=context.run, args=(beat,), daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        if join_on_exit:
            thread.join(timeout=2)
