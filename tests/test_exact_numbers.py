"""Without a declared schema, a number lands as written: a value its inferred type would
change (an integer beyond BIGINT, a double that is not the number written) makes the field
exact (DECIMAL, or text); the common case keeps BIGINT and DOUBLE."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import pytest

pytestmark = pytest.mark.usefixtures("prefect_server")

SPEC = """\
name: ids
source: {{type: files, url: ./in/, glob: "*.{ext}"}}
sink: {{type: parquet, url: ./out/ids}}
"""


def _run(project: Path, ext: str, text: str) -> tuple[dict[str, Any], dict[str, str], list[Any]]:
    """Run a schema-less pump over one file; (summary, sink types, rows as text by `n`)."""
    from flows.pump import pump

    (project / "in").mkdir()
    (project / "in" / f"a.{ext}").write_text(text)
    spec = project / "pumps" / "ids.yaml"
    spec.write_text(SPEC.format(ext=ext))
    summary = pump(spec_path=str(spec))
    con = duckdb.connect()
    sink = "read_parquet('out/ids/data/**/*.parquet')"
    types = dict(
        con.sql(f"SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM {sink})").fetchall()
    )
    got = con.sql(f"SELECT CAST(COLUMNS(* EXCLUDE (n)) AS VARCHAR) FROM {sink} ORDER BY n")
    return summary, types, got.fetchall()


@pytest.mark.reliability(
    "bad data",
    "no declared schema; an unsigned 64-bit id (18446744073709551615), an integer beyond it, "
    "and 9007199254740993 in a field that also holds 1.5",
    "each lands exactly as written (DECIMAL(38, s), or text where no decimal fits); "
    "nothing NULLed or rounded, nothing rejected",
)
def test_numbers_a_double_or_bigint_would_change_land_as_written(project: Path) -> None:
    records = [
        '{"n": 1, "id": 18446744073709551615, "mixed": 9007199254740993, "huge": 1}',
        '{"n": 2, "id": 7, "mixed": 1.5, "huge": 123456789012345678901234567890123456789012}',
        '{"n": 3, "id": null, "mixed": -2, "huge": 2.5}',
    ]
    summary, types, got = _run(project, "ndjson", "\n".join(records) + "\n")

    assert (summary["status"], summary["rows_written"], summary["rows_rejected"]) == ("ok", 3, 0)
    assert types["id"] == "DECIMAL(38,0)"
    assert types["mixed"] == "DECIMAL(38,1)"
    assert types["huge"] == "VARCHAR"  # 42 integer digits and a fraction: no DECIMAL(38, s)
    assert got == [  # huge, id, mixed
        ("1", "18446744073709551615", "9007199254740993.0"),
        ("123456789012345678901234567890123456789012", "7", "1.5"),
        ("2.5", None, "-2.0"),
    ]


@pytest.mark.reliability(
    "bad data",
    "no declared schema; a CSV field holding 18446744073709551615 and 9007199254740993",
    "the values land as the text written; nothing NULLed or rounded",
)
def test_csv_without_a_schema_keeps_big_numbers_as_written(project: Path) -> None:
    summary, types, got = _run(
        project, "csv", "n,id\n1,18446744073709551615\n2,9007199254740993\n3,1.5\n"
    )

    assert (summary["rows_written"], summary["rows_rejected"]) == (3, 0)
    assert types["id"] == "VARCHAR"
    assert got == [("18446744073709551615",), ("9007199254740993",), ("1.5",)]


def test_the_common_numbers_keep_bigint_and_double(project: Path) -> None:
    records = [
        {"n": 1, "count": 3, "price": 1.5, "ratio": 0.30000000000000004, "big": 2**62},
        {"n": 2, "count": -4, "price": 2, "ratio": 1e-5, "big": 1234567890123456789},
    ]
    text = "\n".join(json.dumps(r) for r in records) + "\n"
    summary, types, got = _run(project, "ndjson", text)

    assert summary["rows_written"] == 2
    assert {k: types[k] for k in ("count", "price", "ratio", "big")} == {
        "count": "BIGINT",
        "price": "DOUBLE",
        "ratio": "DOUBLE",  # its 17 digits are the double's own: kept exactly
        "big": "BIGINT",
    }
    assert [r[0] for r in got] == [str(2**62), "1234567890123456789"]  # big, count, ...


@pytest.mark.reliability(
    "bad data",
    "no declared schema; 9007199254740993 and 1.5 in one field but in different batches "
    "(one typed BIGINT, the other DOUBLE)",
    "the run is refused before anything is written, naming the column and the fix (declare "
    "it as decimal or string); never rounded",
)
def test_integers_a_double_cannot_keep_next_to_doubles_in_other_batches_are_refused(
    project: Path,
) -> None:
    from flows.pump import pump
    from schemas.errors import DataError

    (project / "in").mkdir()
    (project / "in" / "a.ndjson").write_text(
        '{"n": 1, "id": 9007199254740993}\n{"n": 2, "id": 1.5}\n{"n": 3, "id": 7}\n'
    )
    spec = project / "pumps" / "ids.yaml"
    spec.write_text(SPEC.format(ext="ndjson") + "limits: {batch_rows: 1}\n")

    with pytest.raises(DataError, match="column 'id' holds numbers a double cannot keep"):
        pump(spec_path=str(spec))
    assert not list(project.glob("out/ids/data/**/*.parquet"))

    # declared, the column reads every value as written
    spec.write_text(
        SPEC.format(ext="ndjson")
        + "limits: {batch_rows: 1}\nschema:\n  strict: false\n  columns:\n"
        + '    id: {type: "decimal(38,1)"}\n'
    )
    summary = pump(spec_path=str(spec))
    assert summary["rows_written"] == 3
    got = duckdb.sql(
        "SELECT CAST(id AS VARCHAR) FROM read_parquet('out/ids/data/**/*.parquet') ORDER BY n"
    ).fetchall()
    assert got == [("9007199254740993.0",), ("1.5",), ("7.0",)]


LONG_DECIMALS = [  # more significant digits than a double keeps
    '{"n": 1, "small": 0.12345678901234567890123, "big": 12345678901234567890.5, '
    '"split": 1234567890.1234567890, "short": 1.5}',
    '{"n": 2, "small": 1.5, "big": -2.25, "split": 3, "short": 0.1}',
]
LONG_TYPES = {
    "small": "DECIMAL(38,23)",
    "big": "DECIMAL(38,2)",
    "split": "DECIMAL(38,10)",
    "short": "DOUBLE",  # every value is a double's own: the common case stays DOUBLE
}
LONG_ROWS = [  # big, short, small, split
    ("12345678901234567890.50", "1.5", "0.12345678901234567890123", "1234567890.1234567890"),
    ("-2.25", "0.1", "1.50000000000000000000000", "3.0000000000"),
]


@pytest.mark.reliability(
    "bad data",
    "no declared schema; decimals with more significant digits than a double keeps "
    "(0.12345678901234567890123, 12345678901234567890.5, 1234567890.1234567890) in ndjson "
    "and JSON array files",
    "each lands exactly as written (DECIMAL(38, s)); nothing rounded, nothing rejected",
)
@pytest.mark.parametrize("ext", ["ndjson", "json"])
def test_long_decimals_land_as_written(project: Path, ext: str) -> None:
    text = "\n".join(LONG_DECIMALS) + "\n"
    if ext == "json":
        text = "[" + ",\n".join(LONG_DECIMALS) + "]\n"
    summary, types, got = _run(project, ext, text)

    assert (summary["status"], summary["rows_written"], summary["rows_rejected"]) == ("ok", 2, 0)
    assert {k: types[k] for k in LONG_TYPES} == LONG_TYPES
    assert got == LONG_ROWS


def test_a_declared_decimal_column_gets_every_digit_of_a_long_decimal(project: Path) -> None:
    from flows.pump import pump

    (project / "in").mkdir()
    (project / "in" / "a.ndjson").write_text(LONG_DECIMALS[0] + "\n")
    spec = project / "pumps" / "ids.yaml"
    spec.write_text(
        SPEC.format(ext="ndjson")
        + "schema:\n  strict: false\n  columns:\n"
        + '    small: {type: "decimal(38,23)"}\n    big: {type: "decimal(38,1)"}\n'
    )
    assert pump(spec_path=str(spec))["rows_written"] == 1
    got = duckdb.sql(
        "SELECT CAST(small AS VARCHAR), CAST(big AS VARCHAR) "
        "FROM read_parquet('out/ids/data/**/*.parquet')"
    ).fetchall()
    assert got == [("0.12345678901234567890123", "12345678901234567890.5")]


@pytest.mark.reliability(
    "bad data",
    "no declared schema; an http source whose page holds decimals with more significant "
    "digits than a double keeps",
    "each lands exactly as written (DECIMAL(38, s)); nothing rounded, nothing rejected",
)
def test_an_http_source_keeps_long_decimals_as_written(project: Path) -> None:
    from flows.pump import pump
    from tests._http_servers import Files, serve

    body = ("[" + ",".join(LONG_DECIMALS) + "]").encode()
    with serve(Files({"/v1/rows": body})) as base:
        spec = project / "pumps" / "ids.yaml"
        spec.write_text(
            f"name: ids\nsource: {{type: http, url: '{base}/v1/rows'}}\n"
            "sink: {type: parquet, url: ./out/ids}\n"
        )
        summary = pump(spec_path=str(spec))
    assert (summary["status"], summary["rows_written"], summary["rows_rejected"]) == ("ok", 2, 0)
    sink = "read_parquet('out/ids/data/**/*.parquet')"
    types = dict(
        duckdb.sql(
            f"SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM {sink})"
        ).fetchall()
    )
    assert {k: types[k] for k in LONG_TYPES} == LONG_TYPES
    got = duckdb.sql(f"SELECT CAST(COLUMNS(* EXCLUDE (n)) AS VARCHAR) FROM {sink} ORDER BY n")
    assert got.fetchall() == LONG_ROWS


def test_csv_without_a_schema_keeps_long_decimals_as_written(project: Path) -> None:
    summary, _, got = _run(
        project, "csv", "n,small,big\n1,0.12345678901234567890123,12345678901234567890.5\n"
    )

    assert (summary["rows_written"], summary["rows_rejected"]) == (1, 0)
    assert got == [("12345678901234567890.5", "0.12345678901234567890123")]


def test_a_block_with_no_long_number_skips_the_per_record_look_and_one_with_any_does_not() -> None:
    """Blocks of NDJSON are read without looking at each record's numbers only where no part
    of the block matches json_numbers.LONG: a long number anywhere (next to a chunk's edge
    too) makes the block's records be looked at one by one."""
    import random
    import re

    from tasks.engine.json_numbers import LONG, may_hold_long

    record = b'{"id": 123456789012345, "t": "2026-03-08T00:00:01Z", "x": 1.25e10, "u": "3e4f"}\n'
    clean = record * (3 * 2**20 // len(record))
    assert re.search(LONG.encode(), clean) is None
    assert not may_hold_long(clean)
    for number in (b"1234567890123456", b"0.12345678901234567", b"1e308", b"2E-300", b"9e+100"):
        for edge in (2**20, 2 * 2**20, len(clean)):
            for shift in range(-len(number) - 2, 3):
                at = max(0, min(len(clean) - len(number), edge + shift))
                text = clean[:at] + number + clean[at + len(number) :]
                assert may_hold_long(text), (number, at)
    rng = random.Random(7)
    for _ in range(3000):
        text = bytes(rng.choice(b'0123456789.eE+- x":,\n') for _ in range(rng.randint(0, 300)))
        if re.search(LONG.encode(), text):
            assert may_hold_long(text), text
