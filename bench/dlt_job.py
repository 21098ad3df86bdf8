"""The job with dlt: its filesystem source reads the files, a transformer parses the lines
(skipping the unreadable ones and those whose order_id is no number: the merge key cannot be
NULL) and drops void orders, and the duckdb destination merges on order_id, keeping the
latest version (dedup_sort on updated_at).

Run with the bench environment's Python: python bench/dlt_job.py DATA WORKDIR
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dlt
from dlt.sources.filesystem import FileItemDict, filesystem


@dlt.transformer(name="orders")
def orders(items: Iterator[FileItemDict]) -> Iterator[list[dict[str, Any]]]:
    for item in items:
        with item.open() as f:
            page: list[dict[str, Any]] = []
            for line in f:
                try:
                    row = json.loads(line)
                except ValueError:
                    continue
                # The merge key must be a number: dlt refuses a NULL primary key.
                if isinstance(row.get("order_id"), int) and row.get("status") != "void":
                    page.append(row)
                if len(page) >= 10_000:
                    yield page
                    page = []
            if page:
                yield page


def main(data: str, work: str) -> None:
    root = Path(work)
    files = filesystem(bucket_url=Path(data).resolve().as_uri(), file_glob="*.ndjson")
    resource = (files | orders).with_name("orders")
    resource.apply_hints(
        write_disposition={"disposition": "merge", "strategy": "delete-insert"},
        primary_key="order_id",
        columns={
            "order_id": {"data_type": "bigint", "nullable": False},
            "updated_at": {"data_type": "timestamp", "dedup_sort": "desc"},
        },
    )
    pipeline = dlt.pipeline(
        pipeline_name="bench_orders",
        pipelines_dir=str(root / "pipelines"),
        destination=dlt.destinations.duckdb(str(root / "orders.duckdb")),
        dataset_name="bench",
    )
    pipeline.run(resource)
    with pipeline.sql_client() as client:
        rows = client.execute_sql("SELECT count(*) FROM orders")[0][0]
    print(f"rows_written={rows}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
