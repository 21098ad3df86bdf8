"""Merge rules as text: which table row a source row matches, and when it replaces it.

Per key the row with the greatest `dedup.order_by` wins (the smallest with `keep: first`),
against the table's row as within a run. A NULL order_by loses to any value, as it does in
dedup (NULLS LAST). A tie goes to the later arrival with `keep: latest` (the run's row
replaces the table's) and to the earlier with `keep: first` (the table's row stays); so a
replayed row changes nothing. Without a dedup (only sink.key; validate refuses a dedup
without order_by) every row ties: an upsert. The predicates are DataFusion SQL over the aliases `s` (source) and `t` (table).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from schemas.spec import Dedup, Spec
from tasks.engine.db import ident  # DataFusion quotes identifiers as DuckDB does
from tasks.transform.sql import dedup_sql

NEVER = "false"  # a matched row is never updated


def match_predicate(keys: Sequence[str], null_safe: bool) -> str:
    """Source row s matches table row t on every key; with `null_safe`, NULL matches NULL
    (as dedup groups NULL keys). Plain `=` when the source has no NULL key: the same rows
    match, and deltalake can prune table files by the source's key range."""
    op = "IS NOT DISTINCT FROM" if null_safe else "="
    return " AND ".join(f"t.{ident(k)} {op} s.{ident(k)}" for k in keys)


def update_predicate(dedup: Dedup | None, spelled: Callable[[str], str] = str) -> str | None:
    """When a matched source row replaces the table row: None = always, NEVER = never.
    `spelled` gives the table's spelling of a column name (it may differ in case)."""
    keep = dedup.keep if dedup else "latest"
    if dedup is None or dedup.order_by is None:
        return None if keep == "latest" else NEVER
    order_by = ident(spelled(dedup.order_by))
    s, t = f"s.{order_by}", f"t.{order_by}"
    if keep == "latest":
        return f"({s} >= {t} OR {t} IS NULL)"  # s NULL vs t not NULL: NULL -> no update
    return f"({s} < {t} OR ({t} IS NULL AND {s} IS NOT NULL))"


def one_row_per_key_sql(spec: Spec, relation: str) -> str | None:
    """The run's rows reduced to one per merge key (by the dedup order, then arrival), or None
    when they already are: dedup ran on a subset of the merge key."""
    dedup = spec.transform.dedup
    keys = spec.merge_key
    if dedup is not None and set(dedup.key) <= set(keys):
        return None
    rule = Dedup(
        key=tuple(keys),
        order_by=dedup.order_by if dedup else None,
        keep=dedup.keep if dedup else "latest",
    )
    return dedup_sql(rule, relation, ("_row",))  # the load's arrival key (tasks/run/load.py)
