"""Partition folder names: a row whose `COLUMN=VALUE` folder name is too long for a file name
is rejected at staging, before anything reaches the sink (a load would fail on it every run).

Both table sinks name a partition's folder the same way (DuckDB's COPY and delta-rs): a byte
of the value's UTF-8 stays as it is when it is an ASCII letter, digit or one of `-._~`, and
becomes `%XX` (three bytes) otherwise; NULL is `__HIVE_DEFAULT_PARTITION__`.
"""

from __future__ import annotations

from collections.abc import Mapping

from schemas.spec import DeltaSink, ParquetSink, Spec
from tasks.engine.db import ident, quote

NAME_MAX = 255  # bytes in a file name on most filesystems
NULL_NAME = "__HIVE_DEFAULT_PARTITION__"
KEPT = "._~-"  # with ASCII letters and digits: the bytes an encoded name keeps as they are
SHOWN = 20  # characters of a too long value the message shows


def encoded_length(text: str) -> int:
    """The bytes of `text` percent-encoded as a partition folder name."""
    return sum(1 if b < 128 and (chr(b).isalnum() or chr(b) in KEPT) else 3 for b in text.encode())


def errors_sql(spec: Spec, source_of: Mapping[str, str]) -> str | None:
    """A VARCHAR[] expression: the reasons a checked row's partition folders cannot be
    written, one per column of sink.partition_by (`source_of`: output name -> the checked
    column it comes from); None when the sink writes no partition folders or none is known."""
    sink = spec.sink
    if not isinstance(sink, ParquetSink | DeltaSink):
        return None
    reasons = [
        _reason_sql(name, source_of[name]) for name in sink.partition_by if name in source_of
    ]
    if not reasons:
        return None
    return f"list_filter([{', '.join(reasons)}], lambda e: e IS NOT NULL)"


def _reason_sql(name: str, column: str) -> str:
    value = f"CAST({ident(column)} AS VARCHAR)"
    size = (
        f"{encoded_length(name) + 1} + coalesce(3 * strlen({value}) - 2 * "
        f"length(regexp_replace({value}, {quote(f'[^A-Za-z0-9{KEPT}]')}, '', 'g')), {len(NULL_NAME)})"
    )
    shown = f"{quote(name + '=')} || left({value}, {SHOWN}) || '…'"
    return (
        f"CASE WHEN {size} > {NAME_MAX} THEN 'sink.partition_by: the folder name for ' || "
        f"{shown} || ' is ' || ({size}) || ' bytes, over the {NAME_MAX} a file name may have; "
        "partition by a column with shorter values, or leave such rows out with "
        "transform.filter' END"
    )


def with_errors_sql(relation: str, errors: str, columns: list[str], original: str) -> str:
    """`relation` with the reasons of `errors` (see errors_sql) added to each row's `_errors`;
    a row rejected so gets its values as text in `_original` (of type `original`), which the
    contract leaves NULL on the rows it passes."""
    fields = ", ".join(f"{ident(c)} := CAST({ident(c)} AS VARCHAR)" for c in columns)
    return (
        f"SELECT * EXCLUDE (__ph_why) REPLACE (list_concat(_errors, __ph_why) AS _errors, "
        f"CASE WHEN len(__ph_why) > 0 THEN coalesce(_original, "
        f"CAST(struct_pack({fields}) AS {original})) ELSE _original END AS _original) "
        f"FROM (SELECT *, {errors} AS __ph_why FROM {relation})"
    )
