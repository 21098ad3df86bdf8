"""Records of a parquet file over limits.max_record_bytes, found before the data is read.

A row group's metadata bounds its records: a fixed-width value has its width, a variable one
is at most its column chunk's uncompressed bytes (a dictionary holds each value at least
once). Only a row group whose bound is over the limit is scanned, a few rows at a time and
only its variable-width columns, for each record's size.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tasks.sources.records import too_big


def oversize(pf: pq.ParquetFile, group: int, limit: int) -> dict[int, int]:
    """{row within the row group: its bytes} of the records over `limit` bytes."""
    meta = pf.metadata.row_group(group)
    chunks: dict[str, int] = {}
    for j in range(meta.num_columns):
        column = meta.column(j)
        top = column.path_in_schema.split(".")[0]
        chunks[top] = chunks.get(top, 0) + column.total_uncompressed_size
    fixed, varying = 0, []
    for f in pf.schema_arrow:
        width = _width(f.type)
        if width is None:
            varying.append(f.name)
        else:
            fixed += width
    if not varying or fixed + sum(chunks.get(n, 0) for n in varying) <= limit:
        return {}
    found: dict[int, int] = {}
    row = 0
    step = read_step(pf, group, limit)
    for rb in pf.iter_batches(batch_size=step, row_groups=[group], columns=varying):
        sizes = np.full(rb.num_rows, fixed, dtype=np.int64)
        for column in rb.columns:
            sizes += _row_bytes(column)
        for i in np.flatnonzero(sizes > limit):
            found[row + int(i)] = int(sizes[i])
        row += rb.num_rows
    return found


def read_step(pf: pq.ParquetFile, group: int, limit: int) -> int:
    """Rows to read of a row group at a time to hold about `limit` bytes on average (one huge
    value is then held alone, not with a batch of others)."""
    meta = pf.metadata.row_group(group)
    size = max(1, meta.total_byte_size)
    return max(1, min(65536, limit * meta.num_rows // size))


def blanked(
    rb: pa.RecordBatch, big: dict[int, int], first: int, limit: int
) -> tuple[list[pa.Array], pa.Array]:
    """The batch's columns with the values of the oversize records (rows `first`.. of its
    row group) made NULL, and each row's parse error."""
    n = rb.num_rows
    errors: list[str | None] = [None] * n
    for row, size in big.items():
        if first <= row < first + n:
            errors[row - first] = too_big(size, limit)
    import pyarrow.compute as pc  # built at import: loaded by the runs that use it

    mask = pa.array([e is not None for e in errors])
    columns = [pc.if_else(mask, pa.scalar(None, c.type), c) for c in rb.columns]
    return columns, pa.array(errors, pa.string())


def _width(t: pa.DataType) -> int | None:
    """Bytes of one value of a fixed-width type; None for variable-width (strings, lists)."""
    if pa.types.is_boolean(t):
        return 1
    try:
        return max(1, t.bit_width // 8)
    except ValueError:
        return None


def _row_bytes(arr: pa.Array) -> np.ndarray:
    """Each row's bytes in `arr`: strings' lengths, fixed widths, nested values summed."""
    n = len(arr)
    t = arr.type
    width = _width(t)
    if width is not None:
        return np.full(n, width, dtype=np.int64)
    if pa.types.is_struct(t):
        total = np.zeros(n, dtype=np.int64)
        for child in arr.flatten():
            total += _row_bytes(child)
        return total
    if pa.types.is_map(t):
        arr = arr.cast(pa.list_(pa.struct([t.key_field, t.item_field])))
        t = arr.type
    import pyarrow.compute as pc  # built at import: loaded by the runs that use it

    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        values = arr.flatten()
        parents = pc.list_parent_indices(arr).to_numpy(zero_copy_only=False)
        return np.bincount(parents, weights=_row_bytes(values), minlength=n).astype(np.int64)
    # strings, binary and anything else measured as its bytes
    lengths = pc.binary_length(arr.cast(pa.large_binary()) if not _binary(t) else arr)
    return pc.fill_null(lengths, 0).to_numpy(zero_copy_only=False).astype(np.int64)


def _binary(t: pa.DataType) -> bool:
    return (
        pa.types.is_string(t)
        or pa.types.is_large_string(t)
        or pa.types.is_binary(t)
        or pa.types.is_large_binary(t)
        or pa.types.is_fixed_size_binary(t)
    )
