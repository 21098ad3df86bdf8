"""A source sampled and read: its `source` section, its columns and what is proposed, for
`pumphouse init` to write as a spec."""

from __future__ import annotations

import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from schemas.errors import UsageError
from tasks.engine import db
from tasks.infer import api, files, propose
from tasks.infer.profile import Column, profile
from tasks.io.http import SENSITIVE

MEMORY = 512 * 2**20  # DuckDB's limit while sampling


@dataclass
class Inferred:
    """What `init` writes: the source section, the columns, the proposals and their reasons."""

    name: str
    source: dict[str, Any]
    columns: list[Column]
    rows: int
    sampled: str  # "the first 120 rows of 1 of 1 files", for the header and the output
    seconds: float
    env: dict[str, str] = field(default_factory=dict)  # variable → what to set it to
    key: propose.Proposal | None = None
    cursor: propose.Proposal | None = None


def infer(source: str, rows: int, headers: list[str], name: str | None = None) -> Inferred:
    """Sample `source` (an http(s) URL: a JSON API; else a folder, file, glob or bucket URL)."""
    started = time.monotonic()
    pump = name or pump_name(source)
    con = db.connect(MEMORY)
    with tempfile.TemporaryDirectory(prefix="pumphouse-init-") as tmp:
        if re.match(r"(?i)https?://", source):
            got = api.sample_api(source, _header_values(headers), rows)
            if not got.records:
                raise UsageError(
                    f"{api.safe_url(source)}: the first page has no records to infer from"
                )
            path = str(Path(tmp) / "records.ndjson")
            api.write_ndjson(got.records, path)
            read = files.sample_files(con, path, rows)
            spec_source, env = _placeholders(got.source, headers, pump)
            what = f"the first {read.rows:,} records of {got.pages} page(s)"
        else:
            read = files.sample_files(con, source, rows)
            spec_source, env = read.source, {}
            what = (
                f"the first {read.rows:,} rows of {read.files_read} of {read.files_listed} file(s)"
            )
        if read.rows == 0:
            raise UsageError(f"{source}: the first files hold no rows to infer from")
        columns = profile(con, files.TABLE, read.formats)
    con.close()
    return Inferred(
        pump, spec_source, columns, read.rows, what, time.monotonic() - started, env,
        propose.key(columns, read.rows), propose.cursor(columns),
    )  # fmt: skip


def pump_name(source: str) -> str:
    """A pump name from the source's last path segment (no glob, extension or query)."""
    path = re.sub(r"[?#].*$", "", re.sub(r"(?i)^[a-z][a-z0-9+.-]*://[^/]*", "", source))
    segments = [
        s for s in path.split("/") if s and s not in (".", "..") and not re.search(r"[*?\[]", s)
    ]
    last = segments[-1].split(".")[0] if segments else ""
    name = re.sub(r"[^a-z0-9_]+", "_", last.lower()).strip("_")
    name = re.sub(r"^[^a-z]+", "", name)
    return (name or "pump")[:63]


def _header_values(headers: list[str]) -> dict[str, str]:
    out = {}
    for h in headers:
        key, sep, value = h.partition(":")
        if not sep or not key.strip():
            raise UsageError(f"--header {h.split(':')[0]!r}: write it as 'Name: value'")
        out[key.strip()] = value.strip()
    return out


def _placeholders(
    source: dict[str, Any], headers: list[str], pump: str
) -> tuple[dict[str, Any], dict[str, str]]:
    """The source with `${env:...}` for each secret header and query value, and what to set
    each variable to (described, never the secret itself)."""
    env: dict[str, str] = {}
    written: dict[str, str] = {}
    for key, value in _header_values(headers).items():
        if not SENSITIVE.search(key):
            written[key] = value
            continue
        var = f"{pump.upper()}_TOKEN" if key.lower() == "authorization" else _var(pump, key)
        scheme = value.split(" ", 1)[0] if " " in value else ""
        written[key] = f"{scheme} ${{env:{var}}}".strip()
        env[var] = f"the {key} header's value" + (f" after '{scheme} '" if scheme else "")
    out = dict(source)
    if written:
        out["headers"] = written
    params = dict(source.get("params") or {})
    for key in params:
        if SENSITIVE.search(key):
            var = _var(pump, key)
            params[key] = f"${{env:{var}}}"
            env[var] = f"the {key} query parameter"
    if params:
        out["params"] = params
    return out, env


def _var(pump: str, key: str) -> str:
    return f"{pump.upper()}_" + re.sub(r"[^A-Z0-9]+", "_", key.upper()).strip("_")
