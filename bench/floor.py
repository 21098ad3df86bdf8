"""The floor: one hand-written DuckDB statement doing the job's filter and dedup straight into
zstd Parquet. No validation, no lineage, no state, no orchestration: what the engine alone costs.

Run with the project's Python (the same DuckDB as pumphouse): python bench/floor.py DATA OUT
"""

from __future__ import annotations

import sys

import duckdb

COLUMNS = "{order_id: 'BIGINT', customer: 'VARCHAR', amount: 'DOUBLE', status: 'VARCHAR', updated_at: 'TIMESTAMP'}"


def main(data: str, out: str) -> None:
    con = duckdb.connect()
    con.execute(
        f"""COPY (
          SELECT * FROM read_ndjson('{data}/*.ndjson', columns = {COLUMNS}, ignore_errors = true)
          WHERE status <> 'void'
          QUALIFY row_number() OVER (PARTITION BY order_id ORDER BY updated_at DESC) = 1
        ) TO '{out}' (FORMAT parquet, COMPRESSION zstd)"""
    )
    rows = con.sql(f"SELECT count(*) FROM '{out}'").fetchall()[0][0]
    print(f"rows_written={rows}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
