"""A new user's mistakes on real-looking files (issue 21): `validate` finds those the spec
alone shows, with the line and the fix; a run names the value that failed, keeps the rows
it rejected where `query` shows them, and says when the spec, not the data, is at fault."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_cli

CARRIERS = ("UA", "DL", "AA", "WN")
FLIGHTS_SPEC = """\
name: flights
source:
  type: files
  url: ./in/
  glob: "*.csv"
schema:
  strict: true
  columns:
    flight_id: {type: int64, nullable: false}
    carrier: {type: string}
    origin: {type: string}
    dep_delay: {type: float64}
transform:
  filter: "dep_delay > 15"
  dedup: {key: [flight_id], order_by: dep_delay}
sink:
  type: parquet
  url: ./out/flights
"""
FILTER = 'filter: "dep_delay > 15"'


def _flights(project: Path, rows: int = 40) -> None:
    """A flights export as airlines publish them: a header, a float delay (some empty)."""
    lines = ["flight_id,carrier,origin,dep_delay"]
    for i in range(rows):
        delay = "" if i % 7 == 3 else f"{(i * 13) % 90 - 10}.0"
        lines.append(f"{i},{CARRIERS[i % 4]},{'SFO' if i % 2 else 'JFK'},{delay}")
    (project / "in").mkdir()
    (project / "in" / "flights.csv").write_text("\n".join(lines) + "\n")


def _spec(project: Path, text: str) -> None:
    (project / "pumps" / "flights.yaml").write_text(text)


@pytest.mark.parametrize(
    ("old", "new", "line"),
    [
        (
            FILTER,
            "filter: \"dep_delay > '15 minutes'\"",
            "pumps/flights.yaml:14 transform.filter: cannot be evaluated on the declared column "
            "types: Could not convert string '15 minutes' to DOUBLE; write each value as its "
            "column's declared type (a number for a number column, quoted text for a string), "
            "or CAST the column",
        ),
        (
            "key: [flight_id]",
            "key: [flight_id, carier]",
            "pumps/flights.yaml:15 transform.dedup.key: unknown column 'carier' (did you mean "
            "'carrier'?); columns here: flight_id, carrier, origin, dep_delay",
        ),
    ],
    ids=["filter-literal", "misspelt-column"],
)
def test_validate_refuses_what_would_fail_the_run(
    project: Path, old: str, new: str, line: str
) -> None:
    _flights(project)
    assert FLIGHTS_SPEC.count(old) == 1
    _spec(project, FLIGHTS_SPEC.replace(old, new))

    done = run_cli("validate", "pumps/flights.yaml", cwd=project)

    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [line]


@pytest.mark.usefixtures("prefect_server")
@pytest.mark.reliability(
    "bad data",
    "a column declared with the wrong type (carrier: int64 in a flights CSV), so every row "
    "fails it, over limits.max_invalid_ratio; then the spec fixed",
    "exit 1: `carrier: 'UA' is not int64` per row, the message says the spec is the likely "
    "culprit, nothing lands, the rejected rows are in `query` as NAME_rejected; the fixed run "
    "lands every row and the stopped run's rejected rows are gone",
)
def test_a_column_that_fails_in_every_row_blames_the_spec_and_keeps_the_rejected_rows(
    project: Path,
) -> None:
    _flights(project, rows=40)
    wrong = FLIGHTS_SPEC.replace("carrier: {type: string}", "carrier: {type: int64}")
    _spec(project, wrong.replace(FILTER, "filter: dep_delay > -100 OR dep_delay IS NULL"))

    done = run_cli("run", "pumps/flights.yaml", "--json", cwd=project)

    assert done.returncode == 1, done.stderr
    error = json.loads(done.stdout)["error"]
    assert error.startswith(
        "40 of 40 rows (100.0%) are invalid, over limits.max_invalid_ratio 5.0%; nothing was "
        "loaded (see them with pumphouse query: flights_rejected). First problems: "
        "flights.csv:2: carrier: 'UA' is not int64; flights.csv:3: carrier: 'DL' is not int64; "
        "flights.csv:4: carrier: 'AA' is not int64. "
    ), error
    assert error.endswith(
        "Column carrier failed `type int64` in 40 of 40 rows: the spec, not the data, is the "
        "likely culprit; is its type or format in the spec right?"
    ), error
    assert not (project / "out" / "flights" / "data").exists()
    rejected = _query(project, "SELECT _row, _errors FROM flights_rejected ORDER BY _row")
    assert [r["_row"] for r in rejected] == list(range(2, 42))
    assert rejected[4]["_errors"] == ["carrier: 'UA' is not int64"]

    again = run_cli("run", "pumps/flights.yaml", "--json", cwd=project)  # stopped again
    assert again.returncode == 1, again.stderr
    assert len(_query(project, "SELECT * FROM flights_rejected")) == 40  # not twice

    _spec(project, FLIGHTS_SPEC.replace(FILTER, "filter: dep_delay > -100 OR dep_delay IS NULL"))
    fixed = run_cli("run", "pumps/flights.yaml", "--json", cwd=project)
    assert fixed.returncode == 0, fixed.stderr
    assert json.loads(fixed.stdout)["rows_written"] == 40
    assert _query(project, "SELECT count(*) AS n FROM flights") == [{"n": 40}]
    assert _query(project, "SELECT count(*) AS n FROM flights_rejected") == [{"n": 0}]


def _query(project: Path, sql: str) -> list[dict[str, object]]:
    done = run_cli("query", "pumps/flights.yaml", sql, "--format", "json", cwd=project)
    assert done.returncode == 0, done.stderr
    rows: list[dict[str, object]] = json.loads(done.stdout)
    return rows
