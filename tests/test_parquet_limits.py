"""limits.max_record_bytes holds for parquet sources too: a record over it is found from the
file's metadata and a scan of the lengths of its row groups that could hold one, and
rejected with its reason while the rest of the file and the run go on. Decoding such a record
takes memory outside DuckDB's limit: the run's memory ceiling (limits.memory plus what the
process holds besides) bounds it, and stops a run that goes over it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

pytestmark = pytest.mark.usefixtures("prefect_server")

SPEC = """\
name: blobs
source: {type: files, url: ./in/, glob: "*.parquet"}
sink: {type: parquet, url: ./out/blobs}
limits: {max_record_bytes: 1MiB, max_invalid_ratio: 0.5, batch_rows: 3}
"""


@pytest.mark.reliability(
    "limits",
    "a 5 KB parquet file (zstd) whose records hold 5 MB strings, with max_record_bytes 1MiB, "
    "next to a normal parquet file",
    "the big records are rejected with a reason naming max_record_bytes, found before the data "
    "is read; the other records of both files land",
)
def test_a_parquet_record_over_max_record_bytes_is_rejected(project: Path) -> None:
    from flows.pump import pump

    (project / "in").mkdir()
    huge = "x" * 5_000_000
    blobs = pa.table(
        {
            "id": pa.array(range(1, 8), pa.int64()),
            "body": ["a", huge, "b", huge, "c", "d", huge],
            "tags": [["t"], [], [huge[:2_000_000]], None, [], ["u"], []],
        }
    )
    pq.write_table(blobs, project / "in" / "a-blobs.parquet", compression="zstd", row_group_size=4)
    assert os.path.getsize(project / "in" / "a-blobs.parquet") < 10_000
    small = pa.table({"id": [10, 11], "body": ["e", "f"], "tags": [["v"], []]})
    pq.write_table(small, project / "in" / "b-small.parquet")
    spec = project / "pumps" / "blobs.yaml"
    spec.write_text(SPEC)

    summary = pump(spec_path=str(spec))

    assert (summary["status"], summary["rows_read"], summary["rows_rejected"]) == ("ok", 9, 4)
    con = duckdb.connect()
    got = con.sql(
        "SELECT id, body, tags FROM read_parquet('out/blobs/data/**/*.parquet') ORDER BY id"
    ).fetchall()
    assert got == [
        (1, "a", ["t"]),
        (5, "c", []),
        (6, "d", ["u"]),
        (10, "e", ["v"]),
        (11, "f", []),
    ]
    rejected = con.sql(
        "SELECT _source, _row, _errors FROM read_parquet('out/blobs/rejected/*.parquet') "
        "ORDER BY _row"
    ).fetchall()
    assert [(os.path.basename(s), r) for s, r, _ in rejected] == [
        ("a-blobs.parquet", 2),
        ("a-blobs.parquet", 3),
        ("a-blobs.parquet", 4),
        ("a-blobs.parquet", 7),
    ]
    sizes = [5_000_008, 2_000_009, 5_000_008, 5_000_008]  # id (8 bytes) + the strings
    for (_, _, errors), size in zip(rejected, sizes, strict=True):
        assert errors == [
            f"_record: record is {size} bytes, over limits.max_record_bytes (1048576)"
        ]


# Starts `pumphouse run` from a small process and prints its exit code and peak RSS (KiB):
# a child started straight from pytest would report pytest's peak too, which its start
# (fork, exec) carries over into the child's ru_maxrss.
_MEASURE = """
import os, sys
quiet = [(os.POSIX_SPAWN_OPEN, fd, os.devnull, os.O_WRONLY, 0) for fd in (0, 1, 2)]
pid = os.posix_spawn(sys.argv[1], sys.argv[1:], os.environ, file_actions=quiet)
_, status, usage = os.wait4(pid, 0)
print(os.waitstatus_to_exitcode(status), usage.ru_maxrss)
"""


def _peak_rss(project: Path, table: pa.Table, row_group: int) -> int:
    """Bytes of the peak RSS of `pumphouse run` (its own process, as deployed) over one
    parquet file of `table` under limits.memory 64MiB; the run must land every row."""
    import sys

    from tests.conftest import PUMPHOUSE

    (project / "in").mkdir()
    pq.write_table(table, project / "in" / "a.parquet", row_group_size=row_group)
    (project / "pumps" / "blobs.yaml").write_text(
        SPEC.replace(
            "{max_record_bytes: 1MiB, max_invalid_ratio: 0.5, batch_rows: 3}", "{memory: 64MiB}"
        )
    )
    argv = [sys.executable, "-c", _MEASURE, PUMPHOUSE, "run", "pumps/blobs.yaml"]
    code, kib = subprocess.run(argv, cwd=project, capture_output=True, text=True).stdout.split()
    assert code == "0"
    got = duckdb.sql(f"SELECT count(*) FROM read_parquet('{project}/out/blobs/data/**/*.parquet')")
    assert got.fetchall() == [(table.num_rows,)]
    return int(kib) * 1024  # Linux: KiB


@pytest.mark.reliability(
    "limits",
    "limits.memory: 64MiB; a parquet file of a few KB whose one row group decodes to 100 MB "
    "(100k rows of a dictionary-encoded 1000-byte string); the peak RSS of `pumphouse run`",
    "every row lands; the peak RSS stays within a one-row run's plus limits.memory plus "
    "128 MiB (DuckDB's allocations outside its limit, Arrow batches in flight: cut at "
    "batch_bytes or a sixteenth of limits.memory, measured decoded)",
)
def test_a_parquet_row_group_that_decodes_to_more_than_memory_stays_within_it(
    tmp_path: Path,
) -> None:
    (tmp_path / "one" / "pumps").mkdir(parents=True)
    (tmp_path / "bomb" / "pumps").mkdir(parents=True)
    base = _peak_rss(tmp_path / "one", pa.table({"id": [1], "body": ["z"]}), 1)
    n = 100_000
    bomb = pa.table({"id": pa.array(range(n), pa.int64()), "body": ["z" * 1000] * n})

    peak = _peak_rss(tmp_path / "bomb", bomb, n)

    # Before, the row group was one 100 MB Arrow batch, held several times over: ~+260 MiB.
    assert peak <= base + (64 + 128) * 2**20, (peak >> 20, base >> 20)


@pytest.mark.reliability(
    "limits",
    "limits.memory: 64MiB on a run over a parquet file of a few KB whose second row holds a "
    "300 MB string (over max_record_bytes, but pyarrow decodes it, several times its size, to "
    "find that out); `pumphouse run --json`",
    "the run stops once its process is over the memory ceiling (its memory at the run's start "
    "+ limits.memory + 256 MiB): exit 1, an error with the MiB used, the ceiling and the fix; "
    "the run stays open as a crash leaves it, and the rerun with limits.memory 2GiB finishes "
    "it: the other rows land exactly once, the big one is rejected",
)
def test_a_run_over_its_memory_ceiling_stops_and_the_next_run_finishes_it(project: Path) -> None:
    import json
    import re

    from tests.conftest import run_cli

    (project / "in").mkdir()
    big = pa.table({"id": pa.array([1, 2, 3], pa.int64()), "body": ["a", "x" * 300_000_000, "b"]})
    pq.write_table(big, project / "in" / "a.parquet", compression="zstd")
    del big
    spec = project / "pumps" / "blobs.yaml"
    limits = "{max_record_bytes: 1MiB, max_invalid_ratio: 0.5, batch_rows: 3}"
    spec.write_text(SPEC.replace(limits, "{max_invalid_ratio: 0.5, memory: 64MiB}"))

    first = run_cli("run", "pumps/blobs.yaml", "--json", cwd=project)

    assert first.returncode == 1, first.stderr
    summary = json.loads(first.stdout)
    assert summary["status"] == "failed"
    said = re.fullmatch(
        r"the run used ([\d,]+) MiB, over its memory ceiling of ([\d,]+) MiB \(the process's "
        r"([\d,]+) MiB at the run's start \+ limits.memory 64 MiB \+ 256 MiB outside the "
        r"engine's limit\), and was stopped; nothing is lost: the next run finishes it. Raise "
        r"limits.memory, or lower limits.max_concurrency, limits.batch_rows or "
        r"limits.batch_bytes so that less is held at once",
        summary["error"],
    )
    assert said, summary["error"]
    used, ceiling, start = (int(n.replace(",", "")) for n in said.groups())
    assert ceiling == start + 64 + 256 < used
    assert (project / ".pumphouse/blobs/manifest.json").exists()  # open, as after a crash
    assert not list(project.glob("out/blobs/data/**/*.parquet"))

    spec.write_text(SPEC.replace(limits, "{max_invalid_ratio: 0.5, memory: 2GiB}"))
    second = run_cli("run", "pumps/blobs.yaml", "--json", cwd=project)
    third = run_cli("run", "pumps/blobs.yaml", "--json", cwd=project)

    assert second.returncode == 0, second.stderr
    done = json.loads(second.stdout)
    assert (done["resumed"], done["rows_written"], done["rows_rejected"]) == (True, 2, 1)
    con = duckdb.connect()
    got = con.sql("SELECT id, body FROM read_parquet('out/blobs/data/**/*.parquet') ORDER BY id")
    assert got.fetchall() == [(1, "a"), (3, "b")]
    rejected = con.sql("SELECT _row FROM read_parquet('out/blobs/rejected/*.parquet')")
    assert rejected.fetchall() == [(2,)]
    assert (third.returncode, json.loads(third.stdout)["rows_written"]) == (0, 0), third.stderr
