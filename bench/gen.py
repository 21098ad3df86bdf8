"""The bench's input: seeded NDJSON order exports, generated inside DuckDB (10M rows in seconds).

Row i of `rows` (0-based, in file order) is an order update at BASE + i seconds. About 5% are later
versions of an earlier row's order; about 0.1% are invalid, in four ways: a truncated line, a
negative amount, an unknown status, an order_id that is not a number. A quarter are 'void'.
Everything is a function of (seed, i): the same seed gives the same bytes. `clean` data has no
malformed line (no truncated line, no order_id that is not a number): its invalid rows are the
negative amounts and unknown statuses, which only the checks reject.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import duckdb

BASE = "2026-03-08 00:00:00"
STATUS = "['open', 'paid', 'paid', 'void']"


def _rand(seed: int, salt: int) -> str:
    """A deterministic pseudo-random UBIGINT per row (DuckDB's hash of seed, salt and i)."""
    return f"hash(i, {int(seed)}, {int(salt)})"


def lines_sql(rows: int, seed: int, clean: bool = False) -> str:
    """SQL for (i, line): the NDJSON text of every row."""
    kinds = "1 + ({r7} % 2)" if clean else "{r7} % 4"  # clean: only the kinds the checks reject
    r = lambda salt: _rand(seed, salt)  # noqa: E731
    return f"""
    WITH g AS (
      SELECT i,
        CASE WHEN i > 1000 AND {r(1)} % 100 < 5 THEN {r(2)} % i ELSE i END AS order_id,
        'c' || ({r(3)} % 50000)::VARCHAR AS customer,
        ({r(4)} % 50000) / 100.0 AS amount,
        {STATUS}[({r(5)} % 4)::INTEGER + 1] AS status,
        strftime(TIMESTAMP '{BASE}' + to_seconds(i), '%Y-%m-%dT%H:%M:%SZ') AS updated_at,
        CASE WHEN {r(6)} % 1000 = 0 THEN ({kinds.format(r7=r(7))})::INTEGER ELSE -1 END AS bad
      FROM range({int(rows)}) t(i)
    )
    SELECT i, CASE bad
      WHEN 0 THEN '{{"order_id": ' || order_id || ', "amount": '
      ELSE '{{"order_id": ' || CASE bad WHEN 3 THEN '"x' || order_id || '"' ELSE order_id::VARCHAR END
        || ', "customer": "' || customer
        || '", "amount": ' || CASE bad WHEN 1 THEN '-1.0' ELSE amount::VARCHAR END
        || ', "status": "' || CASE bad WHEN 2 THEN 'lost' ELSE status END
        || '", "updated_at": "' || updated_at || '"}}'
      END AS line
    FROM g
    """


def generate(
    folder: Path, rows: int, files: int, seed: int = 42, clean: bool = False
) -> list[Path]:
    """Write `rows` rows as `files` NDJSON files of (nearly) equal size into `folder`, once:
    a folder already holding this exact data set (its stamp file says so) is left as it is."""
    stamp = folder / "_dataset.json"
    want = {"rows": rows, "files": files, "seed": seed, "version": 1}
    if clean:
        want["clean"] = True
    paths = [folder / f"orders-{k:03d}.ndjson" for k in range(files)]
    if stamp.exists() and json.loads(stamp.read_text()) == want and all(p.exists() for p in paths):
        return paths
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.ndjson"):
        old.unlink()
    con = duckdb.connect()
    con.execute("SET preserve_insertion_order = true")
    con.execute("SET enable_progress_bar = false")
    con.execute(f"CREATE TEMP VIEW lines AS {lines_sql(rows, seed, clean)}")
    per = -(-rows // files)
    for k, path in enumerate(paths):
        tmp = f"{path}.tmp"
        con.execute(
            f"COPY (SELECT line FROM lines WHERE i >= {k * per} AND i < {(k + 1) * per} ORDER BY i) "
            f"TO '{tmp}' (FORMAT csv, HEADER false, QUOTE '', ESCAPE '', DELIMITER '\x01')"
        )
        os.replace(tmp, path)
    con.close()
    stamp.write_text(json.dumps(want))
    return paths
