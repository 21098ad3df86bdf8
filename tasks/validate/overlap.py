"""A pump must not read what it writes: the sink and the state folder kept apart from the source.

A sink inside the source folder (`source: lake/`, `glob: "**/*.parquet"`, `sink: lake/out`)
would have every run read its own output again. Paths are compared as the run uses them:
relative ones against the working directory, `.` and `..` resolved, symlinks followed where
local; a glob counts from its base folder. A folder whose name starts with `.` or `_` below
the source folder is not listed (tasks/sources/files/listing.py), so one there is not read.
"""

from __future__ import annotations

import os
import posixpath

from fsspec.core import split_protocol

from schemas._problems import Problem
from schemas.settings import settings
from schemas.spec import FilesSource, HttpSink, Spec
from tasks.sources.files.listing import GLOB_CHARS, safe_url

LOCAL = (None, "file", "local")


def overlap_problems(spec: Spec) -> list[Problem]:
    """A problem at `sink.url` when the sink and the source overlap (either inside the other),
    and at `source.url` when the pump's state folder is inside what the source reads."""
    source = spec.source
    if not isinstance(source, FilesSource):
        return []
    pattern = f"{source.url.rstrip('/')}/{source.glob.lstrip('/')}" if source.glob else source.url
    reads, listed = _place(_base(pattern)), _place(_base(source.url))
    where = f"source.url {safe_url(source.url)}" + (f" (glob {source.glob})" if source.glob else "")
    problems: list[Problem] = []
    if not isinstance(spec.sink, HttpSink):
        sink = _place(spec.sink.url)
        if _inside(sink, reads) and not _hidden(sink, listed):
            problems.append(
                (
                    ("sink", "url"),
                    f"sink.url {safe_url(spec.sink.url)} is inside {where}: every run would read "
                    "its own output again. Put the sink outside the source folder (or in a folder "
                    "of it whose name starts with '_', which the listing skips)",
                )
            )
        elif _inside(reads, sink):
            problems.append(
                (
                    ("sink", "url"),
                    f"{where} is inside sink.url {safe_url(spec.sink.url)}: every run would "
                    "read the pump's own output. Point source.url at the input files only",
                )
            )
    state = _place(f"{settings.state_dir.rstrip('/')}/{spec.name}")
    if _inside(state, reads) and not _hidden(state, listed):
        problems.append(
            (
                ("source", "url"),
                f"the pump's state folder {safe_url(settings.state_dir)}/{spec.name} (staging, "
                f"rejected rows) is inside {where}: runs would read it. Set PUMPHOUSE_STATE_DIR "
                "outside the source folder, or to a folder whose name starts with '.'",
            )
        )
    return problems


def _base(url: str) -> str:
    """The folder a URL with glob characters is read from, else the URL itself."""
    magic = GLOB_CHARS.search(url)
    return url[: magic.start()].rpartition("/")[0] if magic else url


def _place(url: str) -> tuple[str | None, str]:
    """(protocol, path) as the run resolves it: local paths absolute, symlinks followed."""
    protocol, path = split_protocol(url)
    if protocol in LOCAL:
        return None, os.path.realpath(os.path.abspath(path or "."))
    return protocol, posixpath.normpath("/" + path).rstrip("/") or "/"


def _inside(inner: tuple[str | None, str], outer: tuple[str | None, str]) -> bool:
    """Whether `inner` is `outer` or below it."""
    if inner[0] != outer[0]:
        return False
    return inner[1] == outer[1] or inner[1].startswith(outer[1].rstrip("/") + "/")


def _hidden(inner: tuple[str | None, str], listed: tuple[str | None, str]) -> bool:
    """Whether the listing skips `inner`: a part of it below the folder listed starts with
    '.' or '_'."""
    if not _inside(inner, listed):
        return False
    rel = inner[1][len(listed[1]) :]
    return any(part.startswith((".", "_")) for part in rel.split("/") if part)
