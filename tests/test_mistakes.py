"""A new user's mistakes on real-looking files (issue 21): `validate` finds those the spec
alone shows, with the line and the fix; a run names the value that failed, keeps the rows
it rejected where `query` shows them, and says when the spec, not the data, is at fault.

The command runs in this process (run_in_process): these tests are about what it prints and
lands, which a subprocess would not prove more of."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from schemas.errors import DataError
from tasks.sources.http import warnings_heard
from tests.conftest import run_in_process
from tests.test_read import read, records

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

    done = run_in_process("validate", "pumps/flights.yaml", cwd=project)

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

    done = run_in_process("run", "pumps/flights.yaml", "--json", cwd=project)

    assert done.returncode == 1, done.stderr
    error = json.loads(done.stdout)["error"]
    assert error.startswith(
        "40 of 40 rows (100.0%) are invalid, over limits.max_invalid_ratio 5.0%; nothing was "
        "loaded (see them with pumphouse query: flights_rejected). First problems: "
        "flights.csv:2: carrier: 'UA' is not int64 (pumps/flights.yaml:10); "
        "flights.csv:3: carrier: 'DL' is not int64 (pumps/flights.yaml:10); "
        "flights.csv:4: carrier: 'AA' is not int64 (pumps/flights.yaml:10). "
    ), error
    assert error.endswith(
        "Column carrier failed `type int64` in 40 of 40 rows: the spec, not the data, is the "
        "likely culprit; is its type or format in the spec right?"
    ), error
    assert not (project / "out" / "flights" / "data").exists()
    rejected = _query(project, "SELECT _row, _errors FROM flights_rejected ORDER BY _row")
    assert [r["_row"] for r in rejected] == list(range(2, 42))
    assert rejected[4]["_errors"] == ["carrier: 'UA' is not int64"]

    again = run_in_process("run", "pumps/flights.yaml", "--json", cwd=project)  # stopped again
    assert again.returncode == 1, again.stderr
    assert len(_query(project, "SELECT * FROM flights_rejected")) == 40  # not twice

    _spec(project, FLIGHTS_SPEC.replace(FILTER, "filter: dep_delay > -100 OR dep_delay IS NULL"))
    fixed = run_in_process("run", "pumps/flights.yaml", "--json", cwd=project)
    assert fixed.returncode == 0, fixed.stderr
    assert json.loads(fixed.stdout)["rows_written"] == 40
    assert _query(project, "SELECT count(*) AS n FROM flights") == [{"n": 40}]
    assert _query(project, "SELECT count(*) AS n FROM flights_rejected") == [{"n": 0}]


@pytest.mark.usefixtures("prefect_server")
def test_a_run_shows_its_first_rejected_rows_with_the_spec_line_of_their_column(
    project: Path,
) -> None:
    _flights(project, rows=40)
    wrong = FLIGHTS_SPEC.replace("carrier: {type: string}", "carrier: {type: int64}")
    wrong = wrong.replace(FILTER, "filter: dep_delay > -100 OR dep_delay IS NULL")
    _spec(project, wrong + "limits: {max_invalid_ratio: 1}\n")

    done = run_in_process("run", "pumps/flights.yaml", cwd=project)

    assert done.returncode == 0, done.stderr
    assert [x for x in done.stderr.splitlines() if x.startswith("rejected: ")] == [
        "rejected: flights.csv:2: carrier: 'UA' is not int64 (pumps/flights.yaml:10)",
        "rejected: flights.csv:3: carrier: 'DL' is not int64 (pumps/flights.yaml:10)",
        "rejected: flights.csv:4: carrier: 'AA' is not int64 (pumps/flights.yaml:10)",
    ]
    rejected = _query(project, "SELECT _errors FROM flights_rejected WHERE _row = 2")
    assert rejected == [{"_errors": ["carrier: 'UA' is not int64"]}]  # the data names no spec


def _query(project: Path, sql: str) -> list[dict[str, object]]:
    done = run_in_process("query", "pumps/flights.yaml", sql, "--format", "json", cwd=project)
    assert done.returncode == 0, done.stderr
    rows: list[dict[str, object]] = json.loads(done.stdout)
    return rows


# ---------------------------------------------------------------- CSV delimiter

EUROPEAN = "station;day;temp_c\nBerlin;2024-01-01;-1,5\nParis;2024-01-01;4,25\nRoma;2024-01-02;9\n"


@pytest.mark.parametrize(
    ("delimiter", "shown"),
    [(";", "';'"), ("\t", "'\\t'"), ("|", "'|'")],
    ids=["semi", "tab", "pipe"],
)
def test_a_header_that_is_one_column_holding_another_delimiter_asks_for_it(
    tmp_path: Path, delimiter: str, shown: str
) -> None:
    path = tmp_path / "weather.csv"
    path.write_text(EUROPEAN.replace(";", delimiter))
    header = "station;day;temp_c".replace(";", delimiter)

    with pytest.raises(DataError) as caught:
        read(path)

    assert str(caught.value) == (
        f"{path}: line 1: the CSV header is one column, {header!r}, that holds {shown}: is "
        f"csv.delimiter {shown}? Set source.csv.delimiter to it, or to auto to find it in each file"
    )


@pytest.mark.parametrize("compressed", [False, True], ids=["plain", "gzip"])
def test_delimiter_auto_finds_each_files_delimiter(tmp_path: Path, compressed: bool) -> None:
    found = {}
    for name, text in (("semi.csv", EUROPEAN), ("pipe.csv", EUROPEAN.replace(";", "|"))):
        path = tmp_path / (name + (".gz" if compressed else ""))
        data = text.encode()
        path.write_bytes(gzip.compress(data) if compressed else data)
        with warnings_heard() as heard:
            batches = read(path, csv={"delimiter": "auto"})
        found[name] = heard
        assert records(batches, "station", "temp_c") == [
            (2, "Berlin;2024-01-01;-1,5".replace(";", text[7]), None, "Berlin", "-1,5"),
            (3, "Paris;2024-01-01;4,25".replace(";", text[7]), None, "Paris", "4,25"),
            (4, "Roma;2024-01-02;9".replace(";", text[7]), None, "Roma", "9"),
        ]
    assert found == {
        "semi.csv": [
            f"{tmp_path}/semi.csv{'.gz' if compressed else ''}: csv.delimiter auto found ';'"
        ],
        "pipe.csv": [
            f"{tmp_path}/pipe.csv{'.gz' if compressed else ''}: csv.delimiter auto found '|'"
        ],
    }


@pytest.mark.usefixtures("prefect_server")
@pytest.mark.reliability(
    "bad data",
    "a semicolon CSV read with the default delimiter, then with `csv: {delimiter: auto}`",
    "exit 1 asking `is csv.delimiter ';'?` (no row rejected as not_nullable); with auto every "
    "row lands and the summary says what was found",
)
def test_a_semicolon_csv_asks_for_its_delimiter_and_auto_reads_it(project: Path) -> None:
    (project / "in").mkdir()
    (project / "in" / "weather.csv").write_text(EUROPEAN)
    spec = WEATHER_SPEC
    (project / "pumps" / "weather.yaml").write_text(spec)

    done = run_in_process("run", "pumps/weather.yaml", "--json", cwd=project)

    assert done.returncode == 1, done.stderr
    assert json.loads(done.stdout)["error"] == (
        f"{project}/in/weather.csv: line 1: the CSV header is one column, "
        "'station;day;temp_c', that holds ';': is csv.delimiter ';'? Set "
        "source.csv.delimiter to it, or to auto to find it in each file"
    )

    (project / "pumps" / "weather.yaml").write_text(
        spec.replace('  glob: "*.csv"\n', '  glob: "*.csv"\n  csv: {delimiter: auto}\n')
    )
    auto = run_in_process("run", "pumps/weather.yaml", "--json", cwd=project)
    assert auto.returncode == 0, auto.stderr
    summary = json.loads(auto.stdout)
    assert (summary["rows_written"], summary["rows_rejected"]) == (3, 0)
    assert summary["warnings"] == [f"{project}/in/weather.csv: csv.delimiter auto found ';'"]
    done = run_in_process("query", "pumps/weather.yaml", "SELECT station FROM weather ORDER BY 1",
                   "--format", "csv", cwd=project)  # fmt: skip
    assert done.stdout.split() == ["station", "Berlin", "Paris", "Roma"]


@pytest.mark.parametrize("csv", ["", '  csv: {delimiter: ","}\n'], ids=["default", "given"])
def test_validate_reads_a_local_csvs_first_line_for_its_delimiter(project: Path, csv: str) -> None:
    (project / "in").mkdir()
    (project / "in" / "weather.csv").write_text(EUROPEAN)
    text = WEATHER_SPEC.replace('  glob: "*.csv"\n', '  glob: "*.csv"\n' + csv)
    (project / "pumps" / "weather.yaml").write_text(text)

    done = run_in_process("validate", "pumps/weather.yaml", cwd=project)

    assert done.returncode == 2, done.stderr
    where = "6 source.csv.delimiter" if csv else "2 source"
    assert done.stderr.splitlines() == [
        f"pumps/weather.yaml:{where}: {project}/in/weather.csv: line 1: the CSV header is one column, "
        "'station;day;temp_c', that holds ';': is csv.delimiter ';'? Set "
        "source.csv.delimiter to it, or to auto to find it in each file"
    ]
    auto = text.replace('  glob: "*.csv"\n', '  glob: "*.csv"\n  csv: {delimiter: auto}\n')
    (project / "pumps" / "weather.yaml").write_text(auto.replace(csv, ""))
    ok = run_in_process("validate", "pumps/weather.yaml", cwd=project)
    assert ok.returncode == 0, ok.stderr


WEATHER_SPEC = """\
name: weather
source:
  type: files
  url: ./in/
  glob: "*.csv"
schema:
  columns:
    station: {type: string, nullable: false}
    day: {type: date, nullable: false}
    temp_c: {type: string}
sink:
  type: parquet
  url: ./out/weather
"""
