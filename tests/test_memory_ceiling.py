"""The run's memory ceiling (tasks/run/memory.py): what it is made of and when it is passed.
The real run it stops is in test_parquet_limits.py."""

from __future__ import annotations

from tasks.run.memory import Ceiling, MiB, headroom, resident


def test_the_ceiling_is_the_start_plus_memory_plus_the_headroom() -> None:
    small = Ceiling(start=180 * MiB, memory=64 * MiB)
    assert small.bytes == (180 + 64 + 256) * MiB
    assert not small.over(small.bytes)
    assert small.over(small.bytes + 1)
    assert not small.over(None)  # memory unknown: never over
    assert headroom(8 * 1024 * MiB) == 2048 * MiB  # a quarter of a large limit
    assert small.explain(600 * MiB) == (
        "the run used 600 MiB, over its memory ceiling of 500 MiB (the process's 180 MiB at "
        "the run's start + limits.memory 64 MiB + 256 MiB outside the engine's limit), and "
        "was stopped"
    )


def test_the_process_memory_is_read() -> None:
    used = resident()
    assert used is not None and used > 10 * MiB
