"""Dedup and incremental as SQL, checked against a plain-Python oracle on real DuckDB."""

from __future__ import annotations

import functools

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.spec import Dedup, Incremental, Transform
from tasks.engine.db import Connection, connect
from tasks.transform.sql import batch_sql, dedup_sql, numbered_sql, projection
from tests.conftest import examples

row = st.tuples(
    st.integers(0, 5),  # key
    st.one_of(st.none(), st.integers(0, 3)),  # order_by, with ties and NULLs
    st.sampled_from(["a.ndjson", "b.ndjson"]),  # _source
)


@functools.cache
def _engine(threads: int | None = None) -> Connection:
    """One DuckDB per thread count for every example of a property: opening one costs more
    than an example's query. An example replaces the tables it registers or makes."""
    return connect(threads=threads)


def _table(rows: list[tuple[int, int | None, str]]) -> pa.Table:
    return pa.table(
        {
            "k": [r[0] for r in rows],
            "v": [r[1] for r in rows],
            "_source": [r[2] for r in rows],
            "_row": list(range(1, len(rows) + 1)),
        }
    )


def _oracle(
    rows: list[tuple[int, int | None, str]], keep: str
) -> set[tuple[int, int | None, str, int]]:
    best: dict[int, tuple[int, int | None, str, int]] = {}
    for i, (k, v, s) in enumerate(rows, start=1):
        cand = (k, v, s, i)
        cur = best.get(k)
        if cur is None:
            best[k] = cand
            continue

        def rank(r: tuple[int, int | None, str, int]) -> tuple[int, int, str, int]:
            # NULL order_by values lose in both directions (NULLS LAST).
            if keep == "latest":
                return (r[1] is not None, r[1] if r[1] is not None else 0, r[2], r[3])
            return (r[1] is not None, -(r[1] or 0), _neg(r[2]), -r[3])

        if rank(cand) > rank(cur):
            best[k] = cand
    return set(best.values())


def _neg(s: str) -> str:
    return "".join(chr(0x10FFFF - ord(c)) for c in s)


def _dedup(
    rows: list[tuple[int, int | None, str]], keep: str, threads: int = 2
) -> set[tuple[int, int | None, str, int]]:
    con = _engine(threads)
    con.register("t", _table(rows))
    result = con.sql(dedup_sql(Dedup(key=("k",), order_by="v", keep=keep), "t")).fetchall()  # type: ignore[arg-type]
    con.unregister("t")
    return {(k, v, s, r) for k, v, s, r in result}


@settings(max_examples=examples(150), deadline=None)
@given(st.lists(row, max_size=60), st.sampled_from(["latest", "first"]))
def test_dedup_keeps_one_row_per_key_the_oracles_choice(
    rows: list[tuple[int, int | None, str]], keep: str
) -> None:
    got = _dedup(rows, keep)
    assert got == _oracle(rows, keep)
    assert len({r[0] for r in got}) == len(got) == len({r[0] for r in rows})


@settings(max_examples=examples(50), deadline=None)
@given(st.lists(row, max_size=60))
@pytest.mark.reliability(
    "concurrency",
    "dedup on 1 and 2 DuckDB threads, twice (Hypothesis)",
    "the same rows every time: ties broken on every key column",
)
def test_dedup_is_idempotent_and_independent_of_threads(
    rows: list[tuple[int, int | None, str]],
) -> None:
    once = _dedup(rows, "latest", threads=1)
    assert once == _dedup(rows, "latest", threads=2)
    con = _engine()
    con.register("t", _table(rows))
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE once AS {dedup_sql(Dedup(key=('k',), order_by='v'), 't')}"
    )
    twice = con.sql(dedup_sql(Dedup(key=("k",), order_by="v"), "once")).fetchall()
    con.execute("DROP TABLE once")
    con.unregister("t")
    assert set(twice) == once


def test_dedup_ties_are_broken_by_arrival_order() -> None:
    rows = [(1, 5, "a.ndjson"), (1, 5, "a.ndjson"), (1, 5, "b.ndjson"), (1, 5, "a.ndjson")]
    assert _dedup(rows, "latest") == {(1, 5, "b.ndjson", 3)}
    assert _dedup(rows, "first") == {(1, 5, "a.ndjson", 1)}


def test_dedup_on_a_composite_key() -> None:
    con = connect()
    con.register(
        "t",
        pa.table(
            {
                "a": [1, 1, 1],
                "b": ["x", "x", "y"],
                "v": [1, 2, 1],
                "_source": ["f"] * 3,
                "_row": [1, 2, 3],
            }
        ),
    )
    got = con.sql(dedup_sql(Dedup(key=("a", "b"), order_by="v"), "t") + " ORDER BY b").fetchall()
    assert got == [(1, "x", 2, "f", 2), (1, "y", 1, "f", 3)]


@settings(max_examples=examples(100), deadline=None)
@given(
    st.lists(st.one_of(st.none(), st.integers(0, 20)), max_size=50),
    st.one_of(st.none(), st.integers(0, 20)),
)
@pytest.mark.reliability(
    "crash",
    "incremental over arbitrary cursors and marks (Hypothesis)",
    "exactly the rows at or above the run's lower bound are kept; none lost",
)
def test_incremental_keeps_exactly_the_rows_at_or_above_the_mark(
    cursors: list[int | None], hwm: int | None
) -> None:
    con = _engine()
    con.register(
        "checked",
        pa.table(
            {
                "c": pa.array(cursors, pa.int64()),
                "_source": ["f"] * len(cursors),
                "_row": list(range(len(cursors))),
                "_errors": [[]] * len(cursors),
            }
        ),
    )
    t = Transform(incremental=Incremental(cursor="c"))
    sql = batch_sql(t, "checked", ["c"], None if hwm is None else str(hwm), "BIGINT")
    kept = sorted(r[0] for r in con.sql(f"SELECT c FROM ({sql}) WHERE _keep_new").fetchall())
    con.unregister("checked")
    expected = sorted(c for c in cursors if c is not None and (hwm is None or c >= hwm))
    assert kept == expected


def test_filter_null_counts_as_false_and_rename_applies_first() -> None:
    con = connect()
    con.register(
        "checked",
        pa.table(
            {
                "status": ["paid", None, "void"],
                "n": [1, 2, 3],
                "_source": ["f"] * 3,
                "_row": [1, 2, 3],
                "_errors": [[], [], ["x"]],
            }
        ),
    )
    t = Transform(select=("status", "n"), rename={"status": "state"}, filter="state <> 'void'")
    assert projection(t, ["status", "n", "other"]) == [("status", "state"), ("n", "n")]
    got = con.sql(
        f"SELECT state, n, _keep_filter FROM ({batch_sql(t, 'checked', ['status', 'n'], None, None)}) ORDER BY n"
    ).fetchall()
    # the invalid row (_errors not empty) never reaches the transforms
    assert got == [("paid", 1, True), (None, 2, False)]


def test_numbered_rows_fill_batches_in_a_stable_order() -> None:
    con = connect()
    con.register(
        "t",
        pa.table({"p": ["b", "a", "a", "b", "a"], "_source": ["f"] * 5, "_row": [1, 2, 3, 4, 5]}),
    )
    got = con.sql(
        f"SELECT p, _row, _batch FROM ({numbered_sql('SELECT * FROM t', 2, ['p'])}) ORDER BY _batch, p, _row"
    ).fetchall()
    assert got == [("a", 2, 0), ("a", 3, 0), ("a", 5, 1), ("b", 1, 1), ("b", 4, 2)]
