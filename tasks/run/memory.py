"""limits.memory for the whole process: a run's memory ceiling, checked by its deadline's
watchdog (tasks/run/deadline.py), which stops the run as the deadline does once the process
is over it.

The ceiling is the process's resident memory when the run started, plus `limits.memory`
(DuckDB's limit), plus HEADROOM: what a run holds outside DuckDB's limit. It is sampled
(SAMPLE_SECONDS apart), not enforced by the OS, so one allocation can overshoot it before the
run stops; a container's memory limit is the hard bound.

Resident memory is read from /proc/self/statm (Linux); elsewhere (macOS) the process's peak
from getrusage stands in, which only rises, so the ceiling is then kept against the peak;
where neither exists there is no ceiling.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

MiB = 2**20
SAMPLE_SECONDS = 0.25  # how often the watchdog reads the process's memory


def headroom(memory: int) -> int:
    """What a run adds outside DuckDB's limit: Prefect's task machinery, DuckDB's connection
    and its allocations outside the limit, the Arrow read batches in flight (cut at a
    sixteenth of `memory`, a few at once)."""
    return max(256 * MiB, memory // 4)


@dataclass(frozen=True)
class Ceiling:
    """The most resident bytes a run's process may hold: `start` + `memory` + headroom."""

    start: int
    memory: int

    @property
    def bytes(self) -> int:
        return self.start + self.memory + headroom(self.memory)

    def over(self, used: int | None) -> bool:
        """True when `used` resident bytes (None: unknown) are over the ceiling."""
        return used is not None and used > self.bytes

    def explain(self, used: int) -> str:
        return (
            f"the run used {used // MiB:,} MiB, over its memory ceiling of "
            f"{self.bytes // MiB:,} MiB (the process's {self.start // MiB:,} MiB at the run's "
            f"start + limits.memory {self.memory // MiB:,} MiB + "
            f"{headroom(self.memory) // MiB:,} MiB outside the engine's limit), and was stopped"
        )


def resident() -> int | None:
    """The process's resident bytes now (Linux), its peak (macOS, BSD), or None."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB elsewhere
