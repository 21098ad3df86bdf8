"""List the files a files source names (a folder, a file or a glob), with a fingerprint each.

Each file has its path below the source's base and a fingerprint (`etag:size` or
`size:mtime`): what state knows a file read by (see tasks/state/known).
Object stores are listed page by page (s3fs follows S3's continuation tokens past 1,000 keys).
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import fsspec
from fsspec.core import url_to_fs

from schemas.errors import SpecError
from schemas.loader import resolve_mapping
from schemas.secrets import written
from schemas.spec import FilesSource
from tasks.io.storage import no_bucket, remember_env_credentials, storage_errors

GLOB_CHARS = re.compile(r"[*?\[]")
# Keys under which fsspec filesystems report a modification time, most specific first.
MTIME_KEYS = ("mtime", "LastModified", "last_modified", "updated", "created")


@dataclass(frozen=True)
class SourceFile:
    """One input file: its URL (absolute path when local; `${...}` references as the spec
    writes them, resolved when the file is opened), size, change fingerprint and
    modification time (seconds since the epoch; 0.0 when unknown), which orders arrival.

    `rel` is its path below the source's base (what state knows it by, see tasks/state/known;
    "" in a manifest from before relative paths);
    `start` > 0 reads only the bytes from there (a file that grew), whose first line is
    line `lines` + 1; `changed`: it was read before with other content (the run warns).
    `read`: once staged, what state keeps of it (see tasks/state/known).
    Its manifest and state form: tasks/sources/inputs.
    """

    url: str
    size: int
    fingerprint: str
    mtime: float = 0.0
    rel: str = ""
    start: int = 0
    lines: int = 0
    changed: bool = False
    partial: bool = False  # its last line, read before it was whole, is read again
    read: dict[str, Any] | None = field(default=None, hash=False)


def list_files(source: FilesSource) -> list[SourceFile]:
    """The files `source.url` (and `source.glob`) name, hidden ones skipped, sorted by URL.

    A file → that file; a folder → its files, recursively, or those matching `glob`
    (fsspec glob semantics, `**` for subfolders); a URL with glob characters → its matches.
    Names starting with '.' or '_' below the folder are hidden (`_SUCCESS`, `.tmp/`).
    """
    try:
        fs, path = url_to_fs(source.url, **resolve_mapping(source.storage_options))
    except (ValueError, ImportError) as e:
        raise SpecError(f"source.url {safe_url(source.url)}: cannot open it ({e})") from None
    remember_env_credentials()
    where = f"source.url {safe_url(source.url)}"
    with storage_errors(where, "listing", "source.storage_options"):
        # A long-lived process (a worker, the tests) shares one filesystem per set of options;
        # its listing cache would hide files added or replaced since the last run.
        fs.invalidate_cache()
        try:
            base, entries = _entries(fs, path, source)
        except FileNotFoundError as e:
            if not names_folder(source) or no_bucket(str(e)):
                raise
            return []  # a folder not made yet (a bucket's prefix before the first file): the run warns
    files = [
        SourceFile(
            # state, manifest and `_source` keep the references the spec writes
            url=written(_full_url(fs, name), source.url),
            size=int(info.get("size") or 0),
            fingerprint=fingerprint(info),
            mtime=modified(info),
            rel=_relative(name, base),
        )
        for name, info in entries
    ]
    return sorted(files, key=lambda f: f.url)


def names_folder(source: FilesSource) -> bool:
    """Whether `source` names a folder (a URL ending in '/', a glob, `source.glob`), not a file."""
    return source.url.endswith("/") or bool(source.glob) or bool(GLOB_CHARS.search(source.url))


def missing_local_folder(source: Any) -> str | None:
    """The folder a files source on the local disk names, when it is not there (for
    `validate`: a path relative to another folder than the one the command runs in)."""
    if not isinstance(source, FilesSource) or not names_folder(source):
        return None
    url = source.url.removeprefix("file://")
    if "://" in url or "${" in url:
        return None
    magic = GLOB_CHARS.search(url)
    folder = url[: magic.start()].rpartition("/")[0] if magic else url
    return None if not folder or os.path.isdir(folder) else folder


def nothing_listed(source: FilesSource, first_run: bool) -> str | None:
    """The run's warning when `source` lists no file: its folder does not exist, or, on a
    first run, nothing in it matches. None when an empty listing is news to no one."""
    fs, path = url_to_fs(source.url, **resolve_mapping(source.storage_options))
    magic = GLOB_CHARS.search(path)
    folder = path[: magic.start()].rpartition("/")[0] if magic else path.rstrip("/")
    where = f"source.url {safe_url(source.url)}"
    with storage_errors(where, "listing", "source.storage_options"):
        there = not folder or fs.exists(folder)
    if not there:
        return (
            f"{where}: no such folder, so nothing was read; check the path (relative paths "
            "start at the working directory)"
        )
    if not first_run:
        return None
    if source.glob:
        return f"{where}: no file matches source.glob {source.glob!r}, so nothing was read"
    if magic:
        return f"{where}: no file matches it, so nothing was read"
    return f"{where}: the folder holds no file, so nothing was read"


def _entries(
    fs: fsspec.AbstractFileSystem, path: str, source: FilesSource
) -> tuple[str, list[tuple[str, dict[str, Any]]]]:
    """The base (the folder; for a glob the part before its first glob character; for a
    file its folder) and (path, info) of every visible file below it; raises
    FileNotFoundError when nothing is there."""
    magic = GLOB_CHARS.search(path)
    if magic:
        base = path[: magic.start()].rpartition("/")[0]
        if source.glob:
            path = f"{path.rstrip('/')}/{source.glob.lstrip('/')}"
        if base and not fs.exists(base):
            raise FileNotFoundError(base)
        found = fs.glob(path, detail=True)
    else:
        info = fs.info(path)
        if info.get("type") != "directory":
            return info["name"].rpartition("/")[0], [(info["name"], info)]
        base = path.rstrip("/")
        if source.glob:
            found = fs.glob(f"{base}/{source.glob.lstrip('/')}", detail=True)
        else:
            found = fs.find(base, detail=True)
    return base, [
        (name, info)
        for name, info in found.items()
        if info.get("type") == "file" and not _hidden(name, base)
    ]


def _relative(name: str, base: str) -> str:
    """`name` below `base`: the same for the project checked out elsewhere, or the bucket
    reached another way."""
    return name[len(base) :].lstrip("/") if base and name.startswith(base) else name


def _hidden(name: str, base: str) -> bool:
    # Only the parts below the folder the user named count: `_staging/x.csv` given
    # explicitly is fine, a `_SUCCESS` marker or `.tmp/` folder inside it is not.
    rel = name[len(base) :] if base and name.startswith(base) else name
    return any(part.startswith((".", "_")) for part in rel.split("/") if part)


def _full_url(fs: fsspec.AbstractFileSystem, path: str) -> str:
    protocols = fs.protocol if isinstance(fs.protocol, tuple | list) else (fs.protocol,)
    if "file" in protocols or "local" in protocols:
        return path
    return str(fs.unstrip_protocol(path))


def fingerprint(info: dict[str, Any]) -> str:
    """`etag:size` when the filesystem has etags (s3), else `size:mtime`: a file replaced
    under the same name gets a new fingerprint, so it is read again."""
    etag = info.get("ETag") or info.get("etag")
    size = int(info.get("size") or 0)
    if etag:
        return str(etag).strip('"') + f":{size}"
    for key in MTIME_KEYS:
        value = info.get(key)
        if value is not None:
            stamp = value.timestamp() if isinstance(value, datetime) else value
            return f"{size}:{stamp}"
    return f"{size}:"


def modified(info: dict[str, Any]) -> float:
    """The file's modification time in seconds since the epoch, 0.0 when the filesystem
    reports none: a float (local), a datetime (s3) or ISO-8601 text (gcs)."""
    for key in MTIME_KEYS:
        value = info.get(key)
        if isinstance(value, datetime):
            return value.timestamp()
        if isinstance(value, int | float):
            return float(value)
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                return datetime.fromisoformat(value).timestamp()
    return 0.0


def safe_url(url: str) -> str:
    """The URL without a `user:password@` part, for messages."""
    return re.sub(r"^([a-zA-Z][a-zA-Z0-9+.-]*://)[^/@]*@", r"\1", url)
