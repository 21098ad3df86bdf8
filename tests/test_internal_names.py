"""Source fields named like pumphouse's own columns (`_source`, `_row`, `_keep_filter`, `__ph_key`
...): refused by name with the fix, never taken for bookkeeping nor silently left out; any
other name starting with `_` (an Elasticsearch dump's `_id`, `_index`) lands as data."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

pytestmark = pytest.mark.usefixtures("prefect_server")

NAMES = ["_source", "_row", "_errors", "_keep_filter", "_keep_new", "_batch", "_raw", "__ph_key"]
SCHEMA = "schema: {columns: {id: {type: int64}}, strict: false}\n"


def _spec(project: Path, glob: str, schema: bool) -> None:
    (project / "pumps" / "n.yaml").write_text(
        f"name: n\nsource: {{type: files, url: ./in/, glob: '{glob}'}}\n"
        + (SCHEMA if schema else "")
        + "sink: {type: parquet, url: ./out}\n"
    )


def _value(name: str) -> object:
    return {"_source": {"title": "t"}, "_keep_filter": False, "_keep_new": False}.get(name, 7)


@pytest.mark.parametrize("schema", [False, True], ids=["no schema", "schema"])
@pytest.mark.parametrize("name", NAMES)
def test_an_ndjson_field_named_like_an_own_column_is_refused_by_name(
    project: Path, name: str, schema: bool
) -> None:
    from flows.pump import pump
    from schemas.errors import DataError

    (project / "in").mkdir()
    rows = [{"id": i, name: _value(name)} for i in (1, 2)]
    (project / "in" / "a.ndjson").write_text("".join(json.dumps(r) + "\n" for r in rows))
    _spec(project, "*.ndjson", schema)
    with pytest.raises(DataError) as caught:
        pump(spec_path="pumps/n.yaml")
    message = str(caught.value)
    assert message.startswith(f"{project / 'in' / 'a.ndjson'}: record 1: field {name!r} ")
    assert "rename it in the source" in message and "\n" not in message
    assert not (project / "out").exists()


@pytest.mark.parametrize("schema", [False, True], ids=["no schema", "schema"])
@pytest.mark.parametrize("name", [*NAMES, "_SOURCE"])
def test_a_csv_column_named_like_an_own_column_is_refused_by_name(
    project: Path, name: str, schema: bool
) -> None:
    from flows.pump import pump
    from schemas.errors import DataError

    (project / "in").mkdir()
    (project / "in" / "a.csv").write_text(f"id,{name}\n1,false\n2,x\n")
    _spec(project, "*.csv", schema)
    with pytest.raises(DataError) as caught:
        pump(spec_path="pumps/n.yaml")
    message = str(caught.value)
    assert message.startswith(
        f"{project / 'in' / 'a.csv'}: line 1: the CSV header's field {name!r} "
    )
    assert "rename it in the source" in message
    assert not (project / "out").exists()


@pytest.mark.reliability(
    "bad data",
    "source fields named like pumphouse's own columns (`_source` as an Elasticsearch dump's "
    "object, `_row`, `_errors`, `_keep_filter: false`, `_keep_new`, `_batch`, `_raw`, `__ph_key`), "
    "ndjson and csv, with and without a schema; beside them `_id` and `_index`",
    "the run is refused before anything lands, naming the file, the record and the field, with "
    "the fix (rename it in the source); nothing is taken for bookkeeping or silently left out; "
    "`_id` and `_index` land as data with every row, none filtered",
)
@pytest.mark.parametrize("schema", [False, True], ids=["no schema", "schema"])
@pytest.mark.parametrize("fmt", ["ndjson", "csv"])
def test_underscore_fields_that_are_not_own_columns_land_as_data(
    project: Path, fmt: str, schema: bool
) -> None:
    from flows.pump import pump

    (project / "in").mkdir()
    if fmt == "ndjson":
        rows = [{"id": i, "_id": f"doc{i}", "_index": "idx"} for i in (1, 2, 3)]
        text = "".join(json.dumps(r) + "\n" for r in rows)
    else:
        text = "id,_id,_index\n" + "".join(f"{i},doc{i},idx\n" for i in (1, 2, 3))
    (project / "in" / f"a.{fmt}").write_text(text)
    _spec(project, f"*.{fmt}", schema)
    s = pump(spec_path="pumps/n.yaml")
    assert s["status"] == "ok"
    assert [s[k] for k in ("rows_read", "rows_written", "rows_rejected", "rows_filtered")] == [
        3,
        3,
        0,
        0,
    ]
    got = duckdb.sql(
        f"SELECT CAST(id AS BIGINT), _id, _index FROM read_parquet('{project}/out/**/*.parquet') "
        "ORDER BY 1"
    ).fetchall()
    assert got == [(i, f"doc{i}", "idx") for i in (1, 2, 3)]


def test_an_elasticsearch_dump_from_an_http_source_is_refused_naming_source(
    project: Path,
) -> None:
    """The dump's payload is its `_source` object: it must not be taken for the page URL."""
    from flows.pump import pump
    from schemas.errors import DataError
    from tests._http_servers import Files, serve

    hits = [{"_id": f"d{i}", "_index": "i", "_source": {"id": i}} for i in (1, 2)]
    with serve(Files({"/v1/orders": json.dumps({"data": hits}).encode()})) as base:
        (project / "pumps" / "n.yaml").write_text(
            f"name: n\nsource: {{type: http, url: '{base}/v1/orders', records: data}}\n"
            "sink: {type: parquet, url: ./out}\n"
        )
        with pytest.raises(DataError) as caught:
            pump(spec_path="pumps/n.yaml")
    assert str(caught.value).startswith(f"{base}/v1/orders: record 1: field '_source' ")
    assert not (project / "out").exists()


def test_a_schema_module_column_named_like_an_own_column_is_refused(project: Path) -> None:
    """An inline schema cannot name such a column (validate says so); a `module:Class` one is
    refused when it is loaded, before anything is read."""
    from flows.pump import pump
    from schemas.errors import SpecError

    (project / "schemas").mkdir()
    (project / "schemas" / "keep.py").write_text(
        "import pandera.ibis as pa\n\n"
        "KEEP = pa.DataFrameSchema({'id': pa.Column(int), '_keep_filter': pa.Column(bool)})\n"
    )
    (project / "in").mkdir()
    (project / "in" / "a.ndjson").write_text('{"id": 1, "_keep_filter": false}\n')
    (project / "pumps" / "n.yaml").write_text(
        "name: n\nsource: {type: files, url: ./in/, glob: '*.ndjson'}\n"
        "schema: 'keep:KEEP'\nsink: {type: parquet, url: ./out}\n"
    )
    with pytest.raises(SpecError) as caught:
        pump(spec_path="pumps/n.yaml")
    assert str(caught.value).startswith("pumps/n.yaml:3 schema: column '_keep_filter' has the name")
    assert "rename it in the source" in str(caught.value)
    assert not (project / "out").exists()
