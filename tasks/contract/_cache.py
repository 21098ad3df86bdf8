"""Compiled contract queries and preflight answers kept on disk between runs, for inline
schemas: a run of an unchanged spec then never imports pandera and ibis (over a second of a
small run's start-up). An entry is named by a hash of everything it depends on: the schema,
what it is asked for, all of tasks/ and schemas/ and the versions of pandera, ibis and
DuckDB.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

from schemas.spec import Spec


def schema_key(spec: Spec) -> str | None:
    """What an inline schema's cache entries are named by; None for `module:Class` (its file
    may change under the same name) and without a schema."""
    s = spec.schema_
    if s is None or isinstance(s, str):
        return None
    key = s.model_dump_json(by_alias=True)
    # source.timezone changes the queries too; the default leaves the key as it was.
    zone = spec.source.timezone
    return key if zone == "UTC" else f"{key}\0timezone={zone}"


def get(key: str, what: Any) -> Any:
    """The cached answer to `what` for the schema `key`, or None."""
    path = _path(key, what)
    if path is None:
        return None
    try:
        return json.loads(path.read_text())["value"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def put(key: str, what: Any, value: Any) -> None:
    """Keep an answer; a cache that cannot be written is no error (it is only a cache)."""
    path = _path(key, what)
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "w") as f:
            json.dump({"value": value}, f)
        os.replace(tmp, path)  # whole or not at all, whoever writes at the same time
    except OSError:
        return


def _path(key: str, what: Any) -> Path | None:
    root = _root()
    if root is None:
        return None
    digest = hashlib.sha256(json.dumps([_code(), key, what]).encode()).hexdigest()
    return root / digest[:2] / f"{digest}.json"


def _root() -> Path | None:
    if os.environ.get("PUMPHOUSE_CACHE_DIR") == "off":
        return None
    if os.environ.get("PUMPHOUSE_CACHE_DIR"):
        return Path(os.environ["PUMPHOUSE_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "pumphouse" / "contracts"


@cache
def _code() -> str:
    """The fingerprint of the code and libraries the answers come from: all of tasks/ and
    schemas/ (a few ms to read), so no change to the code can leave an answer stale."""
    h = hashlib.sha256()
    root = Path(__file__).resolve().parents[2]
    for path in sorted([*root.glob("tasks/**/*.py"), *root.glob("schemas/*.py")]):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    # The installed versions, from the dist-info folders' names (importlib.metadata costs
    # 80 ms to import, more than the rest of this).
    for entry in sys.path:
        for dist in ("pandera", "ibis_framework", "duckdb"):
            for found in sorted(Path(entry or ".").glob(f"{dist}-*.dist-info")):
                h.update(found.name.encode())
    return h.hexdigest()
