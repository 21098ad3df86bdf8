"""NDJSON staged by DuckDB in blocks lands exactly as the record reader's batches do: the same
valid and rejected rows, lines, errors, counts and batches; what it cannot read exactly it
leaves to the record reader."""

from __future__ import annotations

import functools
import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.loader import parse_spec
from schemas.spec import Spec
from tasks.engine import shared as _shared_duckdb
from tasks.engine.db import connect
from tasks.sources.files import json_lines as _json_lines
from tasks.sources.files.listing import list_files
from tasks.staging import stage
from tasks.state._content import measure
from tasks.state.known import measuring
from tests.conftest import examples

SPEC = """\
name: fast
source: {{type: files, url: {src}, glob: "*.ndjson"}}
{schema}
transform:
  filter: "coalesce(status, '') <> 'void'"
sink: {{type: parquet, url: ./out}}
limits: {{batch_rows: {rows}, batch_bytes: {bytes}, max_record_bytes: {limit}}}
"""
SCHEMA = """\
schema:
  strict: {strict}
  columns:
    id:     {{type: int64, nullable: false, checks: {{ge: 0}}, unique: {unique}}}
    status: {{type: string, checks: {{isin: [open, paid, void]}}}}
    at:     {{type: timestamp}}
"""


def make_spec(
    src: Path, *, rows: int = 3, size: int = 1 << 20, limit: int = 200, **schema: Any
) -> Spec:
    body = (
        ""
        if schema.get("none")
        else SCHEMA.format(
            strict=schema.get("strict", "false"), unique=schema.get("unique", "false")
        )
    )
    text = SPEC.format(src=src, schema=body, rows=rows, bytes=size, limit=limit)
    return parse_spec(text, "fast.yaml")


@functools.cache
def _reader() -> duckdb.DuckDBPyConnection:
    """One DuckDB reads every staged folder back: a new one per read costs more than the read.
    It keeps no file in its caches: a test writes the same paths again (one per example)."""
    con = duckdb.connect()
    con.execute("SET enable_external_file_cache = false")
    con.execute("SET parquet_metadata_cache = false")
    return con


def staged(run: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for sub in ("valid", "rejected"):
        files = sorted(str(p) for p in (run / sub).glob("*.parquet"))
        if files:
            listing = "[" + ", ".join(f"'{f}'" for f in files) + "]"
            rel = _reader().sql(f"SELECT * FROM read_parquet({listing}, union_by_name = true)")
            out[sub] = (rel.columns, sorted(map(repr, rel.fetchall())))
    return out


def both_ways(tmp: Path, data: bytes, **kw: Any) -> tuple[Any, Any, bool]:
    """(fast path's staged rows and counts, record reader's, whether the fast path took it).

    The fast path is stage_file's, measuring the bytes it reads as a run's staging does: the
    record reader, when stage_file falls back to it, spoils those measures."""
    src = tmp / "in"
    shutil.rmtree(src, ignore_errors=True)
    src.mkdir(parents=True)
    (src / "a.ndjson").write_bytes(data)
    spec = make_spec(src, **kw)
    [file] = list_files(spec.source)
    read = measuring(file)
    assert read is not None
    results = []
    for way in ("blocks", "batches"):
        run = tmp / way
        shutil.rmtree(run, ignore_errors=True)
        if way == "blocks":
            counts = stage.stage_file(spec, str(run), 0, file, None, read)
        else:
            stage._clear(run, 0)
            checked = functools.partial(stage._stage_checked, compression="uncompressed")
            con = connect()
            try:
                counts = stage._stage_batches(con, spec, run, 0, file, None, checked)
            finally:
                con.close()
        results.append((counts.to_dict(), staged(run)))
    took = read.result() is not None
    if took:  # and what it measured is the file's own measures
        assert read.result() == measure(spec.source, file)
    return results[0], results[1], took


def rec(i: int, status: str = "paid", **extra: Any) -> str:
    return json.dumps({"id": i, "status": status, "at": f"2026-01-01T00:00:{i % 60:02d}Z", **extra})


@pytest.mark.parametrize(
    ("name", "data", "fast"),
    [
        ("plain", "\n".join(rec(i) for i in range(10)) + "\n", True),
        ("no final newline", "\n".join(rec(i) for i in range(7)), True),
        ("crlf", "\r\n".join(rec(i) for i in range(7)) + "\r\n", True),
        ("bom", "\ufeff" + "\n".join(rec(i) for i in range(5)), True),
        ("bom line alone", "\ufeff\n" + "\n".join(rec(i) for i in range(5)), True),
        ("blank lines", f"\n\n{rec(1)}\n \t\n{rec(2)}\n\r\n{rec(3)}\n\n{rec(4)}\n   ", True),
        (
            "broken and wrong",
            f'{rec(1)}\n{{"id": 2, \n[1]\n"x"\n{rec(-3)}\n{rec(4, "lost")}\n',
            True,
        ),
        (
            "extra keys in one batch",
            "\n".join(rec(i, note="n") if i == 4 else rec(i) for i in range(9)),
            True,
        ),
        (
            "invalid utf-8",
            (rec(1) + "\n").encode() + b'{"id": 2, "status": "\xff"}\n' + (rec(3) + "\n").encode(),
            False,
        ),
        ("nul byte", (rec(1) + "\n").encode() + b'{"id": 2, "x": "a\x00b"}\n', False),
        (
            "record over the limit",
            rec(1) + "\n" + rec(2, note="y" * 300) + "\n" + rec(3) + "\n",
            False,
        ),
        ("crs over the limit", rec(1) + "\r" * 200 + "\n" + rec(2) + "\n", False),
    ],
)
def test_blocks_stage_as_the_record_reader_does(
    tmp_path: Path, name: str, data: Any, fast: bool
) -> None:
    raw = data if isinstance(data, bytes) else data.encode()
    blocks, batches, took = both_ways(tmp_path, raw)
    assert blocks == batches
    assert took is fast


def test_unique_is_per_batch_and_batch_bytes_defer_to_the_record_reader(tmp_path: Path) -> None:
    lines = "\n".join(rec(i // 2) for i in range(20)) + "\n"  # ids 0, 0, 1, 1, ...
    blocks, batches, took = both_ways(tmp_path, lines.encode(), unique="true", rows=2)
    assert blocks == batches and took
    assert blocks[0]["rows_rejected"] == 20  # both of a pair share a batch of 2...
    blocks, batches, took = both_ways(tmp_path, lines.encode(), unique="true", rows=1)
    assert blocks == batches and took and blocks[0]["rows_rejected"] == 0  # ...not a batch of 1
    blocks, batches, took = both_ways(tmp_path, lines.encode(), rows=30, size=1024)
    assert blocks == batches and not took  # 20 records of ~60 bytes pass 1 KiB: other batches


def test_strict_and_no_schema(tmp_path: Path) -> None:
    data = "\n".join(rec(i, extra=i) if i % 3 else rec(i) for i in range(10)) + "\n"
    for kw in ({"strict": "true"}, {"strict": "filter"}, {"none": True}):
        blocks, batches, took = both_ways(tmp_path, data.encode(), **kw)
        assert blocks == batches and took, kw


def test_blocks_split_long_files_into_pieces_and_blocks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_json_lines, "BLOCK", 4096)
    monkeypatch.setattr(_json_lines, "PIECE", 512)
    data = "".join(rec(i) + ("\n\n" if i % 97 == 0 else "\n") for i in range(2000))
    blocks, batches, took = both_ways(tmp_path, data.encode(), rows=70)
    assert blocks == batches and took
    assert blocks[0]["batches"] == 29 and blocks[0]["rows_read"] == 2000


def test_a_file_the_blocks_give_up_on_late_is_staged_again_by_the_record_reader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rounds staged from early blocks, then a block not for the fast path (invalid UTF-8):
    the record reader stages the whole file again, in the same DuckDB session."""
    monkeypatch.setattr(_json_lines, "BLOCK", 4096)
    monkeypatch.setattr(_json_lines, "PIECE", 512)
    data = "".join(rec(i) + "\n" for i in range(600)).encode() + b'{"id": 1, "status": "\xff"}\n'
    blocks, batches, took = both_ways(tmp_path, data, rows=70)
    assert blocks == batches and not took
    assert blocks[0]["rows_read"] == 601 and blocks[0]["rows_rejected"] == 1


lines = st.lists(
    st.one_of(
        st.integers(0, 50).map(lambda i: rec(i)),
        st.integers(0, 50).map(lambda i: rec(i, "lost")),
        st.sampled_from(["", " ", "\t", "\r", '{"id": 1,', "null", '{"id": "x"}', '{"id": 1.5}']),
    ),
    max_size=40,
)


@settings(
    max_examples=examples(40),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    lines=lines, crlf=st.booleans(), final=st.booleans(), rows=st.integers(1, 7), bom=st.booleans()
)
def test_any_lines_stage_alike(
    tmp_path: Path, lines: list[str], crlf: bool, final: bool, rows: int, bom: bool
) -> None:
    eol = "\r\n" if crlf else "\n"
    text = ("\ufeff" if bom else "") + eol.join(lines) + (eol if final and lines else "")
    blocks, batches, took = both_ways(tmp_path, text.encode(), rows=rows, unique="true")
    assert blocks == batches
    assert took


def test_files_staged_at_once_in_one_duckdb_land_as_each_in_its_own(tmp_path: Path) -> None:
    """The flow stages a run's files in one DuckDB (stage.one_engine), several at once: each
    file's temp tables stay its own, so every file lands as it does staged alone."""
    src = tmp_path / "in"
    src.mkdir()
    rejected = 1  # one line not UTF-8, in f3: that file goes through the record reader
    for f in range(6):  # different fields, errors and sizes per file
        lines = []
        for i in range(f * 4000, f * 4000 + 3000 + 500 * f):
            if f % 2 and i % 5 == 0:
                lines.append(rec(i, note=f))
            elif i % 97 == 0 and i > 0:
                lines.append(rec(-i))  # id < 0
                rejected += 1
            else:
                lines.append(rec(i))
        tail = b'{"id": 1, "status": "\xff"}\n' if f == 3 else b""
        (src / f"f{f}.ndjson").write_bytes("\n".join(lines).encode() + b"\n" + tail)
    spec = make_spec(src, rows=700)
    files = list_files(spec.source)
    alone, together = tmp_path / "alone", tmp_path / "together"
    expected = [stage.stage_file(spec, str(alone), i, f, None) for i, f in enumerate(files)]
    with stage.one_engine(spec, str(together), 2), ThreadPoolExecutor(3) as pool:
        found = list(
            pool.map(lambda i: stage.stage_file(spec, str(together), i, files[i], None), range(6))
        )
        assert _shared_duckdb._SHARED[str(together)].opened == 6  # every file in the one DuckDB
    assert [c.to_dict() for c in found] == [c.to_dict() for c in expected]
    assert staged(together) == staged(alone)
    assert sum(c.rows_rejected for c in found) == rejected
    assert {c.batches for c in found} == {5, 6, 7, 8}


@pytest.mark.parametrize(
    "data",
    [
        b'{"id": 1, "status": "open", "at": "2026-01-01"}\n' * 5000,  # read in blocks
        b'{"id": 1, "status": "open"}\n{"id": 2, "status": "pa\xffid"}\n',  # record reader
        b"",
    ],
    ids=["blocks", "record-reader", "empty"],
)
def test_state_measures_a_file_from_the_staging_read_as_from_a_read_of_its_own(
    tmp_path: Path, data: bytes
) -> None:
    """What state keeps of a staged file (hash, lines, ends) is taken from the bytes the block
    reader reads, and is the same as a separate read of the file gives."""
    import gzip

    from tasks.state._content import Measuring, measure
    from tasks.state.known import entry_of, measuring

    for name, body in (("a.ndjson", data), ("a.ndjson.gz", gzip.compress(data, mtime=0))):
        src = tmp_path / name / "in"
        src.mkdir(parents=True)
        (src / name).write_bytes(body)
        # batch_rows only cuts what was read into batches (blocks: 10 of them); 3 made 1667
        # DuckDB rounds per staging, which measure nothing more
        text = SPEC.format(src=src, schema="", rows=500, bytes=1 << 20, limit=200)
        spec = parse_spec(text.replace('"*.ndjson"', f'"{name}"'), "fast.yaml")
        [file] = list_files(spec.source)
        read = measuring(file)
        assert read is not None
        run = str(tmp_path / name / "run")
        entry = {"size": file.size, "fp": file.fingerprint, **measure(spec.source, file)}
        with _shared_duckdb.shared(run, 2**28, str(tmp_path / "tmp")):
            assert stage.stage_input(spec, run, 0, file, None).content == entry
            stage.stage_file(spec, run, 0, file, None, read)
        assert (read.result() is None) == (b"\xff" in data)  # the record reader reads again
        assert entry_of(spec.source, file, read) == entry
        pieces = Measuring(file.size)  # fed in odd pieces, and past the size
        for at in range(0, len(body) + 7, 3):
            pieces.update(memoryview(body + b"more")[at : at + 3])
        assert pieces.result() == measure(spec.source, file)
