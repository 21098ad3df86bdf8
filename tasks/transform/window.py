"""The incremental window: which rows are new, and which of those a run before loaded already.

A row is new when its cursor is at or above the committed mark minus `lookback` (`since`).
The rows of that window that earlier runs loaded are remembered by a hash of their values
(`Window.seen`), committed with the mark, so a row at the mark, or re-sent within the
lookback, is loaded once: `>` at the mark would lose rows that share its value.

State written before windows were kept has a mark but no window: its last run loaded the rows
at the mark with `>`, so that one run keeps `>` (`strict`), and commits a window for the next.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

from schemas.errors import SpecError
from tasks.engine.db import ident, quote

HASH = "__ph_seen"  # a row's value hash, while the load decides what it has seen


@dataclass(frozen=True)
class Window:
    """What one run reads against: the rows with cursor >= `since` are new, but for those
    whose hash is in `seen` (and with `strict`, those at or below `mark`)."""

    mark: str | None = None
    since: str | None = None
    lookback: float = 0.0
    strict: bool = False
    seen: tuple[tuple[str, str], ...] = field(default_factory=tuple)  # (cursor, value hash)
    seen_from: str | None = None  # what runs remember starts here


def since(mark: str | None, lookback: float) -> str | None:
    """The mark minus `lookback` seconds, as text the cursor's type reads; the mark itself
    when lookback is 0. A date mark goes back to the date of that instant."""
    if mark is None or not lookback:
        return mark
    try:
        instant = dt.datetime.fromisoformat(mark.strip())
    except ValueError:
        raise SpecError(
            f"transform.incremental.lookback: the mark {mark!r} is not a date or timestamp, so it "
            "cannot go back in time; set lookback: 0s, or use a timestamp column as the cursor"
        ) from None
    earlier = instant - dt.timedelta(seconds=lookback)
    if len(mark.strip()) == 10:  # a date
        return earlier.date().isoformat()
    return earlier.isoformat(sep=" ")


def widened(mark: str | None, since_: str | None, lookback: float, strict: bool) -> str | None:
    """The warning for a run whose window starts above mark - lookback: lookback was widened,
    and rows below what earlier runs remember may have been loaded, so they count as old."""
    if strict or mark is None or since_ == since(mark, lookback):
        return None
    return (
        f"transform.incremental.lookback ({lookback:g} s) reaches further back than earlier "
        f"runs remember the rows they loaded: this run keeps rows from {since_} on (older ones "
        "count as old, as they did before); the whole lookback applies once the mark has "
        "moved on by it"
    )


def later(a: str | None, b: str | None) -> str | None:
    """The later of two `since` bounds (texts of one cursor type); `a` when they cannot be
    compared. A lookback widened since the last run starts no lower than what runs remember."""
    if a is None or b is None or a == b:
        return a
    try:
        return b if _instant(b) > _instant(a) else a
    except ValueError:
        pass
    try:
        return b if float(b) > float(a) else a
    except ValueError:
        return a


def _instant(text: str) -> dt.datetime:
    value = dt.datetime.fromisoformat(text.strip())
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def value_hash(columns: Sequence[str]) -> str:
    """SQL for a row's hash over `columns` (not their order), NULLs left out: JSON-quoted
    name and text of each, so no two different rows write the same text."""
    parts = [
        f"CASE WHEN {ident(c)} IS NULL THEN '' ELSE to_json({quote(c)}) || ':' || "
        f"to_json(CAST({ident(c)} AS VARCHAR)) || ',' END"
        for c in sorted(columns)
    ]
    return f"md5(concat({', '.join(parts)}))" if parts else "md5('')"


def fresh_sql(
    window: Window,
    relation: str,
    cursor: str,
    cursor_type: str,
    columns: Sequence[str],
    low: str | None,
) -> str:
    """The relation's rows less those this window has seen, each with its value hash where it
    may matter (NULL elsewhere): a row can have been seen only at or below the highest cursor
    remembered (table `seen`), and the next run must know the rows at or above `low`."""
    c = ident(cursor)
    bounds = [f"{c} >= CAST({quote(low)} AS {cursor_type})" if low is not None else "false"]
    if window.seen:
        bounds.append(f"{c} <= (SELECT max(CAST(cursor AS {cursor_type})) FROM seen)")
    hashed = (
        f"SELECT *, CASE WHEN {' OR '.join(bounds)} THEN {value_hash(columns)} END AS {HASH} "
        f"FROM {relation}"
    )
    keep = [f"{HASH} IS NULL OR {HASH} NOT IN (SELECT hash FROM seen)"] if window.seen else []
    if window.strict and window.mark is not None:
        keep.append(f"{c} > CAST({quote(window.mark)} AS {cursor_type})")
    where = f" WHERE {' AND '.join(f'({k})' for k in keep)}" if keep else ""
    return f"SELECT * FROM ({hashed}){where}"


def remembered_sql(
    relation: str, cursor: str, cursor_type: str, low: str | None, low_before: str | None
) -> str:
    """(cursor, hash) of what the next runs must know they have seen: this run's rows
    (`relation`) at or above `low` (the `since` after this run), and those remembered before
    at or above `low_before` (lower while what max_rows_per_run left is read at the old mark)."""

    def at_least(column: str, bound: str | None) -> str:
        return f"{column} >= CAST({quote(bound)} AS {cursor_type})" if bound is not None else "true"

    return (
        f"SELECT DISTINCT CAST({ident(cursor)} AS VARCHAR) AS cursor, {HASH} AS hash "
        f"FROM {relation} WHERE {at_least(ident(cursor), low)} AND {HASH} IS NOT NULL "
        f"UNION SELECT cursor, hash FROM seen WHERE {at_least(f'CAST(cursor AS {cursor_type})', low_before)} "
        "ORDER BY cursor, hash"
    )
