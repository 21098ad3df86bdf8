"""Where a pump's state files live: a local folder (atomic renames) or an fsspec URL such as
`s3://bucket/pumphouse` (each file one PUT, which S3 makes atomic).

Both offer the same few operations on small files by name; the state store decides what goes in them.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

from fsspec.core import split_protocol, url_to_fs

from schemas import secrets
from schemas.errors import UsageError
from schemas.loader import resolve_mapping
from tasks.io.storage import remember_env_credentials, storage_errors

OPTIONS_VAR = "PUMPHOUSE_STATE_STORAGE_OPTIONS"
# Option names whose literal values are credentials: masked in everything printed.
SECRET_KEY = re.compile(r"key|secret|token|password|credential", re.IGNORECASE)
RUNS_KEPT = 1000  # history lines an object store keeps (a rewrite per run must stay small)


class StateFiles(Protocol):
    location: str

    def read(self, name: str) -> bytes | None: ...
    def write(self, name: str, data: bytes) -> None: ...
    def append_line(self, name: str, line: str) -> None: ...
    def delete(self, name: str) -> None: ...
    def clear(self, keep: tuple[str, ...]) -> None: ...


def is_remote(state_dir: str) -> bool:
    """Whether `state_dir` names an fsspec location other than the local disk."""
    protocol, _ = split_protocol(state_dir)
    return protocol not in (None, "file", "local")


class LocalFiles:
    """State files in a local folder; every write is atomic (temp file, fsync, rename)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.location = str(root)

    def read(self, name: str) -> bytes | None:
        try:
            return (self.root / name).read_bytes()
        except FileNotFoundError:
            return None

    def write(self, name: str, data: bytes) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        write_atomic(self.root / name, data)

    def append_line(self, name: str, line: str) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / name, "a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())

    def delete(self, name: str) -> None:
        (self.root / name).unlink(missing_ok=True)

    def clear(self, keep: tuple[str, ...]) -> None:
        if not self.root.exists():
            return
        for entry in self.root.iterdir():
            if entry.name in keep:
                continue
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)


class RemoteFiles:
    """State files under an fsspec URL, with storage options from PUMPHOUSE_STATE_STORAGE_OPTIONS.

    Writes are whole-object PUTs (atomic on S3); an append rewrites the object. Only the run
    holding the pump's lock writes, so read-modify-write does not race within one machine;
    across machines, one run at a time is Prefect's concurrency limit's job.
    """

    def __init__(self, url: str, options_json: str) -> None:
        self.location = url.rstrip("/")
        self._options_json = options_json
        self._where = f"state location {self.location}"

    @cached_property
    def _fs(self) -> Any:
        options = state_options(self._options_json)
        remember_env_credentials()
        try:
            fs, _ = url_to_fs(self.location, **options)
        except (ValueError, ImportError, TypeError) as e:
            raise UsageError(
                f"PUMPHOUSE_STATE_DIR {self.location}: cannot open it ({e}); "
                f"check the URL and {OPTIONS_VAR}"
            ) from None
        return fs

    def _url(self, name: str) -> str:
        return f"{self.location}/{name}"

    def read(self, name: str) -> bytes | None:
        with storage_errors(self._where, "reading state", OPTIONS_VAR):
            try:
                return bytes(self._fs.cat_file(self._url(name)))
            except FileNotFoundError:
                return None

    def write(self, name: str, data: bytes) -> None:
        with storage_errors(self._where, "writing state", OPTIONS_VAR):
            self._fs.pipe_file(self._url(name), data)

    def append_line(self, name: str, line: str) -> None:
        lines = (self.read(name) or b"").decode("utf-8", errors="replace").splitlines()
        kept = [*lines, line][-RUNS_KEPT:]
        self.write(name, ("\n".join(kept) + "\n").encode())

    def delete(self, name: str) -> None:
        with storage_errors(self._where, "deleting state", OPTIONS_VAR):
            with contextlib.suppress(FileNotFoundError):
                self._fs.rm_file(self._url(name))
            self._fs.invalidate_cache(self._url(name))

    def clear(self, keep: tuple[str, ...]) -> None:
        with storage_errors(self._where, "deleting state", OPTIONS_VAR):
            self._fs.invalidate_cache()
            try:
                found = self._fs.find(self.location)
            except FileNotFoundError:
                return
            prefix = self._fs._strip_protocol(self.location).rstrip("/") + "/"
            doomed = [p for p in found if p.removeprefix(prefix) not in keep]
            if doomed:
                self._fs.rm(doomed)


def state_options(raw: str) -> dict[str, Any]:
    """PUMPHOUSE_STATE_STORAGE_OPTIONS as fsspec options (see `options_from_json`)."""
    return options_from_json(raw, OPTIONS_VAR)


def options_from_json(raw: str, variable: str) -> dict[str, Any]:
    """A setting holding a JSON object of fsspec options whose string values may hold
    ${env:NAME} / ${secret:NAME}; credentials written literally are masked too."""
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as e:
        raise UsageError(
            f"{variable} is not valid JSON ({e}); write an object such as "
            '{"endpoint_url": "https://...", "key": "${env:NAME}", "secret": "${secret:NAME}"}'
        ) from None
    if not isinstance(value, dict):
        raise UsageError(f"{variable} must be a JSON object of fsspec options")
    _remember_credentials(value)
    return resolve_mapping(value)


def _remember_credentials(options: dict[str, Any]) -> None:
    for k, v in options.items():
        if isinstance(v, dict):
            _remember_credentials(v)
        elif isinstance(v, str) and SECRET_KEY.search(str(k)) and "${" not in v:
            secrets.remember(v)


def write_atomic(path: Path, data: bytes) -> None:
    """Write a file so that readers see the old or the new content, never a torn one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
