"""Failures of the machine under a run (a full disk, no memory, a path the filesystem
refuses), told apart from bugs: each as the pumphouse error that says what to do.

Sorted by exception type and errno; DuckDB's errors carry no errno, so a DuckDB I/O error
is read for the operating system's own words for a full disk.
"""

from __future__ import annotations

import errno

import duckdb

from schemas.errors import DiskFull, OutOfMemory, PathTooLong, PumpError

FULL = frozenset({errno.ENOSPC, errno.EDQUOT})
SHOWN = 100  # characters of a path in a message
RESUMES = "then run again (an interrupted run resumes with the same inputs)"


def resource_error(e: BaseException) -> PumpError | None:
    """The pumphouse error for `e` when the machine ran out of disk or memory or refused a
    path's length; None for anything else (a bug stays a bug)."""
    if isinstance(e, PumpError):
        return None
    if isinstance(e, OSError) and e.errno in FULL:
        return DiskFull(
            f"no space left on the device{_at(e)}; free disk space (the staging folder "
            f".pumphouse/, the sink's, the temp folder), {RESUMES}"
        )
    if isinstance(e, OSError) and e.errno == errno.ENAMETOOLONG:
        return PathTooLong(
            f"a file name is too long for the filesystem{_at(e)}; shorten the path (sink.url, "
            "the project folder, or long partition values), then run again"
        )
    if isinstance(e, duckdb.IOException) and "No space left on device" in str(e):
        return DiskFull(
            f"no space left on the device while DuckDB wrote ({_first(e)}); free disk space "
            f"(the staging folder .pumphouse/, the sink's, the temp folder), {RESUMES}"
        )
    if isinstance(e, duckdb.OutOfMemoryException):
        return OutOfMemory(
            f"DuckDB ran out of memory ({_first(e)}); raise limits.memory (or lower "
            f"limits.batch_rows), or run where more memory is free, {RESUMES}"
        )
    if isinstance(e, MemoryError):
        return OutOfMemory(
            "the process ran out of memory; lower limits.batch_rows (and limits.memory), or "
            f"run where more memory is free, {RESUMES}"
        )
    return None


def _at(e: OSError) -> str:
    """Where, with a path longer than a line shortened in its middle."""
    path = str(e.filename or "")
    if len(path) > SHOWN:
        path = f"{path[: SHOWN // 2]}...{path[-SHOWN // 2 :]}"
    return f" at {path}" if path else ""


def _first(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
