"""Good specs parse to the models the rest of pumphouse relies on (CONTRACT §1)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from schemas.errors import SpecError
from schemas.loader import load_spec, parse_spec, resolve, resolve_mapping
from schemas.spec import (
    Checks,
    Column,
    DeltaSink,
    FilesSource,
    HttpSink,
    HttpSource,
    Limits,
    ParquetSink,
    Schedule,
    SchemaSpec,
    Spec,
    source_format,
)

REPO = Path(__file__).resolve().parent.parent
MiB, GiB = 2**20, 2**30

# The example of CONTRACT §1, verbatim, comments included.
CONTRACT_SPEC = """\
name: orders                     # [a-z][a-z0-9_]*, unique; names state, output and deployment

source:
  type: files                    # files | http
  url: s3://exports/orders/      # any fsspec URL: a folder, a file or a glob
  glob: "*.ndjson"               # optional, relative to url
  format: ndjson                 # ndjson | json | csv | parquet; default from the extension
  compression: infer             # infer | none | gzip | zstd
  csv: {delimiter: ",", header: true, null_values: ["", "NA"]}
  storage_options: {}            # passed to fsspec; values may hold ${env:NAME} / ${secret:NAME}
  new_files_only: true           # a file is read once; a file whose size or etag changed is read again

schema:                          # inline (below) or a reference: "module:Class" names a
  strict: false                  #   pandera DataFrameModel in schemas/module.py
  coerce: true                   # strict: true = an unknown column is an error; filter = dropped
  columns:
    order_id:   {type: int64, nullable: false, checks: {ge: 0}}
    customer:   {type: string}
    amount:     {type: float64, checks: {ge: 0}}
    status:     {type: string, checks: {isin: [open, paid, void]}}
    updated_at: {type: timestamp}
    email:      {type: string, nullable: true, checks: {str_matches: "^[^@]+@[^@]+$"}}

on_invalid: quarantine           # quarantine (default) | drop | fail

transform:                       # bounded: these steps and no others, in this order
  select: [order_id, customer, amount, status, updated_at]
  rename: {customer: customer_id}
  filter: "status <> 'void'"     # a DuckDB SQL boolean expression over one row's columns
  incremental: {cursor: updated_at}                  # only rows newer than the committed high-water mark
  dedup: {key: [order_id], order_by: updated_at, keep: latest}   # keep: latest | first

sink:
  type: parquet                  # parquet | delta | http
  url: ./warehouse/orders        # fsspec URL (parquet), local or s3 URL (delta), http(s) URL (http)
  mode: append                   # parquet: append; delta: append | merge | overwrite; http: append
  key: [order_id]                # merge key; defaults to transform.dedup.key
  partition_by: [status]
  storage_options: {}

limits:                          # every limit has a default and a hard ceiling
  batch_rows: 100000             # rows per batch: the unit of loading and of commit
  batch_bytes: 64MiB             # source bytes per batch
  max_concurrency: 4             # batches in flight
  requests_per_second: 10        # http source and sink
  max_rows_per_run: 10000000     # a run stops cleanly here; the next run goes on from there
  max_record_bytes: 1MiB         # a larger record is rejected with that reason
  max_invalid_ratio: 0.05        # more invalid rows than this: the run fails before loading
  memory: 1GiB                   # working memory; beyond it the engine spills to disk

schedule:
  cron: "*/15 * * * *"
  timezone: UTC
"""

CONTRACT_FILES_SOURCE = CONTRACT_SPEC[
    CONTRACT_SPEC.index("source:") : CONTRACT_SPEC.index("schema:")
]
CONTRACT_PARQUET_SINK = CONTRACT_SPEC[CONTRACT_SPEC.index("sink:") : CONTRACT_SPEC.index("limits:")]

# CONTRACT §1 "HTTP source", verbatim.
CONTRACT_HTTP_SOURCE = """\
source:
  type: http
  url: https://api.example.com/v1/orders
  params: {updated_since: "{cursor}"}      # {cursor}: the committed high-water mark, or cursor_start
  cursor_start: "1970-01-01T00:00:00Z"
  headers: {Authorization: "Bearer ${env:ORDERS_TOKEN}"}
  records: data.items                      # dotted path to the record list; empty = the body is the list
  paginate:
    style: link_header                     # link_header | next_url | cursor | offset | page | none
    next_url: links.next                   # next_url: dotted path of the next page's URL
    cursor_path: meta.next_cursor          # cursor: dotted path of the token; cursor_param names the query parameter
    cursor_param: cursor
    limit_param: limit                     # offset / page
    page_size: 100
  max_pages: 10000
  timeout: 30s

"""

# CONTRACT §1 "HTTP (webhook) sink", verbatim.
CONTRACT_HTTP_SINK = """\
sink:
  type: http
  url: https://hooks.example.com/ingest
  format: ndjson                 # ndjson | json (an array)
  batch_rows: 500
  headers: {Authorization: "Bearer ${env:HOOK_TOKEN}"}

"""

MINIMAL = """\
name: minimal
source: {type: files, url: data/orders.csv}
sink: {type: parquet, url: ./warehouse/minimal}
"""


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORDERS_TOKEN", "orders-t0ken")
    monkeypatch.setenv("HOOK_TOKEN", "hook-t0ken")


def spec_with(*edits: tuple[str, str], base: str = MINIMAL) -> Spec:
    text = base
    for old, new in edits:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    return parse_spec(text, "pumps/test.yaml")


# ---------------------------------------------------------------- the contract's examples


def test_contract_example_parses_to_the_expected_model() -> None:
    spec = parse_spec(CONTRACT_SPEC, "pumps/orders.yaml")

    assert spec.name == "orders"
    assert spec.source == FilesSource(
        type="files",
        url="s3://exports/orders/",
        glob="*.ndjson",
        format="ndjson",
        compression="infer",
        csv={"delimiter": ",", "header": True, "null_values": ("", "NA")},
        storage_options={},
        new_files_only=True,
    )

    schema = spec.schema_
    assert isinstance(schema, SchemaSpec)
    assert (schema.strict, schema.coerce) == (False, True)
    assert list(schema.columns) == [
        "order_id",
        "customer",
        "amount",
        "status",
        "updated_at",
        "email",
    ]
    assert schema.columns["order_id"] == Column(type="int64", nullable=False, checks=Checks(ge=0))
    assert schema.columns["customer"] == Column(type="string")
    assert schema.columns["status"].checks.isin == ["open", "paid", "void"]
    assert schema.columns["updated_at"].type == "timestamp"
    assert schema.columns["email"].checks.str_matches == "^[^@]+@[^@]+$"
    assert list(schema.columns["amount"].checks.given()) == [("ge", 0)]

    assert spec.on_invalid == "quarantine"
    t = spec.transform
    assert t.select == ("order_id", "customer", "amount", "status", "updated_at")
    assert t.rename == {"customer": "customer_id"}
    assert t.filter == "status <> 'void'"
    assert t.incremental is not None and t.incremental.cursor == "updated_at"
    assert t.dedup is not None
    assert (t.dedup.key, t.dedup.order_by, t.dedup.keep) == (("order_id",), "updated_at", "latest")

    assert spec.sink == ParquetSink(
        type="parquet",
        url="./warehouse/orders",
        mode="append",
        key=("order_id",),
        partition_by=("status",),
        storage_options={},
    )
    assert spec.limits == Limits(
        batch_rows=100_000,
        batch_bytes=64 * MiB,
        max_concurrency=4,
        requests_per_second=10.0,
        max_rows_per_run=10_000_000,
        max_record_bytes=MiB,
        max_invalid_ratio=0.05,
        memory=GiB,
    )
    assert spec.schedule is not None
    assert (spec.schedule.cron, spec.schedule.timezone) == ("*/15 * * * *", "UTC")


def test_contract_http_source_parses() -> None:
    text = CONTRACT_SPEC.replace(CONTRACT_FILES_SOURCE, CONTRACT_HTTP_SOURCE)
    source = parse_spec(text, "pumps/orders.yaml").source

    assert isinstance(source, HttpSource)
    assert source.url == "https://api.example.com/v1/orders"
    assert source.params == {"updated_since": "{cursor}"}
    assert source.cursor_start == "1970-01-01T00:00:00Z"
    assert source.records == "data.items"
    p = source.paginate
    assert (p.style, p.next_url, p.cursor_path, p.cursor_param, p.limit_param, p.page_size) == (
        "link_header",
        "links.next",
        "meta.next_cursor",
        "cursor",
        "limit",
        100,
    )
    assert source.max_pages == 10_000
    assert source.timeout == 30.0
    # The header keeps its reference; the token is read when a request is made.
    assert source.headers == {"Authorization": "Bearer ${env:ORDERS_TOKEN}"}


def test_contract_http_sink_parses() -> None:
    text = CONTRACT_SPEC.replace(CONTRACT_PARQUET_SINK, CONTRACT_HTTP_SINK)
    spec = parse_spec(text, "pumps/orders.yaml")

    assert spec.sink == HttpSink(
        type="http",
        url="https://hooks.example.com/ingest",
        mode="append",
        format="ndjson",
        batch_rows=500,
        headers={"Authorization": "Bearer ${env:HOOK_TOKEN}"},
    )
    assert spec.merge_key == ("order_id",)


def test_contract_http_source_into_http_sink_parses() -> None:
    text = CONTRACT_SPEC.replace(CONTRACT_FILES_SOURCE, CONTRACT_HTTP_SOURCE).replace(
        CONTRACT_PARQUET_SINK, CONTRACT_HTTP_SINK
    )
    spec = parse_spec(text, "pumps/orders.yaml")
    assert (spec.source.type, spec.sink.type) == ("http", "http")


def test_delta_merge_sink_parses() -> None:
    spec = spec_with(
        (
            "{type: parquet, url: ./warehouse/minimal}",
            "{type: delta, url: s3://lake/orders, mode: merge, key: id}",
        ),
    )
    assert spec.sink == DeltaSink(type="delta", url="s3://lake/orders", mode="merge", key=("id",))


# ---------------------------------------------------------------- defaults


def test_defaults_of_a_minimal_spec() -> None:
    spec = spec_with()

    assert spec.source == FilesSource(type="files", url="data/orders.csv")
    assert isinstance(spec.source, FilesSource)
    assert (spec.source.compression, spec.source.new_files_only, spec.source.storage_options) == (
        "infer",
        True,
        {},
    )
    assert (spec.source.csv.delimiter, spec.source.csv.header, spec.source.csv.null_values) == (
        ",",
        True,
        ("", "NA"),
    )
    assert spec.schema_ is None
    assert spec.on_invalid == "quarantine"
    assert spec.transform.select is None and spec.transform.rename == {}
    assert spec.transform.incremental is None and spec.transform.dedup is None
    assert spec.sink == ParquetSink(type="parquet", url="./warehouse/minimal")
    assert (spec.sink.mode, spec.sink.key, spec.sink.partition_by) == ("append", None, ())
    assert spec.schedule is None
    assert spec.merge_key == ()


def test_limit_defaults() -> None:
    limits = spec_with().limits
    assert limits.batch_rows == 100_000
    assert limits.batch_bytes == 64 * MiB == 67_108_864
    assert limits.max_concurrency == 4
    assert limits.requests_per_second == 10.0
    assert limits.max_rows_per_run == 10_000_000
    assert limits.max_record_bytes == MiB
    assert limits.max_invalid_ratio == 0.05
    assert limits.memory == GiB


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("64MiB", 67_108_864),
        ("1GiB", 1_073_741_824),
        ("512KiB", 524_288),
        ("2MB", 2_000_000),
        (4096, 4096),
    ],
)
def test_byte_sizes(written: str | int, expected: int) -> None:
    spec = spec_with(("sink:", f"limits: {{batch_bytes: {written}}}\nsink:"))
    assert spec.limits.batch_bytes == expected


def test_memory_and_record_bytes_take_units() -> None:
    spec = spec_with(("sink:", "limits: {memory: 2GiB, max_record_bytes: 256KiB}\nsink:"))
    assert (spec.limits.memory, spec.limits.max_record_bytes) == (2 * GiB, 256 * 2**10)


@pytest.mark.parametrize(
    ("written", "seconds"),
    [("30s", 30.0), ("500ms", 0.5), ("2m", 120.0), ("1h", 3600.0), ("45", 45.0), ("1.5s", 1.5)],
)
def test_durations(written: str, seconds: float) -> None:
    spec = spec_with(
        (
            "source: {type: files, url: data/orders.csv}",
            f"source: {{type: http, url: 'https://api.example.com/x', timeout: {written}}}",
        )
    )
    assert isinstance(spec.source, HttpSource)
    assert spec.source.timeout == seconds


def test_schema_can_be_a_reference() -> None:
    spec = spec_with(("sink:", "schema: orders_schema:Orders\nsink:"))
    assert spec.schema_ == "orders_schema:Orders"


def test_strict_filter_and_decimal_types() -> None:
    spec = spec_with(
        (
            "sink:",
            "schema:\n  strict: filter\n  columns:\n"
            '    amount: {type: "decimal(12, 2)"}\n    id: {type: INT64}\nsink:',
        )
    )
    assert isinstance(spec.schema_, SchemaSpec)
    assert spec.schema_.strict == "filter"
    assert spec.schema_.columns["amount"].type == "decimal(12,2)"
    assert spec.schema_.columns["id"].type == "int64"


# ---------------------------------------------------------------- ${env:...} and ${secret:...}


def test_env_reference_in_a_url_is_substituted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORDERS_BUCKET", "exports-prod")
    spec = spec_with(("url: data/orders.csv", "url: 's3://${env:ORDERS_BUCKET}/orders/*.csv'"))
    assert spec.source.url == "s3://exports-prod/orders/*.csv"


def test_headers_params_and_storage_options_keep_their_references(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("S3_KEY", "AKIA-secret")
    spec = spec_with(
        (
            "source: {type: files, url: data/orders.csv}",
            "source:\n  type: files\n  url: s3://b/orders.csv\n"
            '  storage_options: {key: "${env:S3_KEY}", client_kwargs: {region_name: "${env:S3_KEY}"}}',
        )
    )
    assert isinstance(spec.source, FilesSource)
    options = spec.source.storage_options
    # The model holds only the template, so a recorded spec never holds the secret ...
    assert options == {"key": "${env:S3_KEY}", "client_kwargs": {"region_name": "${env:S3_KEY}"}}
    assert "AKIA-secret" not in spec.model_dump_json()
    # ... and resolve() substitutes at the moment of use.
    assert resolve_mapping(options) == {
        "key": "AKIA-secret",
        "client_kwargs": {"region_name": "AKIA-secret"},
    }


def test_http_headers_keep_their_references_until_resolved() -> None:
    text = CONTRACT_SPEC.replace(CONTRACT_FILES_SOURCE, CONTRACT_HTTP_SOURCE).replace(
        CONTRACT_PARQUET_SINK, CONTRACT_HTTP_SINK
    )
    spec = parse_spec(text, "pumps/orders.yaml")
    assert isinstance(spec.source, HttpSource) and isinstance(spec.sink, HttpSink)
    assert spec.source.headers == {"Authorization": "Bearer ${env:ORDERS_TOKEN}"}
    assert spec.sink.headers == {"Authorization": "Bearer ${env:HOOK_TOKEN}"}
    assert "t0ken" not in spec.model_dump_json()
    assert resolve_mapping(spec.source.headers) == {"Authorization": "Bearer orders-t0ken"}
    assert resolve(spec.sink.headers["Authorization"]) == "Bearer hook-t0ken"
    # {cursor} is the pump's own placeholder, not a reference.
    assert resolve_mapping(spec.source.params) == {"updated_since": "{cursor}"}


def test_secret_references_are_kept_for_later() -> None:
    spec = spec_with(
        (
            "{type: parquet, url: ./warehouse/minimal}",
            "{type: parquet, url: s3://lake/o, storage_options: {secret: '${secret:lake-key}'}}",
        ),
    )
    assert isinstance(spec.sink, ParquetSink)
    assert spec.sink.storage_options == {"secret": "${secret:lake-key}"}


def test_resolve_fails_clearly_when_the_variable_is_gone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GONE_LATER", "x")
    spec = spec_with(
        (
            "{type: parquet, url: ./warehouse/minimal}",
            "{type: parquet, url: ./w, storage_options: {k: '${env:GONE_LATER}'}}",
        ),
    )
    monkeypatch.delenv("GONE_LATER")
    assert isinstance(spec.sink, ParquetSink)
    with pytest.raises(SpecError) as caught:
        resolve_mapping(spec.sink.storage_options)
    assert (
        str(caught.value) == "environment variable GONE_LATER is not set; export it before running"
    )


def test_resolve_leaves_text_without_references_alone() -> None:
    assert resolve("Bearer abc {cursor} $HOME") == "Bearer abc {cursor} $HOME"


# ---------------------------------------------------------------- keys, formats


def test_merge_key_defaults_to_the_dedup_key() -> None:
    dedup = ("sink:", "transform: {dedup: {key: [order_id, line], order_by: at}}\nsink:")
    delta = ("{type: parquet, url: ./warehouse/minimal}", "{type: delta, url: ./lake, mode: merge}")
    assert spec_with(dedup, delta).merge_key == ("order_id", "line")
    with_key = ("mode: merge}", "mode: merge, key: [id]}")
    assert spec_with(dedup, delta, with_key).merge_key == ("id",)


def test_dedup_key_as_a_plain_string_is_a_one_element_tuple() -> None:
    spec = spec_with(("sink:", "transform: {dedup: {key: order_id, order_by: at}}\nsink:"))
    assert spec.transform.dedup is not None
    assert spec.transform.dedup.key == ("order_id",)


def test_sink_key_and_partition_by_as_plain_strings() -> None:
    spec = spec_with(("url: ./warehouse/minimal}", "url: ./w, key: id, partition_by: day}"))
    assert (spec.sink.key, spec.sink.partition_by) == (("id",), ("day",))


@pytest.mark.parametrize(
    ("url", "glob", "expected"),
    [
        ("s3://b/orders.ndjson", None, "ndjson"),
        ("s3://b/orders.ndjson.gz", None, "ndjson"),
        ("s3://b/orders.jsonl.zst", None, "ndjson"),
        ("s3://b/orders.JSON", None, "json"),
        ("./data/orders.csv.gz", None, "csv"),
        ("./data/orders.tsv", None, "csv"),
        ("s3://b/orders.parquet", None, "parquet"),
        ("s3://b/orders/", "*.ndjson.gz", "ndjson"),
        ("s3://b/orders/", "2024-*/part-*.parquet", "parquet"),
        ("s3://b/orders/", None, None),
        ("s3://b/orders.gz", None, None),
    ],
)
def test_source_format_from_the_extension(url: str, glob: str | None, expected: str | None) -> None:
    assert source_format(FilesSource(type="files", url=url, glob=glob)) == expected


def test_source_format_from_the_extension_when_parsed() -> None:
    spec = spec_with(("url: data/orders.csv", "url: s3://b/o/, glob: '*.ndjson.gz'"))
    assert isinstance(spec.source, FilesSource)
    assert spec.source.format is None
    assert source_format(spec.source) == "ndjson"


def test_an_explicit_format_wins_over_the_extension() -> None:
    assert (
        source_format(FilesSource(type="files", url="s3://b/x.json", format="ndjson")) == "ndjson"
    )


# ---------------------------------------------------------------- the models themselves


def test_models_are_frozen() -> None:
    spec = spec_with()
    with pytest.raises(ValidationError, match="frozen"):
        spec.name = "other"  # type: ignore[misc]
    with pytest.raises(ValidationError, match="frozen"):
        spec.limits.batch_rows = 1  # type: ignore[misc]
    with pytest.raises(ValidationError, match="frozen"):
        spec.source.url = "elsewhere"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("model", "data"),
    [
        (Limits, {"batch_rows": 10, "batchrows": 10}),
        (FilesSource, {"type": "files", "url": "x.csv", "path": "y"}),
        (
            Spec,
            {
                "name": "x",
                "source": {"type": "files", "url": "x.csv"},
                "sink": {"type": "parquet", "url": "o"},
                "owner": "me",
            },
        ),
    ],
)
def test_models_reject_unknown_keys(
    model: type[Limits | FilesSource | Spec], data: dict[str, object]
) -> None:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(data)
    assert [e["type"] for e in caught.value.errors()] == ["extra_forbidden"]


def test_the_spec_round_trips_through_json() -> None:
    # Prefect records a spec as a flow parameter: it must survive a JSON round trip.
    spec = parse_spec(CONTRACT_SPEC, "pumps/orders.yaml")
    assert Spec.model_validate_json(spec.model_dump_json(by_alias=True)) == spec


# ---------------------------------------------------------------- the repo's own pumps

PUMP_FILES = sorted((REPO / "pumps").glob("*.yaml"))


@pytest.mark.parametrize("path", PUMP_FILES or [None], ids=[p.name for p in PUMP_FILES] or ["none"])
def test_every_pump_in_the_repo_parses(path: Path | None) -> None:
    if path is None:
        pytest.skip("no pumps/*.yaml in the repo yet")
    spec = load_spec(path)
    assert spec.name == path.stem


def test_nullable_and_unique_may_stand_among_the_checks() -> None:
    """The contract lists them with the checks: either place sets the column's own flag."""
    base = (
        "name: p\nsource: {type: files, url: ./in/, format: csv}\nsink: {type: parquet, url: ./o}\n"
    )
    spec = parse_spec(
        base + "schema:\n  columns:\n"
        "    a: {type: int64, checks: {unique: true, nullable: false, ge: 0}}\n"
        "    b: {type: int64, unique: true, nullable: false}\n"
    )
    columns = spec.schema_.columns  # type: ignore[union-attr]
    assert (columns["a"].unique, columns["a"].nullable) == (True, False)
    assert columns["a"].checks == columns["b"].checks.model_copy(update={"ge": 0})
    assert (columns["b"].unique, columns["b"].nullable) == (True, False)
    with pytest.raises(SpecError) as twice:
        parse_spec(
            base
            + "schema:\n  columns:\n    a: {type: int64, nullable: true, checks: {nullable: false}}\n",
            "p.yaml",
        )
    assert str(twice.value).splitlines()[-1] == (
        "p.yaml:6 schema.columns.a: nullable is given twice, True and False under checks; "
        "keep one of them"
    )


def test_a_rename_onto_another_column_is_refused() -> None:
    """Two columns of one name would land as `amount` and `amount_1` (DuckDB's names are
    case-insensitive): the customer ids under `amount`."""
    base = (
        "name: p\nsource: {type: files, url: ./in/, format: csv}\nsink: {type: parquet, url: ./o}\n"
    )
    schema = "schema:\n  columns:\n    customer: {type: string}\n    amount: {type: float64}\n"
    for rename in ("{customer: amount}", "{customer: Amount}"):
        with pytest.raises(SpecError) as caught:
            parse_spec(base + schema + f"transform: {{rename: {rename}}}\n", "p.yaml")
        target = rename.split(": ")[1].rstrip("}")
        assert str(caught.value).splitlines()[-1] == (
            f"p.yaml:8 transform.rename: renaming 'customer' to '{target}' gives two columns "
            f"named '{target}' ('amount' is one); rename to another name, or rename 'amount' too"
        )
    swapped = parse_spec(base + schema + "transform: {rename: {customer: amount, amount: total}}\n")
    assert swapped.transform.rename == {"customer": "amount", "amount": "total"}


@pytest.mark.parametrize(
    ("cron", "fires"),
    [
        ("0 0 31 2 *", False),  # February 31
        ("0 0 31 4,6,9,11 *", False),  # no 31st in those months
        ("0 0 30 2 *", False),
        ("0 0 29 2 *", True),  # leap years
        ("0 0 31 2 1", True),  # day-of-month OR day-of-week: Mondays in February
        ("0 0 31 1-12 *", True),
        ("*/15 * * * *", True),
    ],
)
def test_a_cron_that_never_fires_is_refused(cron: str, fires: bool) -> None:
    if fires:
        assert Schedule(cron=cron).cron == cron
    else:
        with pytest.raises(ValidationError, match="never fires"):
            Schedule(cron=cron)
