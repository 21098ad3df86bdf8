"""The contract step on real DuckDB: every check, type and strict mode, with exact `_errors`."""

from __future__ import annotations

import datetime as dtm
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from schemas.errors import SpecError
from schemas.spec import Spec
from tasks.contract.check import check_batch, pandera_schema, schema_problems
from tasks.engine.db import connect

UTC = dtm.UTC


def make_spec(schema: Any = None) -> Spec:
    data: dict[str, Any] = {
        "name": "orders",
        "source": {"type": "files", "url": "./in/", "format": "ndjson"},
        "sink": {"type": "parquet", "url": "./out"},
    }
    if schema is not None:
        data["schema"] = schema
    return Spec.model_validate(data)


def run(
    schema: Any,
    records: list[str | None] | None = None,
    *,
    columns: dict[str, pa.Array | list[Any]] | None = None,
    parse_errors: list[str | None] | None = None,
) -> list[dict[str, Any]]:
    """check_batch on one batch (json `records`, or `columns` for kind "columns"), rows by _row."""
    kind = "json" if columns is None else "columns"
    n = len(records) if records is not None else len(next(iter((columns or {}).values())))
    table: dict[str, Any] = {
        "_source": pa.array(["file:///in/a.ndjson"] * n, pa.string()),
        "_row": pa.array(range(n), pa.int64()),
        "_raw": pa.array(records if records is not None else [None] * n, pa.string()),
        "_parse_error": pa.array(parse_errors or [None] * n, pa.string()),
        **(columns or {}),
    }
    con = connect()
    con.register("batch", pa.table(table))
    sql = check_batch(con, make_spec(schema), "batch", kind)
    return con.sql(f"SELECT * FROM ({sql}) ORDER BY _row").to_arrow_table().to_pylist()


def one_column(column: dict[str, Any], values: list[str], **schema: Any) -> list[dict[str, Any]]:
    """Check JSON values (as JSON text) of a single column `x`."""
    return run({"columns": {"x": column}, **schema}, [f'{{"x": {v}}}' for v in values])


def errors(rows: list[dict[str, Any]]) -> list[list[str]]:
    return [r["_errors"] for r in rows]


# ---------------------------------------------------------------- checks


CHECKS = [
    ({"type": "int64", "checks": {"eq": 5}}, ["5", "6"], [[], ["x: equal_to(5)"]]),
    ({"type": "int64", "checks": {"ne": 5}}, ["5", "6"], [["x: not_equal_to(5)"], []]),
    ({"type": "int64", "checks": {"gt": 0}}, ["0", "1"], [["x: greater_than(0)"], []]),
    (
        {"type": "float64", "checks": {"ge": 0}},
        ["-0.5", "0"],
        [["x: greater_than_or_equal_to(0)"], []],
    ),
    ({"type": "int32", "checks": {"lt": 10}}, ["10", "9"], [["x: less_than(10)"], []]),
    (
        {"type": "int64", "checks": {"le": 200}},
        ["201", "200"],
        [["x: less_than_or_equal_to(200)"], []],
    ),
    (
        {"type": "string", "checks": {"isin": ["open", "paid"]}},
        ['"open"', '"void"'],
        [[], ["x: isin(['open', 'paid'])"]],
    ),
    (
        {"type": "string", "checks": {"notin": ["void"]}},
        ['"open"', '"void"'],
        [[], ["x: notin(['void'])"]],
    ),
    (
        {"type": "int64", "checks": {"in_range": {"min": 1, "max": 3}}},
        ["0", "1", "3", "4"],
        [["x: in_range(1, 3)"], [], [], ["x: in_range(1, 3)"]],
    ),
    (
        {"type": "int64", "checks": {"in_range": {"min": 1}}},
        ["0", "1"],
        [["x: greater_than_or_equal_to(1)"], []],
    ),
    (
        {"type": "string", "checks": {"str_matches": "^[^@]+@[^@]+$"}},
        ['"a@b"', '"a@b@c"'],
        [[], ["x: str_matches('^[^@]+@[^@]+$')"]],
    ),
    (  # pandera anchors str_matches at the start
        {"type": "string", "checks": {"str_matches": "b"}},
        ['"bc"', '"ab"'],
        [[], ["x: str_matches('b')"]],
    ),
    (
        {"type": "string", "checks": {"str_length": {"min": 2, "max": 3}}},
        ['"a"', '"ab"', '"abcd"'],
        [["x: str_length(2, 3)"], [], ["x: str_length(2, 3)"]],
    ),
    (
        {"type": "string", "checks": {"str_length": {"max": 2}}},
        ['"ab"', '"abc"'],
        [[], ["x: str_length(None, 2)"]],
    ),
    (
        {"type": "date", "checks": {"ge": "2024-01-01"}},
        ['"2023-12-31"', '"2024-01-01"'],
        [["x: greater_than_or_equal_to(2024-01-01)"], []],
    ),
    (
        {"type": "timestamp", "checks": {"lt": dtm.datetime(2024, 1, 1, tzinfo=UTC)}},
        ['"2024-01-01T01:00:00+02:00"', '"2024-01-01T00:00:00Z"'],
        [[], ["x: less_than(2024-01-01 00:00:00+00:00)"]],
    ),
    (
        {"type": "decimal(10,2)", "checks": {"le": 10.5}},
        ['"10.50"', "10.51"],
        [[], ["x: less_than_or_equal_to(10.5)"]],
    ),
]


@pytest.mark.parametrize(("column", "values", "expected"), CHECKS)
def test_each_check_fails_with_panderas_name_and_passes_on_null(
    column: dict[str, Any], values: list[str], expected: list[list[str]]
) -> None:
    assert errors(one_column(column, [*values, "null"])) == [*expected, []]


def test_several_failures_are_all_listed_in_column_order() -> None:
    schema = {
        "columns": {
            "a": {"type": "int64", "checks": {"ge": 0, "ne": -1}},
            "b": {"type": "string", "nullable": False, "checks": {"str_length": {"min": 3}}},
        }
    }
    rows = run(schema, ['{"a": -1, "b": "xy"}', '{"a": -2}', '{"a": 1, "b": "xyz"}'])
    assert errors(rows) == [
        # a column's checks run in the contract's order: eq ne gt ge lt le isin ...
        ["a: not_equal_to(-1)", "a: greater_than_or_equal_to(0)", "b: str_length(3, None)"],
        ["a: greater_than_or_equal_to(0)", "b: not_nullable"],
        [],
    ]


@pytest.mark.reliability(
    "bad data",
    "NULL in a checked column (in SQL, NULL <= 200 is NULL, not true)",
    "passes the check (pandera's rule) unless nullable: false",
)
def test_null_passes_checks_unless_the_column_is_not_nullable() -> None:
    checks = {"ge": 0, "le": 200}
    nullable = run({"columns": {"x": {"type": "int64", "checks": checks}}}, ['{"x": null}', "{}"])
    assert errors(nullable) == [[], []]
    strict = {"columns": {"x": {"type": "int64", "nullable": False, "checks": checks}}}
    assert errors(run(strict, ['{"x": null}', "{}", '{"x": 300}'])) == [
        ["x: not_nullable"],
        ["x: not_nullable"],
        ["x: less_than_or_equal_to(200)"],
    ]


def test_nan_is_a_missing_value_to_every_check_as_it_is_to_nullable() -> None:
    """A float NaN ("NaN" in a CSV, "nan" in JSON text) is missing, as NULL is: every check
    passes it on a nullable column (in SQL NaN sorts above every number, so `ge` alone would
    pass it and `le` / `in_range` fail it), and `nullable: false` rejects it."""
    checks = {"ge": 0, "le": 10, "in_range": {"min": 0, "max": 10}, "ne": 3, "isin": [1.0, 2.0]}
    values = ['"NaN"', '"nan"', '"-nan"', "1", "11"]
    out = "x: less_than_or_equal_to(10)", "x: isin([1.0, 2.0])", "x: in_range(0, 10)"
    assert errors(one_column({"type": "float64", "checks": checks}, values)) == [
        [], [], [], [], list(out)
    ]  # fmt: skip
    strict = {"type": "float64", "nullable": False, "checks": checks}
    assert errors(one_column(strict, values[:2])) == [["x: not_nullable"]] * 2


def test_unique_is_checked_within_the_batch_and_nulls_are_not_duplicates() -> None:
    rows = one_column({"type": "int64", "unique": True}, ["1", "2", "1", "null", "null", '"1"'])
    assert errors(rows) == [["x: unique"], [], ["x: unique"], [], [], ["x: unique"]]


# ---------------------------------------------------------------- types


@pytest.mark.reliability(
    "bad data",
    "values of the wrong type",
    "rejected with a dtype error per column; the original text kept in rejected",
)
def test_values_that_do_not_convert_are_dtype_errors_and_keep_their_original() -> None:
    values = ['"abc"', '"1.5"', "1.5", '"12"', "12", '"1e3"', "true", '{"a": 1}', "[1]"]
    rows = one_column({"type": "int64", "checks": {"ge": 0}}, values)
    bad = [[f"x: {v!r} is not int64"] for v in ("abc", "1.5", "1.5", "true", '{"a":1}', "[1]")]
    assert errors(rows) == [*bad[:3], [], [], [], *bad[3:]]
    assert [r["x"] for r in rows] == [None, None, None, 12, 12, 1000, None, None, None]
    originals = [r["_original"]["x"] for r in rows]
    assert originals == ["abc", "1.5", "1.5", "12", "12", "1e3", "true", '{"a":1}', "[1]"]


def test_a_type_error_names_the_value_cut_short_when_long() -> None:
    rows = one_column({"type": "float64"}, ['"15 minutes"', '"' + "9" * 70 + "x" + '"'])
    assert errors(rows) == [
        ["x: '15 minutes' is not float64"],
        ["x: '" + "9" * 57 + "...' is not float64"],
    ]


@pytest.mark.reliability(
    "bad data",
    "timestamps with offsets, naive times and a DST-repeated hour",
    "converted to UTC; naive taken as UTC",
)
def test_timestamps_are_utc_offsets_converted_naive_taken_as_utc() -> None:
    values = [
        '"2024-01-01T10:00:00+02:00"',
        '"2024-01-01 10:00:00"',
        '"2024-11-03 01:30:00"',  # ambiguous in America/New_York: still UTC here
        '"2024-03-31T02:30:00"',  # missing in Europe/Berlin: still UTC here
        '"2024-01-01T10:00:00Z"',
        '"2024-01-01"',
        '"NA"',
        "null",
    ]
    rows = one_column({"type": "timestamp"}, values)
    assert [r["x"] for r in rows] == [
        dtm.datetime(2024, 1, 1, 8, 0, tzinfo=UTC),
        dtm.datetime(2024, 1, 1, 10, 0, tzinfo=UTC),
        dtm.datetime(2024, 11, 3, 1, 30, tzinfo=UTC),
        dtm.datetime(2024, 3, 31, 2, 30, tzinfo=UTC),
        dtm.datetime(2024, 1, 1, 10, 0, tzinfo=UTC),
        dtm.datetime(2024, 1, 1, 0, 0, tzinfo=UTC),
        None,
        None,
    ]
    assert errors(rows) == [[]] * 6 + [["x: 'NA' is not timestamp"], []]
    assert rows[6]["_original"] == {"x": "NA"}


def test_decimal_bool_date() -> None:
    schema = {
        "columns": {
            "price": {"type": "decimal(10,2)"},
            "paid": {"type": "bool"},
            "day": {"type": "date"},
        }
    }
    rows = run(
        schema,
        [
            '{"price": "12.34", "paid": true, "day": "2024-02-29"}',
            '{"price": 12.5, "paid": "false", "day": "2024-02-30"}',
            '{"price": "123456789012", "paid": "maybe", "day": 20240101}',
        ],
    )
    assert [(r["price"], r["paid"], r["day"]) for r in rows] == [
        (Decimal("12.34"), True, dtm.date(2024, 2, 29)),
        (Decimal("12.50"), False, None),
        (None, None, None),
    ]
    assert errors(rows) == [
        [],
        ["day: '2024-02-30' is not date"],
        [
            "price: '123456789012' is not decimal(10,2)",
            "paid: 'maybe' is not bool",
            "day: '20240101' is not date",
        ],
    ]


def test_coerce_false_needs_the_json_type_to_match() -> None:
    schema = {
        "coerce": False,
        "columns": {
            "n": {"type": "int64"},
            "f": {"type": "float64"},
            "s": {"type": "string"},
            "b": {"type": "bool"},
            "d": {"type": "date"},
        },
    }
    rows = run(
        schema,
        [
            '{"n": 5, "f": 5, "s": "x", "b": true, "d": "2024-01-01"}',
            '{"n": "5", "f": "5.5", "s": 5, "b": "true", "d": 20240101}',
            '{"n": null, "f": -1.5e3, "s": "", "b": false}',
        ],
    )
    assert errors(rows) == [
        [],
        [
            "n: '5' is not int64",
            "f: '5.5' is not float64",
            "s: '5' is not string",
            "b: 'true' is not bool",
            "d: '20240101' is not date",
        ],
        [],
    ]
    assert (rows[0]["n"], rows[0]["f"], rows[2]["f"], rows[2]["s"]) == (5, 5.0, -1500.0, "")
    assert rows[1]["_original"] == {"n": "5", "f": "5.5", "s": "5", "b": "true", "d": "20240101"}


def test_output_columns_and_types_are_fixed_by_the_schema() -> None:
    schema = {
        "columns": {
            "order_id": {"type": "int64"},
            "qty": {"type": "int32"},
            "amount": {"type": "float64"},
            "price": {"type": "decimal(18,3)"},
            "paid": {"type": "bool"},
            "day": {"type": "date"},
            "at": {"type": "timestamp"},
            "note": {"type": "string"},
        }
    }
    con = connect()
    con.register(
        "batch", pa.table({"_source": ["f"], "_row": [0], "_raw": ["{}"], "_parse_error": [None]})
    )
    sql = check_batch(con, make_spec(schema), "batch", "json")
    described = con.sql(f"DESCRIBE ({sql})").fetchall()
    assert [(name, typ) for name, typ, *_ in described] == [
        ("order_id", "BIGINT"),
        ("qty", "INTEGER"),
        ("amount", "DOUBLE"),
        ("price", "DECIMAL(18,3)"),
        ("paid", "BOOLEAN"),
        ("day", "DATE"),
        ("at", "TIMESTAMP WITH TIME ZONE"),
        ("note", "VARCHAR"),
        ("_source", "VARCHAR"),
        ("_row", "BIGINT"),
        ("_raw", "VARCHAR"),
        ("_errors", "VARCHAR[]"),
        (
            "_original",
            "STRUCT(order_id VARCHAR, qty VARCHAR, amount VARCHAR, price VARCHAR, "
            'paid VARCHAR, "day" VARCHAR, "at" VARCHAR, note VARCHAR)',
        ),
    ]


def test_a_connection_not_in_utc_is_refused() -> None:
    con = connect()
    con.execute("SET TimeZone = 'Europe/Berlin'")
    con.register(
        "batch", pa.table({"_source": ["f"], "_row": [0], "_raw": ["{}"], "_parse_error": [None]})
    )
    with pytest.raises(ValueError, match="TimeZone is 'Europe/Berlin'"):
        check_batch(con, make_spec({"columns": {"at": {"type": "timestamp"}}}), "batch", "json")


# ---------------------------------------------------------------- records and strict


@pytest.mark.reliability(
    "bad data",
    "malformed JSON lines",
    "rejected as unreadable with file and line; no check errors piled on",
)
def test_unreadable_records_get_one_record_error_only() -> None:
    schema = {"columns": {"a": {"type": "int64", "nullable": False}}}
    records = [
        '{"a": 1}',
        "{bad",
        "[1, 2]",
        "5",
        "",
        None,
        ' \t{"a": 2}',
        '{"a": 1} trailing',
        "{}",
    ]
    parse_errors = [None] * 8 + ["record is 2.0MiB, over max_record_bytes (1.0MiB)"]
    rows = run(schema, records, parse_errors=parse_errors)
    not_object = ["_record: not a JSON object"]
    assert errors(rows) == [
        [],
        not_object,
        not_object,
        not_object,
        not_object,
        not_object,
        [],
        not_object,
        ["_record: record is 2.0MiB, over max_record_bytes (1.0MiB)"],
    ]
    assert rows[1]["_raw"] == "{bad" and rows[1]["_original"] == {"a": None}


def test_strict_false_keeps_the_batchs_extra_fields_as_text_sorted_by_name() -> None:
    schema = {"columns": {"id": {"type": "int64"}}}
    rows = run(
        schema, ['{"zeta": 1, "id": 1, "a/b": {"n": 1}}', '{"id": 2, "Alpha": true, "ID": 3}']
    )
    assert list(rows[0]) == [
        "id",
        "Alpha",
        "a/b",
        "zeta",
        "_source",
        "_row",
        "_raw",
        "_errors",
        "_original",
    ]
    assert [(r["Alpha"], r["a/b"], r["zeta"]) for r in rows] == [
        (None, '{"n":1}', "1"),
        ("true", None, None),
    ]
    # "ID" differs from "id" only by case, which DuckDB cannot tell apart: rather than its
    # value being lost, its record is invalid.
    assert rows[1]["_original"] == {"id": "2", "Alpha": "true", "a/b": None, "zeta": None}
    assert errors(rows) == [[], ["_record: field 'ID' differs from column 'id' only in case"]]


def test_strict_true_makes_each_unknown_field_an_error() -> None:
    schema = {"strict": True, "columns": {"id": {"type": "int64"}}}
    rows = run(schema, ['{"id": 1}', '{"id": 2, "x": 1, "b": null}', '{"id": 3, "Id": 3}'])
    assert list(rows[0]) == ["id", "_source", "_row", "_raw", "_errors", "_original"]
    assert errors(rows) == [
        [],
        ["_record: unknown column 'b'", "_record: unknown column 'x'"],
        ["_record: field 'Id' differs from column 'id' only in case"],
    ]
    # "Id" differs from "id" only by case: an error, but not a field of _original.
    assert rows[1]["_original"] == {"id": "2", "b": None, "x": "1"}


def test_strict_filter_drops_extra_fields() -> None:
    schema = {"strict": "filter", "columns": {"id": {"type": "int64"}}}
    rows = run(schema, ['{"id": 1, "x": 1}'])
    assert list(rows[0]) == ["id", "_source", "_row", "_raw", "_errors", "_original"]
    assert (rows[0]["_errors"], rows[0]["_original"]) == ([], {"id": "1"})


def test_keys_with_quotes_and_slashes_are_read_exactly() -> None:
    schema = {"columns": {'we"ird/key~': {"type": "int64", "checks": {"ge": 0}}}}
    rows = run(schema, ['{"we\\"ird/key~": -1}'])
    assert rows[0]['we"ird/key~'] == -1
    assert errors(rows) == [['we"ird/key~: greater_than_or_equal_to(0)']]


def test_without_a_schema_json_types_are_inferred_from_the_batch() -> None:
    records = [
        '{"a": 1, "b": "x", "c": 1.5, "d": true, "e": {"n": [1]}}',
        '{"a": 2, "c": 2, "f": null}',
        "oops",
    ]
    rows = run(None, records)
    assert list(rows[0])[:6] == ["a", "b", "c", "d", "e", "f"]
    assert [(r["a"], r["b"], r["c"], r["d"], r["e"], r["f"]) for r in rows] == [
        (1, "x", 1.5, True, '{"n":[1]}', None),
        (2, None, 2.0, None, None, None),
        (None, None, None, None, None, None),
    ]
    assert errors(rows) == [[], [], ["_record: not a JSON object"]]


def test_without_a_schema_and_without_fields_the_original_is_the_record() -> None:
    rows = run(None, ["not json"])
    assert (rows[0]["_errors"], rows[0]["_original"]) == (
        ["_record: not a JSON object"],
        {"_record": "not json"},
    )


# ---------------------------------------------------------------- kind "columns"


def test_csv_columns_are_cast_and_checked() -> None:
    schema = {
        "columns": {
            "id": {"type": "int64", "nullable": False, "checks": {"ge": 0}},
            "amount": {"type": "float64", "nullable": False},
            "at": {"type": "timestamp"},
            "missing": {"type": "string", "nullable": False},
        }
    }
    columns: dict[str, Any] = {
        "id": pa.array(["1", "-1", "x", None]),
        "amount": pa.array(["2.5", "NaN", "1", "1"]),
        "at": pa.array(["2024-01-01 10:00:00+01:00", None, "2024-01-01", "NA"]),
        "extra": pa.array(["e1", None, None, None]),
    }
    rows = run(schema, columns=columns)
    assert list(rows[0]) == [
        "id",
        "amount",
        "at",
        "missing",
        "extra",
        "_source",
        "_row",
        "_raw",
        "_errors",
        "_original",
    ]
    assert rows[0]["at"] == dtm.datetime(2024, 1, 1, 9, 0, tzinfo=UTC)
    missing = "missing: not_nullable"
    assert errors(rows) == [
        [missing],
        ["id: greater_than_or_equal_to(0)", "amount: not_nullable", missing],
        ["id: 'x' is not int64", missing],
        ["id: not_nullable", "at: 'NA' is not timestamp", missing],
    ]
    assert rows[2]["_original"] == {
        "id": "x",
        "amount": "1",
        "at": "2024-01-01",
        "missing": None,
        "extra": None,
    }


def test_typed_columns_pass_when_the_type_matches_and_coerce_decides_otherwise() -> None:
    columns: dict[str, Any] = {
        "id": pa.array([1, 2], pa.int32()),
        "at": pa.array([dtm.datetime(2024, 1, 1, 10), None], pa.timestamp("us")),
        "n": pa.array([5, None], pa.int64()),
    }
    strict = {
        "coerce": False,
        "strict": True,
        "columns": {"id": {"type": "int64"}, "n": {"type": "int64"}},
    }
    assert errors(run(strict, columns=columns)) == [
        ["id: '1' is not int64", "_record: unknown column 'at'"],
        ["id: '2' is not int64"],
    ]
    lenient = {"columns": {"id": {"type": "int64"}, "at": {"type": "timestamp"}}}
    rows = run(lenient, columns=columns)
    assert [(r["id"], r["at"], r["n"]) for r in rows] == [
        (1, dtm.datetime(2024, 1, 1, 10, tzinfo=UTC), 5),
        (2, None, None),
    ]
    assert errors(rows) == [[], []]


def test_without_a_schema_columns_pass_through() -> None:
    columns: dict[str, Any] = {"b": pa.array([1.5]), "a": pa.array(["x"])}
    rows = run(None, columns=columns, parse_errors=["bad quoting"])
    assert list(rows[0]) == ["a", "b", "_source", "_row", "_raw", "_errors", "_original"]
    assert (rows[0]["a"], rows[0]["b"], rows[0]["_errors"]) == ("x", 1.5, ["_record: bad quoting"])
    assert rows[0]["_original"] == {"a": "x", "b": "1.5"}


# ---------------------------------------------------------------- referenced models


def test_a_referenced_model_runs_its_builtin_and_custom_checks() -> None:
    records = [
        '{"order_id": 1, "customer": "c1", "amount": 5, "status": "open", "updated_at": "2024-01-01T10:00:00+02:00", "x": 1}',
        '{"order_id": 2, "customer": "bob", "amount": 3, "status": "void"}',
        '{"order_id": 2, "customer": null, "amount": 0, "status": "void"}',
        '{"order_id": -1, "status": "lost"}',
    ]
    rows = run("example_orders:Orders", records)
    assert list(rows[0])[:5] == ["order_id", "customer", "amount", "status", "updated_at"]
    assert "x" not in rows[0]  # Config.strict = "filter"
    assert rows[0]["updated_at"] == dtm.datetime(2024, 1, 1, 8, tzinfo=UTC)
    assert errors(rows) == [
        [],
        ["order_id: unique", "customer: customer_code", "_record: void_is_free"],
        ["order_id: unique"],
        ["order_id: greater_than_or_equal_to(0)", "status: isin(['open', 'paid', 'void'])"],
    ]


MODEL = """
import pandera.ibis as pa


class Pairs(pa.DataFrameModel):
    a: int = pa.Field(nullable=True)
    b: str = pa.Field(nullable=True)

    @pa.check("a")
    def even(cls, data):
        return data.table.select((data.table[data.key] % 2) == 0)

    class Config:
        unique = ["a", "b"]


# A schema object works too; it can say which duplicates to report.
PAIRS = pa.DataFrameSchema(
    {"a": pa.Column(int, nullable=True), "b": pa.Column(str, nullable=True)},
    unique=["a", "b"],
    report_duplicates="exclude_first",
)


class Bad(pa.DataFrameModel):
    a: int

    @pa.check("a", element_wise=True)
    def positive(cls, x):
        return x > 0


NotAModel = 42
"""


def test_a_model_is_found_in_the_working_directory_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / "pairs.py").write_text(MODEL)
    monkeypatch.chdir(tmp_path)
    records = ['{"a": 2, "b": "x"}', '{"a": 2, "b": "x"}', '{"a": 3, "b": "x"}', '{"a": null}']
    duplicate = ["_record: unique(a, b)"]
    assert errors(run("pairs:Pairs", records)) == [duplicate, duplicate, ["a: even"], []]
    assert errors(run("pairs:PAIRS", records)) == [[], duplicate, [], []]
    with pytest.raises(SpecError, match=r"check positive on column 'a' is element_wise"):
        run("pairs:Bad", ["{}"])


def test_a_model_falls_back_to_the_schemas_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    schema = pandera_schema(make_spec("example_orders:Orders"))
    assert schema is not None and next(iter(schema.columns)) == "order_id"


HINT = "define class {cls}(pandera.ibis.DataFrameModel) in schemas/{mod}.py"
BAD_REFS = [
    ("nowhere:Orders", "there is no schemas/nowhere.py in {cwd} and no module schemas.nowhere"),
    ("pairs:Missing", "schemas/pairs.py has no Missing"),
    ("pairs:NotAModel", "NotAModel in schemas/pairs.py is 42, not a pandera.ibis.DataFrameModel"),
    ("broken:Orders", "importing schemas/broken.py failed: ZeroDivisionError: division by zero"),
]


@pytest.mark.parametrize(("ref", "message"), BAD_REFS)
def test_a_reference_that_cannot_be_loaded_is_a_spec_error(
    ref: str, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / "pairs.py").write_text(MODEL)
    (tmp_path / "schemas" / "broken.py").write_text("1 / 0\n")
    monkeypatch.chdir(tmp_path)
    mod, cls = ref.split(":")
    expected = f"schema {ref!r}: {message.format(cwd=tmp_path)}; {HINT.format(cls=cls, mod=mod)}"
    with pytest.raises(SpecError) as raised:
        pandera_schema(make_spec(ref))
    assert raised.value.message == expected
    assert schema_problems(make_spec(ref)) == [(("schema",), expected)]


# ---------------------------------------------------------------- validate


def test_schema_problems_finds_checks_that_cannot_apply_to_their_column() -> None:
    schema = {
        "columns": {
            "id": {
                "type": "int64",
                "checks": {"isin": ["a"], "ge": "abc", "str_length": {"min": 1}},
            },
            "email": {"type": "string", "checks": {"str_matches": "(?=x)@", "ge": 0}},
            "ok": {"type": "string", "checks": {"str_matches": "^[a-z]+$", "isin": ["x"]}},
        }
    }
    problems = dict(schema_problems(make_spec(schema)))
    assert sorted(problems) == [
        ("schema", "columns", "email", "checks", "ge"),
        ("schema", "columns", "email", "checks", "str_matches"),
        ("schema", "columns", "id", "checks", "ge"),
        ("schema", "columns", "id", "checks", "isin"),
        ("schema", "columns", "id", "checks", "str_length"),
    ]
    assert problems[("schema", "columns", "email", "checks", "str_matches")].startswith(
        "'(?=x)@' does not apply to a string column: Invalid Input Error: invalid perl operator: (?="
    )
    assert problems[("schema", "columns", "id", "checks", "isin")].startswith(
        "['a'] does not apply to a int64 column: Conversion Error"
    )
    assert schema_problems(make_spec("example_orders:Orders")) == []
    assert schema_problems(make_spec(None)) == []


# ---------------------------------------------------------------- speed


@pytest.mark.slow
def test_a_million_json_records_are_checked_each_once() -> None:
    # How fast lives in bench/ (the pumphouse job over orders-1m), not in an assertion here.
    schema = {
        "columns": {
            "order_id": {"type": "int64", "nullable": False, "checks": {"ge": 0}},
            "customer": {"type": "string", "checks": {"str_length": {"min": 1, "max": 20}}},
            "amount": {"type": "float64", "checks": {"ge": 0}},
            "status": {"type": "string", "checks": {"isin": ["open", "paid", "void"]}},
            "updated_at": {"type": "timestamp"},
        }
    }
    con = connect(memory_bytes=2**31)
    con.execute(
        "CREATE TABLE batch AS SELECT 'file:///in/a.ndjson' AS _source, i AS _row, NULL::VARCHAR AS _parse_error, "
        """format('{{"order_id": {}, "customer": "c{}", "amount": {}, "status": "{}", "updated_at": "2024-01-{:02d}T10:00:00Z"}}', """
        "i, i % 5000, CASE WHEN i % 1000 = 0 THEN -1 ELSE (i % 997) / 10 END, "
        "['open', 'paid', 'void', 'bad'][1 + i % 4], 1 + i % 28) AS _raw FROM range(1000000) t(i)"
    )
    sql = check_batch(con, make_spec(schema), "batch", "json")
    con.execute(f"CREATE TEMP TABLE checked AS {sql}")
    counts = con.execute(
        "SELECT count(*), count(DISTINCT _row), count(*) FILTER (WHERE len(_errors) > 0) FROM checked"
    ).fetchone()
    assert counts == (
        1_000_000,
        1_000_000,
        251_000,
    )  # amount -1 every 1000th row, status bad every 4th
