"""JSON keys (and a CSV header) DuckDB cannot take as column names as written, end to end
with `pumphouse run`: keys that differ only by case (DuckDB's names ignore case) and the
empty key. No value may be lost from a run that says ok: a key lands in its column or its
record is rejected."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import pytest

from tests.conftest import run_in_process

pytestmark = pytest.mark.usefixtures("prefect_server")

SPEC = """\
name: keys
source: {type: files, url: ./land/, format: ndjson}
sink: {type: parquet, url: ./out}
limits: {max_invalid_ratio: 0.9}
"""


def _run(project: Path, schema: str = "") -> dict[str, Any]:
    (project / "pumps" / "keys.yaml").write_text(SPEC + schema)
    done = run_in_process("run", "pumps/keys.yaml", "--json", cwd=project)
    assert done.returncode == 0, done.stderr + done.stdout
    summary: dict[str, Any] = json.loads(done.stdout)
    return summary


def _landed(project: Path) -> list[dict[str, Any]]:
    """The sink's rows, each column by its name as written."""
    rows = duckdb.sql(f"SELECT * FROM read_parquet('{project}/out/data/**/*.parquet') ORDER BY id")
    return [dict(zip(rows.columns, r, strict=True)) for r in rows.fetchall()]


def _rejected(project: Path) -> list[tuple[int, list[str]]]:
    rows = duckdb.sql(
        f"SELECT _row, _errors FROM read_parquet('{project}/out/rejected/*.parquet') ORDER BY _row"
    ).fetchall()
    return [(int(r), list(e)) for r, e in rows]


def _land(project: Path, *records: str) -> None:
    (project / "land").mkdir(exist_ok=True)
    (project / "land" / "a.ndjson").write_text("".join(r + "\n" for r in records))


def test_keys_differing_only_by_case_are_one_column_and_both_in_a_record_is_rejected(
    project: Path,
) -> None:
    _land(
        project,
        '{"id": 1, "a": "only-lower"}',
        '{"id": 2, "A": "only-upper"}',
        '{"id": 3, "A": "p", "a": "q"}',
        '{"id": 4, "b": 1}',
    )

    summary = _run(project)

    assert (summary["status"], summary["rows_read"], summary["rows_written"]) == ("ok", 4, 3)
    # One column for both spellings, named by the first in sort order; old code: 'only-lower'
    # was lost (the column took "A" only) and record 3 landed without "q".
    assert _landed(project) == [
        {"A": "only-lower", "b": None, "id": 1},
        {"A": "only-upper", "b": None, "id": 2},
        {"A": None, "b": 1, "id": 4},
    ]
    assert _rejected(project) == [(3, ["_record: fields 'A' and 'a' differ only in case"])]


def test_a_key_spelled_like_a_declared_column_but_for_case_rejects_its_record(
    project: Path,
) -> None:
    _land(project, '{"id": 1, "a": "x"}', '{"id": 2, "A": "y"}', '{"id": 3, "A": "p", "a": "q"}')

    summary = _run(
        project,
        "schema:\n  columns:\n    id: {type: int64}\n    a: {type: string, nullable: true}\n",
    )

    # Old code: record 2 landed as (2, None), "y" lost, and record 3 without "p".
    assert (summary["status"], summary["rows_written"]) == ("ok", 1)
    assert _landed(project) == [{"id": 1, "a": "x"}]
    assert _rejected(project) == [
        (2, ["_record: field 'A' differs from column 'a' only in case"]),
        (3, ["_record: field 'A' differs from column 'a' only in case"]),
    ]


def test_a_record_with_an_empty_key_is_rejected_and_the_pump_goes_on(project: Path) -> None:
    _land(project, '{"id": 1, "": 2}', '{"id": 2, "c": "z"}', '{"": "x"}')

    # Old code: every run failed with DuckDB's "zero-length delimited identifier".
    summary = _run(project)

    assert (summary["status"], summary["rows_written"]) == ("ok", 1)
    assert _landed(project) == [{"c": "z", "id": 2}]
    assert _rejected(project) == [
        (1, ["_record: a field has an empty name"]),
        (3, ["_record: a field has an empty name"]),
    ]
    again = _run(project)
    assert (again["status"], again["rows_read"]) == ("ok", 0)  # the file is done


def test_spellings_in_different_batches_land_in_one_column(project: Path) -> None:
    _land(project, '{"id": 1, "a": "lower"}', '{"id": 2, "A": "upper"}')
    (project / "pumps" / "keys.yaml").write_text(SPEC.replace("0.9}", "0.9, batch_rows: 1}"))

    done = run_in_process("run", "pumps/keys.yaml", "--json", cwd=project)

    # Each batch names the column as it spells it; the sink takes them as one column.
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["rows_written"] == 2
    rows = duckdb.sql(
        f"SELECT id, a FROM read_parquet('{project}/out/data/**/*.parquet') ORDER BY id"
    ).fetchall()
    assert rows == [(1, "lower"), (2, "upper")]


def test_a_csv_header_spelled_like_a_declared_column_but_for_case_rejects_its_rows(
    project: Path,
) -> None:
    (project / "land").mkdir()
    (project / "land" / "a.csv").write_text("id,A\n1,x\n2,\n")
    spec = SPEC.replace("ndjson", "csv") + (
        "schema:\n  columns:\n    id: {type: int64}\n    a: {type: string, nullable: true}\n"
    )
    (project / "pumps" / "keys.yaml").write_text(spec)

    done = run_in_process("run", "pumps/keys.yaml", "--json", cwd=project)

    # Old code: row 1 landed as (1, None), "x" lost. A row with no value in it loses none.
    assert done.returncode == 0, done.stderr
    assert _landed(project) == [{"id": 2, "a": None}]
    assert _rejected(project) == [(2, ["_record: field 'A' differs from column 'a' only in case"])]


FILTER = "schema:\n  strict: filter\n  columns:\n    id: {type: int64}\n    v: {type: int64}\n"


def test_under_filter_a_declared_columns_other_spelling_rejects_its_record(
    project: Path,
) -> None:
    _land(
        project,
        '{"id": 1, "V": 10}',
        '{"id": 2, "v": 20, "x": 1, "X": 2, "": 3, "y\\u0000": 4}',
        '{"id": 3, "v": 30, "V": 31}',
    )

    summary = _run(project, FILTER)

    # Old code: record 1 landed as (1, None) and record 3 as (3, 30), 31 lost, both `ok`.
    # Undeclared fields, empty or paired by case or holding a control character, are dropped.
    assert (summary["status"], summary["rows_written"]) == ("ok", 1)
    assert _landed(project) == [{"id": 2, "v": 20}]
    assert _rejected(project) == [
        (1, ["_record: field 'V' differs from column 'v' only in case"]),
        (3, ["_record: field 'V' differs from column 'v' only in case"]),
    ]


def test_under_filter_a_csv_header_spelled_like_a_declared_column_rejects_its_rows(
    project: Path,
) -> None:
    (project / "land").mkdir()
    (project / "land" / "a.csv").write_text("id,V,x\n1,10,a\n2,,b\n")
    (project / "pumps" / "keys.yaml").write_text(
        SPEC.replace("ndjson", "csv") + FILTER.replace("int64}\n", "int64, nullable: true}\n")
    )

    done = run_in_process("run", "pumps/keys.yaml", "--json", cwd=project)

    # Old code: row 1 landed as (1, None), 10 lost. A row with no value in it loses none.
    assert done.returncode == 0, done.stderr
    assert _landed(project) == [{"id": 2, "v": None}]
    assert _rejected(project) == [(2, ["_record: field 'V' differs from column 'v' only in case"])]


def test_a_key_holding_a_control_character_rejects_its_record(project: Path) -> None:
    _land(
        project,
        '{"id": 22, "a\\u0000": 1, "a": 3}',
        '{"\\u0000": 1}',
        '{"id": 23, "a": 4}',
        '{"id": 24, "b\\u001f": 1, "c\\u007f": 2, "d\\u001f": 3}',
    )

    summary = _run(project)

    # Old code: a column named "a\0" landed (a delta sink failed on it every run).
    assert (summary["status"], summary["rows_written"]) == ("ok", 1)
    assert _landed(project) == [{"a": 4, "id": 23}]
    assert _rejected(project) == [
        (1, ["_record: a field name holds a control character (\\u0000)"]),
        (2, ["_record: a field name holds a control character (\\u0000)"]),
        (
            4,
            [
                "_record: a field name holds a control character (\\u001f)",
                "_record: a field name holds a control character (\\u007f)",
            ],
        ),
    ]


@pytest.mark.parametrize("strict", ["false", "true"])
def test_with_a_schema_a_key_holding_a_control_character_rejects_its_record(
    project: Path, strict: str
) -> None:
    _land(project, '{"id": 1, "v": 1, "v\\u0000": 2}', '{"id": 2, "v": 3}')

    summary = _run(project, FILTER.replace("filter", strict))

    assert (summary["status"], summary["rows_written"]) == ("ok", 1)
    assert _landed(project) == [{"id": 2, "v": 3}]
    assert _rejected(project) == [
        (1, ["_record: a field name holds a control character (\\u0000)"])
    ]
