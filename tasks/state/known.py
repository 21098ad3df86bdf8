"""The files a pump has read: by path below the source's base and by content (CONTRACT §2).

An entry of state's `files`, keyed by that path: `size`, `fp` (the listing's fingerprint:
`etag:size` or `size:mtime`), and, for a file read from local disk or a store without
etags, `hash` (sha256 of its bytes), `lines` (its newlines) and `ends` (a hash of its
first and last 4 KiB). A file is known when its size and fp match, or, its fp moved (a
copy, another checkout), its hash does. One that grew with those bytes unchanged is read
from its previous end; one changed otherwise is read whole, with a warning.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from schemas.spec import FilesSource
from tasks.io.files import is_remote
from tasks.sources.files.listing import SourceFile, safe_url
from tasks.sources.files.read import appendable
from tasks.state._content import Measuring, grew_from, hash_of, line_start, measure, same_start
from tasks.state.store import Manifest


def unread(
    source: FilesSource, files: list[SourceFile], read: dict[str, Any]
) -> tuple[list[SourceFile], dict[str, dict[str, Any]]]:
    """The files to read (a grown one from its previous end, a changed one whole and
    marked so), and the entries state should hold anew for files known already (the fp of
    a copy; an entry of the format before relative paths)."""
    entries = {k: v for k, v in read.items() if isinstance(v, dict)}
    todo: list[SourceFile] = []
    renewed: dict[str, dict[str, Any]] = {}
    for f in files:
        entry = entries.get(f.rel)
        if entry is None and read.get(f.url) == f.fingerprint:  # state from before v2
            renewed[f.rel] = entry_of(source, f)
        elif entry is None and f.url in read:  # changed since, with nothing to tell how
            todo.append(replace(f, changed=True))
        elif entry is None:
            todo.append(f)
        elif entry["size"] == f.size and entry["fp"] == f.fingerprint:
            continue
        elif entry["size"] == f.size and entry.get("hash") == _hash(source, f, entry):
            renewed[f.rel] = {**entry, "fp": f.fingerprint}
        else:
            todo.append(_grown(source, f, entry) or replace(f, changed=True))
    return todo, renewed


def files_read(before: dict[str, Any], manifest: Manifest) -> dict[str, Any]:
    """State's `files` after the run (see tasks/state/known): entries by relative path; those of
    the format before it go, renewed by the plan when their file is still there."""
    files = {k: v for k, v in before.items() if isinstance(v, dict)} | manifest.known
    for f in manifest.inputs:
        if not isinstance(f, SourceFile):
            continue
        if f.rel:
            files[f.rel] = f.read or {"size": f.size, "fp": f.fingerprint}
        else:  # frozen before relative paths: the next plan renews it
            files[f.url] = f.fingerprint
    return files


def entry_of(
    source: FilesSource, f: SourceFile, read: Measuring | None = None, open_line: int = 0
) -> dict[str, Any]:
    """State's entry for a file read to its listed size, its bytes measured (not for a file
    in a store with etags: the etag tells its content); from `read` (see measuring) when it
    saw them all, else by reading the file again. A CSV file that ends inside the quote of
    the record on line `open_line` also keeps `open`: where that record starts (offset,
    lines before it), read again from there if the file grows."""
    content: dict[str, Any] = {}
    if _measured(f):
        content = (read.result() if read is not None else None) or measure(source, f)
    if open_line and "ends" in content and appendable(source, f):
        content["open"] = [line_start(source, f, open_line), open_line - 1]
    return {"size": f.size, "fp": f.fingerprint, **content}


def measuring(f: SourceFile) -> Measuring | None:
    """What takes entry_of's measures from the bytes staging reads, for a file read from its
    start that gets them (None: entry_of reads the file again, or needs no measures)."""
    return Measuring(f.size) if _measured(f) and not f.start else None


def _measured(f: SourceFile) -> bool:
    """Whether a file read gets hash, lines and ends: not one whose store gives etags
    (reading it again would double its download; the etag stays with its content)."""
    return not is_remote(f.url) or f.fingerprint.startswith(f"{f.size}:")


def same_bytes(was: SourceFile, now: SourceFile) -> bool:
    """False when both reads of a file were measured (`read`) and their bytes differ."""
    before, after = (f.read.get("hash") if f.read else None for f in (was, now))
    return before is None or before == after


def partial_warning(f: SourceFile) -> str:
    return (
        f"{safe_url(f.url)}: its last line had no newline when a run read it (or a CSV "
        "record's quote was not closed yet), and has been written on since: that record is "
        "read again from its start, whole; as it was read before it is in rejected/ or, if "
        "it parsed, in an append sink"
    )


def changed_warning(f: SourceFile) -> str:
    return (
        f"{safe_url(f.url)} changed since a run read it (not only grown): read again whole; "
        "an append sink may now hold rows of both versions (a delta merge sink does not)"
    )


def _hash(source: FilesSource, f: SourceFile, entry: dict[str, Any]) -> str:
    """The file's hash, when its entry has one to compare with (else "", which None is not)."""
    return hash_of(source, f) if entry.get("hash") else ""


def _grown(source: FilesSource, f: SourceFile, entry: dict[str, Any]) -> SourceFile | None:
    """The file to read from its previous end, if it only grew since."""
    size, ends = int(entry["size"]), entry.get("ends")
    if not ends or "lines" not in entry or not 0 < size < f.size or not appendable(source, f):
        return None
    if "open" in entry:  # it ended inside a CSV record's quote: read again from that record
        if not same_start(source, f, size, ends):
            return None
        start, lines = map(int, entry["open"])
        return (
            replace(f, start=start, lines=lines, partial=True)
            if start
            else replace(f, partial=True)
        )
    found = grew_from(source, f, size, ends)
    if found is None:
        return None
    start, more = found
    lines = int(entry["lines"]) + max(more, 0)
    if start == 0:  # a one-line file whose line was still being written: read it whole
        return replace(f, partial=True)
    return replace(f, start=start, lines=lines, partial=more < 0)
