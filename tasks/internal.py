"""The names of pumphouse's own columns, in one place: a source field named like one of them
would be taken for it (a `_keep_filter: false` field filtering every row, an Elasticsearch
`_source` object left out of the columns), so such a field is refused by name.

Layout: NAMES are the bookkeeping columns the steps add beside the data (some of them,
`_source`, `_row`, `_raw`, `_errors`, `_original`, are the rejected output's documented
columns), grouped below by the step that has them; every name starting with PREFIX is a
scratch column or table of a query. DuckDB compares names without case, so `_SOURCE` is
taken too. The other modules take these names from here.
"""

from __future__ import annotations

from collections.abc import Iterable

from schemas.errors import DataError
from tasks.field_names import fold

PREFIX = "__ph_"
SOURCE = "_source"  # the file (or URL) a row came from
ROW = "_row"  # its line or record number there
RAW = "_raw"  # a record's text (JSON) or a rejected record's
PARSE_ERROR = "_parse_error"  # why a record did not parse
ERRORS = "_errors"  # the checks a row fails
ORIGINAL = "_original"  # a rejected row's values as read
BATCH = "_batch"  # a row's load batch
KEEP_FILTER = "_keep_filter"  # scratch flags of the stage query
KEEP_NEW = "_keep_new"

LINEAGE = (SOURCE, ROW)  # kept through staging, so that dedup can break every tie
RECORD = (*LINEAGE, RAW, PARSE_ERROR)  # a read batch's columns, before its fields
CHECKED = (*RECORD, ERRORS, ORIGINAL)  # what the contract query adds beside the fields
STAGED = (*LINEAGE, RAW, ERRORS, ORIGINAL, BATCH)  # a staged table's own columns
LOADED = (BATCH, *LINEAGE)  # a load batch's own columns, left out of what a webhook gets
NAMES = (*CHECKED, BATCH, KEEP_FILTER, KEEP_NEW)


def is_internal(name: str) -> bool:
    """Whether a field of this name would be taken for one of pumphouse's own columns."""
    low = fold(name)
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
