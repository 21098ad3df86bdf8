"""The error tree: one root, subclasses by what the user should do next."""

from __future__ import annotations

from typing import Any


class PumpError(Exception):
    """Root of every error pumphouse raises on purpose.

    The message says what went wrong, where, and how to fix it. It never holds
    a secret. Subclasses are picklable because Prefect persists exceptions.
    """

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.__class__, (self.message,))

    def __str__(self) -> str:
        return self.message


class SpecError(PumpError):
    """The spec is wrong: fix the YAML. Carries every problem found, one per line."""

    exit_code = 2

    def __init__(self, message: str, problems: tuple[str, ...] | list[str] = ()) -> None:
        super().__init__(message)
        self.problems = tuple(problems) or (message,)

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.__class__, (self.message, self.problems))


class UsageError(PumpError):
    """The command line was wrong: fix the call."""

    exit_code = 2


class DataError(PumpError):
    """The data broke the contract (too many invalid rows, unreadable file): fix the data."""


class InputGone(DataError):
    """An input file listed by the run is gone, or shorter, when it is read: list afresh, or
    restore it."""

    def __init__(self, message: str, url: str = "", what: str = "is gone") -> None:
        super().__init__(message)
        self.url, self.what = url, what  # the URL without secrets; what became of the file


class SinkRefused(DataError):
    """The sink refused the run's rows before writing any of them (a lossy schema change):
    the run is dropped, so once the spec or the data is fixed its inputs are read afresh."""


class TransientError(PumpError):
    """A temporary failure (network, throttling, a busy lock): retrying may succeed."""


class RetriesSpent(TransientError):
    """A temporary failure after every retry the spec allows (an http source's or sink's
    `retries`): the step around it is not tried again, so `retries` is what a user gets."""


class OutOfTime(PumpError):
    """The run went past limits.max_run_seconds and was stopped as a crash would stop it:
    the next run finishes it. Raise the limit or have one run do less."""


class Stopped(OutOfTime):
    """The run was stopped by SIGTERM or Ctrl-C as a crash would stop it: the next run
    finishes it."""


class BusyError(PumpError):
    """Another run of the same pump holds the lock: wait for it, then run again."""


class NotSupportedYet(PumpError):
    """The spec is valid but this build does not execute that part of it yet."""

    exit_code = 2


class FilterFailed(DataError):
    """transform.filter failed on a row at run time (a cast or a division the data breaks):
    fix the filter for that data."""


class ResourceError(PumpError):
    """The machine ran out of something the run needs (disk, memory) or refused a path: free
    it or shorten it, then run again; an interrupted run resumes with the same inputs."""


class DiskFull(ResourceError):
    """No space left on a device (or a quota spent): free disk space."""


class OutOfMemory(ResourceError):
    """DuckDB or the process ran out of memory, or the run went over its memory ceiling
    (tasks/run/memory.py): raise limits.memory or lower batch sizes."""


class PathTooLong(ResourceError):
    """A file or folder name longer than the filesystem takes: shorten the path."""
