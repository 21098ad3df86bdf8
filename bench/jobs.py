"""The job four ways, each a command to measure: paths, the pump's spec, and how each
method's run is started and read."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from bench.measure import Run, numbers, run

REPO = Path(__file__).resolve().parent.parent
PROJECT = REPO / ".venv"  # the project's environment: pumphouse, and the floor's DuckDB
BENCH = REPO / "bench" / ".venv"  # the bench's own: pandas, pandera, dlt, matplotlib
WORK = REPO / "bench" / "work"

SPEC = """\
name: orders
source: {{type: files, url: {data}/, glob: "*.ndjson"}}
schema:
  columns:
    order_id:   {{type: int64, nullable: false, checks: {{ge: 0}}}}
    customer:   {{type: string}}
    amount:     {{type: float64, checks: {{ge: 0}}}}
    status:     {{type: string, checks: {{isin: [open, paid, void]}}}}
    updated_at: {{type: timestamp}}
transform:
  filter: "status <> 'void'"
  dedup: {{key: [order_id], order_by: updated_at, keep: latest}}
sink: {{type: parquet, url: ./out/orders}}
{limits}"""


def _fresh(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def floor(data: Path) -> Run:
    work = _fresh(WORK / "floor")
    return _rows(
        run(
            "floor",
            [str(PROJECT / "bin/python"), str(REPO / "bench/floor.py"), str(data), "out.parquet"],
            work,
        )
    )


def floor_checked(data: Path) -> Run:
    work = _fresh(WORK / "floor-checked")
    script = str(REPO / "bench/floor_checked.py")
    return _rows(
        run("floor + checks", [str(PROJECT / "bin/python"), script, str(data), "out.parquet"], work)
    )


def floor_clean(data: Path) -> Run:
    work = _fresh(WORK / "floor-clean")
    script = str(REPO / "bench/floor_clean.py")
    return _rows(
        run("clean floor", [str(PROJECT / "bin/python"), script, str(data), "out.parquet"], work)
    )


def pandas(data: Path) -> Run:
    work = _fresh(WORK / "pandas")
    argv = [str(BENCH / "bin/python"), str(REPO / "bench/pandas_job.py"), str(data), "out.parquet"]
    return _rows(run("pandas+pandera", argv, work))


def dlt(data: Path) -> Run:
    work = _fresh(WORK / "dlt")
    argv = [str(BENCH / "bin/python"), str(REPO / "bench/dlt_job.py"), str(data), str(work)]
    env = {"RUNTIME__LOG_LEVEL": "WARNING", "DLT_DATA_DIR": str(work / "dlt-home")}
    return _rows(run("dlt", argv, work, env))


def pump_project(name: str, data: Path, limits: str = "") -> Path:
    """A project folder with the bench's spec in pumps/orders.yaml."""
    work = WORK / name
    (work / "pumps").mkdir(parents=True, exist_ok=True)
    (work / "pumps" / "orders.yaml").write_text(SPEC.format(data=data, limits=limits))
    return work


def pumphouse(work: Path, env: dict[str, str], method: str = "pumphouse") -> Run:
    """`pumphouse run --json` on a first run (state and output removed); `extra` holds the
    flow's own seconds and its steps' durations."""
    for sub in (".pumphouse", "out"):
        shutil.rmtree(work / sub, ignore_errors=True)
    argv = [str(PROJECT / "bin/pumphouse"), "run", "pumps/orders.yaml", "--json"]
    result = run(method, argv, work, env)
    try:
        summary = json.loads(result.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        result.ok = False
        return result
    result.ok = result.ok and summary.get("status") == "ok"
    result.extra = {
        "flow": float(summary["seconds"]),
        "flow_cpu": float(summary["cpu_seconds"]),
        "rows_written": float(summary["rows_written"]),
        "rows_rejected": float(summary["rows_rejected"]),
        **{f"step_{k}": float(v) for k, v in (summary.get("durations") or {}).items()},
    }
    return result


def _rows(result: Run) -> Run:
    result.extra = numbers(result.stdout)
    return result
