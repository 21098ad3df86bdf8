"""The floor on clean data (no malformed line): DuckDB's own typed `read_ndjson` with the
contract's checks as plain SQL, the rejected rows written beside (their fields and file; no
line text or number), the valid rows filtered, deduped and written as zstd Parquet. No state, staging
or orchestration: the least the validated job costs when every line reads as its type.

Run with the project's Python (the same DuckDB as pumphouse): python bench/floor_clean.py DATA OUT
"""

from __future__ import annotations

import sys

import duckdb

COLUMNS = "{order_id: 'BIGINT', customer: 'VARCHAR', amount: 'DOUBLE', status: 'VARCHAR', updated_at: 'TIMESTAMPTZ'}"


def main(data: str, out: str) -> None:
    con = duckdb.connect()
    con.execute("SET preserve_insertion_order = false")
    con.execute(
        f"""CREATE TABLE checked AS
        SELECT *, order_id IS NULL OR order_id < 0 OR coalesce(amount < 0, false)
          OR coalesce(status NOT IN ('open', 'paid', 'void'), false) AS bad
        FROM read_ndjson('{data}/*.ndjson', columns = {COLUMNS}, filename = true)"""
    )
    con.execute(
        "COPY (SELECT * EXCLUDE (bad) FROM checked WHERE bad) TO 'rejected.parquet' "
        "(FORMAT parquet, COMPRESSION zstd)"
    )
    con.execute(
        f"""COPY (
          SELECT order_id, customer, amount, status, updated_at FROM checked
          WHERE NOT bad AND status <> 'void'
          QUALIFY row_number() OVER (PARTITION BY order_id ORDER BY updated_at DESC NULLS LAST) = 1
        ) TO '{out}' (FORMAT parquet, COMPRESSION zstd)"""
    )
    rows = con.sql(f"SELECT count(*) FROM '{out}'").fetchall()[0][0]
    rejected = con.sql("SELECT count(*) FROM 'rejected.parquet'").fetchall()[0][0]
    print(f"rows_written={rows} rows_rejected={rejected}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
