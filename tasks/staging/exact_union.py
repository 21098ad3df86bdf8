"""The staged batches of a run read as one table: a column typed BIGINT in one batch and
DOUBLE in another becomes DOUBLE, which cannot keep an integer beyond 2^53."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from schemas.errors import SinkRefused

EXACT = 2**53  # every integer up to this is a double's own


def refuse_rounding(paths: list[str]) -> None:
    """SinkRefused (the run is dropped, nothing written) if the batches in `paths` give a
    column an integer (or decimal) type in some and a floating one in others, and the
    integers or decimals are not all a double's own."""
    types: dict[str, dict[str, pa.DataType]] = {}
    for path in paths:
        for f in pq.read_schema(path):
            types.setdefault(f.name, {})[path] = f.type
    for name, by_path in types.items():
        kinds = set(by_path.values())
        if not any(pa.types.is_floating(t) for t in kinds):
            continue
        exact = [p for p, t in by_path.items() if pa.types.is_integer(t) or pa.types.is_decimal(t)]
        if not all(_in_double(p, name, by_path[p]) for p in exact):
            raise SinkRefused(
                f"column {name!r} holds numbers a double cannot keep (integers beyond 2^53 or "
                f"exact decimals) in some batches and floating-point numbers in others; "
                "read together they would be rounded. Declare the column in schema.columns "
                "(type decimal or string) so that every value is read as written"
            )


def _in_double(path: str, name: str, t: pa.DataType) -> bool:
    """Every value of column `name` in the file at `path` is an integer a double keeps."""
    if pa.types.is_decimal(t):
        return False  # inferred only where a double did not keep a value
    meta = pq.ParquetFile(path).metadata
    for g in range(meta.num_row_groups):
        group = meta.row_group(g)
        j = next(j for j in range(group.num_columns) if group.column(j).path_in_schema == name)
        stats = group.column(j).statistics
        if stats is None or not stats.has_min_max:
            if stats is not None and stats.null_count == group.num_rows:
                continue
            return False
        if max(abs(int(stats.min)), abs(int(stats.max))) > EXACT:
            return False
    return True
