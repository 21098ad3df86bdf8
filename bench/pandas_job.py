"""The job as a data engineer writes it by hand with pandas and pandera: parse each line,
validate the frame with a pandera schema (lazily, collecting every failure), drop the failed
rows, filter, keep the latest version of each order, write zstd Parquet.

Run with the bench environment's Python: python bench/pandas_job.py DATA OUT
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pandera.pandas as pa

SCHEMA = pa.DataFrameSchema(
    {
        "order_id": pa.Column("int64", pa.Check.ge(0), nullable=False),
        "customer": pa.Column(str, nullable=True),
        "amount": pa.Column("float64", pa.Check.ge(0), nullable=True),
        "status": pa.Column(str, pa.Check.isin(["open", "paid", "void"]), nullable=True),
        "updated_at": pa.Column("datetime64[ns, UTC]", nullable=True),
    },
    coerce=True,
)


def read(path: Path) -> tuple[list[dict[str, object]], int]:
    rows, bad = [], 0
    with path.open(encoding="utf-8") as f:
        for line in f:
            try:
                rows.append(json.loads(line))
            except ValueError:
                bad += 1
    return rows, bad


def main(data: str, out: str) -> None:
    frames, unreadable = [], 0
    for path in sorted(Path(data).glob("*.ndjson")):
        rows, bad = read(path)
        frames.append(pd.DataFrame.from_records(rows))
        unreadable += bad
    df = pd.concat(frames, ignore_index=True)
    try:
        df = SCHEMA.validate(df, lazy=True)
    except pa.errors.SchemaErrors as e:
        failed = e.failure_cases["index"].dropna().unique()
        df = SCHEMA.validate(df.drop(index=failed))
    df = df[df["status"] != "void"]
    df = df.sort_values("updated_at").drop_duplicates("order_id", keep="last")
    df.to_parquet(out, compression="zstd", index=False)
    print(f"rows_written={len(df)} unreadable={unreadable}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
