"""Named crash points the tests switch on: `PUMPHOUSE_FAULT=NAME[:N]` kills the process
(SIGKILL, no cleanup) the Nth time (default 1st) the run reaches NAME. Off otherwise.

Points: refresh_output_removed, planned, staged_file, stage_written (a Dask worker, after uploading a staged file), staged, loaded_batch, loaded, state_written.
"""

from __future__ import annotations

import os
import signal
import threading
from collections import Counter

_seen: Counter[str] = Counter()
_lock = threading.Lock()


def point(name: str) -> None:
    """Die here if the tests asked for it; a no-op in normal runs."""
    wanted = os.environ.get("PUMPHOUSE_FAULT")
    if not wanted:
        return
    target, _, nth = wanted.partition(":")
    if target != name:
        return
    with _lock:
        _seen[name] += 1
        hit = _seen[name] == int(nth or 1)
    if hit:
        os.kill(os.getpid(), signal.SIGKILL)
