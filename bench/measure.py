"""One measured run: a command in a subprocess, its wall time and peak RSS (the process and
every child it waited for, from wait4), its stdout kept for the numbers it prints."""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Run:
    method: str
    wall: float  # seconds, the whole command
    rss: int  # peak resident set size, bytes
    ok: bool
    cpu: float = 0.0  # user + system seconds of the process and its waited-for children
    stdout: str = ""
    stderr: str = ""
    extra: dict[str, float] = field(default_factory=dict)  # e.g. the flow's own seconds


def run(method: str, argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> Run:
    """Run `argv` to the end and measure it."""
    out, err = cwd / f".{method}.out", cwd / f".{method}.err"
    with out.open("wb") as o, err.open("wb") as e:
        began = time.perf_counter()
        proc = subprocess.Popen(
            argv, cwd=cwd, env={**os.environ, **(env or {})}, stdout=o, stderr=e
        )
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - began
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Run(
        method,
        wall,
        usage.ru_maxrss * 1024,
        proc.returncode == 0,
        usage.ru_utime + usage.ru_stime,
        out.read_text(errors="replace"),
        err.read_text(errors="replace"),
    )


def numbers(stdout: str) -> dict[str, float]:
    """`key=value` pairs a job prints (rows_written=...)."""
    found = {}
    for word in stdout.split():
        key, _, value = word.partition("=")
        try:
            found[key] = float(value)
        except ValueError:
            continue
    return found
