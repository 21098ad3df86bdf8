"""Failures of the data and of the machine under a run are told as such, with the fix; "this
looks like a bug" is left for bugs (issue "what a red team broke", 16)."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import duckdb
import pytest

from schemas.errors import DiskFull, OutOfMemory, PathTooLong
from tasks.io.failures import resource_error
from tests.conftest import run_cli
from tests.data import spec_text

BUG = "looks like a bug"
FILTER = "filter: \"status <> 'void'\""


def _orders(project: Path) -> None:
    (project / "in").mkdir()
    rows = [
        {
            "order_id": i,
            "customer": c,
            "amount": 1.5,
            "status": "open",
            "updated_at": "2026-03-08T10:00:00Z",
        }
        for i, c in enumerate(["17", "42", "c3", "9"])
    ]
    (project / "in" / "a.ndjson").write_text("\n".join(json.dumps(r) for r in rows) + "\n")


@pytest.mark.usefixtures("prefect_server")
@pytest.mark.reliability(
    "bad data",
    "a transform.filter that fails at run time on some rows' values: `CAST(customer AS "
    "INTEGER) > 1` where a customer is not a number, `order_id // (order_id - 2) > 0` "
    "(an integer division by zero); `pumphouse run --json`",
    "exit 1; the error names transform.filter, the expression, the file and line of the "
    'first row it fails on and the fix (TRY_CAST, NULLIF); no "looks like a bug"; nothing '
    "lands",
)
@pytest.mark.parametrize(
    ("expression", "line", "fix"),
    [
        ("CAST(customer AS INTEGER) > 1", 3, "TRY_CAST instead of CAST"),
        ("order_id // (order_id - 2) > 0", 3, "NULLIF(divisor, 0)"),
    ],
    ids=["cast", "division"],
)
def test_a_filter_that_fails_on_the_data_says_where_and_how_to_fix_it(
    project: Path, expression: str, line: int, fix: str
) -> None:
    _orders(project)
    text = spec_text().replace(FILTER, f"filter: {json.dumps(expression)}")
    assert expression in text
    (project / "pumps" / "orders.yaml").write_text(text)

    done = run_cli("run", "pumps/orders.yaml", "--json", cwd=project)

    assert done.returncode == 1, done.stderr
    error = json.loads(done.stdout)["error"]
    assert error.startswith(
        f"transform.filter {expression!r} fails at run time on a.ndjson:{line}: "
    ), error
    assert f"fix the filter for such values, e.g. {fix}" in error
    assert done.stderr.splitlines() == [f"error: {error}"]
    assert BUG not in done.stderr
    assert not (project / "out" / "orders").exists() or not list(
        (project / "out" / "orders").rglob("*.parquet")
    )


@pytest.mark.usefixtures("prefect_server")
@pytest.mark.reliability(
    "limits",
    "a sink path with a 300-character folder name (ENAMETOOLONG), `pumphouse run`",
    "exit 1 with one line: the name is too long for the filesystem, the path (shortened) and "
    'the fix (shorten sink.url); no "looks like a bug"',
)
def test_a_path_too_long_for_the_filesystem_says_shorten_it(project: Path) -> None:
    _orders(project)
    long = "x" * 300
    text = spec_text(out=f"./out/{long}")
    (project / "pumps" / "orders.yaml").write_text(text)

    done = run_cli("run", "pumps/orders.yaml", cwd=project)

    assert done.returncode == 1, done.stderr
    said = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(said) == 1, done.stderr
    assert said[0].startswith("error: a file name is too long for the filesystem at "), said
    assert said[0].endswith(
        "; shorten the path (sink.url, the project folder, or long partition values), "
        "then run again"
    )
    assert long not in said[0]  # shortened to fit a line
    assert BUG not in done.stderr


@pytest.mark.reliability(
    "limits",
    "a full disk (OSError ENOSPC, EDQUOT, DuckDB's I/O error for it) and out of memory "
    "(DuckDB's OutOfMemoryException, MemoryError), as the exceptions themselves",
    "DiskFull says free disk space; OutOfMemory says raise limits.memory or lower "
    "limits.batch_rows; both say a rerun resumes; any other exception stays a bug",
)
def test_a_full_disk_and_no_memory_are_told_with_the_fix() -> None:
    full = resource_error(OSError(errno.ENOSPC, "No space left on device", "/data/x.parquet"))
    assert isinstance(full, DiskFull)
    assert str(full) == (
        "no space left on the device at /data/x.parquet; free disk space (the staging folder "
        ".pumphouse/, the sink's, the temp folder), then run again (an interrupted run "
        "resumes with the same inputs)"
    )
    assert isinstance(resource_error(OSError(errno.EDQUOT, "Disk quota exceeded")), DiskFull)
    io = duckdb.IOException('Could not write file "x.parquet": No space left on device')
    assert isinstance(resource_error(io), DiskFull)

    oom = resource_error(
        duckdb.OutOfMemoryException("Out of Memory Error: could not allocate block of 256 KiB")
    )
    assert isinstance(oom, OutOfMemory)
    assert "raise limits.memory (or lower limits.batch_rows)" in str(oom)
    assert isinstance(resource_error(MemoryError()), OutOfMemory)

    too_long = resource_error(OSError(errno.ENAMETOOLONG, "File name too long", "a" * 300))
    assert isinstance(too_long, PathTooLong)

    for bug in (
        ValueError("x"),
        KeyError("y"),
        OSError(errno.EBADF, "Bad file descriptor"),
        duckdb.IOException("Could not read file"),
    ):
        assert resource_error(bug) is None
