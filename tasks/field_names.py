"""What a source field's name must be to become a column, for every way rows come in: the
contract's check of a batch (tasks/contract/batch.py) and the receiver's check of a body
(tasks/receive/bodies.py) apply the same rules from here.

A name becomes a column only if it is not empty, holds no control character (U+0000-U+001F,
U+007F: no sink takes one in a column's name as written) and, folded (`fold`), equals no
other field's: DuckDB's names ignore case, so two such fields would be one column and a value
would be lost. The names of pumphouse's own columns are tasks/internal's.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

CONTROL = re.compile("[\x00-\x1f\x7f]")


def fold(name: str) -> str:
    """The name as DuckDB compares it: two fields with the same fold are one column."""
    return name.lower()


def control(name: str) -> str | None:
    """The first control character in `name` as its JSON escape (`\\u0000`), or None."""
    found = CONTROL.search(name)
    return None if found is None else _json_escape(found)


def escaped(name: str) -> str:
    """`name` quoted, each control character written as its JSON escape."""
    return "'" + CONTROL.sub(_json_escape, name) + "'"


def _json_escape(found: re.Match[str]) -> str:
    return f"\\u{ord(found.group()):04x}"


def case_twins(names: Iterable[str]) -> tuple[str, str] | None:
    """The first two of `names` (in their order) that differ only in case, or None."""
    seen: dict[str, str] = {}
    for name in names:
        if (other := seen.setdefault(fold(name), name)) != name:
            return other, name
    return None
