"""Which files are new across runs (CONTRACT §2): a file is known by its path below the
source and its content, a grown file yields only its new records, a changed one is read
whole with a warning."""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path
from typing import Any

import duckdb
import pytest
from deltalake import DeltaTable

from tests.conftest import run_cli, run_in_process

pytestmark = pytest.mark.usefixtures("prefect_server")

SPEC = """\
name: logs
source:
  type: files
  url: {src}
  format: {fmt}
schema:
  columns:
    id:   {{type: int64, nullable: false, checks: {{ge: 0}}}}
    name: {{type: string}}
sink:
  type: {sink}
  url: ./out/logs
limits:
  batch_rows: 1000
  max_invalid_ratio: 0.5
"""
STATE = Path(".pumphouse/logs/state.json")


def _project(folder: Path, src: str = "./in/", sink: str = "parquet", fmt: str = "csv") -> Path:
    (folder / "pumps").mkdir(parents=True, exist_ok=True)
    (folder / "in").mkdir(exist_ok=True)
    (folder / "pumps" / "logs.yaml").write_text(SPEC.format(src=src, sink=sink, fmt=fmt))
    return folder


def _csv(path: Path, ids: range) -> None:
    with path.open("a") as f:
        if not path.stat().st_size:
            f.write("id,name\n")
        f.writelines(f"{i},n{i}\n" for i in ids)


def _ndjson(path: Path, ids: range) -> None:
    with path.open("a") as f:
        f.writelines(json.dumps({"id": i, "name": f"n{i}"}) + "\n" for i in ids)


def _run(folder: Path) -> dict[str, Any]:
    from flows.pump import pump

    cwd = os.getcwd()
    os.chdir(folder)
    try:
        return dict(pump(spec_path="pumps/logs.yaml"))
    finally:
        os.chdir(cwd)


def _cli(folder: Path) -> dict[str, Any]:
    """`pumphouse run --json` (in this process: only its summary is asserted)."""
    proc = run_in_process("run", "pumps/logs.yaml", "--json", cwd=folder)
    assert proc.returncode == 0, proc.stderr
    return dict(json.loads([x for x in proc.stdout.splitlines() if x.startswith("{")][-1]))


def _ids(folder: Path, sink: str = "parquet") -> list[int]:
    if sink == "delta":
        table = DeltaTable(str(folder / "out/logs")).to_pyarrow_table()
        return sorted(table.column("id").to_pylist())
    glob = folder / "out/logs/data/**/*.parquet"
    return sorted(i for (i,) in duckdb.sql(f"SELECT id FROM read_parquet('{glob}')").fetchall())


def _rejected(folder: Path) -> list[tuple[str, int, str]]:
    glob = folder / "out/logs/rejected/*.parquet"
    rows = duckdb.sql(f"SELECT _source, _row, _raw FROM read_parquet('{glob}') ORDER BY _row")
    return [(os.path.basename(s), r, raw) for s, r, raw in rows.fetchall()]


def test_a_project_copied_elsewhere_or_reached_through_a_link_reads_nothing_again(
    tmp_path: Path,
) -> None:
    first = _project(tmp_path / "a")
    _csv(first / "in" / "one.csv", range(100))
    (first / "in" / "sub").mkdir()
    _csv(first / "in" / "sub" / "two.csv", range(100, 150))
    assert _run(first)["rows_written"] == 150
    # A checkout or `cp -r`: every file has a new modification time.
    copy = tmp_path / "b"
    shutil.copytree(first, copy, copy_function=shutil.copyfile)
    assert (copy / "in/one.csv").stat().st_mtime != (first / "in/one.csv").stat().st_mtime
    again = _run(copy)
    assert (again["files"], again["rows_read"], again["rows_written"]) == (0, 0, 0)
    assert again["warnings"] == []
    assert _ids(copy) == list(range(150))
    # The same folder under another path (a mount, a symlink) with the state it had.
    (tmp_path / "link").symlink_to(copy / "in")
    _project(copy, src=str(tmp_path / "link"))
    linked = _run(copy)
    assert (linked["files"], linked["rows_read"]) == (0, 0)
    # The copy's new mtimes are now known: a further run hashes nothing (and reads nothing).
    entries = json.loads((copy / STATE).read_text())["files"]
    assert sorted(entries) == ["one.csv", "sub/two.csv"]
    assert entries["one.csv"]["fp"].endswith(str((copy / "in/one.csv").stat().st_mtime))


@pytest.mark.parametrize(
    ("fmt", "sink"), [("csv", "parquet"), ("ndjson", "parquet"), ("csv", "delta")]
)
def test_lines_appended_to_a_read_file_land_once_with_their_line_numbers(
    tmp_path: Path, fmt: str, sink: str
) -> None:
    folder = _project(tmp_path, sink=sink, fmt=fmt)
    path, write, n = folder / "in" / f"log.{fmt}", (_csv if fmt == "csv" else _ndjson), 29_000
    write(path, range(n))
    assert _run(folder)["rows_written"] == n
    # A producer appends 10 lines, one of them invalid.
    write(path, range(n, n + 9))
    with path.open("a") as f:
        f.write("-5,bad\n" if fmt == "csv" else '{"id": -5, "name": "bad"}\n')
    second = _run(folder)
    assert (second["rows_read"], second["rows_written"], second["rows_rejected"]) == (10, 9, 1)
    assert second["warnings"] == []
    assert _ids(folder, sink) == list(range(n + 9))
    # The rejected row names its real line (a CSV's header is line 1).
    line = n + 10 + (1 if fmt == "csv" else 0)
    assert [(name, row) for name, row, _ in _rejected(folder)] == [(f"log.{fmt}", line)]
    assert path.read_text().splitlines()[line - 1] == _rejected(folder)[0][2]
    # Grown again: again only the new lines.
    write(path, range(n + 9, n + 11))
    assert _run(folder)["rows_written"] == 2
    assert _ids(folder, sink) == list(range(n + 11))


def test_a_file_rewritten_is_read_whole_again_with_a_warning(tmp_path: Path) -> None:
    folder = _project(tmp_path)
    _csv(folder / "in" / "a.csv", range(10))
    _csv(folder / "in" / "b.csv", range(100, 110))
    _cli(folder)
    # a.csv: an earlier row changed, then lines added; b.csv: same size, other bytes.
    (folder / "in" / "a.csv").write_text("id,name\n" + "".join(f"{i},m{i}\n" for i in range(12)))
    (folder / "in" / "b.csv").write_text(
        "id,name\n" + "".join(f"{i},x{i - 100}\n" for i in range(100, 110))
    )
    summary = _cli(folder)
    assert (summary["files"], summary["rows_read"], summary["rows_written"]) == (2, 22, 22)
    assert len(summary["warnings"]) == 2
    for name, warning in zip(["a.csv", "b.csv"], sorted(summary["warnings"]), strict=True):
        assert f"{folder / 'in' / name} changed since a run read it" in warning
        assert "an append sink may now hold rows of both versions" in warning
    assert _ids(folder) == sorted([*range(10), *range(12), *range(100, 110), *range(100, 110)])


def test_state_from_before_relative_paths_reads_nothing_again(tmp_path: Path) -> None:
    folder = _project(tmp_path)
    _csv(folder / "in" / "a.csv", range(10))
    _csv(folder / "in" / "b.csv", range(10, 20))
    _run(folder)
    # The state.json a run before this change wrote: files by absolute path, the fingerprint alone.
    state = json.loads((folder / STATE).read_text())
    old = {}
    for name in ("a.csv", "b.csv"):
        st = (folder / "in" / name).stat()
        old[str(folder / "in" / name)] = f"{st.st_size}:{st.st_mtime}"
    (folder / STATE).write_text(json.dumps({**state, "version": 1, "files": old}))
    _csv(folder / "in" / "b.csv", range(20, 21))  # grown since: read whole, with the warning
    again = _run(folder)
    assert (again["files"], again["rows_read"]) == (1, 11)
    assert [w.split(" changed since")[0] for w in again["warnings"]] == [str(folder / "in/b.csv")]
    # Converted: keyed by relative path, with what tells a later copy or append.
    entries = json.loads((folder / STATE).read_text())["files"]
    assert sorted(entries) == ["a.csv", "b.csv"]
    assert {"hash", "lines", "ends"} <= set(entries["a.csv"])
    _csv(folder / "in" / "a.csv", range(30, 33))
    grown = _run(folder)
    assert (grown["rows_read"], grown["warnings"]) == (3, [])
    assert _ids(folder) == sorted([*range(20), *range(10, 21), *range(30, 33)])


@pytest.mark.reliability(
    "crash",
    "kill -9 of the run that reads lines appended to a file already read: after planning, after staging the new lines, after loading them, after the state write; more lines appended before the next run",
    "the next run finishes the killed one from the offset its manifest froze and the run after reads the later lines: every line lands exactly once",
)
@pytest.mark.parametrize("fault", ["planned", "staged_file", "staged", "loaded", "state_written"])
def test_a_run_killed_while_reading_appended_lines_lands_them_once(
    tmp_path: Path, fault: str
) -> None:
    folder = _project(tmp_path)
    path = folder / "in" / "log.csv"
    _csv(path, range(1000))
    _cli(folder)
    _csv(path, range(1000, 1010))
    proc = run_cli("run", "pumps/logs.yaml", "--json", cwd=folder, env={"PUMPHOUSE_FAULT": fault})
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    manifest = json.loads((folder / ".pumphouse/logs/manifest.json").read_text())
    # The killed run froze where the new lines start.
    first = len("id,name\n") + sum(len(f"{i},n{i}\n") for i in range(1000))
    assert [(f["rel"], f["start"]) for f in manifest["inputs"]] == [("log.csv", first)]
    _csv(path, range(1010, 1015))  # the producer goes on
    resumed = _cli(folder)
    assert resumed["resumed"] and resumed["warnings"] == []
    _cli(folder)
    assert _ids(folder) == list(range(1015))


def test_a_file_is_read_up_to_its_listed_size_and_a_tail_from_its_start(tmp_path: Path) -> None:
    """Bytes a producer appends while the file is read wait for the next run; a grown
    CSV's tail is read under its header, its records numbered by their lines in the file."""
    from dataclasses import replace

    from schemas.spec import FilesSource, Limits
    from tasks.sources.files.listing import list_files
    from tasks.sources.files.read import read_batches

    path = tmp_path / "log.csv"
    _csv(path, range(3))
    source = FilesSource(type="files", url=str(tmp_path), format="csv")
    [listed] = list_files(source)
    _csv(path, range(3, 5))  # appended after listing

    def rows(f: Any) -> list[tuple[int, str]]:
        batches = list(read_batches(source, f, Limits()))
        return [(r["_row"], r["id"]) for b in batches for r in b.table.to_pylist()]

    assert rows(listed) == [(2, "0"), (3, "1"), (4, "2")]
    tail = replace(listed, start=listed.size, lines=4, size=path.stat().st_size)
    assert rows(tail) == [(5, "3"), (6, "4")]


@pytest.mark.parametrize("fmt", ["csv", "ndjson"])
@pytest.mark.reliability(
    "across runs",
    "lines appended to a file whose last line had no newline when it was read: whole "
    '(`3,b` then `\\n4,b\\n`), or still being written (`{"id": 3, "na` then `me"...}\\n`)',
    "a whole last line is not read again; a partial one is read again whole, with a warning, "
    "and the earlier lines are not doubled (they were read again whole before)",
)
def test_a_last_line_without_newline_is_read_again_only_if_it_was_partial(
    tmp_path: Path, fmt: str
) -> None:
    folder = _project(tmp_path, fmt=fmt)
    path = folder / "in" / f"log.{fmt}"

    def line(i: int) -> str:
        return f"{i},n{i}" if fmt == "csv" else json.dumps({"id": i, "name": f"n{i}"})

    head = "id,name\n" if fmt == "csv" else ""
    path.write_text(head + "\n".join(line(i) for i in range(3)))  # no newline at the end
    assert _run(folder)["rows_written"] == 3
    with path.open("a") as f:  # the last line was whole: the producer goes on with a newline
        f.write("\n" + line(3) + "\n")
    whole = _run(folder)
    assert (whole["rows_read"], whole["rows_written"], whole["warnings"]) == (1, 1, [])
    # A line still being written when the run reads it, then finished.
    text = line(5)
    with path.open("a") as f:
        f.write(line(4) + "\n" + text[: len(text) // 2])
    partial = _run(folder)
    assert (partial["rows_read"], partial["rows_written"]) == (2, 2 if fmt == "csv" else 1)
    with path.open("a") as f:
        f.write(text[len(text) // 2 :] + "\n" + line(6) + "\n")
    finished = _run(folder)
    assert (finished["rows_read"], finished["rows_written"]) == (2, 2)
    (warning,) = finished["warnings"]
    assert "its last line had no newline when a run read it" in warning
    # ndjson: the partial line went to rejected; csv: its first half parsed (`5,n`) and landed.
    assert _ids(folder) == sorted([*range(7), *([5] if fmt == "csv" else [])])


def _names(folder: Path) -> list[tuple[int, str]]:
    glob = folder / "out/logs/data/**/*.parquet"
    rows = duckdb.sql(f"SELECT id, name FROM read_parquet('{glob}') ORDER BY id")
    return [(int(i), str(n)) for i, n in rows.fetchall()]


def _lenient(folder: Path) -> Path:
    spec = folder / "pumps" / "logs.yaml"
    spec.write_text(spec.read_text().replace("max_invalid_ratio: 0.5", "max_invalid_ratio: 1"))
    return folder


@pytest.mark.reliability(
    "across runs",
    "a CSV file that ends inside a record's open quote (`2,\"bob\\n`), then grows with the "
    'rest of that record and more (`still bob"\\n3,c\\n4,d\\n`)',
    "the open record is rejected, and once the file grows it is read again from its first "
    "line and lands whole, with a warning; no row is made of the inside of its quote",
)
@pytest.mark.parametrize("rest", ["", ",x"])
def test_a_csv_record_whose_quote_is_open_at_the_end_is_read_again_when_the_file_grows(
    tmp_path: Path, rest: str
) -> None:
    folder = _lenient(_project(tmp_path))
    path = folder / "in" / "a.csv"
    path.write_text("id,name\n1,a\n")
    if not rest:  # the open record comes in lines appended to a file read before
        assert _cli(folder)["rows_written"] == 1
    with path.open("a") as f:
        f.write('2,"bob\n')
    first = _cli(folder)
    assert (first["status"], first["rows_written"], first["rows_rejected"]) == (
        "ok",
        1 if rest else 0,
        1,
    )
    with path.open("a") as f:
        f.write(f'still bob"{rest}\n3,c\n4,d\n')
    grown = _cli(folder)
    assert (grown["status"], grown["rows_read"]) == ("ok", 3)
    (warning,) = grown["warnings"]
    assert "a CSV record's quote was not closed yet" in warning
    rejected = sorted((row, raw) for _, row, raw in _rejected(folder))
    if rest:  # record 2 is whole but three fields wide: rejected as that, not cut into junk
        assert _names(folder) == [(1, "a"), (3, "c"), (4, "d")]
        assert rejected == [(3, '2,"bob'), (3, '2,"bob\nstill bob",x')]
    else:
        assert _names(folder) == [(1, "a"), (2, "bob\nstill bob"), (3, "c"), (4, "d")]
        assert rejected == [(3, '2,"bob')]
    assert _cli(folder)["rows_read"] == 0  # known now: nothing read again


def test_a_csv_record_whose_quote_is_never_closed_stays_rejected_once(tmp_path: Path) -> None:
    folder = _lenient(_project(tmp_path))
    path = folder / "in" / "a.csv"
    path.write_text('id,name\n1,a\n2,"bob\n')
    first = _cli(folder)
    assert (first["rows_written"], first["rows_rejected"]) == (1, 1)
    again = _cli(folder)  # the file never grows: the record is not read (nor rejected) again
    assert (again["status"], again["rows_read"], again["warnings"]) == ("ok", 0, [])
    assert [(row, raw) for _, row, raw in _rejected(folder)] == [(3, '2,"bob')]
    assert _names(folder) == [(1, "a")]
