"""Real-data edge cases end to end: BOMs, empty files, NA strings, DST, NULLs, ties on the dedup key."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

pytestmark = pytest.mark.usefixtures("prefect_server")


def _utc_rows(sql: str) -> list[tuple[object, ...]]:
    """The rows of `sql` in plain DuckDB, timestamps shown in UTC."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    return con.sql(sql).fetchall()


SPEC = """\
name: edge
source: {type: files, url: ./in/, glob: "*.csv", csv: {null_values: ["", "NA"]}}
schema:
  columns:
    id:    {type: int64, nullable: false}
    at:    {type: timestamp}
    score: {type: float64, nullable: true, checks: {le: 200}}
    note:  {type: string}
transform:
  dedup: {key: [id], order_by: at, keep: latest}
sink: {type: parquet, url: ./out/edge}
limits: {max_invalid_ratio: 0.5}
"""


@pytest.mark.reliability(
    "bad data",
    "BOM + CRLF, empty files, `NA` strings, DST repeats, NULL scores against `le`, dedup ties across files, end to end",
    "exact rows land; the rest is rejected with reasons",
)
def test_edge_cases_land_exactly(project: Path) -> None:
    src = project / "in"
    src.mkdir()
    # a BOM before the header; CRLF line ends; NA and empty as NULL; a NULL score passes `le`
    (src / "a.csv").write_bytes(
        "\ufeffid,at,score,note\r\n"
        "1,2024-11-03 01:30:00,NA,first\r\n"  # a DST-repeated local time: naive means UTC
        "2,2024-03-10T01:59:59-05:00,,\r\n"  # just before the spring-forward gap, with offset
        "3,2024-03-10T03:00:00-04:00,250,too high\r\n"  # fails le(200)
        "4,NA,1,no time\r\n".encode()
    )
    (src / "b.csv").write_text("")  # an empty export
    # a tie on (id, at) across files: the later file wins, deterministically
    (src / "c.csv").write_text(
        "id,at,score,note\n1,2024-11-03 01:30:00,5,second\n2,2024-03-10T06:59:59Z,7,later same instant\n"
    )
    from flows.pump import pump

    s = (
        pump(spec_path="pumps/edge.yaml")
        if (project / "pumps" / "edge.yaml").write_text(SPEC)
        else {}
    )
    assert (s["rows_read"], s["rows_rejected"], s["rows_duplicate"], s["rows_written"]) == (
        6,
        1,
        2,
        3,
    )
    rows = _utc_rows(
        "SELECT id, strftime(\"at\", '%Y-%m-%d %H:%M:%S'), score, note "
        "FROM read_parquet('out/edge/data/**/*.parquet') ORDER BY id"
    )
    assert rows == [
        (1, "2024-11-03 01:30:00", 5.0, "second"),
        (2, "2024-03-10 06:59:59", 7.0, "later same instant"),
        (4, None, 1.0, "no time"),
    ]
    rejected = _utc_rows(
        "SELECT id, score, _errors, _row FROM read_parquet('out/edge/rejected/*.parquet')"
    )
    assert rejected == [("3", "250", ["score: less_than_or_equal_to(200)"], 4)]


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "filter: \"status <> 'void'\"",
            'filter: "nosuch > 1"',
            "transform.filter 'nosuch > 1' cannot run on this data (Binder Error: Referenced "
            'column "nosuch" not found in FROM clause',
        ),
        (
            "filter: \"status <> 'void'\"",
            'filter: "amount + 1"',
            "transform.filter 'amount + 1' cannot run on this data (Binder Error: Cannot mix "
            "values of type DOUBLE and BOOLEAN in COALESCE",
        ),
        (
            "key: [order_id]",
            "key: [ref]",  # not nearly a declared name (validate refuses `orderid`)
            "transform.dedup.key: no column 'ref' in the data; columns here: order_id, "
            "customer, amount, status, updated_at. Fix the name, or declare the column in "
            "schema.columns",
        ),
        (
            "partition_by: [status]",
            "partition_by: [state]",
            "sink.partition_by: no column 'state' in the data; columns here: order_id, "
            "customer, amount, status, updated_at. Fix the name, or declare the column in "
            "schema.columns",
        ),
    ],
)
def test_a_column_the_spec_names_and_the_data_lacks_is_named_with_its_key(
    project: Path, old: str, new: str, message: str
) -> None:
    """With `strict: false` the schema need not list every column, so a wrong name is
    found when the data is read: the run fails in one line naming the key, loads nothing."""
    from flows.pump import pump
    from schemas.errors import DataError
    from tests.data import spec_text, write_orders

    write_orders(project / "in", files=1, rows=30)
    text = spec_text()
    assert old in text
    (project / "pumps" / "orders.yaml").write_text(text.replace(old, new))
    with pytest.raises(DataError) as caught:
        pump(spec_path="pumps/orders.yaml")
    assert str(caught.value).startswith(message), str(caught.value)
    assert "\n" not in str(caught.value)
    assert not (project / "out").exists()


def test_a_rename_onto_a_field_the_data_brings_is_an_error_not_a_name_1(project: Path) -> None:
    """DuckDB would keep both columns as `note` and `note_1`: data under a name it never had.
    A field the schema does not list is known only once read; validate catches the rest."""
    from flows.pump import pump
    from schemas.errors import DataError

    (project / "in").mkdir()
    (project / "in" / "a.ndjson").write_text('{"id": 1, "customer": "c1", "note": "n"}\n')
    (project / "pumps" / "r.yaml").write_text(
        "name: r\nsource: {type: files, url: ./in/, glob: '*.ndjson'}\n"
        "schema: {columns: {id: {type: int64}, customer: {type: string}}}\n"
        "transform: {rename: {customer: Note}}\nsink: {type: parquet, url: ./out}\n"
    )
    with pytest.raises(DataError) as caught:
        pump(spec_path="pumps/r.yaml")
    assert str(caught.value) == (
        "transform.rename: renaming 'customer' to 'Note' gives two columns named 'Note' "
        "('note' is one); rename to another name, or rename 'note' too; columns here: "
        "id, customer, note"
    )
    assert not (project / "out").exists()


def test_a_sink_url_through_a_file_is_a_clear_error_and_loads_nothing(project: Path) -> None:
    from flows.pump import pump
    from schemas.errors import DataError
    from tests.data import spec_text, write_orders

    write_orders(project / "in", files=1, rows=30)
    (project / "afile").write_text("not a folder")
    (project / "pumps" / "orders.yaml").write_text(spec_text(out="./afile/sub"))
    with pytest.raises(DataError) as caught:
        pump(spec_path="pumps/orders.yaml")
    text = str(caught.value)
    assert text.startswith(f"sink {project}/afile/sub/"), text
    assert (
        ": a file stands where a folder must be, or a folder where a file must be "
        "(NotADirectoryError: Not a directory); fix the URL, or move what is in the way"
    ) in text
    assert (project / "afile").read_text() == "not a folder"
    assert not (project / ".pumphouse/orders/state.json").exists()


def test_a_sink_folder_that_cannot_be_made_is_a_clear_error(project: Path) -> None:
    """/proc takes no new folders: mkdir says there is no such file."""
    from flows.pump import pump
    from schemas.errors import DataError
    from tests.data import spec_text, write_orders

    write_orders(project / "in", files=1, rows=30)
    (project / "pumps" / "orders.yaml").write_text(spec_text(out="/proc/no-such/out"))
    with pytest.raises(DataError) as caught:
        pump(spec_path="pumps/orders.yaml")
    text = str(caught.value)
    assert text.startswith("sink /proc/no-such/out/"), text
    assert text.endswith(
        ": no such file or folder; check the path (relative paths start at the working "
        "directory) and storage_options"
    )
    assert not (project / ".pumphouse/orders/state.json").exists()


def test_a_csv_without_a_header_fills_the_schema_s_columns_in_order(project: Path) -> None:
    from flows.pump import pump

    (project / "in").mkdir()
    (project / "in" / "o.csv").write_text("1|c1|2.5|open|2026-03-08T10:00:00Z|x\n2|-|3|paid|-|y\n")
    (project / "pumps" / "orders.yaml").write_text(
        "name: orders\n"
        "source: {type: files, url: ./in/o.csv, csv: {delimiter: '|', header: false, "
        "null_values: ['-']}}\n"
        "schema:\n  columns:\n"
        "    order_id: {type: int64}\n    customer: {type: string}\n"
        "    amount: {type: float64}\n    status: {type: string}\n"
        "    updated_at: {type: timestamp}\n"
        "sink: {type: parquet, url: ./out/orders}\n"
    )
    summary = pump(spec_path="pumps/orders.yaml")
    assert (summary["rows_written"], summary["rows_rejected"]) == (2, 0)
    rows = _utc_rows(
        "SELECT order_id, customer, amount, status, updated_at::VARCHAR, column5 "
        "FROM read_parquet('out/orders/data/**/*.parquet') ORDER BY order_id"
    )
    assert rows == [
        (1, "c1", 2.5, "open", "2026-03-08 10:00:00+00", "x"),
        (2, None, 3.0, "paid", None, "y"),
    ]


def test_a_field_only_some_batches_have_can_partition_the_run(project: Path) -> None:
    """With `strict: false` a field the schema does not list may be in some files only:
    the run's rows are partitioned by it (NULL where it is missing), not refused."""
    from flows.pump import pump
    from tests.data import spec_text

    (project / "in").mkdir()
    row = '{"order_id": %d, "customer": "c", "amount": 1, "status": "open", "updated_at": "2026-03-08T10:0%d:00Z"%s}\n'
    (project / "in" / "a.ndjson").write_text(row % (1, 1, ""))
    (project / "in" / "b.ndjson").write_text(row % (2, 2, ', "region": "eu"'))
    text = spec_text().replace("partition_by: [status]", "partition_by: [region]")
    (project / "pumps" / "orders.yaml").write_text(text)
    summary = pump(spec_path="pumps/orders.yaml")
    assert (summary["status"], summary["rows_written"]) == ("ok", 2)
    rows = duckdb.sql(
        "SELECT order_id, region FROM read_parquet('out/orders/data/**/*.parquet', "
        "hive_partitioning = true) ORDER BY order_id"
    ).fetchall()
    assert rows == [(1, None), (2, "eu")]
