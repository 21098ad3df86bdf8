"""Merge 50k changed rows into a 1M-row Delta table: pumphouse's delta sink next to a plain
`deltalake` merge of the same rows. `python -m bench.delta_merge [--rounds N]`.

Both start from a copy of the same 1M-row table and merge the same 50k rows (45k newer
versions of existing orders, 5k new orders). "plain deltalake" is the textbook upsert from an
Arrow table already in memory: `merge(t.order_id = s.order_id)`, update all, insert all.
"pumphouse sink" is `sink_delta.write_batches` on the load step's DuckDB table: Arrow out of
DuckDB, the schema check, latest-wins (`s.updated_at >= t.updated_at`), the app transaction
and the commit metadata. "pumphouse load" adds the load step before it: dedup over the run's
staged parquet, numbering into batches. Rounds alternate the order; medians are reported.
Prints the table and writes bench/results-delta.md.
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import deltalake
import duckdb
import pyarrow as pa
from deltalake import DeltaTable, write_deltalake

from schemas.loader import parse_spec
from schemas.spec import Spec
from tasks.engine.db import connect
from tasks.run.load import load_run
from tasks.sinks import delta as sink_delta
from tasks.sinks.load import Load

TABLE_ROWS = 1_000_000
CHANGED = 50_000
NEW = 5_000  # of the changed rows, this many are new orders
TARGET = 1.3
OUT = Path(__file__).with_name("results-delta.md")

SPEC = """\
name: bench_orders
source: {{type: files, url: ./in/, format: ndjson}}
schema:
  columns:
    order_id:   {{type: int64, nullable: false}}
    customer:   {{type: string}}
    amount:     {{type: float64}}
    status:     {{type: string}}
    updated_at: {{type: timestamp}}
transform:
  dedup: {{key: [order_id], order_by: updated_at, keep: latest}}
sink: {{type: delta, url: "{url}", mode: merge}}
limits: {{batch_rows: 100000}}
"""

COLUMNS = """
    (i * 7919 % {n})::BIGINT AS order_id,
    'c' || (hash(i, 3) % 50000)::VARCHAR AS customer,
    (hash(i, 4) % 50000) / 100.0 AS amount,
    ['open', 'paid', 'void'][(hash(i, 5) % 3)::INTEGER + 1] AS status,
    TIMESTAMPTZ '{base}' + to_seconds(i) AS updated_at
"""


def base_table(con: duckdb.DuckDBPyConnection) -> pa.Table:
    cols = COLUMNS.format(n=TABLE_ROWS, base="2026-03-08 00:00:00+00")
    return con.sql(f"SELECT {cols} FROM range({TABLE_ROWS}) t(i)").to_arrow_table()


def changes_sql() -> str:
    """45k newer versions of existing orders (spread over the table) and 5k new orders,
    with the lineage columns the load step keeps (`_source`, `_row`)."""
    return (
        f"SELECT (i * 20)::BIGINT AS order_id, 'u' || (i % 100)::VARCHAR AS customer, "
        "(i % 1000) / 10.0 AS amount, 'paid' AS status, "
        "TIMESTAMPTZ '2026-04-01 00:00:00+00' + to_seconds(i) AS updated_at, "
        f"'bench' AS _source, i AS _row FROM range({CHANGED - NEW}) t(i) "
        f"UNION ALL SELECT ({TABLE_ROWS} + i)::BIGINT, 'new', 1.0, 'open', "
        "TIMESTAMPTZ '2026-04-02 00:00:00+00', "
        f"'bench', {CHANGED} + i FROM range({NEW}) t(i)"
    )


def plain(url: str, changes: pa.Table) -> None:
    (
        DeltaTable(url)
        .merge(changes, "t.order_id = s.order_id", source_alias="s", target_alias="t")
        .when_matched_update_all()
        .when_not_matched_insert_all()
        .execute()
    )


def pumphouse_sink(spec: Spec, work: Path) -> Callable[[], None]:
    """The load step's table of numbered rows is made first (not timed); then the sink."""
    con = connect(temp_dir=str(work / "tmp"))
    con.execute(f"CREATE TEMP TABLE out AS SELECT *, 0 AS _batch FROM ({changes_sql()})")

    def run() -> None:
        sink_delta.write_batches(Load(con, "out", 1, spec, work / "run", "bench-run", 0))
        con.close()

    return run


def pumphouse_load(spec: Spec, work: Path) -> Callable[[], None]:
    def run() -> None:
        inputs = [{"url": "bench", "size": 0, "fingerprint": ""}]  # changes_sql's `_source`
        load_run(spec, str(work / "run"), "bench-run", None, 0, str(work / "state"), inputs=inputs)

    return run


def stage(work: Path) -> None:
    """The 50k rows as the load step finds them: a staged parquet file of valid rows."""
    (work / "run" / "valid").mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"COPY ({changes_sql()}) TO '{work / 'run' / 'valid' / '0.parquet'}'")
    con.close()


def check(url: str, want: pa.Table) -> None:
    """Every contender leaves the same rows: 1,005,000, 45,000 of them newer."""
    got = DeltaTable(url).to_pyarrow_table().sort_by("order_id")
    assert got.num_rows == TABLE_ROWS + NEW, got.num_rows
    assert got.select(want.column_names).equals(want), f"{url}: rows differ"


def measure(rounds: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {
        "plain deltalake": [],
        "pumphouse sink": [],
        "pumphouse load": [],
    }
    with tempfile.TemporaryDirectory(prefix="bench-delta-") as tmp:
        root = Path(tmp)
        con = duckdb.connect()
        con.execute("SET TimeZone = 'UTC'")
        write_deltalake(str(root / "base"), base_table(con))
        changes = con.sql(
            f"SELECT * EXCLUDE (_source, _row) FROM ({changes_sql()})"
        ).to_arrow_table()
        con.close()
        want: pa.Table | None = None
        for r in range(rounds):
            order = list(times) if r % 2 == 0 else list(reversed(times))
            for name in order:
                work = root / f"{name.replace(' ', '-')}-{r}"
                url = str(work / "table")
                shutil.copytree(root / "base", url)
                spec = parse_spec(SPEC.format(url=url))
                if name == "plain deltalake":
                    run: Callable[[], None] = functools.partial(plain, url, changes)
                elif name == "pumphouse sink":
                    run = pumphouse_sink(spec, work)
                else:
                    stage(work)  # only the load step reads staged parquet
                    run = pumphouse_load(spec, work)
                started = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - started)
                if want is None:
                    want = DeltaTable(url).to_pyarrow_table().sort_by("order_id")
                check(url, want)
                shutil.rmtree(work)
    return times


def report(times: dict[str, list[float]], rounds: int) -> str:
    base = statistics.median(times["plain deltalake"])
    lines = [
        f"# Delta merge: {CHANGED:,} changed rows into a {TABLE_ROWS:,}-row table",
        "",
        f"deltalake {deltalake.__version__}, duckdb {duckdb.__version__}, pyarrow {pa.__version__}, "
        f"Python {platform.python_version()}, {platform.machine()}, {rounds} rounds, median "
        f"(min-max); {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end "
        f"(other work on the machine shows as spread). Target: pumphouse sink <= {TARGET}x "
        "plain deltalake.",
        "",
        "| contender | seconds | range | vs plain |",
        "|---|---:|---:|---:|",
    ]
    for name, ts in times.items():
        med = statistics.median(ts)
        lines.append(f"| {name} | {med:.2f} | {min(ts):.2f}-{max(ts):.2f} | {med / base:.2f}x |")
    ratio = statistics.median(times["pumphouse sink"]) / base
    verdict = "met" if ratio <= TARGET else "NOT met"
    lines += ["", f"Target {verdict}: pumphouse sink is {ratio:.2f}x plain deltalake.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    text = report(measure(args.rounds), args.rounds)
    print(text)
    OUT.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
