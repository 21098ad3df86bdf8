"""The files source: listing folders, files and globs; reading them in bounded batches."""

from __future__ import annotations

import gzip
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.errors import DataError, SpecError
from schemas.spec import FilesSource, Limits
from tasks.sources.files.listing import SourceFile, list_files, nothing_listed
from tasks.sources.files.read import Batch, _JsonSplitter, read_batches
from tasks.sources.inputs import input_json, input_of
from tests.conftest import examples

# ---------------------------------------------------------------- helpers


@pytest.fixture
def mem() -> Iterator[str]:
    """A fresh folder on fsspec's memory filesystem, removed afterwards."""
    root = f"/t{uuid.uuid4().hex}"
    yield root
    fs = fsspec.filesystem("memory")
    if fs.exists(root):
        fs.rm(root, recursive=True)


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def read(path: Path | str, limits: Limits | None = None, **source: Any) -> list[Batch]:
    """Every batch of the one file at `path`."""
    src = FilesSource(type="files", url=str(path), **source)
    [file] = list_files(src)
    return list(read_batches(src, file, limits or Limits()))


def records(batches: list[Batch], *columns: str) -> list[tuple[Any, ...]]:
    """(_row, _raw, _parse_error, *columns) of every row of every batch, in order."""
    out: list[tuple[Any, ...]] = []
    for b in batches:
        d = b.table.to_pydict()
        out += zip(*(d[c] for c in ("_row", "_raw", "_parse_error", *columns)), strict=True)
    return out


def sizes(batches: list[Batch]) -> list[int]:
    return [b.table.num_rows for b in batches]


# ---------------------------------------------------------------- listing


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for name in [
        "a.ndjson",
        "b.csv",
        "sub/c.ndjson",
        "sub/deep/d.ndjson",
        ".hidden.ndjson",
        "_SUCCESS",
        ".tmp/e.ndjson",
        "_staging/f.ndjson",
    ]:
        write(tmp_path / name, b"{}\n")
    return tmp_path


def urls(source: FilesSource, root: Path) -> list[str]:
    return [os.path.relpath(f.url, root) for f in list_files(source)]


def test_folder_lists_recursively_skips_hidden_and_sorts(tree: Path) -> None:
    src = FilesSource(type="files", url=str(tree))
    assert urls(src, tree) == ["a.ndjson", "b.csv", "sub/c.ndjson", "sub/deep/d.ndjson"]
    assert all(os.path.isabs(f.url) for f in list_files(src))


def test_folder_with_glob(tree: Path) -> None:
    top = FilesSource(type="files", url=f"{tree}/", glob="*.ndjson")
    assert urls(top, tree) == ["a.ndjson"]
    deep = FilesSource(type="files", url=str(tree), glob="**/*.ndjson")
    assert urls(deep, tree) == ["a.ndjson", "sub/c.ndjson", "sub/deep/d.ndjson"]


def test_url_with_glob_characters(tree: Path) -> None:
    src = FilesSource(type="files", url=f"{tree}/sub/*.ndjson")
    assert urls(src, tree) == ["sub/c.ndjson"]


def test_single_file_even_in_a_hidden_folder(tree: Path) -> None:
    src = FilesSource(type="files", url=str(tree / "_staging" / "f.ndjson"))
    [f] = list_files(src)
    assert (f.url, f.size) == (str(tree / "_staging" / "f.ndjson"), 3)


def test_relative_url_resolves_against_working_directory(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tree)
    assert [f.url for f in list_files(FilesSource(type="files", url="./sub/"))] == [
        str(tree / "sub" / "c.ndjson"),
        str(tree / "sub" / "deep" / "d.ndjson"),
    ]


def test_missing_file_is_a_data_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError) as e:
        list_files(FilesSource(type="files", url="./x/o.csv"))
    assert str(e.value) == (
        "source.url ./x/o.csv: no such file or folder; check the path (relative paths start "
        "at the working directory) and storage_options"
    )


def test_a_missing_folder_lists_nothing_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A folder not made yet (a bucket's prefix before its first file) is no error: the run
    reads nothing and warns (tests/test_command.py)."""
    monkeypatch.chdir(tmp_path)
    for source in (
        FilesSource(type="files", url="./x/"),
        FilesSource(type="files", url="./x/*.csv"),
        FilesSource(type="files", url="./x", glob="*.csv"),
    ):
        assert list_files(source) == []
        assert nothing_listed(source, first_run=False) == (
            f"source.url {source.url}: no such folder, so nothing was read; check the path "
            "(relative paths start at the working directory)"
        )


def test_unset_env_in_storage_options_is_a_spec_error(mem: str) -> None:
    src = FilesSource(
        type="files", url=f"memory://{mem}/", storage_options={"token": "${env:PH_NO_SUCH_VAR}"}
    )
    with pytest.raises(SpecError, match="environment variable PH_NO_SUCH_VAR is not set"):
        list_files(src)


def test_memory_filesystem_listing(mem: str) -> None:
    fs = fsspec.filesystem("memory")
    fs.pipe(f"{mem}/b.ndjson", b"{}\n{}\n")
    fs.pipe(f"{mem}/a.ndjson", b"{}\n")
    fs.pipe(f"{mem}/_tmp/c.ndjson", b"{}\n")
    files = list_files(FilesSource(type="files", url=f"memory://{mem}/"))
    assert [(f.url, f.size) for f in files] == [
        (f"memory://{mem}/a.ndjson", 3),
        (f"memory://{mem}/b.ndjson", 6),
    ]
    [b] = read(files[1].url)
    assert records([b]) == [(1, "{}", None), (2, "{}", None)]


def test_fingerprint_changes_when_the_file_changes(tmp_path: Path) -> None:
    path = write(tmp_path / "a.ndjson", b'{"a":1}\n')
    src = FilesSource(type="files", url=str(path))
    [first] = list_files(src)
    assert list_files(src) == [first]  # stable while nothing changes
    path.write_bytes(b'{"a":2}\n')  # same size, new mtime
    os.utime(path, (1_000_000, 1_000_000))
    [same_size] = list_files(src)
    path.write_bytes(b'{"a":10}\n')
    [bigger] = list_files(src)
    assert len({first.fingerprint, same_size.fingerprint, bigger.fingerprint}) == 3
    assert same_size.fingerprint == "8:1000000.0"


def test_source_file_round_trips_through_json() -> None:
    f = SourceFile(url="s3://b/k.ndjson", size=12, fingerprint="abc")
    assert input_of(json.loads(json.dumps(input_json(f)))) == f


# ---------------------------------------------------------------- ndjson


def test_ndjson_rows_are_line_numbers_blank_lines_skipped(tmp_path: Path) -> None:
    data = b'{"a":1}\n\n   \n{"a":2}\nnot json at all\n\t\n{"a":3'
    batches = read(write(tmp_path / "x.ndjson", data))
    assert records(batches) == [
        (1, '{"a":1}', None),
        (4, '{"a":2}', None),
        (5, "not json at all", None),  # parsing happens later, in DuckDB
        (7, '{"a":3', None),
    ]
    [b] = batches
    assert (b.kind, b.seq, b.source_bytes) == ("json", 0, len(data))
    assert b.table.column_names == ["_source", "_row", "_raw", "_parse_error"]
    assert b.table.schema.field("_row").type == pa.int64()
    assert set(b.table.column("_source").to_pylist()) == {str(tmp_path / "x.ndjson")}


@pytest.mark.reliability(
    "bad data",
    "a UTF-8 BOM, CRLF line ends and non-UTF-8 bytes",
    "BOM and CR stripped; the non-UTF-8 line is a rejected row with its file and line; the rest loads",
)
def test_bom_crlf_and_invalid_utf8(tmp_path: Path) -> None:
    data = b'\xef\xbb\xbf{"a":1}\r\n{"b":"\xff\xfe"}\r\n\r\n{"c":"\xc3\xa9"}\r\n'
    assert records(read(write(tmp_path / "x.ndjson", data))) == [
        (1, '{"a":1}', None),
        (2, '{"b":"\ufffd\ufffd"}', "not valid UTF-8"),
        (4, '{"c":"é"}', None),
    ]


@pytest.mark.reliability(
    "limits",
    "a file larger than limits.batch_rows",
    "no batch holds more than batch_rows rows",
)
def test_batch_rows_bound(tmp_path: Path) -> None:
    data = b"".join(b'{"i":%d}\n' % i for i in range(10))
    batches = read(write(tmp_path / "x.ndjson", data), Limits(batch_rows=3))
    assert sizes(batches) == [3, 3, 3, 1]
    assert [b.seq for b in batches] == [0, 1, 2, 3]
    assert [r[0] for r in records(batches)] == list(range(1, 11))
    assert sum(b.source_bytes for b in batches) == len(data)


@pytest.mark.reliability(
    "limits",
    "a file larger than limits.batch_bytes",
    "no batch holds more than about batch_bytes of record text",
)
def test_batch_bytes_bound(tmp_path: Path) -> None:
    line = b'{"pad":"' + b"x" * 91 + b'"}'  # 101 bytes of record text
    data = (line + b"\n") * 25
    batches = read(write(tmp_path / "x.ndjson", data), Limits(batch_bytes=1024))
    assert sizes(batches) == [10, 10, 5]  # 10 x 101 = 1010 <= 1024 < 11 x 101


@pytest.mark.reliability(
    "bad data",
    "an ndjson record over max_record_bytes",
    "rejected with that reason, file and line; the next records still read",
)
def test_record_over_max_record_bytes_is_rejected(tmp_path: Path) -> None:
    long = b'{"x":"' + b"y" * 4994 + b'"}'  # 5002 bytes
    exact = b'{"x":"' + b"z" * 92 + b'"}'  # 100 bytes: at the limit, allowed
    data = b"{}\n" + long + b"\n" + exact + b"\r\n" + exact + b"!\n" + long
    batches = read(write(tmp_path / "x.ndjson", data), Limits(max_record_bytes=100))
    head = (long[:1024]).decode() + "…"
    assert records(batches) == [
        (1, "{}", None),
        (2, head, "record is 5002 bytes, over limits.max_record_bytes (100)"),
        (3, exact.decode(), None),
        (
            4,
            exact.decode()[:1024] + "!…",
            "record is 101 bytes, over limits.max_record_bytes (100)",
        ),
        (5, head, "record is 5002 bytes, over limits.max_record_bytes (100)"),
    ]


@pytest.mark.reliability(
    "bad data",
    "an empty file",
    "no rows, no error",
)
def test_empty_file_yields_no_batches(tmp_path: Path) -> None:
    assert read(write(tmp_path / "x.ndjson", b"")) == []
    assert read(write(tmp_path / "y.ndjson", b"\n\n \n")) == []
    assert read(write(tmp_path / "z.csv", b"")) == []
    assert read(write(tmp_path / "w.json", b"[ ]")) == []


@settings(
    max_examples=examples(60),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    lines=st.lists(
        st.one_of(
            st.text(st.characters(blacklist_characters="\r\n\ufeff", blacklist_categories=["Cs"])),
            st.sampled_from(["", " ", "\t ", "{}"]),
        ),
        max_size=40,
    ),
    crlf=st.booleans(),
    final_newline=st.booleans(),
    batch_rows=st.integers(1, 12),
)
def test_ndjson_every_nonblank_line_once_with_its_number(
    mem: str, lines: list[str], crlf: bool, final_newline: bool, batch_rows: int
) -> None:
    eol = "\r\n" if crlf else "\n"
    text = eol.join(lines) + (eol if final_newline and lines else "")
    url = f"memory://{mem}/{uuid.uuid4().hex}.ndjson"
    fsspec.filesystem("memory").pipe(url, text.encode())
    batches = read(url, Limits(batch_rows=batch_rows))
    expected = [(i + 1, line, None) for i, line in enumerate(lines) if line.encode().strip() != b""]
    assert records(batches) == expected
    assert all(0 < n <= batch_rows for n in sizes(batches))
    assert all(n == batch_rows for n in sizes(batches)[:-1])


# ---------------------------------------------------------------- json arrays


def test_json_array_streams_in_tiny_batches(tmp_path: Path) -> None:
    # Strings holding brackets, commas and escaped quotes must not split an element.
    elements = [
        {"i": f"{i:02d}", "s": 'a]b,c{"q\\', "n": [[i % 10], {"k": None}]} for i in range(40)
    ]
    texts = [json.dumps(e) for e in elements]
    assert {len(t) for t in texts} == {56}
    data = ("[\n  " + ",\n  ".join(texts) + "\n]\n").encode()
    batches = read(write(tmp_path / "x.json", data), Limits(batch_bytes=1024))
    assert sizes(batches) == [18, 18, 4]  # 18 x 56 = 1008 <= 1024 < 19 x 56
    assert records(batches) == [(i + 1, t, None) for i, t in enumerate(texts)]
    assert {b.kind for b in batches} == {"json"}


def test_json_array_elements_across_read_chunks(tmp_path: Path) -> None:
    # 3 MiB: elements straddle the 1 MiB reads.
    texts = [json.dumps({"i": i, "pad": "\\" * (i % 7) + "x" * (i % 1000)}) for i in range(5000)]
    data = ("[" + ",".join(texts) + "]").encode()
    assert len(data) > 2 * 2**20
    batches = read(write(tmp_path / "x.json", data), Limits(batch_rows=1000))
    assert sizes(batches) == [1000] * 5
    assert [r[1] for r in records(batches)] == texts


@pytest.mark.reliability(
    "bad data",
    "a JSON array broken half way",
    "the records before the break load; the rest is one rejected record",
)
def test_broken_json_array_keeps_the_rest_as_one_record(tmp_path: Path) -> None:
    data = b'[{"a":1}, {"b":2}}, {"c":3}]'
    assert records(read(write(tmp_path / "x.json", data))) == [
        (1, '{"a":1}', None),
        (
            2,
            '{"b":2}}, {"c":3}]',
            "not a valid JSON array: unexpected '}' at byte 17; "
            "the rest of the file is kept as this one record",
        ),
    ]
    truncated = b'[{"a":1}, {"b":[2,'
    assert records(read(write(tmp_path / "y.json", truncated))) == [
        (1, '{"a":1}', None),
        (2, '{"b":[2,', "the file ends inside this JSON value; is it truncated?"),
    ]
    unclosed = b"[1, 2,\n"
    assert records(read(write(tmp_path / "u.json", unclosed))) == [
        (1, "1", None),
        (2, "2", None),
        (3, "", "the file ends inside the JSON array (no closing ']'); is it truncated?"),
    ]
    trailing = b"[1, 2] 3"
    assert records(read(write(tmp_path / "z.json", trailing))) == [
        (1, "1", None),
        (2, "2", None),
        (
            3,
            "3",
            "not a valid JSON array: text after the closing ']' at byte 7; "
            "the rest of the file is kept as this one record",
        ),
    ]


def test_json_top_level_object_is_one_record(tmp_path: Path) -> None:
    data = b'\xef\xbb\xbf {"a": [1, 2], "b": "}"}\n'
    assert records(read(write(tmp_path / "x.json", data))) == [(1, '{"a": [1, 2], "b": "}"}', None)]
    # Objects one per line in a .json file: each is a record.
    lines = b'{"a":1}\n{"a":2}\n'
    assert records(read(write(tmp_path / "y.json", lines))) == [
        (1, '{"a":1}', None),
        (2, '{"a":2}', None),
    ]


@pytest.mark.reliability(
    "bad data",
    "a JSON array element over max_record_bytes (e.g. a 10 MB string)",
    "that element is rejected and skipped without holding it; the others load",
)
def test_json_element_over_max_record_bytes(tmp_path: Path) -> None:
    big = json.dumps({"x": "y" * 3000})
    data = f'[{{"a":1}}, {big}, {{"b":2}}]'.encode()
    rows = records(read(write(tmp_path / "x.json", data), Limits(max_record_bytes=1000)))
    assert rows == [
        (1, '{"a":1}', None),
        (2, big[:1024] + "…", "record is 3009 bytes, over limits.max_record_bytes (1000)"),
        (3, '{"b":2}', None),
    ]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


def split(data: bytes, chunk: int) -> list[tuple[str, str | None]]:
    splitter = _JsonSplitter(limit=2**20)
    out = []
    for i in range(0, len(data), chunk):
        out += splitter.feed(data[i : i + chunk])
    out += splitter.end()
    return [(d.decode(), e) for d, _, e in out]


@settings(max_examples=examples(150), deadline=None)
@given(
    values=st.lists(json_values, max_size=8),
    chunk=st.integers(1, 17),
    spaces=st.sampled_from(["", " ", "\n  "]),
)
def test_json_splitter_gives_each_element_whatever_the_chunking(
    values: list[Any], chunk: int, spaces: str
) -> None:
    texts = [json.dumps(v, ensure_ascii=False) for v in values]
    data = f"{spaces}[{spaces}{(spaces + ',' + spaces).join(texts)}{spaces}]{spaces}".encode()
    assert split(data, chunk) == [(t, None) for t in texts]


@settings(max_examples=examples(100), deadline=None)
@given(
    values=st.lists(st.dictionaries(st.text(), json_values, max_size=4), max_size=6),
    chunk=st.integers(1, 17),
)
def test_json_splitter_reads_objects_one_after_another(
    values: list[dict[str, Any]], chunk: int
) -> None:
    texts = [json.dumps(v) for v in values]
    assert split("\n".join(texts).encode(), chunk) == [(t, None) for t in texts]


# ---------------------------------------------------------------- csv


@pytest.mark.reliability(
    "bad data",
    "CSV rows of the wrong width, quoted delimiters and newlines, NA strings",
    "wrong-width rows rejected with file and line; the others load",
)
def test_csv_quotes_multiline_delimiter_nulls_and_width(tmp_path: Path) -> None:
    data = (
        b"id;name;note\r\n"
        b'1;"Smith; John";"said ""hi"""\r\n'
        b'2;"two\nlines";NA\r\n'
        b"\r\n"
        b"3;;x\r\n"
        b"4;too;many;fields\r\n"
        b"5;few\r\n"
        b"6;\xff;ok\r\n"
    )
    batches = read(write(tmp_path / "x.csv", data), Limits(batch_rows=4), csv={"delimiter": ";"})
    assert [b.kind for b in batches] == ["columns", "columns"]
    assert sizes(batches) == [4, 2]
    assert batches[0].table.column_names == [
        "_source",
        "_row",
        "_raw",
        "_parse_error",
        "id",
        "name",
        "note",
    ]
    assert records(batches, "id", "name", "note") == [
        (2, '1;"Smith; John";"said ""hi"""', None, "1", "Smith; John", 'said "hi"'),
        (3, '2;"two\nlines";NA', None, "2", "two\nlines", None),
        (6, "3;;x", None, "3", None, "x"),
        (7, "4;too;many;fields", "expected 3 fields, got 4", None, None, None),
        (8, "5;few", "expected 3 fields, got 2", None, None, None),
        (9, "6;\ufffd;ok", "not valid UTF-8", None, None, None),
    ]


def test_tsv_is_tab_separated_unless_told(tmp_path: Path) -> None:
    path = write(tmp_path / "x.tsv", b"a\tb\n1\t2,3\n")
    assert records(read(path), "a", "b") == [(2, "1\t2,3", None, "1", "2,3")]
    told = read(write(tmp_path / "y.tsv", b"a,b\n1\t2,3\n"), csv={"delimiter": ","})
    assert records(told, "a", "b") == [(2, "1\t2,3", None, "1\t2", "3")]


def test_csv_lone_carriage_return(tmp_path: Path) -> None:
    data = b"a,b\n1,x\ry\n2,3\n"
    assert records(read(write(tmp_path / "x.csv", data)), "a", "b") == [
        (
            2,
            "1,x\ry",
            "not valid CSV: a carriage return (\\r) inside an unquoted field; "
            "if the file's lines end in \\r alone, convert them to \\n",
            None,
            None,
        ),
        (3, "2,3", None, "2", "3"),
    ]


def test_csv_without_header_and_custom_nulls(tmp_path: Path) -> None:
    data = b"1,-,'a,b'\n2,x,\n"
    batches = read(
        write(tmp_path / "x.csv", data),
        csv={"header": False, "quote": "'", "null_values": ["-"]},
    )
    assert records(batches, "column0", "column1", "column2") == [
        (1, "1,-,'a,b'", None, "1", None, "a,b"),
        (2, "2,x,", None, "2", "x", ""),
    ]


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (
            b"a,b,a\n",
            "line 1: the CSV header has column 'a' twice; rename it in the file, or set source.csv.header: false",
        ),
        (
            b"a,_row\n",
            "line 1: the CSV header's field '_row' has the name of one of pumphouse's own columns "
            "(_source, _row, _raw, _parse_error, _errors, _original, _batch, _keep_filter, "
            "_keep_new, and any name starting with '__ph_'), so it would not land as data; "
            "rename it in the source (e.g. without the leading underscore), "
            "or set source.csv.header: false",
        ),
    ],
)
@pytest.mark.reliability(
    "bad data",
    "a CSV header with duplicate or empty column names",
    "refused with a clear message naming the file",
)
def test_csv_bad_header_is_a_data_error(tmp_path: Path, header: bytes, message: str) -> None:
    path = write(tmp_path / "x.csv", header + b"1,2,3\n")
    with pytest.raises(DataError) as e:
        read(path)
    assert str(e.value) == f"{path}: {message}"


def test_csv_record_over_max_record_bytes(tmp_path: Path) -> None:
    quoted = '4,"' + "y\n" * 100 + 'y"'  # one record, lines 4 to 104
    data = b"a,b\n1,2\n3," + b"x" * 200 + b"\n" + quoted.encode() + b"\n5,6\n"
    rows = records(read(write(tmp_path / "x.csv", data), Limits(max_record_bytes=64)), "a", "b")
    too_big = "record is {} bytes, over limits.max_record_bytes (64)"
    assert rows == [
        (2, "1,2", None, "1", "2"),
        (3, "3," + "x" * 200 + "…", too_big.format(202), None, None),
        (4, quoted + "…", too_big.format(205), None, None),
        (105, "5,6", None, "5", "6"),
    ]


@pytest.mark.reliability(
    "bad data",
    "a CSV field whose quote never closes, in a file of 300k lines, with max_record_bytes of 64B and 4KiB",
    "one rejected record from the quote's line to the end of the file, saying where the quote "
    "opened and the record's exact size; the rows before it land; no unbounded read, no row guessed",
)
@pytest.mark.parametrize("limit", [64, 4096])
def test_csv_unclosed_quote_is_cut_at_the_limit(tmp_path: Path, limit: int) -> None:
    # By CSV's grammar every line after the open quote is inside it: none may land as a row.
    rest = b"".join(b"%d,name%d\n" % (i, i) for i in range(3, 300_001))
    data = b'id,name\n1,alice\n2,"bob\n' + rest
    rows = records(read(write(tmp_path / "x.csv", data), Limits(max_record_bytes=limit)), "id")
    text = (data[16:-1]).decode()
    assert rows == [
        (2, "1,alice", None, "1"),
        (
            3,
            text[:1024] + "…",
            "not valid CSV: the quote opened on line 3 is never closed, so the record runs to "
            f"the end of the file; record is {len(text)} bytes, over limits.max_record_bytes ({limit})",
            None,
        ),
    ]


def test_csv_quote_never_closed_is_rejected(tmp_path: Path) -> None:
    # csv.reader (not strict) closes a quote at the end of the file without a word.
    data = b'id,name\n1,alice\n2,"bob\n3,carol\n4,dave\n'
    rows = records(read(write(tmp_path / "x.csv", data)), "id", "name")
    assert rows == [
        (2, "1,alice", None, "1", "alice"),
        (
            3,
            '2,"bob\n3,carol\n4,dave',
            "not valid CSV: the quote opened on line 3 is never closed, so the record runs to "
            "the end of the file",
            None,
            None,
        ),
    ]


@pytest.mark.parametrize("end", [b"\n", b""])
def test_csv_quoted_lines_and_stray_quotes_at_the_end_land(tmp_path: Path, end: bytes) -> None:
    data = b'id,name\n1,ab"c\n2,"x ""y""\nz"\n3,"p\nq"' + end
    rows = records(read(write(tmp_path / "x.csv", data)), "id", "name")
    assert rows == [
        (2, '1,ab"c', None, "1", 'ab"c'),
        (3, '2,"x ""y""\nz"', None, "2", 'x "y"\nz'),
        (5, '3,"p\nq"', None, "3", "p\nq"),
    ]


@pytest.mark.reliability(
    "bad data",
    "a legit multi-line quoted CSV field of 1.2 MB (600k lines, one of them a 3 MB line holding "
    "quotes) in the middle of a file, with max_record_bytes 64B",
    "that record alone rejected with its exact size; every row after its closing quote lands "
    "and none of its inner lines does",
)
def test_csv_quoted_field_over_the_limit_in_the_middle(tmp_path: Path) -> None:
    inner = b"y\n" * 300_000 + b'y""' * 1_000_000 + b"\n" + b'y\n"",' * 300_000
    quoted = b'1,"' + inner + b'y"'
    data = b"a,b\n0,x\n" + quoted + b'\n5,"6\n7"\n8,9\n'
    rows = records(read(write(tmp_path / "x.csv", data), Limits(max_record_bytes=64)), "a", "b")
    end = 3 + quoted.count(b"\n")
    assert rows == [
        (2, "0,x", None, "0", "x"),
        (
            3,
            quoted[:1024].decode() + "…",
            f"record is {len(quoted)} bytes, over limits.max_record_bytes (64)",
            None,
            None,
        ),
        (end + 1, '5,"6\n7"', None, "5", "6\n7"),
        (end + 3, "8,9", None, "8", "9"),
    ]


@pytest.mark.parametrize("size", [200, 3 * 2**20])  # within a read block, and drained
def test_csv_over_long_lines_open_and_close_quotes_as_written(tmp_path: Path, size: int) -> None:
    # An over-long line is not held, but its quotes still say where records end.
    z = b"z" * size
    data = (
        b'a,b\n1,"p\n'
        + z
        + b'"\n2,3\n'  # closes the quote opened on the line before
        + z
        + b',"q\nr"\n4,5\n'  # opens a quote closed on the next line
        + b'6,"s\n'
        + z
        + b'",7,"t\nu"\n8,9\n'  # closes one quote and opens another
        + z
        + b'\n10,"11\n'
        + z
        + b'"\n12,13\n'
    )
    rows = records(read(write(tmp_path / "x.csv", data), Limits(max_record_bytes=64)), "a", "b")
    big = "record is {} bytes, over limits.max_record_bytes (64)"
    assert [(r[0], r[2], r[3], r[4]) for r in rows] == [
        (2, big.format(size + 6), None, None),
        (4, None, "2", "3"),
        (5, big.format(size + 6), None, None),
        (7, None, "4", "5"),
        (8, big.format(size + 14), None, None),
        (11, None, "8", "9"),
        (12, big.format(size), None, None),
        (13, big.format(size + 8), None, None),
        (15, None, "12", "13"),
    ]


# ---------------------------------------------------------------- parquet


def test_parquet_in_batches(tmp_path: Path) -> None:
    path = tmp_path / "x.parquet"
    table = pa.table({"id": pa.array(range(10), pa.int64()), "name": [f"n{i}" for i in range(10)]})
    pq.write_table(table, path)
    batches = read(path, Limits(batch_rows=4))
    assert sizes(batches) == [4, 4, 2]
    assert {b.kind for b in batches} == {"columns"}
    t = pa.concat_tables(b.table for b in batches)
    assert t.column_names == ["_source", "_row", "_raw", "_parse_error", "id", "name"]
    assert t.schema.field("id").type == pa.int64()
    assert t.column("_row").to_pylist() == list(range(1, 11))
    assert t.column("id").to_pylist() == list(range(10))
    assert t.column("_raw").null_count == 10
    assert sum(b.source_bytes for b in batches) == path.stat().st_size


@pytest.mark.reliability(
    "bad data",
    "a file that is not parquet where parquet is expected",
    "DataError naming the file and the fix",
)
def test_not_a_parquet_file(tmp_path: Path) -> None:
    path = write(tmp_path / "x.parquet", b"this is not parquet")
    with pytest.raises(DataError, match=r"x\.parquet: not a readable parquet file"):
        read(path)


# ---------------------------------------------------------------- compression


NDJSON = b"".join(b'{"i":%d}\n' % i for i in range(100))


@pytest.mark.parametrize(
    ("name", "data", "compression"),
    [
        ("x.ndjson.gz", gzip.compress(NDJSON, mtime=0), "infer"),
        ("x.ndjson.zst", zstandard.ZstdCompressor().compress(NDJSON), "infer"),
        ("x.ndjson.zstd", zstandard.ZstdCompressor().compress(NDJSON), "infer"),
        (
            "x.ndjson",
            gzip.compress(NDJSON[:40], mtime=0) + gzip.compress(NDJSON[40:], mtime=0),
            "gzip",
        ),
        ("x.ndjson", gzip.compress(NDJSON, mtime=0), "infer"),  # no suffix: the first bytes say
        ("x.ndjson", zstandard.ZstdCompressor().compress(NDJSON), "infer"),
        ("x.ndjson", NDJSON, "infer"),
        (
            "x.ndjson",
            zstandard.ZstdCompressor().compress(NDJSON[:40])
            + zstandard.ZstdCompressor().compress(NDJSON[40:]),
            "zstd",
        ),
    ],
)
def test_compressed_files(tmp_path: Path, name: str, data: bytes, compression: str) -> None:
    batches = read(write(tmp_path / name, data), Limits(batch_rows=30), compression=compression)
    assert sizes(batches) == [30, 30, 30, 10]
    assert [r[1] for r in records(batches)] == [f'{{"i":{i}}}' for i in range(100)]
    assert sum(b.source_bytes for b in batches) == len(data)


def test_compression_none_reads_a_gz_name_as_is(tmp_path: Path) -> None:
    batches = read(write(tmp_path / "x.ndjson.gz", b'{"a":1}\n'), compression="none")
    assert records(batches) == [(1, '{"a":1}', None)]


@pytest.mark.reliability(
    "bad data",
    "a corrupt gzip file",
    "DataError naming the file",
)
def test_corrupt_gzip_is_a_data_error(tmp_path: Path) -> None:
    path = write(tmp_path / "x.ndjson.gz", b"not gzip at all")
    with pytest.raises(DataError) as e:
        read(path)
    assert str(e.value).startswith(f"{path}: not valid gzip data after 0 bytes (")
    assert str(e.value).endswith("); check source.compression or re-export the file")


@pytest.mark.reliability(
    "bad data",
    "a gzip bomb (tiny file expanding without bound)",
    "refused at the decompressed-bytes cap as a possible bomb; no OOM",
)
def test_gzip_bomb_is_refused(tmp_path: Path) -> None:
    # 1.1 GiB of zeros in ~1 MB: gzip members concatenate.
    member = gzip.compress(b"\0" * 2**20, compresslevel=9)
    path = write(tmp_path / "bomb.ndjson.gz", member * 1100)
    with pytest.raises(DataError) as e:
        read(path)
    assert str(e.value) == (
        f"{path}: decompresses to more than {2**30} bytes, over 100x its size; refused as "
        "a possible decompression bomb. If the file is genuine, split it into smaller files"
    )


@pytest.mark.parametrize("gzipped", [False, True])
def test_a_file_served_over_http_without_a_size_is_read_and_its_codec_sniffed(
    gzipped: bool,
) -> None:
    """fsspec streams an http(s) file whose size the server does not give, and such a
    stream cannot seek: `compression: infer` looks at its first bytes without going back."""
    import http.server
    import threading

    body = gzip.compress(NDJSON) if gzipped else NDJSON

    class NoSize(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"  # the body ends when the connection closes

        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NoSize)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/export"
        batches = read(url, Limits(batch_rows=30), format="ndjson")
    finally:
        server.shutdown()
    assert [r[1] for r in records(batches)] == [f'{{"i":{i}}}' for i in range(100)]
