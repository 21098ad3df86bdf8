"""Dates and times as text (a column's `format`: strftime codes, epoch_s, epoch_ms) and
`source.timezone` (CONTRACT §1), end to end: the landed values, and the `_errors` of the
rows that do not read. Local times that repeat are the earlier instant; those in a gap are
rejected."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests._http_servers import Files, serve
from tests.conftest import run_cli

pytestmark = pytest.mark.usefixtures("prefect_server")


def _pump(project: Path, source: str, columns: str, *, extra: str = "") -> dict[str, Any]:
    """Write pumps/p.yaml with this source and these schema columns, run it, and return the
    summary."""
    from flows.pump import pump

    spec = (
        f"name: p\nsource:\n{source}schema:\n  columns:\n{columns}"
        f"{extra}sink:\n  type: parquet\n  url: ./out/p\n"
        "limits:\n  max_invalid_ratio: 0.9\n"
    )
    (project / "pumps" / "p.yaml").write_text(spec)
    return dict(pump(spec_path="pumps/p.yaml"))


def _landed(columns: str, order: str = "id") -> list[tuple[Any, ...]]:
    """The sink's rows; timestamps as UTC text."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    return con.sql(
        f"SELECT {columns} FROM read_parquet('out/p/data/**/*.parquet') ORDER BY {order}"
    ).fetchall()


def _rejected() -> list[tuple[Any, ...]]:
    """The rejected rows: (id as written, _errors)."""
    if not Path("out/p/rejected").exists():
        return []
    con = duckdb.connect()
    return con.sql(
        "SELECT id, _errors FROM read_parquet('out/p/rejected/*.parquet') ORDER BY _source, _row"
    ).fetchall()


def _files(project: Path, name: str, text: str, fmt: str) -> str:
    (project / "in").mkdir(exist_ok=True)
    (project / "in" / name).write_text(text)
    return f"  type: files\n  url: ./in/\n  format: {fmt}\n"


# ---------------------------------------------------------------- strftime formats

STOCKS = """\
id,symbol,date,settled,opened_at,day,closed_at,price
1,MSFT,Jan 1 2000,03/01/2000,01/03/2000 09:30,20000103,03.01.2000 16:00:00,39.81
2,MSFT,Feb 29 2000,01/03/2000,03/01/2000 09:30,20000301,01.03.2000 16:00:05,36.35
3,AMZN,Dec 31 1999,,,,,76.13
4,AMZN,Feb 30 2000,31/02/2020,13/01/2000 09:30,2000-01-03,3.1.2000 16:00,64.56
5,IBM,Jan 01 2000,1/2/2000,1/3/2000 9:30,20000103,03.01.2000 16:00:00,100.52
"""
STOCK_COLUMNS = """\
    id: {type: int64}
    symbol: {type: string}
    date: {type: date, format: "%b %d %Y"}
    settled: {type: date, format: "%d/%m/%Y"}
    opened_at: {type: timestamp, format: "%m/%d/%Y %H:%M"}
    day: {type: date, format: "%Y%m%d"}
    closed_at: {type: timestamp, format: "%d.%m.%Y %H:%M:%S"}
    price: {type: float64}
"""


def test_dates_in_five_formats_land_as_the_dates_they_are(project: Path) -> None:
    source = _files(project, "stocks.csv", STOCKS, "csv")
    summary = _pump(project, source, STOCK_COLUMNS)
    assert (summary["status"], summary["rows_written"], summary["rows_rejected"]) == ("ok", 4, 1)
    cols = "id, CAST(date AS VARCHAR), CAST(settled AS VARCHAR), CAST(opened_at AS VARCHAR), "
    cols += "CAST(day AS VARCHAR), CAST(closed_at AS VARCHAR)"
    assert _landed(cols) == [
        (
            1,
            "2000-01-01",
            "2000-01-03",
            "2000-01-03 09:30:00+00",
            "2000-01-03",
            "2000-01-03 16:00:00+00",
        ),
        (
            2,
            "2000-02-29",
            "2000-03-01",
            "2000-03-01 09:30:00+00",
            "2000-03-01",
            "2000-03-01 16:00:05+00",
        ),
        # Empty is NULL, which a nullable column takes.
        (3, "1999-12-31", None, None, None, None),
        # Codes read one or two digits, as strptime does.
        (
            5,
            "2000-01-01",
            "2000-02-01",
            "2000-01-03 09:30:00+00",
            "2000-01-03",
            "2000-01-03 16:00:00+00",
        ),
    ]
    assert _rejected() == [
        (
            "4",
            [
                "date: 'Feb 30 2000' does not match format '%b %d %Y'",
                "settled: '31/02/2020' does not match format '%d/%m/%Y'",
                "opened_at: '13/01/2000 09:30' does not match format '%m/%d/%Y %H:%M'",
                "day: '2000-01-03' does not match format '%Y%m%d'",
                "closed_at: '3.1.2000 16:00' does not match format '%d.%m.%Y %H:%M:%S'",
            ],
        )
    ]
    # The landed types are the contract's: DATE, and TIMESTAMP WITH TIME ZONE as without a format.
    con = duckdb.connect()
    types = dict(
        con.sql(
            "SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM "
            "read_parquet('out/p/data/**/*.parquet'))"
        ).fetchall()
    )
    assert (types["date"], types["opened_at"]) == ("DATE", "TIMESTAMP WITH TIME ZONE")


def test_a_string_column_of_a_parquet_file_reads_with_its_format(project: Path) -> None:
    (project / "in").mkdir()
    table = pa.table({"id": [1, 2], "date": ["Jan 1 2000", "1 Jan 2000"]})
    pq.write_table(table, project / "in" / "stocks.parquet")
    source = "  type: files\n  url: ./in/\n  format: parquet\n"
    columns = '    id: {type: int64}\n    date: {type: date, format: "%b %d %Y"}\n'
    summary = _pump(project, source, columns)
    assert (summary["rows_written"], summary["rows_rejected"]) == (1, 1)
    assert _landed("id, CAST(date AS VARCHAR)") == [(1, "2000-01-01")]
    assert _rejected() == [("2", ["date: '1 Jan 2000' does not match format '%b %d %Y'"])]


def test_a_typed_date_or_timestamp_of_a_parquet_file_needs_no_format(project: Path) -> None:
    """`format` says how text reads; a column the file already types passes as it is."""
    (project / "in").mkdir()
    table = pa.table(
        {
            "id": [1, 2],
            "d": pa.array([dt.date(2024, 1, 1), dt.date(2024, 2, 29)], pa.date32()),
            "t": pa.array(
                [dt.datetime(2024, 1, 1, 12), dt.datetime(2024, 2, 29, 8)], pa.timestamp("us")
            ),
        }
    )
    pq.write_table(table, project / "in" / "typed.parquet")
    source = "  type: files\n  url: ./in/\n  format: parquet\n"
    columns = (
        "    id: {type: int64}\n"
        '    d: {type: date, format: "%d.%m.%Y"}\n'
        '    t: {type: timestamp, format: "%d.%m.%Y %H:%M"}\n'
    )
    summary = _pump(project, source, columns)
    assert (summary["rows_written"], summary["rows_rejected"]) == (2, 0)
    assert _landed("id, CAST(d AS VARCHAR), CAST(t AS VARCHAR)") == [
        (1, "2024-01-01", "2024-01-01 12:00:00+00"),
        (2, "2024-02-29", "2024-02-29 08:00:00+00"),
    ]


# ---------------------------------------------------------------- epoch

EVENTS = [
    {"id": 1, "seen_s": 1700000000, "seen_ms": 1700000000123, "day": 1700000000},
    {"id": 2, "seen_s": "1700000000", "seen_ms": "1700000000123", "day": "1700006400"},
    {"id": 3, "seen_s": 1700000000.25, "seen_ms": "-1000", "day": 0},
    {"id": 4, "seen_s": None, "seen_ms": None, "day": None},
    {"id": 5, "seen_s": "soon", "seen_ms": "1.7e12x", "day": "today"},
]
EPOCH_COLUMNS = """\
    id: {type: int64}
    seen_s: {type: timestamp, format: epoch_s}
    seen_ms: {type: timestamp, format: epoch_ms}
    day: {type: date, format: epoch_s}
"""


@pytest.mark.parametrize("zone", ["UTC", "America/Los_Angeles"])
def test_epoch_seconds_and_milliseconds_as_numbers_or_text(project: Path, zone: str) -> None:
    text = "".join(json.dumps(r) + "\n" for r in EVENTS)
    source = _files(project, "events.ndjson", text, "ndjson") + f"  timezone: {zone}\n"
    summary = _pump(project, source, EPOCH_COLUMNS)
    assert (summary["rows_written"], summary["rows_rejected"]) == (4, 1)
    # An epoch is an instant: the zone changes only which day a date column gets.
    day2 = "2023-11-15" if zone == "UTC" else "2023-11-14"
    day3 = "1970-01-01" if zone == "UTC" else "1969-12-31"
    assert _landed(
        "id, CAST(seen_s AS VARCHAR), CAST(seen_ms AS VARCHAR), CAST(day AS VARCHAR)"
    ) == [
        (1, "2023-11-14 22:13:20+00", "2023-11-14 22:13:20.123+00", "2023-11-14"),
        (2, "2023-11-14 22:13:20+00", "2023-11-14 22:13:20.123+00", day2),
        (3, "2023-11-14 22:13:20.25+00", "1969-12-31 23:59:59+00", day3),
        (4, None, None, None),
    ]
    assert _rejected() == [
        (
            "5",
            [
                "seen_s: 'soon' does not match format 'epoch_s'",
                "seen_ms: '1.7e12x' does not match format 'epoch_ms'",
                "day: 'today' does not match format 'epoch_s'",
            ],
        )
    ]


# ---------------------------------------------------------------- time zones

# Los Angeles: clocks go 02:00 -> 03:00 on 2024-03-10 and 02:00 -> 01:00 on 2024-11-03.
LA_CSV = """\
id,taken_at
1,2024-03-10 01:59:59
2,2024-03-10 02:30:00
3,2024-03-10T03:00:00
4,2024-11-03 00:59:00
5,2024-11-03 01:30:00
6,2024-11-03 02:00:00
7,2024-11-03 01:30:00-08:00
8,2024-07-01T12:00:00Z
9,2024-07-01
10,not a time
11,2024-11-03 01:30 XYZ
"""
LA_LANDED = [
    (1, "2024-03-10 09:59:59+00"),
    (3, "2024-03-10 10:00:00+00"),
    (4, "2024-11-03 07:59:00+00"),
    (5, "2024-11-03 08:30:00+00"),  # 01:30 happens twice: the earlier (PDT, -07:00)
    (6, "2024-11-03 10:00:00+00"),
    (7, "2024-11-03 09:30:00+00"),  # an explicit offset is kept: the later 01:30
    (8, "2024-07-01 12:00:00+00"),
    (9, "2024-07-01 07:00:00+00"),
]
LA_REJECTED = [
    (
        "2",
        [
            "taken_at: '2024-03-10 02:30:00' does not exist in America/Los_Angeles: the clocks skip "
            "it (daylight saving); give the value an offset or correct it"
        ],
    ),
    ("10", ["taken_at: 'not a time' is not timestamp"]),
    (
        "11",
        ["taken_at: '2024-11-03 01:30 XYZ' is not timestamp"],
    ),  # an offset that does not read is not ignored
]
# Berlin: clocks go 02:00 -> 03:00 on 2024-03-31 and 03:00 -> 02:00 on 2024-10-27.
BERLIN = [
    {"id": 1, "taken_at": "31.03.2024 01:59"},
    {"id": 2, "taken_at": "31.03.2024 02:00"},
    {"id": 3, "taken_at": "31.03.2024 03:00"},
    {"id": 4, "taken_at": "27.10.2024 01:59"},
    {"id": 5, "taken_at": "27.10.2024 02:30"},
    {"id": 6, "taken_at": "27.10.2024 03:00"},
    {"id": 7, "taken_at": "2024-10-27 02:30"},
]
BERLIN_LANDED = [
    (1, "2024-03-31 00:59:00+00"),
    (3, "2024-03-31 01:00:00+00"),
    (4, "2024-10-26 23:59:00+00"),
    (5, "2024-10-27 00:30:00+00"),  # the earlier 02:30 (CEST, +02:00)
    (6, "2024-10-27 02:00:00+00"),
]
BERLIN_REJECTED = [
    (
        "2",
        [
            "taken_at: '31.03.2024 02:00' does not exist in Europe/Berlin: the clocks skip it "
            "(daylight saving); give the value an offset or correct it"
        ],
    ),
    ("7", ["taken_at: '2024-10-27 02:30' does not match format '%d.%m.%Y %H:%M'"]),
]


@pytest.mark.reliability(
    "bad data",
    "source.timezone America/Los_Angeles, a CSV of ISO local times across both DST changes of "
    "2024 (a time the clocks skip, one that occurs twice, explicit offsets, an unreadable zone)",
    "a repeated local time lands as the earlier instant, an explicit offset is kept, a skipped "
    "one is rejected naming the value and the zone; every other row lands as its UTC instant",
)
def test_local_times_in_los_angeles_across_both_changes_of_2024(project: Path) -> None:
    source = _files(project, "readings.csv", LA_CSV, "csv") + "  timezone: America/Los_Angeles\n"
    summary = _pump(project, source, "    id: {type: int64}\n    taken_at: {type: timestamp}\n")
    assert (summary["rows_written"], summary["rows_rejected"]) == (8, 3)
    assert _landed("id, CAST(taken_at AS VARCHAR)") == LA_LANDED
    assert _rejected() == LA_REJECTED


@pytest.mark.reliability(
    "bad data",
    "source.timezone Europe/Berlin, NDJSON local times with a strftime format across both DST "
    "changes of 2024, and a value in another format",
    "the earlier instant for a repeated time; a skipped time and a value that does not match "
    "are rejected, `_errors` naming the value and the zone or format",
)
def test_local_times_in_berlin_with_a_format_across_both_changes_of_2024(project: Path) -> None:
    text = "".join(json.dumps(r) + "\n" for r in BERLIN)
    source = _files(project, "readings.ndjson", text, "ndjson") + "  timezone: Europe/Berlin\n"
    columns = '    id: {type: int64}\n    taken_at: {type: timestamp, format: "%d.%m.%Y %H:%M"}\n'
    summary = _pump(project, source, columns)
    assert (summary["rows_written"], summary["rows_rejected"]) == (5, 2)
    assert _landed("id, CAST(taken_at AS VARCHAR)") == BERLIN_LANDED
    assert _rejected() == BERLIN_REJECTED


def test_without_a_timezone_local_times_are_utc_as_before(project: Path) -> None:
    # The same pump and schema, first in Los Angeles, then with the default zone: the query
    # built for the zone is not reused, and without one nothing is local.
    columns = "    id: {type: int64}\n    taken_at: {type: timestamp}\n"
    source = _files(project, "readings.csv", LA_CSV, "csv")
    zoned = _pump(project, source + "  timezone: America/Los_Angeles\n", columns)
    assert zoned["rows_written"] == 8
    shutil.rmtree(project / "out")
    shutil.rmtree(project / ".pumphouse")
    summary = _pump(project, source, columns)
    assert (summary["rows_written"], summary["rows_rejected"]) == (9, 2)
    landed = dict(_landed("id, CAST(taken_at AS VARCHAR)"))
    assert (landed[2], landed[5], landed[7]) == (
        "2024-03-10 02:30:00+00",
        "2024-11-03 01:30:00+00",
        "2024-11-03 09:30:00+00",
    )


@pytest.fixture
def api() -> Iterator[str]:
    records = [
        {"id": 1, "taken_at": "11/03/2024 01:30", "sent_ms": 1730622600000},
        {"id": 2, "taken_at": "03/10/2024 02:15", "sent_ms": "1710062100000"},
        {"id": 3, "taken_at": "2024-11-03T01:30", "sent_ms": 1730622600000},
    ]
    with serve(Files({"/readings": json.dumps(records).encode()})) as base:
        yield base


def test_an_http_source_reads_local_times_and_epoch_milliseconds(project: Path, api: str) -> None:
    source = f"  type: http\n  url: {api}/readings\n  timezone: America/Los_Angeles\n"
    columns = (
        '    id: {type: int64}\n    taken_at: {type: timestamp, format: "%m/%d/%Y %H:%M"}\n'
        "    sent_ms: {type: timestamp, format: epoch_ms}\n"
    )
    summary = _pump(project, source, columns)
    assert (summary["rows_written"], summary["rows_rejected"]) == (1, 2)
    assert _landed("id, CAST(taken_at AS VARCHAR), CAST(sent_ms AS VARCHAR)") == [
        (1, "2024-11-03 08:30:00+00", "2024-11-03 08:30:00+00")
    ]
    assert [errors for _, errors in _rejected()] == [
        [
            "taken_at: '03/10/2024 02:15' does not exist in America/Los_Angeles: the clocks skip it "
            "(daylight saving); give the value an offset or correct it"
        ],
        ["taken_at: '2024-11-03T01:30' does not match format '%m/%d/%Y %H:%M'"],
    ]


# ---------------------------------------------------------------- incremental


def test_an_incremental_cursor_on_a_formatted_column_compares_instants(project: Path) -> None:
    # As text, '31/12/2023' sorts after '02/01/2024'; as times it is before.
    columns = '    id: {type: int64}\n    taken_at: {type: timestamp, format: "%d/%m/%Y %H:%M"}\n'
    extra = "transform:\n  incremental: {cursor: taken_at}\n"
    source = _files(project, "a.csv", "id,taken_at\n1,31/12/2023 10:00\n", "csv")
    assert _pump(project, source, columns, extra=extra)["rows_written"] == 1
    (project / "in" / "b.csv").write_text("id,taken_at\n2,02/01/2024 10:00\n3,30/12/2023 10:00\n")
    summary = _pump(project, source, columns, extra=extra)
    assert (summary["rows_written"], summary["rows_old"]) == (1, 1)
    assert _landed("id, CAST(taken_at AS VARCHAR)") == [
        (1, "2023-12-31 10:00:00+00"),
        (2, "2024-01-02 10:00:00+00"),
    ]


# ---------------------------------------------------------------- validate


def test_validate_refuses_a_format_duckdb_cannot_read(project: Path) -> None:
    (project / "pumps" / "p.yaml").write_text(
        "name: p\nsource: {type: files, url: ./in/, format: csv}\nschema:\n  columns:\n"
        '    day: {type: date, format: "%d/%Q/%Y"}\n'
        "sink: {type: parquet, url: ./out/p}\n"
    )
    proc = run_cli("validate", "pumps/p.yaml", cwd=project, env={"PUMPHOUSE_CACHE_DIR": "off"})
    assert proc.returncode == 2
    assert (
        "pumps/p.yaml:5 schema.columns.day.format: format '%d/%Q/%Y' cannot be read: "
        "Failed to parse format specifier %d/%Q/%Y: Unrecognized format for strftime/strptime: "
        "%Q; see https://duckdb.org/docs/stable/sql/functions/dateformat for the codes"
    ) in proc.stdout + proc.stderr
