"""How a date or timestamp column's text is read when the spec says how: a strftime `format`,
`epoch_s` / `epoch_ms`, and `source.timezone` for times that carry no offset. SQL only.

The rule for local times: one that occurs twice (clocks go back) is the earlier instant; one
that never occurs (clocks go forward) is rejected. DuckDB's own conversion does neither, so
both offsets around the time are tried and the ones that give the time back are kept.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from tasks.engine import db as _duckdb
from tasks.engine.db import Connection, quote

if TYPE_CHECKING:
    from tasks.contract.columns import Column

# Microseconds per unit of an epoch format.
EPOCH = {"epoch_s": 1_000_000, "epoch_ms": 1_000}
# A time followed by an offset or a zone name: `10:00Z`, `10:00:00.5+02:00`, `10:00 PST`.
_OFFSET = r":\d{2}(\.\d+)?\s*([+-]\d|[A-Za-z])"
_ZONE_CODE = re.compile(r"(?<!%)(%%)*%[zZ]")
# Where a value is too long to show whole in a message.
_SHOWN = 60


def applies(c: Column) -> bool:
    """True if the column's value is read here rather than by a cast."""
    return c.format is not None or (c.zone != "UTC" and c.dtype.is_timestamp())


def value(text: str, c: Column) -> str:
    """SQL of the column's value from `text` (VARCHAR); NULL where it does not read."""
    if c.dtype.is_date():
        if c.format in EPOCH:
            return f"CAST(timezone({quote(c.zone)}, {_instant(text, c)}) AS DATE)"
        return f"CAST({_parsed(text, c)} AS DATE)"
    instant = _instant(text, c)
    return instant if c.sql == "TIMESTAMPTZ" else f"CAST({instant} AS {c.sql})"


def flags(c: Column, text: str, typed: str) -> list[tuple[str, str, str]]:
    """The column's failures as (label, condition, message SQL), given its text and typed
    value as SQL: a value that does not read, and a local time the zone skips."""
    label = f"{c.name}: dtype('{'date' if c.dtype.is_date() else 'timestamp'}')"
    read = _read(text, c)
    unread = f"{text} IS NOT NULL AND NOT {read}"
    if c.format is None:  # ISO text: refused as DuckDB's cast refuses it
        kind = "date" if c.dtype.is_date() else "timestamp"
        out = [(label, unread, _message(f"{c.name}: \x00 is not {kind}", text))]
    else:
        said = f"{c.name}: \x00 does not match format {c.format!r}"
        out = [(label, unread, _message(said, text))]
    if _local(c):
        said = (
            f"{c.name}: \x00 does not exist in {c.zone}: the clocks skip it (daylight saving); "
            "give the value an offset or correct it"
        )
        out.append(
            (
                label,
                f"{text} IS NOT NULL AND {read} AND {typed} IS NULL",
                _message(said, text),
            )
        )
    return out


def _local(c: Column) -> bool:
    """True if some of the column's values are local times in a zone with daylight saving."""
    if not c.dtype.is_timestamp() or c.zone == "UTC" or c.format in EPOCH:
        return False
    return c.format is None or not _ZONE_CODE.search(c.format)


def _read(text: str, c: Column) -> str:
    """SQL: TRUE where the text reads as the format says (a local time the zone skips does)."""
    if not _local(c):
        return f"({_instant(text, c)} IS NOT NULL)"
    parsed = f"{_parsed(text, c)} IS NOT NULL"
    if c.format is not None:
        return f"({parsed})"
    zoned = f"TRY_CAST({text} AS TIMESTAMPTZ) IS NOT NULL"  # an offset it carries must read too
    return f"(CASE WHEN {_has_offset(text)} THEN {zoned} ELSE {parsed} END)"


def _has_offset(text: str) -> str:
    return f"regexp_matches({text}, {quote(_OFFSET)})"


def _parsed(text: str, c: Column) -> str:
    """SQL: the text as the format reads it (TIMESTAMP, or TIMESTAMPTZ for %z / %Z), NULL where
    it does not match; ISO text as TIMESTAMP (an offset it carries is not applied here)."""
    if c.format is None:
        return f"TRY_CAST({text} AS TIMESTAMP)"
    return f"try_strptime({text}, {quote(c.format)})"


def _instant(text: str, c: Column) -> str:
    """SQL: the value as a TIMESTAMPTZ (the session is UTC)."""
    if c.format in EPOCH:
        micros = f"TRY_CAST(TRY_CAST({text} AS DECIMAL(38,6)) * {EPOCH[c.format]} AS BIGINT)"
        # make_timestamp fails, rather than giving NULL, beyond the years 290308 BC-AD.
        bounded = f"CASE WHEN abs({micros}) < 9000000000000000000 THEN {micros} END"
        return f"CAST(make_timestamp({bounded}) AS TIMESTAMPTZ)"
    if not _local(c):
        return f"CAST({_parsed(text, c)} AS TIMESTAMPTZ)"
    local = _utc_of(_parsed(text, c), c.zone)
    if c.format is not None:
        return local
    return f"CASE WHEN {_has_offset(text)} THEN TRY_CAST({text} AS TIMESTAMPTZ) ELSE {local} END"


def _utc_of(local: str, zone: str) -> str:
    """SQL: the instant at which clocks in `zone` show `local` (a TIMESTAMP): the earlier of
    two, NULL if none. The zone's offsets a day before and after are the only candidates."""
    z = quote(zone)
    u = "CAST(__ph_lt AS TIMESTAMPTZ)"  # the local time read as if it were UTC

    def offset(at: str) -> str:
        return f"(timezone({z}, {at}) - CAST({at} AS TIMESTAMP))"

    tried = f"[{u} - {offset(f'{u} - INTERVAL 1 DAY')}, {u} - {offset(f'{u} + INTERVAL 1 DAY')}]"
    kept = f"list_filter({tried}, lambda __ph_lc: timezone({z}, __ph_lc) = __ph_lt)"
    return f"list_transform([{local}], lambda __ph_lt: list_min({kept}))[1]"


def _message(said: str, text: str) -> str:
    """SQL of `said` with NUL replaced by the value, quoted and cut to fit a line."""
    before, after = said.split("\x00")
    shown = f"CASE WHEN length({text}) > {_SHOWN} THEN left({text}, {_SHOWN - 3}) || '...' ELSE {text} END"
    return f"{quote(before)} || '''' || {shown} || '''' || {quote(after)}"


def format_problem(con: Connection, fmt: str) -> str | None:
    """Why DuckDB cannot use a strftime format (it says so only when a query runs), or None."""
    if fmt in EPOCH:
        return None
    try:
        _duckdb.execute(con, f"SELECT try_strptime('', {quote(fmt)})")
    except _duckdb.Error as e:
        said = str(e).strip().splitlines()[0].removeprefix("Invalid Input Error: ")
        return (
            f"format {fmt!r} cannot be read: {said}; "
            "see https://duckdb.org/docs/stable/sql/functions/dateformat for the codes"
        )
    return None
