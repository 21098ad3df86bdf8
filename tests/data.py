"""Seeded order data with the edge cases real exports have, and an oracle for what must land."""

from __future__ import annotations

import datetime as dt
import json
import random
from pathlib import Path
from typing import Any

SPEC = """\
name: {name}
source:
  type: files
  url: {src}
  glob: "{glob}"
schema:
  columns:
    order_id:   {{type: int64, nullable: false, checks: {{ge: 0}}}}
    customer:   {{type: string}}
    amount:     {{type: float64, checks: {{ge: 0}}}}
    status:     {{type: string, checks: {{isin: [open, paid, void]}}}}
    updated_at: {{type: timestamp}}
on_invalid: {on_invalid}
transform:
  filter: "status <> 'void'"
  incremental: {{cursor: updated_at}}
  dedup: {{key: [order_id], order_by: updated_at, keep: latest}}
sink:
  type: parquet
  url: {out}
  partition_by: [status]
limits:
  batch_rows: {batch_rows}
  max_invalid_ratio: {max_invalid_ratio}
"""


def spec_text(**kw: Any) -> str:
    values = {
        "name": "orders",
        "src": "./in/",
        "glob": "*.ndjson",
        "on_invalid": "quarantine",
        "out": "./out/orders",
        "batch_rows": 1000,
        "max_invalid_ratio": 0.2,
        **kw,
    }
    return SPEC.format(**values)


def write_orders(
    folder: Path, files: int, rows: int, seed: int = 1, start_id: int = 0, day: int = 0
) -> list[dict[str, Any]]:
    """NDJSON order files; returns every record written (invalid ones as dicts with '_bad')."""
    rnd = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    base = dt.datetime(2026, 3, 8, tzinfo=dt.UTC) + dt.timedelta(days=day)
    written: list[dict[str, Any]] = []
    next_id = start_id
    for f in range(files):
        lines = []
        for i in range(rows):
            if next_id > start_id and rnd.random() < 0.15:
                oid = rnd.randrange(start_id, next_id)  # a later version of an earlier order
            else:
                oid, next_id = next_id, next_id + 1
            ts = base + dt.timedelta(minutes=f * rows + i, seconds=rnd.choice([0, 0, 30]))
            rec: dict[str, Any] = {
                "order_id": oid,
                "customer": rnd.choice(["c1", "c2", None, "NA"]),
                "amount": round(rnd.uniform(0, 500), 2),
                "status": rnd.choice(["open", "paid", "paid", "void"]),
                "updated_at": ts.isoformat().replace("+00:00", "Z"),
            }
            roll = rnd.random()
            if roll < 0.02:
                rec["amount"] = -1.0
            elif roll < 0.03:
                rec["status"] = "lost"
            elif roll < 0.035:
                lines.append('{"order_id": ' + str(oid) + ', "amount": ')  # truncated line
                written.append({"_bad": True})
                continue
            lines.append(json.dumps(rec))
            written.append(rec)
        (folder / f"orders-{day:02d}-{f:03d}.ndjson").write_text(
            "\n".join(lines) + "\n", encoding="utf-8"
        )
    return written


def is_valid(rec: dict[str, Any]) -> bool:
    return (
        not rec.get("_bad")
        and rec["amount"] >= 0
        and rec["status"] in ("open", "paid", "void")
        and rec["order_id"] >= 0
    )


def expected(records: list[dict[str, Any]], hwm: str | None = None) -> dict[int, tuple[Any, ...]]:
    """What one clean run must land: valid, not void, newer than hwm, latest per order (last seen wins ties)."""
    out: dict[int, dict[str, Any]] = {}
    for rec in records:
        if not is_valid(rec) or rec["status"] == "void":
            continue
        if hwm is not None and rec["updated_at"] <= hwm:
            continue
        cur = out.get(rec["order_id"])
        if cur is None or rec["updated_at"] >= cur["updated_at"]:
            out[rec["order_id"]] = rec
    return {k: (r["customer"], r["amount"], r["status"], r["updated_at"]) for k, r in out.items()}


def landed(url: str) -> dict[int, tuple[Any, ...]]:
    """The sink's rows, read the way the contract tells analysts to."""
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    rows = con.sql(
        f"SELECT order_id, customer, amount, status, strftime(updated_at, '%Y-%m-%dT%H:%M:%SZ') "
        f"FROM read_parquet('{url}/data/**/*.parquet', hive_partitioning = true)"
    ).fetchall()
    out: dict[int, tuple[Any, ...]] = {}
    for oid, *rest in rows:
        assert oid not in out, f"order {oid} landed twice"
        out[oid] = tuple(rest)
    return out
