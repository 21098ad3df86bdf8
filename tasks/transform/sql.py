"""The bounded transforms as SQL: select, rename, filter, incremental per batch; dedup per run.

Pure functions from spec sections to SQL text; the engine runs them elsewhere.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from schemas.errors import DataError
from schemas.spec import Dedup, Spec, Transform
from tasks.engine.db import ident, quote
from tasks.internal import LINEAGE


def projection(transform: Transform, columns: Sequence[str]) -> list[tuple[str, str]]:
    """(input column, output name) pairs after `select` and `rename`."""
    chosen = list(transform.select) if transform.select is not None else list(columns)
    return [(c, transform.rename.get(c, c)) for c in chosen]


def missing_column(key: str, names: Sequence[str], have: Sequence[str]) -> None:
    """DataError for the first of `names` (named by the spec at `key`) not in `have`."""
    for name in names:
        if name not in have:
            raise DataError(
                f"{key}: no column {name!r} in the data; columns here: {', '.join(have)}. "
                "Fix the name, or declare the column in schema.columns"
            )


def run_columns_known(spec: Spec, have: Sequence[str]) -> None:
    """The columns the run's rows need together (dedup, partitions, the sink's key) are
    among `have`, the staged columns of all its batches."""
    t, sink = spec.transform, spec.sink
    missing_column("transform.dedup.key", list(t.dedup.key) if t.dedup else [], have)
    order_by = [t.dedup.order_by] if t.dedup and t.dedup.order_by else []
    missing_column("transform.dedup.order_by", order_by, have)
    missing_column("sink.partition_by", list(getattr(sink, "partition_by", None) or []), have)
    missing_column("sink.key", list(getattr(sink, "key", None) or []), have)


def batch_sql(
    transform: Transform,
    relation: str,
    columns: Sequence[str],
    hwm: str | None,
    cursor_type: str | None,
) -> str:
    """Valid rows of a checked batch, projected, with two flags: passed the filter, is new.

    A row is new when its cursor is at or above `hwm` (the run's `since`, tasks/transform/window.py); the
    load leaves out those loaded before. A NULL filter result counts as false (SQL's WHERE
    semantics); a NULL cursor is never new.
    """
    keep_filter = f"coalesce(({transform.filter}), false)" if transform.filter else "true"
    if transform.incremental and hwm is not None and cursor_type:
        cursor = ident(transform.incremental.cursor)
        keep_new = f"coalesce({cursor} >= CAST({quote(hwm)} AS {cursor_type}), false)"
    elif transform.incremental:
        keep_new = f"{ident(transform.incremental.cursor)} IS NOT NULL"
    else:
        keep_new = "true"
    return (
        f"SELECT *, {keep_filter} AS _keep_filter, {keep_new} AS _keep_new FROM "
        f"{_valid_rows(transform, relation, columns)}"
    )


def valid_rows_sql(transform: Transform, relation: str, columns: Sequence[str]) -> str:
    """The valid rows of a checked batch, projected, with `_source` and `_row`: what the
    filter sees (to find the row it fails on)."""
    return _valid_rows(transform, relation, columns)


def _valid_rows(transform: Transform, relation: str, columns: Sequence[str]) -> str:
    pairs = projection(transform, columns)
    cols = ", ".join(f"{ident(src)} AS {ident(dst)}" for src, dst in pairs)
    return f"(SELECT {cols}, _source, _row FROM {relation} WHERE len(_errors) = 0)"


def dedup_sql(dedup: Dedup | None, relation: str, arrival: Sequence[str] = LINEAGE) -> str:
    """One row per key, the latest (or first) by order_by, ties broken by arrival order.

    Arrival order is `arrival`, columns unique per row (so the result does not depend on how
    DuckDB scans in parallel): the run's load passes `__ph_key` (see keyed_sql), by file
    modification time, then URL, then record number.
    """
    if dedup is None:
        return f"SELECT * FROM {relation}"
    desc = dedup.keep == "latest"
    direction = "DESC" if desc else "ASC"
    order = [f"{c} {direction}" for c in arrival]
    if dedup.order_by:
        order.insert(0, f"{ident(dedup.order_by)} {direction} NULLS LAST")
    keys = ", ".join(ident(k) for k in dedup.key)
    return (
        f"SELECT * FROM {relation} "
        f"QUALIFY row_number() OVER (PARTITION BY {keys} ORDER BY {', '.join(order)}) = 1"
    )


def numbered_sql(
    relation: str, batch_rows: int, partition_by: Sequence[str], arrival: Sequence[str] = LINEAGE
) -> str:
    """Rows numbered into load batches of `batch_rows`, in a deterministic order."""
    order = [*(ident(p) for p in partition_by), *arrival]
    return (
        f"SELECT *, (row_number() OVER (ORDER BY {', '.join(order)}) - 1) // {int(batch_rows)} AS _batch "
        f"FROM ({relation})"
    )


ARRIVAL_KEY = "__ph_key"


def keyed_sql(relation: str, ranks: Mapping[str, int] | None) -> str:
    """The relation's rows with `__ph_key`, one BIGINT in arrival order: the rank of the row's
    file (`ranks`: `_source` -> rank, see arrival_ranks) times 2^40, plus the record number;
    with `ranks` None, the record number alone (an http source numbers the records of all
    its pages in the order they came). A number sorts and compares far faster than a file
    name (records per file stay below 2^40). Every `_source` must be in `ranks`.

    The key stands in for `_row`, and with `ranks` for `_source` too: dedup then sorts and
    keeps no URL per row; lineage_sql puts both back."""
    if ranks is None:
        return f"SELECT * EXCLUDE (_row), _row AS {ARRIVAL_KEY} FROM {relation}"
    pairs = ", ".join(f"({quote(s)}, {int(r)})" for s, r in ranks.items()) or "(NULL, 0)"
    return (
        f"SELECT r.* EXCLUDE (_source, _row), (f.__ph_file::BIGINT << 40) + r._row AS "
        f"{ARRIVAL_KEY} FROM {relation} AS r JOIN (VALUES {pairs}) AS f(_source, __ph_file) "
        "USING (_source)"
    )


def lineage_sql(ranks: Mapping[str, int] | None) -> str:
    """Select-list items for rows of keyed_sql: `_source` (with `ranks`: the file the key's
    rank names) and `_row`, the arrival key itself."""
    row = f"{ARRIVAL_KEY} AS _row"
    if ranks is None:
        return row
    files = " ".join(f"WHEN {int(r)} THEN {quote(s)}" for s, r in ranks.items())
    source = f"CASE {ARRIVAL_KEY} >> 40 {files} END" if files else "CAST(NULL AS VARCHAR)"
    return f"{source} AS _source, {row}"


def arrival_ranks(files: Mapping[str, float]) -> dict[str, int]:
    """Each file's rank in arrival order (CONTRACT §2), from file URL -> modification time:
    the later file by modification time, then by URL, ranks higher."""
    order = sorted(files, key=lambda url: (files[url], url))
    return {url: rank for rank, url in enumerate(order)}


def batch_of(starts: Sequence[int]) -> str:
    """SQL for a row's load batch from `__ph_key`, given each batch's first key in order:
    a balanced CASE tree, a few comparisons per row."""

    def tree(lo: int, hi: int) -> str:
        if hi - lo == 1:
            return str(lo)
        mid = (lo + hi) // 2
        return (
            f"CASE WHEN {ARRIVAL_KEY} < {int(starts[mid])} "
            f"THEN {tree(lo, mid)} ELSE {tree(mid, hi)} END"
        )

    return tree(0, len(starts)) if starts else "0"


def starts_sql(relation: str, batch_rows: int) -> str:
    """The first `__ph_key` of each load batch of `batch_rows` rows in arrival order."""
    return (
        f"SELECT {ARRIVAL_KEY} FROM (SELECT {ARRIVAL_KEY}, "
        f"row_number() OVER (ORDER BY {ARRIVAL_KEY}) - 1 AS n FROM {relation}) "
        f"WHERE n % {int(batch_rows)} = 0 ORDER BY {ARRIVAL_KEY}"
    )
