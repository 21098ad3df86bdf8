"""The floor with the contract's checks: hand-written DuckDB doing what pumphouse's contract
does on this job, and no more. Each line keeps its file and number; the 5 fields are read as
text and cast as pumphouse casts them (an int64 is a whole number, a NULL passes a check);
rejected rows are written with their line, text and a flag; valid rows are filtered, deduped
(ties broken by file and line) and written as zstd Parquet. No state, no staging, no
orchestration, no extra-field handling: the least the engine spends on the validated job.

Run with the project's Python (the same DuckDB as pumphouse): python bench/floor_checked.py DATA OUT
"""

from __future__ import annotations

import glob
import sys

import duckdb

FIELDS = "['/order_id', '/customer', '/amount', '/status', '/updated_at']"


def _lines(data: str) -> str:
    files = sorted(glob.glob(f"{data}/*.ndjson"))
    return " UNION ALL ".join(
        f"SELECT {i} AS f, ordinality AS line, l FROM read_csv('{path}', columns = {{'l': 'VARCHAR'}}, "
        "delim = '\\x01', quote = '', escape = '', header = false, auto_detect = false) WITH ORDINALITY"
        for i, path in enumerate(files)
    )


def main(data: str, out: str) -> None:
    con = duckdb.connect()
    con.execute("SET preserve_insertion_order = false")
    con.execute(
        f"""CREATE TABLE checked AS
        WITH x AS (SELECT f, line, l, try(json_extract_string(l, {FIELDS})) AS s FROM ({_lines(data)})),
        t AS (
          SELECT f, line, l, s,
            CASE WHEN TRY_CAST(s[1] AS DOUBLE) = TRY_CAST(s[1] AS BIGINT)
                 THEN TRY_CAST(s[1] AS BIGINT) END AS order_id,
            s[2] AS customer, TRY_CAST(s[3] AS DOUBLE) AS amount, s[4] AS status,
            TRY_CAST(s[5] AS TIMESTAMPTZ) AS updated_at
          FROM x)
        SELECT *, s IS NULL OR order_id IS NULL OR order_id < 0
          OR (s[3] IS NOT NULL AND amount IS NULL) OR coalesce(amount < 0, false)
          OR coalesce(status NOT IN ('open', 'paid', 'void'), false)
          OR (s[5] IS NOT NULL AND updated_at IS NULL) AS bad
        FROM t"""
    )
    con.execute(
        "COPY (SELECT f, line, l FROM checked WHERE bad) TO 'rejected.parquet' "
        "(FORMAT parquet, COMPRESSION zstd)"
    )
    con.execute(
        f"""COPY (
          SELECT order_id, customer, amount, status, updated_at FROM checked
          WHERE NOT bad AND status <> 'void'
          QUALIFY row_number() OVER (
            PARTITION BY order_id ORDER BY updated_at DESC NULLS LAST, f DESC, line DESC) = 1
        ) TO '{out}' (FORMAT parquet, COMPRESSION zstd)"""
    )
    rows = con.sql(f"SELECT count(*) FROM '{out}'").fetchall()[0][0]
    rejected = con.sql("SELECT count(*) FROM 'rejected.parquet'").fetchall()[0][0]
    print(f"rows_written={rows} rows_rejected={rejected}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
