"""`pumphouse init`: a spec written from a sample of the source, each proposal commented
with its reason, and a short table of what was inferred."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from rich import box
from rich.table import Table

from schemas.errors import PumpError, UsageError
from tasks.infer import propose
from tasks.infer.profile import Column
from tasks.infer.sample import Inferred, infer, pump_name

PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
RESERVED = {"true", "false", "null", "yes", "no", "on", "off", "y", "n"}


def write_spec(
    source: str, name: str | None, rows: int, force: bool, headers: list[str]
) -> tuple[Path, Inferred]:
    """Sample `source`, write `pumps/NAME.yaml` (not over one unless `force`)."""
    if name is not None and not re.fullmatch(r"[a-z][a-z0-9_]{0,62}", name):
        raise UsageError(f"--name {name!r}: a pump name is [a-z][a-z0-9_]*, e.g. orders_eu")
    path = Path("pumps") / f"{name or pump_name(source)}.yaml"
    if path.exists() and not force:
        raise UsageError(f"{path} exists; keep it, or pass --force to write over it")
    try:
        found = infer(source, rows, headers, name)
    except UsageError:
        raise
    except PumpError as e:  # the API refused us, a bucket cannot be read: bad input here
        raise UsageError(e.message) from None
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(spec_text(found, path))
    return path, found


def spec_text(found: Inferred, path: Path) -> str:
    """The spec as YAML, with a comment for each proposal saying why."""
    lines = [
        f"# Written by `pumphouse init` from {found.sampled} of {_q(_shown(found))}.",
        "# Types, NULLs, checks, key and cursor come from that sample only: keep what holds",
        f"# for all of your data, delete the rest. Then: pumphouse validate {path}",
        "",
        f"name: {found.name}",
        "",
        "source:",
        *_mapping(found.source, "  "),
    ]
    if any(c.type == "timestamp" and "TIME ZONE" not in c.read_as.upper() for c in found.columns):
        lines.append(
            "  # timestamps without an offset are read as UTC; if they are local time, set"
        )
        lines.append("  # timezone: to their IANA zone (e.g. Europe/Berlin)")
    for var, what in found.env.items():
        lines.append(f"  # set {var} to {what} before validate and run (never written here)")
    lines += ["", "schema:", "  columns:"]
    lines.append("    # nullable: false where the sample holds no empty value")
    if found.rows < propose.MEANINGFUL and any(c.values for c in found.columns):
        lines.append(
            f"    # no isin checks: {found.rows:,} sampled rows are too few to tell "
            f"(they need {propose.MEANINGFUL})"
        )
    for c in found.columns:
        lines += [f"    {line}" for line in _column(c, found)]
    lines += _transform(found)
    lines += ["", "sink:", "  type: parquet", f"  url: ./warehouse/{found.name}", ""]
    return "\n".join(lines)


def _shown(found: Inferred) -> str:
    return str(found.source["url"])


def _column(c: Column, found: Inferred) -> list[str]:
    if c.type is None:
        return [f"# {c.name}: {c.read_as.lower()[:60]}, kept as read (not declared)"]
    if c.name.startswith("_"):  # the spec reserves these names for pumphouse's own columns
        return [f"# {c.name}: {c.type}, kept as read (a name starting with _ is not declared)"]
    out, checks = [], []
    if found.key and c.name == found.key.value:
        out.append(f"# key: {found.key.why}")
    if (p := propose.isin(c, found.rows)) is not None:
        out.append(f"# isin: {p.why}")
        checks.append(f"isin: [{', '.join(_q(v) for v in c.values)}]")
    if (p := propose.non_negative(c)) is not None:
        out.append(f"# ge: 0: {p.why}")
        checks.append("ge: 0")
    parts = [f"type: {_q(c.type) if '(' in c.type else c.type}"]
    if c.format:
        parts.append(f"format: {_q(c.format)}")
    if c.nulls == 0:
        parts.append("nullable: false")
    if checks:
        parts.append("checks: {" + ", ".join(checks) + "}")
    out.append(f"{_key(c.name)}: {{{', '.join(parts)}}}")
    return out


def _transform(found: Inferred) -> list[str]:
    if not found.key and not found.cursor:
        return ["", "# no transform: no column is unique and never empty in the sample"]
    out = ["", "transform:"]
    if found.cursor:
        out.append(f"  # {found.cursor.value}: {found.cursor.why}")
        out.append(f"  incremental: {{cursor: {found.cursor.value}}}")
    if found.key:
        order = found.cursor.value if found.cursor else found.key.value
        out.append(f"  # {found.key.value}: {found.key.why}; one row per key in a run")
        if not found.cursor:
            out.append("  # no last-change column: rows of one key keep the one read last")
        out.append(f"  dedup: {{key: [{found.key.value}], order_by: {order}}}")
    return out


def _mapping(data: dict[str, Any], indent: str) -> list[str]:
    out = []
    for k, v in data.items():
        if isinstance(v, dict):
            inner = ", ".join(f"{_key(ik)}: {_value(iv)}" for ik, iv in v.items())
            out.append(f"{indent}{_key(k)}: {{{inner}}}")
        else:
            out.append(f"{indent}{_key(k)}: {_value(v)}")
    return out


def _value(v: Any) -> str:
    if isinstance(v, str) and PLAIN.match(v) and v.lower() not in RESERVED:
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    return _q(str(v))


def _key(name: str) -> str:
    return name if PLAIN.match(name) and name.lower() not in RESERVED else _q(name)


def _q(text: str) -> str:
    """A YAML double-quoted scalar (JSON's string syntax is one)."""
    return json.dumps(text, ensure_ascii=False)


def summary(found: Inferred, path: Path, plain: bool = False) -> Table:
    """What was inferred, one row per column; `plain`: no box drawing (for a pipe)."""
    title = f"{path}: {found.sampled}, {found.seconds:.1f}s"
    table = Table(title=title, title_justify="left", box=None if plain else box.HEAVY_HEAD)
    for heading in ("column", "type", "format", "empty", "distinct", "proposed"):
        table.add_column(heading)
    for c in found.columns:
        said = []
        if found.key and c.name == found.key.value:
            said.append("key")
        if found.cursor and c.name == found.cursor.value:
            said.append("cursor")
        if propose.isin(c, found.rows):
            said.append("isin")
        if propose.non_negative(c):
            said.append("ge 0")
        table.add_row(
            c.name, c.type or f"as read ({c.read_as.lower()[:30]})", c.format or "-",
            str(c.nulls), str(c.distinct), ", ".join(said) or "-",
        )  # fmt: skip
    return table
