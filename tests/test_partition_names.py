"""A partition value too long for a folder name is rejected at staging, not a load that fails
every run; `reset --run` abandons an open run cleanly. The command runs in this process
(run_in_process), but for the run killed with -9, which needs a process of its own."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import duckdb
import pytest

from tasks.sinks.partitions import encoded_length
from tests.conftest import run_cli, run_in_process

pytestmark = pytest.mark.usefixtures("prefect_server")

LONG = "你" * 30  # 3 bytes in UTF-8, 9 percent-encoded: status=... is 277 bytes
SPEC = """\
name: parts
source: {{type: files, url: ./in/, glob: "*.ndjson"}}
schema:
  columns:
    id: {{type: int64, nullable: false}}
    status: {{type: string}}
sink: {{type: {sink}, url: ./out/parts, partition_by: [status]}}
limits: {{batch_rows: 2, max_invalid_ratio: 0.5}}
"""


def write(folder: Path, name: str, rows: list[tuple[int, str]]) -> None:
    (folder / "in").mkdir(exist_ok=True)
    lines = [json.dumps({"id": i, "status": s}) for i, s in rows]
    (folder / "in" / name).write_text("\n".join(lines) + "\n", encoding="utf-8")


def landed(folder: Path, sink: str) -> list[tuple[int, str]]:
    out = folder / "out" / "parts"
    if sink == "delta":
        from deltalake import DeltaTable

        table = DeltaTable(str(out)).to_pyarrow_table()
        return sorted(zip(table["id"].to_pylist(), table["status"].to_pylist(), strict=True))
    return sorted(
        duckdb.sql(
            f"SELECT id, status FROM read_parquet('{out}/data/**/*.parquet', hive_partitioning=true)"
        ).fetchall()
    )


def summary(proc: object) -> dict[str, object]:
    assert proc.returncode == 0, (proc.stdout, proc.stderr)  # type: ignore[attr-defined]
    line = [x for x in proc.stdout.splitlines() if x.startswith("{")][-1]  # type: ignore[attr-defined]
    return dict(json.loads(line))


def test_encoded_length_matches_the_sinks_folder_names() -> None:
    assert encoded_length("A-Z_a.z0~") == 9
    assert encoded_length("你好") == 18
    assert encoded_length("a b/") == 8


@pytest.mark.parametrize("sink", ["parquet", "delta"])
@pytest.mark.reliability(
    "bad data",
    "a partition value whose folder name is over 255 bytes (30 CJK characters, percent-encoded) among normal ones, parquet and delta sinks",
    "those rows are rejected at staging with the folder name's length in _errors; the other rows land, the run says ok and the next run is fine",
)
def test_a_partition_value_too_long_for_a_folder_name_is_rejected(project: Path, sink: str) -> None:
    (project / "pumps" / "parts.yaml").write_text(SPEC.format(sink=sink))
    write(project, "a.ndjson", [(1, "open"), (2, LONG), (3, "paid"), (4, "open")])
    first = summary(run_in_process("run", "pumps/parts.yaml", "--json", cwd=project))
    assert first["rows_rejected"] == 1
    assert landed(project, sink) == [(1, "open"), (3, "paid"), (4, "open")]
    rejected = duckdb.sql(
        f"SELECT id, _errors FROM read_parquet('{project}/out/parts/rejected/*.parquet')"
    ).fetchall()
    assert len(rejected) == 1 and rejected[0][0] == "2"  # rejected rows keep values as text
    reason = rejected[0][1][-1]
    assert reason.startswith(
        f"sink.partition_by: the folder name for status={LONG[:20]}… is 277 bytes"
    )
    assert "over the 255 a file name may have" in reason
    write(project, "b.ndjson", [(5, "paid"), (6, LONG + "x")])
    second = summary(run_in_process("run", "pumps/parts.yaml", "--json", cwd=project))
    assert second["rows_rejected"] == 1
    assert landed(project, sink) == [(1, "open"), (3, "paid"), (4, "open"), (5, "paid")]


@pytest.mark.parametrize("sink", ["parquet", "delta"])
@pytest.mark.reliability(
    "crash",
    "`reset --run --yes` after a run killed after its first load batch, parquet and delta sinks",
    "the sink holds nothing of that run; the next run lands exactly what a clean run does, earlier runs' rows once",
)
def test_reset_run_abandons_the_open_run_only(
    project: Path, tmp_path_factory: pytest.TempPathFactory, sink: str
) -> None:
    early = [(1, "open"), (2, "paid")]
    late = [(10 + i, "open" if i % 2 else "paid") for i in range(7)]
    clean = tmp_path_factory.mktemp("clean")
    for folder in (project, clean):
        (folder / "pumps").mkdir(exist_ok=True)
        (folder / "pumps" / "parts.yaml").write_text(SPEC.format(sink=sink))
        write(folder, "a.ndjson", early)
        summary(run_in_process("run", "pumps/parts.yaml", "--json", cwd=folder))
        write(folder, "b.ndjson", late)
    none = run_in_process("reset", "pumps/parts.yaml", "--run", "--yes", cwd=project)
    assert none.returncode == 0 and "no open run" in none.stdout

    killed = run_cli(
        "run", "pumps/parts.yaml", "--json", cwd=project, env={"PUMPHOUSE_FAULT": "loaded_batch"}
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert len(landed(project, sink)) > len(early)  # the killed run wrote a batch
    reset = run_in_process("reset", "pumps/parts.yaml", "--run", "--yes", cwd=project)
    assert reset.returncode == 0, reset.stderr
    assert "abandoned" in reset.stdout
    assert landed(project, sink) == early  # nothing of the abandoned run
    assert not (project / ".pumphouse" / "parts" / "manifest.json").exists()

    summary(run_in_process("run", "pumps/parts.yaml", "--json", cwd=project))
    summary(run_in_process("run", "pumps/parts.yaml", "--json", cwd=clean))
    assert landed(project, sink) == landed(clean, sink) == sorted(early + late)
