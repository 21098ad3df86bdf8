"""Specs are read as YAML 1.2 (CONTRACT §1): `NO` is a country, `0123` is not octal, a date is text."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import duckdb
import pytest

from schemas.errors import SpecError
from schemas.loader import parse_spec
from schemas.spec import HttpSource, ParquetSink, SchemaSpec
from tests.conftest import run_in_process

SPEC = """\
name: codes
source: {{type: files, url: ./in/, format: ndjson}}
schema:
  columns:
    x: {{type: string, checks: {{isin: [{value}]}}}}
sink: {{type: parquet, url: ./out/codes}}
"""

# A plain (unquoted) scalar as written in a spec -> the value the spec model holds.
SCALARS: list[tuple[str, Any]] = [
    ("NO", "NO"),
    ("yes", "yes"),
    ("Yes", "Yes"),
    ("off", "off"),
    ("on", "on"),
    ("y", "y"),
    ("n", "n"),
    ("0123", 123),
    ("1_000", "1_000"),
    ("12:30:00", "12:30:00"),
    ("2024-01-01", "2024-01-01"),
    ("2024-01-01T00:00:00Z", "2024-01-01T00:00:00Z"),
    ("0b11", "0b11"),
    ("=", "="),
    ("tRue", "tRue"),
    ("true", True),
    ("False", False),
    ("TRUE", True),
    ("null", None),
    ("Null", None),
    ("NULL", None),
    ("~", None),
    ("42", 42),
    ("-7", -7),
    ("+3", 3),
    ("0o17", 15),
    ("0x1F", 31),
    ("1.5", 1.5),
    ("1e3", 1000.0),
    (".5", 0.5),
    (".inf", math.inf),
    ("-.Inf", -math.inf),
]


def isin_of(value: str) -> Any:
    spec = parse_spec(SPEC.format(value=value), "pumps/codes.yaml")
    assert isinstance(spec.schema_, SchemaSpec)
    (got,) = spec.schema_.columns["x"].checks.isin or [object()]
    return got


@pytest.mark.parametrize(("written", "read"), SCALARS)
def test_a_plain_scalar_reads_as_yaml_1_2_core_schema(written: str, read: Any) -> None:
    got = isin_of(written)
    assert got == read and type(got) is type(read), (written, got)


def test_nan_and_an_empty_value() -> None:
    assert math.isnan(isin_of(".nan"))
    spec = parse_spec(
        "name: codes\nsource: {type: files, url: ./in/, format: ndjson}\nschema:\n"
        "sink: {type: parquet, url: ./out/codes}\n"
    )
    assert spec.schema_ is None


def test_a_cursor_start_that_looks_like_a_date_is_text() -> None:
    spec = parse_spec(
        "name: codes\nsource:\n  type: http\n  url: https://api.example.com/v1\n"
        "  cursor_start: 2024-01-01\nsink: {type: parquet, url: ./out/codes}\n"
    )
    assert isinstance(spec.source, HttpSource)
    assert spec.source.cursor_start == "2024-01-01"


def test_lines_duplicate_keys_and_aliases_are_read_as_before() -> None:
    text = (
        "name: codes\n"
        "source: {type: files, url: ./in/, format: ndjson, storage_options: &o {anon: 'yes'}}\n"
        "sink: {type: parquet, url: ./out/codes, storage_options: *o}\nname: again\n"
    )
    with pytest.raises(SpecError) as e:
        parse_spec(text, "pumps/codes.yaml")
    assert str(e.value) == "pumps/codes.yaml:4 name: key given twice (first on line 1); keep one"
    spec = parse_spec(text.replace("name: again\n", ""))
    assert isinstance(spec.sink, ParquetSink) and spec.sink.storage_options == {"anon": "yes"}


def test_an_explicit_int_that_is_not_one_is_a_located_error() -> None:
    with pytest.raises(SpecError) as e:
        parse_spec("name: codes\nsource: {type: files, url: ./in/}\nsink: !!int 0x1G\n", "p.yaml")
    assert str(e.value).startswith("p.yaml:3: not valid YAML: '0x1G' is not an integer")


@pytest.mark.usefixtures("prefect_server")
def test_country_no_passes_an_isin_check_in_a_run(project: Path) -> None:
    """`isin: [SE, NO, DK]` keeps Norway; unquoted date and timestamp bounds still check."""
    (project / "in").mkdir()
    rows = [
        {"id": 1, "country": "SE", "day": "2024-03-01", "at": "2024-03-01T10:00:00Z"},
        {"id": 2, "country": "NO", "day": "2024-03-02", "at": "2024-03-02T10:00:00Z"},
        {"id": 3, "country": "DK", "day": "2024-03-03", "at": "2024-03-03T10:00:00Z"},
        {"id": 4, "country": "FI", "day": "2024-03-04", "at": "2024-03-04T10:00:00Z"},
        {"id": 5, "country": "NO", "day": "2023-12-31", "at": "2024-03-05T10:00:00Z"},
        {"id": 6, "country": "NO", "day": "2024-03-06", "at": "2031-01-01T00:00:00Z"},
    ]
    (project / "in" / "rows.ndjson").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (project / "pumps" / "codes.yaml").write_text(
        "name: codes\n"
        "source: {type: files, url: ./in/, format: ndjson}\n"
        "schema:\n"
        "  columns:\n"
        "    id: {type: int64}\n"
        "    country: {type: string, checks: {isin: [SE, NO, DK]}}\n"
        "    day: {type: date, checks: {ge: 2024-01-01}}\n"
        "    at: {type: timestamp, checks: {lt: 2030-01-01T00:00:00Z}}\n"
        "sink: {type: parquet, url: ./out/codes}\n"
        "limits: {max_invalid_ratio: 1}\n"
    )
    done = run_in_process("run", "pumps/codes.yaml", "--json", cwd=project)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert (summary["rows_written"], summary["rows_rejected"]) == (3, 3)
    landed = (
        duckdb.connect()
        .sql("SELECT id, country FROM read_parquet('out/codes/data/**/*.parquet') ORDER BY id")
        .fetchall()
    )
    assert landed == [(1, "SE"), (2, "NO"), (3, "DK")]
