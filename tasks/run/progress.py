"""Progress events from the steps to whoever listens (the CLI's progress bar); no-op otherwise."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable

Listener = Callable[
    [str, int], None
]  # (what, how much): "files" | "rows" | "bytes" | "total_files"; the CLI's own:
# "prefect_starting" | "prefect_up"

_listeners: list[Listener] = []
_lock = threading.Lock()


def listen(listener: Listener) -> Callable[[], None]:
    """Subscribe; returns the function that unsubscribes."""
    with _lock:
        _listeners.append(listener)

    def stop() -> None:
        with _lock:
            if listener in _listeners:
                _listeners.remove(listener)

    return stop


def emit(what: str, amount: int) -> None:
    """Tell every listener; a failing listener never breaks a run."""
    for listener in list(_listeners):
        with contextlib.suppress(Exception):  # a progress bar must not fail a pump
            listener(what, amount)
