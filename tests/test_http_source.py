"""The http source against real local HTTP servers: every pagination style, the cursor,
limits and manners (rate, retries, Retry-After, timeouts, size cap, gzip), safety (origin,
TLS, secrets), and whole runs whose state moves only with what was loaded."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from schemas.errors import DataError, PumpError, SpecError, TransientError
from schemas.loader import parse_spec
from schemas.secrets import redact
from schemas.spec import HttpSource, Limits
from tasks.io.http import Manners, backoff, retry_after, safe_url
from tasks.sources.http import (
    PageInput,
    Resume,
    cursor_value,
    page_input,
    portable,
    read_pages,
    resume_of,
    resumed,
)
from tasks.sources.inputs import input_json, input_of
from tests._http_servers import (
    Answer,
    App,
    PagedAPI,
    Scripted,
    Seen,
    api_orders,
    api_spec,
    self_signed,
    serve,
)
from tests.conftest import run_in_process
from tests.data import expected, is_valid, landed

RECORDS = api_orders(50, seed=3)
FAST = {"retry_max_wait": 0.05}  # retries without the real waits, where waits are not the point


def source(url: str, **kw: Any) -> HttpSource:
    paginate = kw.pop("paginate", {})
    if isinstance(paginate, str):
        paginate = {"style": paginate}
    paginate = {"next_url": "links.next", "cursor_path": "meta.next_cursor", **paginate}
    return HttpSource.model_validate(
        {"type": "http", "url": f"{url}/v1/orders", "records": "data", "paginate": paginate, **kw}
    )


def read(src: HttpSource, hwm: str | None = None, **limits: Any) -> pa.Table:
    limits = {"requests_per_second": 1000, **limits}
    batches = [b.table for b in read_pages(src, hwm, Limits(**limits))]
    return pa.concat_tables(batches) if batches else pa.table({})


def raws(table: pa.Table) -> list[Any]:
    return [json.loads(x) for x in table.column("_raw").to_pylist()]


# ---------------------------------------------------------------- pagination


@pytest.mark.parametrize(
    ("style", "requests"),
    [
        ("link_header", 8),  # the server's pages of 7: 50 records in 8 pages
        ("next_url", 8),
        ("cursor", 8),
        ("offset", 6),  # pages of page_size 10, and an empty one that says it is over
        ("page", 6),
        ("none", 1),
    ],
)
def test_every_pagination_style_reads_every_record_once(style: str, requests: int) -> None:
    app = PagedAPI(RECORDS, style)
    with serve(app) as base:
        table = read(source(base, paginate={"style": style, "page_size": 10}), batch_rows=12)
    assert raws(table) == RECORDS
    assert table.column("_row").to_pylist() == list(range(1, 51))
    assert table.column("_parse_error").null_count == 50
    assert len(app.seen) == requests
    # each record's _source is the page it came from
    asked = [f"{base}{s.path}" for s in app.seen]
    sources = table.column("_source").to_pylist()
    assert sorted(set(sources), key=sources.index) == [u for u in asked if u in sources]
    assert sources[0] == asked[0]


def test_offset_and_page_ask_with_the_spec_s_parameter_names() -> None:
    app = PagedAPI(RECORDS[:15], "offset")
    with serve(app) as base:
        read(source(base, paginate={"style": "offset", "page_size": 10}))
    assert [s.query for s in app.seen] == [
        {"limit": "10", "offset": "0"},
        {"limit": "10", "offset": "10"},
        {"limit": "10", "offset": "15"},  # a short page is not the end: an empty one is
    ]
    app = PagedAPI(RECORDS[:20], "page")
    with serve(app) as base:
        read(source(base, paginate={"style": "page", "page_size": 10}))
    assert [s.query["page"] for s in app.seen] == ["1", "2", "3"]


def test_a_body_that_is_the_list() -> None:
    app = PagedAPI(RECORDS, "link_header", wrap="")
    with serve(app) as base:
        table = read(source(base, records="", paginate="link_header"))
    assert raws(table) == RECORDS


def test_pages_are_batched_by_batch_rows_across_pages() -> None:
    app = PagedAPI(RECORDS, "cursor")  # pages of 7
    with serve(app) as base:
        src = source(base, paginate="cursor")
        batches = list(read_pages(src, None, Limits(batch_rows=10, requests_per_second=1000)))
    assert [b.table.num_rows for b in batches] == [10, 10, 10, 10, 10]
    assert [b.seq for b in batches] == [0, 1, 2, 3, 4]
    assert all(b.kind == "json" for b in batches)
    second = batches[1].table  # rows 11..20: the end of page 2, page 3
    assert second.column("_row").to_pylist() == list(range(11, 21))
    pages = second.column("_source").to_pylist()
    assert pages[:4] == [f"{base}{app.seen[1].path}"] * 4
    assert pages[4:] == [f"{base}{app.seen[2].path}"] * 6


def test_max_pages_stops_the_reading(caplog: pytest.LogCaptureFixture) -> None:
    app = PagedAPI(RECORDS, "link_header")
    with serve(app) as base:
        table = read(source(base, paginate="link_header", max_pages=3))
    assert len(app.seen) == 3
    assert raws(table) == RECORDS[:21]
    assert [r.getMessage() for r in caplog.records if r.name == "pumphouse.http"] == [
        f"{base}/v1/orders: stopped after source.max_pages (3) pages; the pages after those "
        "are not read (raise source.max_pages to read them)"
    ]


def test_max_rows_per_run_stops_after_the_page_that_reaches_it_and_says_where_to_go_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = PagedAPI(RECORDS, "next_url")
    with serve(app) as base:
        src = source(base, paginate="next_url", max_pages=7)
        limits = Limits(requests_per_second=1000, max_rows_per_run=15)
        left: list[Resume] = []
        first = [b.table for b in read_pages(src, None, limits, left=left)]
        assert len(app.seen) == 3  # pages of 7: 21 records reach 15
        assert raws(pa.concat_tables(first)) == RECORDS[:21]
        assert left == [Resume(f"{base}/v1/orders?after=21", 3, 21)]
        rest: list[Resume] = []
        second = [b.table for b in read_pages(src, None, limits, left[0], rest)]
        assert raws(pa.concat_tables(second)) == RECORDS[21:42]
        assert rest == [Resume(f"{base}/v1/orders?after=42", 6, 42)]
        # max_pages (7) counts the pages of the runs before: one more page, then the end.
        app.seen.clear()
        third = [b.table for b in read_pages(src, None, limits, rest[0], [])]
        assert raws(pa.concat_tables(third)) == RECORDS[42:49]
        assert len(app.seen) == 1
        assert "stopped after source.max_pages (7) pages" in caplog.records[-1].getMessage()
        # Without `left`, as the tests above read: no limit.
        assert raws(read(source(base, paginate="next_url"), max_rows_per_run=15)) == RECORDS


def test_a_page_the_api_no_longer_serves_is_read_again_from_the_first_to_the_last(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = PagedAPI(RECORDS, "next_url")
    with serve(app) as base:
        src = source(base, paginate="next_url")
        limits = Limits(requests_per_second=1000, max_rows_per_run=15)
        left: list[Resume] = []
        gone = Resume(f"{base}/v1/expired?after=21", 3)  # answers 404
        tables = [b.table for b in read_pages(src, None, limits, gone, left)]
    assert raws(pa.concat_tables(tables)) == RECORDS  # from the first page, no stop
    assert left == []
    assert [r.getMessage() for r in caplog.records if r.name == "pumphouse.http"] == [
        f"{base}/v1/expired?after=21: the API refused the page the run before stopped at "
        f"(limits.max_rows_per_run): GET {base}/v1/expired?after=21 failed with HTTP 404, not "
        'found: check source.url; the server said: {"error": "no such endpoint"}. This '
        "run reads again from the first page, with the same mark, to the last (rows read "
        "before may come again)"
    ]


def test_a_resume_point_is_for_the_source_the_spec_had_when_it_was_left(
    caplog: pytest.LogCaptureFixture,
) -> None:
    src = source("https://api.example.com", paginate="next_url")
    point = Resume("https://api.example.com/v1/orders?after=21", 3)
    held = page_input(src, point)
    assert resume_of(src, held) == point
    assert resume_of(src, page_input(src)) is None  # the first page
    # A point left before paginate had total_path and has_more_path is still this source's
    # (and, before records were counted, it has none: read as 0).
    old = {"kind": "http", "url": point.url, "size": 0, "fingerprint": "resume:3:da097468753b7d52"}
    before = input_of(old)
    assert isinstance(before, PageInput)
    assert resume_of(src, before) == dataclasses.replace(point, records=None)
    changed = source("https://api.example.com", paginate="next_url", records="items")
    assert resume_of(changed, held) is None
    assert caplog.records[-1].getMessage() == (
        "https://api.example.com/v1/orders: the run before stopped at "
        "limits.max_rows_per_run, and source has changed since; this run reads from the "
        "first page (with the same mark)"
    )


def test_a_next_page_keeps_its_secret_parameters_as_written(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("API_KEY", "key+5772/156649==")
    src = source("https://api.example.com", params={"key": "${env:API_KEY}", "region": "eu"})
    url = "https://api.example.com/v1/orders?key=key%2B5772%2F156649%3D%3D&region=eu&after=7"
    kept = portable(src, url)
    assert kept == "https://api.example.com/v1/orders?key=%24%7Benv%3AAPI_KEY%7D&region=eu&after=7"
    assert resumed(src, kept) == url
    # A reference the spec no longer has is not resolved from what state kept.
    monkeypatch.setenv("OTHER_KEY", "other-1414")
    other = source("https://api.example.com", params={"key": "${env:OTHER_KEY}"})
    assert resumed(other, kept) == kept
    # The secret elsewhere (a link the server made), plain or encoded: not kept.
    for elsewhere in (
        "https://api.example.com/v1/key+5772/156649==/orders?after=7",
        "https://api.example.com/v1/key%2B5772%2F156649%3D%3D/orders?after=7",
        "https://api.example.com/v1/orders?after=7&sig=key%2B5772%2F156649%3D%3D",
        "https://u:key%2B5772%2F156649%3D%3D@api.example.com/v1/orders",
    ):
        assert portable(src, elsewhere) is None, elsewhere
    # ... and the run reads on to the last page, saying why.
    monkeypatch.setenv("API_KEY", "key-5772156649")
    app = Linking(RECORDS, "link_header")
    with serve(app) as base:
        src = source(base, paginate="link_header", params={"key": "${env:API_KEY}"})
        left: list[Resume] = []
        tables = [b.table for b in read_pages(src, None, Limits(max_rows_per_run=10), left=left)]
    assert raws(pa.concat_tables(tables)) == RECORDS
    assert left == []
    assert [r.getMessage() for r in caplog.records if r.name == "pumphouse.http"] == [
        f"{base}/v1/orders: limits.max_rows_per_run (10) reached, but the next page's "
        f"URL ({base}/v1/***/orders?key=***&after=14) holds a secret that the run's state may "
        "not keep, so this run reads on to the last page"
    ]


class Linking(PagedAPI):
    """A PagedAPI whose next-page links put the `key` parameter in the path too."""

    def answer(self, req: Seen) -> Answer:
        key = req.query.get("key", "")
        path = req.path.replace(f"/v1/{key}/orders", "/v1/orders")
        found = super().answer(dataclasses.replace(req, path=path))
        link = found.headers.get("Link")
        if link:
            found.headers["Link"] = link.replace("/v1/orders", f"/v1/{key}/orders")
        return found


class Looping(App):
    """A next link that points back at the page itself; empty pages if `empty`."""

    def __init__(self, empty: bool) -> None:
        super().__init__()
        self.empty = empty

    def answer(self, req: Seen) -> Answer:
        data = [] if self.empty else RECORDS[:2]
        return Answer.json({"data": data, "meta": {"next_cursor": "same"}})


@pytest.mark.reliability(
    "bad data",
    "an API page that repeats its next link",
    "detected and refused, not looped",
)
def test_a_page_that_repeats_its_next_link_is_an_error_not_a_loop() -> None:
    app = Looping(empty=False)
    with serve(app) as base, pytest.raises(DataError) as caught:
        read(source(base, paginate="cursor"))
    assert len(app.seen) == 2
    assert str(caught.value) == (
        f"page 2 of {base}/v1/orders ({base}/v1/orders?cursor=same) links to a page already "
        f"read ({base}/v1/orders?cursor=same): the API's pagination loops; check source.paginate"
    )


def test_an_empty_page_that_repeats_its_next_link_is_the_end() -> None:
    app = Looping(empty=True)
    with serve(app) as base:
        assert read(source(base, paginate="cursor")).num_rows == 0
    assert len(app.seen) == 2


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"items": []},
            "expected a list of records at source.records 'data', found nothing "
            "(keys there: items)",
        ),
        (
            {"data": {"a": 1}},
            "expected a list of records at source.records 'data', found dict (keys there: data)",
        ),
    ],
)
def test_no_record_list_where_records_points(body: Any, message: str) -> None:
    class Fixed(App):
        def answer(self, req: Seen) -> Answer:
            return Answer.json(body)

    with serve(Fixed()) as base, pytest.raises(DataError) as caught:
        read(source(base))
    assert str(caught.value) == (
        f"{base}/v1/orders: {message}; set source.records to the dotted path of the record list"
    )


def test_a_null_record_list_is_an_empty_page() -> None:
    class Fixed(App):
        def answer(self, req: Seen) -> Answer:
            return Answer.json({"data": None})

    with serve(Fixed()) as base:
        assert read(source(base)).num_rows == 0


def test_a_record_over_max_record_bytes_is_a_parse_error() -> None:
    big = [{**RECORDS[0], "note": "x" * 3000}, RECORDS[1]]
    with serve(PagedAPI(big, "none")) as base:
        table = read(source(base), max_record_bytes=200)
    size = len(json.dumps(big[0], separators=(",", ":")))
    errors = table.column("_parse_error").to_pylist()
    assert errors == [f"record is {size} bytes, over limits.max_record_bytes (200)", None]
    assert table.column("_raw")[0].as_py() == json.dumps(big[0], separators=(",", ":"))[:1024] + "…"


def test_pagination_styles_that_read_a_path_need_it() -> None:
    text = (
        "name: t\nsource:\n  type: http\n  url: http://127.0.0.1:1/x\n"
        "  paginate: {style: cursor}\nsink: {type: parquet, url: ./out}\n"
    )
    with pytest.raises(SpecError) as caught:
        parse_spec(text, "pumps/t.yaml")
    assert caught.value.problems == (
        "pumps/t.yaml:5 source.paginate.cursor_path: style cursor needs cursor_path: "
        "the dotted path in the body, e.g. meta.next_cursor",
    )


# ---------------------------------------------------------------- an API that caps its page size


def capped_warning(base: str, size: int, asked: int) -> str:
    return (
        f"{base}/v1/orders: the API sends pages of {size} records, fewer than "
        f"source.paginate.page_size ({asked}) asks for; its pages are read to the end all "
        f"the same (set page_size: {size} to ask for what it sends)"
    )


def http_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "pumphouse.http"]


@pytest.mark.parametrize("style", ["offset", "page"])
@pytest.mark.parametrize(
    ("ends", "requests"),
    [
        ({}, 9),  # pages of 7: 50 records in 8 pages, and the empty one that ends them
        ({"total_path": "meta.total"}, 8),
        ({"has_more_path": "meta.has_more"}, 8),
        ({"total_path": "meta.total", "has_more_path": "meta.has_more"}, 8),
    ],
)
def test_an_api_that_caps_its_page_size_is_read_to_the_end(
    style: str, ends: dict[str, str], requests: int, caplog: pytest.LogCaptureFixture
) -> None:
    app = PagedAPI(RECORDS, style, max_limit=7)
    with serve(app) as base:
        table = read(source(base, paginate={"style": style, "page_size": 20, **ends}))
    assert raws(table) == RECORDS
    assert len(app.seen) == requests
    assert [s.query["limit"] for s in app.seen] == ["20"] * requests
    assert http_warnings(caplog) == [capped_warning(base, 7, 20)]


@pytest.mark.parametrize("style", ["offset", "page"])
def test_a_short_page_that_is_the_last_is_no_warning(
    style: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = PagedAPI(RECORDS[:15], style, max_limit=7)
    with serve(app) as base:
        since = {"updated_since": "{cursor}"}
        paginate = {"style": style, "page_size": 20}
        one = read(source(base, params=since, paginate=paginate), hwm="2026-03-08 00:10:00")
        full = read(source(base, paginate={"style": style, "page_size": 7}))
    assert raws(one) == RECORDS[10:15]  # one short page, then the empty one
    assert raws(full) == RECORDS[:15]  # page_size as the API sends: no warning
    assert len(app.seen) == 2 + 4  # 5 records and an empty page; 7, 7, 1 and an empty page
    assert http_warnings(caplog) == []


@pytest.mark.parametrize(
    ("ends", "found", "wanted"),
    [
        ({"total_path": "meta.count"}, "nothing", "a count of records"),
        ({"total_path": "data"}, json.dumps(RECORDS[:7])[:80], "a count of records"),
        ({"has_more_path": "meta.total"}, "50", "true or false"),
    ],
)
def test_a_body_without_the_end_where_paginate_says_is_a_data_error(
    ends: dict[str, str], found: str, wanted: str
) -> None:
    key, path = next(iter(ends.items()))
    with serve(PagedAPI(RECORDS, "offset")) as base, pytest.raises(DataError) as caught:
        read(source(base, paginate={"style": "offset", "page_size": 7, **ends}))
    assert str(caught.value) == (
        f"{base}/v1/orders?limit=7&offset=0: expected {wanted} at source.paginate.{key} "
        f"{path!r}, found {found}; set {key} to its dotted path in the body, or remove it"
    )


@pytest.mark.parametrize("key", ["total_path", "has_more_path"])
@pytest.mark.parametrize("style", ["cursor", "link_header", "next_url", "none"])
def test_total_path_and_has_more_path_are_for_offset_and_page_only(key: str, style: str) -> None:
    needed = {"cursor": "cursor_path: c, ", "next_url": "next_url: n, "}.get(style, "")
    text = (
        "name: t\nsource:\n  type: http\n  url: http://127.0.0.1:1/x\n"
        f"  paginate: {{style: {style}, {needed}{key}: meta.x}}\n"
        "sink: {type: parquet, url: ./out}\n"
    )
    with pytest.raises(SpecError) as caught:
        parse_spec(text, "pumps/t.yaml")
    assert caught.value.problems == (
        f"pumps/t.yaml:5 source.paginate.{key}: {key} does nothing for style {style}; it is "
        f"for style offset or page: remove {key}, or set style: offset",
    )
    for fine in ("offset", "page"):
        parse_spec(
            text.replace(f"style: {style}", f"style: {fine}").replace(needed, ""), "pumps/t.yaml"
        )


def test_a_run_stopped_at_max_rows_per_run_goes_on_counting_toward_total_path() -> None:
    app = PagedAPI(RECORDS, "page", max_limit=7)
    with serve(app) as base:
        paginate = {"style": "page", "page_size": 20, "total_path": "meta.total"}
        src = source(base, paginate=paginate)
        limits = Limits(requests_per_second=1000, max_rows_per_run=20)
        points: list[Resume] = []
        rows: list[Any] = []
        for _ in range(3):
            left: list[Resume] = []
            tables = read_pages(src, None, limits, points[-1] if points else None, left)
            rows += raws(pa.concat_tables([b.table for b in tables]))
            points += left
    assert rows == RECORDS
    url = f"{base}/v1/orders?limit=20&page="
    assert points == [Resume(f"{url}4", 3, 21), Resume(f"{url}7", 6, 42)]
    assert len(app.seen) == 8  # the count reaches meta.total on the last page: no empty one
    held = input_of(json.loads(json.dumps(input_json(page_input(src, points[0])))))
    assert isinstance(held, PageInput) and resume_of(src, held) == points[0]


# ---------------------------------------------------------------- the cursor


@pytest.mark.parametrize(
    ("hwm", "start", "want"),
    [
        (None, None, None),
        (None, "1970-01-01T00:00:00Z", "1970-01-01T00:00:00Z"),
        ("2026-03-08 00:30:00", None, "2026-03-08T00:30:00Z"),
        ("2026-03-08 00:30:00.250000", "x", "2026-03-08T00:30:00.250000Z"),
        ("2026-03-08 02:30:00+02", None, "2026-03-08T00:30:00Z"),
        ("2026-03-08 00:30:00-05:30", None, "2026-03-08T06:00:00Z"),
        ("2026-03-08", None, "2026-03-08"),
        ("12345", None, "12345"),
    ],
)
def test_the_cursor_is_the_high_water_mark_as_iso_8601(
    hwm: str | None, start: str | None, want: str | None
) -> None:
    assert cursor_value(hwm, start) == want


def test_the_cursor_goes_into_params() -> None:
    app = PagedAPI(RECORDS, "cursor")
    params = {"updated_since": "{cursor}", "fields": "all"}
    with serve(app) as base:
        src = source(base, paginate="cursor", params=params, cursor_start="2026-03-08T00:40:00Z")
        first = read(src)
        later = read(src, hwm="2026-03-08 00:45:00")
        none = read(source(base, paginate="cursor", params=params))
    assert raws(first) == RECORDS[40:]  # the API keeps updated_at >= updated_since
    assert raws(later) == RECORDS[45:]
    assert raws(none) == RECORDS
    asked = [s.query for s in app.seen]
    assert asked[0] == {"updated_since": "2026-03-08T00:40:00Z", "fields": "all"}
    assert asked[1] == {
        "updated_since": "2026-03-08T00:40:00Z",
        "fields": "all",
        "cursor": token(7),
    }
    assert asked[2] == {"updated_since": "2026-03-08T00:45:00Z", "fields": "all"}
    assert asked[-1] == {
        "fields": "all",
        "cursor": "bzQ5",
    }  # no cursor yet: the parameter is left out


def test_numbers_and_booleans_in_params_and_headers_are_sent_as_written() -> None:
    app = PagedAPI(RECORDS, "none")
    with serve(app) as base:
        text = (
            f"name: t\nsource:\n  type: http\n  url: {base}/v1/orders\n  records: data\n"
            "  params: {limit: 100, active: true, archived: false, ratio: 1.5}\n"
            "  headers: {X-Page-Size: 100, X-Debug: true}\n"
            "sink: {type: parquet, url: ./out}\n"
        )
        spec = parse_spec(text, "pumps/t.yaml")
        assert isinstance(spec.source, HttpSource)
        assert raws(read(spec.source)) == RECORDS
    assert app.seen[0].path == "/v1/orders?limit=100&active=true&archived=false&ratio=1.5"
    assert (app.seen[0].headers["x-page-size"], app.seen[0].headers["x-debug"]) == ("100", "true")


@pytest.mark.parametrize(
    ("value", "got"), [("null", "nothing"), ("[1, 2]", "[1, 2]"), ("{a: 1}", "a mapping")]
)
@pytest.mark.parametrize("key", ["params", "headers"])
def test_a_param_or_header_that_is_not_one_value_is_refused(key: str, value: str, got: str) -> None:
    text = (
        "name: t\nsource:\n  type: http\n  url: http://127.0.0.1:1/x\n"
        f"  {key}:\n    limit: {value}\nsink: {{type: parquet, url: ./out}}\n"
    )
    with pytest.raises(SpecError) as caught:
        parse_spec(text, "pumps/t.yaml")
    assert caught.value.problems == (
        f"pumps/t.yaml:6 source.{key}.limit: expected text, a number or true/false (got "
        f'{got}); write the one value to send, e.g. "a,b" for a list, or remove the key',
    )


def token(offset: int) -> str:
    """The PagedAPI's cursor for the page at `offset`."""
    import base64

    return base64.urlsafe_b64encode(f"o{offset}".encode()).decode()


# ---------------------------------------------------------------- manners


@pytest.mark.reliability(
    "limits",
    "limits.requests_per_second against a fast API",
    "the request rate holds (token bucket)",
)
def test_requests_per_second_holds() -> None:
    app = PagedAPI(RECORDS, "link_header")  # 8 pages
    with serve(app) as base:
        read(source(base, paginate="link_header"), requests_per_second=5)
    times = [s.at for s in app.seen]
    assert len(times) == 8
    # 8 requests at 5 per second: 7 gaps of 0.2 s (arrival times jitter a little on a busy box)
    assert times[-1] - times[0] >= 1.35, times
    assert max(sum(1 for u in times if t <= u < t + 1.0) for t in times) <= 6, times


@pytest.mark.reliability(
    "transient faults",
    "HTTP 429 with Retry-After",
    "waits as told (up to a cap), then goes on",
)
def test_429_waits_as_retry_after_says() -> None:
    app = Scripted([(429, {"Retry-After": "1"})], PagedAPI(RECORDS, "none"))
    with serve(app) as base:
        assert raws(read(source(base))) == RECORDS
    assert len(app.seen) == 2
    assert 0.95 <= app.seen[1].at - app.seen[0].at < 1.5


def test_retry_after_is_capped() -> None:
    app = Scripted([(503, {"Retry-After": "3600"})], PagedAPI(RECORDS, "none"))
    with serve(app) as base:
        assert raws(read(source(base, retry_max_wait=0.3))) == RECORDS
    assert 0.28 <= app.seen[1].at - app.seen[0].at < 1.0


@pytest.mark.reliability(
    "transient faults",
    "HTTP 500/502/503, connection resets, truncated bodies, invalid JSON and slow answers",
    "retried with exponential backoff and jitter; the run reads every record once",
)
def test_5xx_resets_cut_bodies_invalid_json_and_slow_answers_are_retried() -> None:
    script = [500, 503, "reset", "truncate", "invalid", ("slow", 2.5), 502]
    app = Scripted(script, PagedAPI(RECORDS, "link_header"))
    with serve(app) as base:
        table = read(source(base, paginate="link_header", timeout=1.0, retries=7, **FAST))
    assert raws(table) == RECORDS
    assert len(app.seen) == 8 + len(script)
    assert len({s.path for s in app.seen}) == 8  # every retry asked for the same page again


def test_retries_are_spent_then_the_error_says_so() -> None:
    app = Scripted([503] * 10, PagedAPI(RECORDS, "none"))
    with serve(app) as base, pytest.raises(TransientError) as caught:
        read(source(base, retries=2, **FAST))
    assert len(app.seen) == 3
    text = str(caught.value)
    assert text.startswith(f"GET {base}/v1/orders failed 3 times in ")
    assert text.endswith(
        "s, last with HTTP 503; the server is failing or throttling: try again later "
        "(source.retries and source.retry_max_wait set how long pumphouse keeps trying)"
    )


def test_a_body_that_is_never_json_is_a_data_error() -> None:
    app = Scripted(["invalid"] * 3, PagedAPI(RECORDS, "none"))
    with serve(app) as base, pytest.raises(DataError) as caught:
        read(source(base, retries=2, **FAST))
    assert str(caught.value) == (
        f"GET {base}/v1/orders: the response is not valid JSON (Expecting property name "
        "enclosed in double quotes: line 1 column 26 (char 25)), 3 times; "
        "check that source.url is a JSON API"
    )


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (401, "unauthorized: check the credentials in source.headers"),
        (403, "forbidden: the credentials in source.headers do not give access to it"),
        (404, "not found: check source.url"),
        (400, "source refused the request"),
        (422, "source refused the request"),
    ],
)
@pytest.mark.reliability(
    "bad data",
    "HTTP 401/403/404 and other 4xx from the source",
    "fails at once with the status and the URL without secrets; no retry",
)
def test_other_4xx_fail_at_once(status: int, reason: str) -> None:
    app = Scripted([status], PagedAPI(RECORDS, "none"))
    with serve(app) as base, pytest.raises(PumpError) as caught:
        read(source(base))
    assert len(app.seen) == 1
    assert str(caught.value) == (
        f"GET {base}/v1/orders failed with HTTP {status}, {reason}; "
        f'the server said: {{"error": "scripted {status}"}}'
    )


@pytest.mark.reliability(
    "limits",
    "an HTTP response over the size cap",
    "refused with the cap named; nothing held beyond it",
)
def test_a_response_over_the_size_cap_is_refused() -> None:
    app = PagedAPI(RECORDS, "none")
    with serve(app) as base, pytest.raises(DataError) as caught:
        read(source(base, max_response_bytes=2048))
    assert str(caught.value) == (
        f"GET {base}/v1/orders: the response is over 2048 bytes; ask for smaller pages "
        "(source.paginate.page_size) or raise source.max_response_bytes"
    )


def test_gzip() -> None:
    app = PagedAPI(RECORDS, "link_header", gzip=True)
    with serve(app) as base:
        assert raws(read(source(base, paginate="link_header"))) == RECORDS
    assert all("gzip" in s.headers["accept-encoding"] for s in app.seen)


def test_backoff_grows_with_jitter_up_to_the_cap() -> None:
    import random

    rnd = random.Random(1)
    m = Manners(timeout=1, requests_per_second=1, max_wait=5)
    for attempt, (lo, hi) in enumerate([(0.25, 0.5), (0.5, 1), (1, 2), (2, 4), (2.5, 5), (2.5, 5)]):
        waits = {backoff(attempt, m, None, rnd) for _ in range(50)}
        assert lo <= min(waits) and max(waits) <= hi and len(waits) == 50
    assert backoff(0, m, 3.0, rnd) == 3.0
    assert backoff(0, m, 60.0, rnd) == 5.0
    assert retry_after("7") == 7.0
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert retry_after("soon") is None


# ---------------------------------------------------------------- safety


class Elsewhere(App):
    """Sends its client to `target` with a next link or a redirect."""

    def __init__(self, how: str) -> None:
        super().__init__()
        self.how, self.target = how, ""

    def answer(self, req: Seen) -> Answer:
        if self.how == "redirect":
            return Answer(302, b"", {"Location": self.target})
        return Answer.json({"data": RECORDS[:1]}, Link=f'<{self.target}>; rel="next"')


@pytest.mark.parametrize("how", ["next", "redirect"])
@pytest.mark.reliability(
    "hostile spec",
    "next links and redirects to another origin",
    "not followed; the other server gets no request",
)
def test_pagination_and_redirects_never_leave_the_origin(how: str) -> None:
    there, here = PagedAPI(RECORDS, "none"), Elsewhere(how)
    with serve(there) as other, serve(here) as base:
        here.target = f"{other}/v1/orders?page=2"
        with pytest.raises(PumpError) as caught:
            read(source(base, paginate="link_header"))
    assert there.seen == []
    what = (
        f"page 1 ({base}/v1/orders) links to"
        if how == "next"
        else f"GET {base}/v1/orders redirects to"
    )
    assert str(caught.value) == (
        f"{what} {other}/v1/orders?page=2 is on another origin than source.url "
        f"({base}/v1/orders); pumphouse never leaves the origin it was given, so its "
        "credentials cannot leak: point source.url at that origin"
    )


def test_a_redirect_on_the_same_origin_is_followed() -> None:
    class Moved(PagedAPI):
        def answer(self, req: Seen) -> Answer:
            if req.path.startswith("/old"):
                return Answer(301, b"", {"Location": req.path.replace("/old", "/v1/orders")})
            return super().answer(req)

    app = Moved(RECORDS, "none")
    with serve(app) as base:
        src = HttpSource.model_validate({"type": "http", "url": f"{base}/old", "records": "data"})
        assert raws(read(src)) == RECORDS
    assert [s.path for s in app.seen] == ["/old", "/v1/orders"]


@pytest.mark.reliability(
    "hostile spec",
    "a self-signed TLS certificate",
    "refused unless trusted via SSL_CERT_FILE",
)
def test_tls_is_verified(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cert, key = self_signed(tmp_path)
    app = PagedAPI(RECORDS, "none")
    with serve(app, tls=(cert, key)) as base:
        assert base.startswith("https://")
        with pytest.raises(PumpError) as caught:
            read(source(base))
        assert str(caught.value).startswith(
            f"GET {base}/v1/orders: the server's TLS certificate could not be verified ("
        )
        assert str(caught.value).endswith(
            "; fix its certificate, or trust its CA with SSL_CERT_FILE=/path/to/ca.pem"
        )
        assert app.seen == []
        monkeypatch.setenv("SSL_CERT_FILE", cert)
        assert raws(read(source(base))) == RECORDS


def test_secrets_in_headers_and_params_are_sent_and_never_shown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("API_TOKEN", "tok-3141592653")
    monkeypatch.setenv("API_KEY", "key 2718/28")
    app = PagedAPI(RECORDS, "link_header", token="tok-3141592653")
    with serve(app) as base:
        src = source(
            base,
            paginate="link_header",
            headers={"Authorization": "Bearer ${env:API_TOKEN}"},
            params={"api_key": "${env:API_KEY}", "region": "eu"},
        )
        table = read(src)
        assert raws(table) == RECORDS
        assert app.seen[0].query == {"api_key": "key 2718/28", "region": "eu"}
        assert set(table.column("_source").to_pylist()) == {
            f"{base}/v1/orders?api_key=***&region=eu",
            *(f"{base}/v1/orders?api_key=***&region=eu&after={n}" for n in range(7, 50, 7)),
        }
        monkeypatch.setenv("API_TOKEN", "tok-wrong-value")
        with pytest.raises(PumpError) as caught:
            read(src)
    text = str(caught.value)
    assert text == (
        f"GET {base}/v1/orders?api_key=***&region=eu failed with HTTP 401, unauthorized: "
        'check the credentials in source.headers; the server said: {"error": "bad token"}'
    )


class Echo(App):
    """Refuses every request with a body that quotes it back: the path and query (where a
    key sits percent-encoded), then the Authorization header, cut by the 200-character quote."""

    def answer(self, req: Seen) -> Answer:
        text = f"seen {req.path} ".ljust(175, "x") + f" auth {req.headers.get('authorization')}"
        return Answer(400, text.encode())


def test_a_secret_a_server_quotes_back_is_masked_encoded_or_cut(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key, token = "Zm9vYmFy+c2VjcmV0/a2V5==", "tokABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    monkeypatch.setenv("API_KEY", key)
    monkeypatch.setenv("API_TOKEN", token)
    with serve(Echo()) as base:
        src = source(
            base,
            params={"api_key": "${env:API_KEY}"},
            headers={"Authorization": "Bearer ${env:API_TOKEN}"},
        )
        with pytest.raises(PumpError) as caught:
            read(src)
    text = str(caught.value)
    assert "seen /v1/orders?api_key=*** xxx" in text
    assert text.endswith("auth Bearer ***")
    for leak in ("Zm9vYmFy", "c2VjcmV0", "tokABCDE"):
        assert leak not in text
    # Every way a URL writes it, lower-case escapes too.
    for encoded in ("Zm9vYmFy%2Bc2VjcmV0%2Fa2V5%3D%3D", "Zm9vYmFy%2bc2VjcmV0%2fa2V5%3d%3d"):
        assert redact(f"?k={encoded}&x=1") == "?k=***&x=1"


def test_safe_url_masks_what_looks_like_a_secret() -> None:
    assert safe_url("https://u:p@h.example/x?token=abc&q=1&sig=zz&page=2") == (
        "https://h.example/x?token=***&q=1&sig=***&page=2"
    )


# ---------------------------------------------------------------- whole runs


def http_spec(url: str, source_extra: str = "") -> str:
    return api_spec(url, 10, "  retries: 2\n  retry_max_wait: 0.05\n" + source_extra)


def run_pump() -> dict[str, Any]:
    from flows.pump import pump

    return dict(pump(spec_path="pumps/orders.yaml"))


@pytest.mark.usefixtures("prefect_server")
def test_runs_read_the_api_and_move_the_cursor_with_what_was_loaded(project: Path) -> None:
    records = list(RECORDS)
    app = PagedAPI(records, "cursor")
    with serve(app) as base:
        (project / "pumps" / "orders.yaml").write_text(http_spec(base))
        first = run_pump()
        assert (first["status"], first["rows_read"]) == ("ok", 50)
        assert first["rows_rejected"] == sum(1 for r in records if not is_valid(r))
        assert landed("out/orders") == expected(records)
        mark = max(r["updated_at"] for r in records if is_valid(r) and r["status"] != "void")
        assert _iso(first["hwm_after"]) == mark
        rejected = _rejected_sources(project)
        assert len(rejected) == first["rows_rejected"]
        assert all(s.startswith(f"{base}/v1/orders") for s in rejected)

        records += api_orders(30, seed=4, start=_minute_after(records[-1]))
        app.seen.clear()
        second = run_pump()
    # the second run asks from the mark; the API answers updated_at >= it
    assert app.seen[0].query["updated_since"] == mark
    again = [r for r in records if r["updated_at"] >= mark]
    assert second["rows_read"] == len(again)
    assert second["hwm_before"] == first["hwm_after"]
    want = Counter(_rows(expected(RECORDS))) + Counter(_rows(expected(again, hwm=mark)))
    assert Counter(_landed_rows(project)) == want


@pytest.mark.usefixtures("prefect_server")
def test_a_run_reads_the_api_from_cursor_start(project: Path) -> None:
    app = PagedAPI(RECORDS, "cursor")
    with serve(app) as base:
        spec = http_spec(base, '  cursor_start: "2026-03-08T00:20:00Z"\n')
        (project / "pumps" / "orders.yaml").write_text(spec)
        s = run_pump()
    assert app.seen[0].query["updated_since"] == "2026-03-08T00:20:00Z"
    assert s["rows_read"] == 30
    assert landed("out/orders") == expected(RECORDS[20:])


@pytest.mark.usefixtures("prefect_server")
@pytest.mark.reliability(
    "transient faults",
    "an http source failing on page N",
    "nothing lands, state does not move; the next run lands each row once",
)
def test_a_failure_on_page_n_loses_nothing_and_doubles_nothing(project: Path) -> None:
    records = list(RECORDS)
    api = PagedAPI(records, "cursor")
    app = Scripted([None, None, None, 404], api)  # page 4 fails
    with serve(app) as base:
        (project / "pumps" / "orders.yaml").write_text(http_spec(base))
        with pytest.raises(PumpError) as caught:
            run_pump()
        assert "failed with HTTP 404, not found: check source.url" in str(caught.value)
        assert not (project / "out").exists()
        assert not (project / ".pumphouse/orders/state.json").exists()
        again = run_pump()
    assert (again["status"], again["resumed"], again["rows_read"]) == ("ok", False, 50)
    assert landed("out/orders") == expected(records)  # landed() fails on a row landed twice


def _rejected_sources(project: Path) -> list[str]:
    import duckdb

    return [
        r[0]
        for r in duckdb.sql(
            f"SELECT _source FROM read_parquet('{project}/out/orders/rejected/*.parquet')"
        ).fetchall()
    ]


def _landed_rows(project: Path) -> list[tuple[Any, ...]]:
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    return con.sql(
        "SELECT order_id, customer, amount, status, strftime(updated_at, '%Y-%m-%dT%H:%M:%SZ') "
        f"FROM read_parquet('{project}/out/orders/data/**/*.parquet')"
    ).fetchall()


def _minute_after(record: dict[str, Any]) -> dt.datetime:
    return dt.datetime.fromisoformat(record["updated_at"].replace("Z", "+00:00")) + dt.timedelta(
        minutes=1
    )


def _rows(oracle: dict[int, tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return [(k, *v) for k, v in oracle.items()]


def _iso(hwm: str) -> str | None:
    return cursor_value(hwm, None)


@pytest.mark.usefixtures("prefect_server")
@pytest.mark.reliability(
    "secrets",
    "a secret token in http headers and params, with failing requests",
    "zero hits in errors, state, run history, lineage columns and rejected files",
)
def test_secrets_never_reach_state_history_or_errors(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("API_TOKEN", "tok-1618033988")
    monkeypatch.setenv("API_KEY", "apikey-141421356")
    app = PagedAPI(RECORDS, "cursor", token="tok-1618033988")
    with serve(app) as base:
        spec = http_spec(base).replace(
            '  params: {updated_since: "{cursor}"}\n',
            '  params: {updated_since: "{cursor}", key: "${env:API_KEY}"}\n'
            '  headers: {Authorization: "Bearer ${env:API_TOKEN}"}\n',
        )
        (project / "pumps" / "orders.yaml").write_text(spec)
        assert run_pump()["status"] == "ok"
        assert app.seen[0].query["key"] == "apikey-141421356"
        sources = _rejected_sources(project)
        assert sources and all(s.startswith(f"{base}/v1/orders?key=***") for s in sources)
        monkeypatch.setenv("API_TOKEN", "tok-wrong-2236067977")
        with pytest.raises(PumpError) as caught:
            run_pump()
    assert "failed with HTTP 401, unauthorized: check the credentials in source.headers" in str(
        caught.value
    )
    secrets = ("tok-1618033988", "apikey-141421356", "tok-wrong-2236067977")
    assert not any(s in str(caught.value) for s in secrets)
    for path in project.rglob("*"):
        if path.is_file() and path.suffix != ".parquet":
            text = path.read_bytes()
            assert not any(s.encode() in text for s in secrets), path


@pytest.mark.usefixtures("prefect_server")
@pytest.mark.reliability(
    "limits",
    "max_rows_per_run below what an http source holds, pages not in cursor order "
    "(newest first), a secret in source.params",
    "each run stops after the page that reaches the limit; the next run starts at the next "
    "page with the same cursor and mark, before anything new; every row lands once; state "
    "keeps the secret's reference, never its value",
)
def test_max_rows_per_run_stops_an_http_source_and_the_next_run_goes_on_from_there(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("API_KEY", "apikey-1732050807")
    records = RECORDS[::-1]  # the API sends the newest first
    app = PagedAPI(records, "next_url")
    with serve(app) as base:
        spec = (
            http_spec(base)
            .replace(
                '  params: {updated_since: "{cursor}"}\n',
                '  params: {updated_since: "{cursor}", key: "${env:API_KEY}"}\n',
            )
            .replace(
                "  paginate: {style: cursor, cursor_path: meta.next_cursor}\n",
                "  paginate: {style: next_url, next_url: links.next}\n",
            )
        )
        (project / "pumps" / "orders.yaml").write_text(spec + "  max_rows_per_run: 20\n")
        runs = []
        for _ in range(3):
            app.seen.clear()
            runs.append(run_pump())
            if len(runs) == 1:
                state = (project / ".pumphouse/orders/state.json").read_text()
                left = json.loads(state)["rest"]["inputs"][0]["url"]
                assert left == f"{base}/v1/orders?key=%24%7Benv%3AAPI_KEY%7D&after=21"
                assert "apikey-1732050807" not in state
            if len(runs) == 2:  # the second run starts at the first run's next page
                assert app.seen[0].query == {"key": "apikey-1732050807", "after": "21"}
        newer = api_orders(10, seed=6, start=_minute_after(RECORDS[-1]))
        app.records = newer[::-1] + records
        app.seen.clear()
        fourth = run_pump()

    assert [r["rows_read"] for r in runs] == [21, 21, 8]
    assert [r["inputs_left"] for r in runs] == [1, 1, 0]
    assert [r["status"] for r in runs] == ["ok"] * 3
    # The first run's mark would hide every row after its pages; the next two read against
    # the mark the first started with (none), and the mark only moves up.
    mark = max(r["updated_at"] for r in RECORDS if is_valid(r) and r["status"] != "void")
    assert [r["hwm_before"] for r in runs] == [None, None, None]
    assert {_iso(r["hwm_after"]) for r in runs} == {mark}
    # Then the next new run asks from that mark, as one run without the limit would.
    assert app.seen[0].query["updated_since"] == mark
    assert fourth["hwm_before"] == runs[0]["hwm_after"]
    again = [r for r in app.records if r["updated_at"] >= mark]
    assert fourth["rows_read"] == len(again) >= 10
    want = Counter(_rows(expected(records[:21])))
    want += Counter(_rows(expected(records[21:42]))) + Counter(_rows(expected(records[42:])))
    want += Counter(_rows(expected(again, hwm=mark)))
    assert Counter(_landed_rows(project)) == want
    assert "rest" not in json.loads((project / ".pumphouse/orders/state.json").read_text())


@pytest.mark.usefixtures("prefect_server")
@pytest.mark.reliability(
    "bad data",
    "an API that sends pages of 7 records though source.paginate.page_size asks for 20 "
    "(page style, total_path), runs stopped at max_rows_per_run",
    "every page is read to the end across the runs, every row lands once; the first run's "
    "summary warns with the API's page size",
)
def test_an_api_that_caps_its_page_size_lands_every_row_and_the_run_says_so(
    project: Path,
) -> None:
    app = PagedAPI(RECORDS, "page", max_limit=7)
    with serve(app) as base:
        spec = http_spec(base).replace(
            "  paginate: {style: cursor, cursor_path: meta.next_cursor}\n",
            "  paginate: {style: page, page_size: 20, total_path: meta.total}\n",
        )
        (project / "pumps" / "orders.yaml").write_text(spec + "  max_rows_per_run: 20\n")
        runs = [run_pump() for _ in range(3)]
    assert [r["status"] for r in runs] == ["ok"] * 3
    assert [r["rows_read"] for r in runs] == [21, 21, 8]
    assert [r["inputs_left"] for r in runs] == [1, 1, 0]
    assert [r["warnings"] for r in runs] == [[capped_warning(base, 7, 20)], [], []]
    assert len(app.seen) == 8  # pages of 7, the last one reaching meta.total
    want = Counter(_rows(expected(RECORDS[:21])))
    want += Counter(_rows(expected(RECORDS[21:42]))) + Counter(_rows(expected(RECORDS[42:])))
    assert Counter(_landed_rows(project)) == want


@pytest.mark.usefixtures("prefect_server")
@pytest.mark.reliability(
    "transient faults",
    "an http source that trickles its answer (a byte every 0.3 s, never done)",
    "source.timeout bounds the whole request: retried per source.retries, then the run "
    "fails naming the URL and the timeout",
)
def test_a_trickling_api_fails_the_run_at_the_timeout(project: Path) -> None:
    app = Scripted([("trickle", 0.3)] * 5, PagedAPI(RECORDS, "cursor"))
    with serve(app) as base:
        text = api_spec(base, 10, "  timeout: 1s\n  retries: 0\n")
        (project / "pumps" / "orders.yaml").write_text(text)
        done = run_in_process("run", "pumps/orders.yaml", "--json", cwd=project)
    assert done.returncode == 1, done.stderr
    (line,) = done.stdout.strip().splitlines()
    summary = json.loads(line)
    assert summary["status"] == "failed"
    assert summary["error"].startswith(f"GET {base}/v1/orders ")
    assert "failed 1 times in " in summary["error"]
    assert "last with no complete answer within source.timeout (1s)" in summary["error"]
    assert len(app.seen) == 1


@pytest.mark.parametrize("how", ["trickle", "drip"])
def test_timeout_bounds_the_whole_request_headers_and_body(how: str) -> None:
    """One byte every 0.3 s never trips a per-read timeout; the whole request's does, be the
    bytes those of the body (trickle) or of the status line and headers (drip)."""
    app = Scripted([(how, 0.3)] * 2, PagedAPI(RECORDS, "none"))
    with serve(app) as base, pytest.raises(TransientError) as caught:
        read(source(base, timeout=1.0, retries=1, **FAST))
    assert len(app.seen) == 2
    assert str(caught.value).startswith(f"GET {base}/v1/orders failed 2 times in ")
    assert "s, last with no complete answer within source.timeout (1s); " in str(caught.value)
