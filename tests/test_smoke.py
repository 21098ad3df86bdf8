"""Every spec under pumps/ validates and runs, as a user would run it from the project folder.

The bundled demo's counts are pinned, and checked against a plain-Python reading of its data.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from tests.conftest import REPO, run_cli

SPECS = sorted(p.name for p in (REPO / "pumps").glob("*.yaml"))

# pumps/data/demo is fixed: three days of exports with bad rows, voids and later versions.
DEMO_COUNTS = {
    "rows_read": 128,
    "rows_rejected": 8,
    "rows_filtered": 42,
    "rows_old": 0,
    "rows_duplicate": 17,
    "rows_written": 61,
}


@pytest.fixture(scope="module")
def bundled(tmp_path_factory: pytest.TempPathFactory, prefect_server: str) -> Iterator[Path]:
    """A copy of the repo's pumps folder (specs and their data) as the project folder, with
    the demo API that pumps/api.yaml reads running (on a free port the copy is pointed at)."""
    project = tmp_path_factory.mktemp("bundled")
    shutil.copytree(REPO / "pumps", project / "pumps")
    api = subprocess.Popen(
        [sys.executable, "pumps/demo_api.py", "--port", "0"],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert api.stdout is not None
        url = api.stdout.readline().strip()
        spec = project / "pumps" / "api.yaml"
        spec.write_text(spec.read_text().replace("http://127.0.0.1:8765", url))
        yield project
    finally:
        api.terminate()
        api.wait(10)


@pytest.fixture(scope="module")
def summaries(bundled: Path) -> dict[str, dict[str, Any]]:
    """`pumphouse run SPEC --json` for every bundled spec, once."""
    out = {}
    for name in SPECS:
        done = run_cli("run", f"pumps/{name}", "--json", cwd=bundled)
        assert done.returncode == 0, (name, done.stderr)
        assert "Traceback" not in done.stderr
        out[name] = json.loads(done.stdout)
    return out


def test_the_bundled_specs_exist() -> None:
    assert "demo.yaml" in SPECS


def test_every_bundled_spec_validates(bundled: Path) -> None:
    done = run_cli("validate", *(f"pumps/{name}" for name in SPECS), cwd=bundled)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        line for line in done.stdout.splitlines() if line.startswith("ok: pumps/")
    ]
    assert len(done.stdout.splitlines()) == len(SPECS)


@pytest.mark.parametrize("name", SPECS)
def test_every_bundled_spec_runs(summaries: dict[str, dict[str, Any]], name: str) -> None:
    summary = summaries[name]
    assert summary["status"] == "ok"
    assert summary["rows_written"] > 0


def test_demo_counts_are_what_its_data_says(
    summaries: dict[str, dict[str, Any]], bundled: Path
) -> None:
    oracle = demo_oracle(bundled / "pumps" / "data" / "demo")
    summary = summaries["demo.yaml"]
    assert {k: summary[k] for k in DEMO_COUNTS} == DEMO_COUNTS == oracle["counts"]
    assert summary["files"] == 3
    assert _instant(summary["hwm_after"]) == _instant(oracle["hwm"])
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    rows = con.sql(
        "SELECT order_id, customer_id, amount, status, strftime(updated_at, '%Y-%m-%dT%H:%M:%SZ') "
        f"FROM read_parquet('{bundled}/warehouse/demo/data/**/*.parquet', hive_partitioning = true)"
    ).fetchall()
    assert len(rows) == len({r[0] for r in rows})
    assert {r[0]: tuple(r[1:]) for r in rows} == oracle["rows"]


def test_the_demo_queries_as_the_readme_shows(
    summaries: dict[str, dict[str, Any]], bundled: Path
) -> None:
    oracle = demo_oracle(bundled / "pumps" / "data" / "demo")
    done = run_cli(
        "query",
        "pumps/demo.yaml",
        "SELECT status, count(*) AS n FROM demo GROUP BY status ORDER BY status",
        "--format",
        "json",
        cwd=bundled,
    )
    assert done.returncode == 0, done.stderr
    by_status: dict[str, int] = {}
    for _, _, status, _ in oracle["rows"].values():
        by_status[status] = by_status.get(status, 0) + 1
    assert json.loads(done.stdout) == [{"status": s, "n": n} for s, n in sorted(by_status.items())]


# ---------------------------------------------------------------- the oracle

EMAIL = re.compile(r"^[^@]+@[^@]+$")


def _number(value: Any) -> float | None:
    """A float64 as coercion makes one: a JSON number, or a string that spells one."""
    if isinstance(value, bool):
        raise ValueError(value)
    return None if value is None else float(value)


def _valid(rec: Any) -> bool:
    """The demo's contract: demo.yaml's schema, written out by hand."""
    if not isinstance(rec, dict):
        return False
    try:
        amount = _number(rec.get("amount"))
        if rec.get("updated_at") is not None:
            dt.datetime.fromisoformat(str(rec["updated_at"]).replace("Z", "+00:00"))
    except ValueError:
        return False
    oid, status, email = rec.get("order_id"), rec.get("status"), rec.get("email")
    return (
        isinstance(oid, int)
        and not isinstance(oid, bool)
        and oid >= 0
        and (amount is None or amount >= 0)
        and (status is None or status in ("open", "paid", "void"))
        and (email is None or (isinstance(email, str) and EMAIL.match(email) is not None))
    )


def demo_oracle(folder: Path) -> dict[str, Any]:
    """What one clean run of demo.yaml over `folder` must count and land, in plain Python."""
    counts = dict.fromkeys(DEMO_COUNTS, 0)
    kept = []
    for path in sorted(folder.glob("*.ndjson")):
        for line in path.read_text(encoding="utf-8").splitlines():
            counts["rows_read"] += 1
            try:
                rec = json.loads(line)
            except ValueError:
                rec = None
            if not _valid(rec):
                counts["rows_rejected"] += 1
            elif rec["status"] is None or rec["status"] == "void":  # NULL <> 'void' is not true
                counts["rows_filtered"] += 1
            else:
                kept.append(rec)
    latest: dict[int, dict[str, Any]] = {}
    for rec in kept:  # file then line order: a tie goes to the later row
        cur = latest.get(rec["order_id"])
        if cur is None or rec["updated_at"] >= cur["updated_at"]:
            latest[rec["order_id"]] = rec
    counts["rows_written"] = len(latest)
    counts["rows_duplicate"] = len(kept) - len(latest)
    rows = {
        oid: (r["customer"], float(r["amount"]), r["status"], r["updated_at"])
        for oid, r in latest.items()
    }
    return {"counts": counts, "rows": rows, "hwm": max(r["updated_at"] for r in kept)}


def test_the_oracle_sees_the_demos_edge_cases() -> None:
    """The data is fixed, so the oracle's own reading is pinned too: it must not drift silently."""
    oracle = demo_oracle(REPO / "pumps" / "data" / "demo")
    assert oracle["counts"] == DEMO_COUNTS
    lines = (REPO / "pumps" / "data" / "demo" / "orders-2026-11-02.ndjson").read_text()
    assert any(_broken(line) for line in lines.splitlines())  # a truncated line


def _instant(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def _broken(line: str) -> bool:
    try:
        json.loads(line)
    except ValueError:
        return True
    return False
