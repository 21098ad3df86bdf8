"""The names of pumphouse's own columns, in one place: a source field named like one of them
would be taken for it (a `_keep_filter: false` field filtering every row, an Elasticsearch
`_source` object left out of the columns), so such a field is refused by name.

Layout: NAMES are the bookkeeping columns the steps add beside the data (some of them,
`_source`, `_row`, `_raw`, `_errors`, `_original`, are the rejected output's documented
columns); every name starting with PREFIX is a scratch column or table of a query. DuckDB
compares names without case, so `_SOURCE` is taken too.
"""

from __future__ import annotations

from collections.abc import Iterable

from schemas.errors import DataError

PREFIX = "__ph_"
NAMES = (
    "_source",
    "_row",
    "_raw",
    "_parse_error",
    "_errors",
    "_original",
    "_batch",
    "_keep_filter",
    "_keep_new",
)


def is_internal(name: str) -> bool:
    """Whether a field of this name would be taken for one of pumphouse's own columns."""
    low = name.lower()
    return low in NAMES or low.startswith(PREFIX)


def first_internal(names: Iterable[str]) -> str | None:
    """The first of `names` that is internal, or None."""
    return next((n for n in names if is_internal(n)), None)


def problem(name: str, noun: str = "field") -> str:
    """Why a field (or column) of this name cannot be read, and the fix."""
    return (
        f"{noun} {name!r} has the name of one of pumphouse's own columns "
        f"({', '.join(NAMES)}, and any name starting with {PREFIX!r}), so it would not land "
        "as data; rename it in the source (e.g. without the leading underscore)"
    )


class InternalField(DataError):
    """A record's field named like one of pumphouse's own columns; the message has its record
    but not its file, which the step staging the file puts first."""


def refuse(where: str, names: Iterable[str]) -> None:
    """DataError, `where` first, for the first internal name of `names`."""
    found = first_internal(names)
    if found is not None:
        raise DataError(f"{where}: {problem(found)}")
