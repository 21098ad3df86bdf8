"""Spec problems located by key path, and how they become one SpecError of `file:line key: message` lines."""

from __future__ import annotations

from collections.abc import Iterable

from schemas.errors import SpecError

Loc = tuple[str | int, ...]  # a key path in the spec: ("sink", "partition_by", 0)
Problem = tuple[Loc, str]  # (key path, message)


def spec_error(file: str, lines: dict[Loc, int], problems: Iterable[Problem]) -> SpecError:
    """One SpecError for all problems, in the order of the file's lines."""
    unique = located(file, lines, problems)
    return SpecError(unique[0] if len(unique) == 1 else f"{len(unique)} problems in {file}", unique)


def located(file: str, lines: dict[Loc, int], problems: Iterable[Problem]) -> list[str]:
    """`file:line key.path: message` lines, in the order of the file's lines, each once."""
    found = sorted(((_line_of(lines, loc), loc, msg) for loc, msg in problems), key=_by_line)
    out = []
    for line, loc, msg in found:
        where = f"{file}:{line}" if line else file
        key = f" {_dotted(loc)}:" if loc else ":"
        out.append(f"{where}{key} {msg}")
    return list(dict.fromkeys(out))


def _by_line(item: tuple[int | None, Loc, str]) -> int:
    return item[0] or 0


def _line_of(lines: dict[Loc, int], loc: Loc) -> int | None:
    # A key missing at the top level has no line of its own; the whole file is meant.
    for n in range(len(loc), 0, -1):
        if loc[:n] in lines:
            return lines[loc[:n]]
    return None


def _dotted(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out
