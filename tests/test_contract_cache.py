"""An inline schema's compiled contract queries and preflight answers are kept on disk: a later
process gives the same answers without importing pandera or ibis."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.conftest import run_python

pytestmark = pytest.mark.subprocess  # a fresh process: what it imports is the point

SPEC = """\
name: cached
source: {{type: files, url: ./in/, format: ndjson}}
schema:
  columns:
    id:     {{type: int64, nullable: false, checks: {{ge: 0}}}}
    note:   {{type: string, checks: {{str_matches: "{regex}"}}}}
sink: {{type: parquet, url: ./out}}
"""

PROBE = """
import json, sys
import pyarrow as pa
from schemas.loader import load_spec
from tasks.validate.preflight import CHECKS
from tasks.engine.db import connect
from tasks.contract.check import check_batch
problems = []
try:
    load_spec("spec.yaml", checks=CHECKS)
except Exception as e:
    problems = list(getattr(e, "problems", [str(e)]))
sql = None
if not problems:
    con = connect()
    batch = pa.table({"_source": ["a"], "_row": [1], "_raw": ['{"id": 1, "note": "x"}'],
                      "_parse_error": pa.nulls(1, pa.string())})
    con.register("batch", batch)
    sql = check_batch(con, load_spec("spec.yaml"), "batch", "json")
    con.execute(sql)
print(json.dumps({"problems": problems, "sql": sql,
                  "loaded": sorted(m for m in ("pandera", "ibis") if m in sys.modules)}))
"""


def _probe(folder: Path, cache: Path) -> dict[str, object]:
    out = run_python(PROBE, folder, {**os.environ, "PUMPHOUSE_CACHE_DIR": str(cache)}, 120)
    assert out.returncode == 0, out.stderr
    return dict(json.loads(out.stdout))


def test_a_second_process_builds_nothing(tmp_path: Path) -> None:
    (tmp_path / "spec.yaml").write_text(SPEC.format(regex="^[a-z]+$"))
    first = _probe(tmp_path, tmp_path / "cache")
    assert first["problems"] == [] and first["loaded"] == ["ibis", "pandera"]
    second = _probe(tmp_path, tmp_path / "cache")
    assert second == {**first, "loaded": []}
    # Another schema is another entry: built again.
    (tmp_path / "spec.yaml").write_text(SPEC.format(regex="^[a-z]*$"))
    third = _probe(tmp_path, tmp_path / "cache")
    assert third["loaded"] == ["ibis", "pandera"] and third["sql"] != first["sql"]


def test_a_problem_is_kept_word_for_word(tmp_path: Path) -> None:
    (tmp_path / "spec.yaml").write_text(SPEC.format(regex="(unclosed"))
    first = _probe(tmp_path, tmp_path / "cache")
    assert len(first["problems"]) == 1 and "schema.columns.note.checks.str_matches" in str(
        first["problems"]
    )
    second = _probe(tmp_path, tmp_path / "cache")
    assert second == {**first, "loaded": []}


def test_the_cache_can_be_turned_off(tmp_path: Path) -> None:
    (tmp_path / "spec.yaml").write_text(SPEC.format(regex="^[a-z]+$"))
    off = Path("off")
    _probe(tmp_path, off)
    assert _probe(tmp_path, off)["loaded"] == ["ibis", "pandera"]
    assert not (tmp_path / "off").exists()
