"""A run's inputs, and their JSON form in the manifest and in state: read and written here only.

An input is a file (SourceFile) or an http source's pages (PageInput). Their JSON, as
manifest.json (`inputs`, `rest`, `staged.rest`) and state.json (`rest.inputs`) keep them:

    file    {url, size, fingerprint, mtime, rel, start?, lines?, changed?, partial?, read?}:
            `start` and `lines` only when start > 0, the flags only when set, `read` once
            staged. A manifest from before `mtime` or `rel` gives 0.0 and "".
    http    {kind: "http", url, size: 0, fingerprint}: fingerprint "" for the endpoint, else
            `resume:PAGES:KEY:RECORDS` (`resume:PAGES:KEY` in a point left before records
            were counted), KEY the source's (see tasks/sources/http.resume_of).

Written back as read, byte for byte: a manifest or state a run left loads, and the run goes on.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from tasks.sources.files.listing import SourceFile
from tasks.sources.http import PageInput, Resume

Input = SourceFile | PageInput
HTTP = "http"  # the `kind` of an http input; a file has none
RESUME = "resume"


def input_json(item: Input) -> dict[str, Any]:
    """The input as the manifest and state keep it (JSON-serialisable)."""
    if isinstance(item, PageInput):
        return {"kind": HTTP, "url": item.url, "size": 0, "fingerprint": _fingerprint(item)}
    d: dict[str, Any] = {"url": item.url, "size": item.size, "fingerprint": item.fingerprint}
    d["mtime"], d["rel"] = item.mtime, item.rel
    if item.start:
        d["start"], d["lines"] = item.start, item.lines
    if item.changed:
        d["changed"] = True
    if item.partial:
        d["partial"] = True
    if item.read is not None:
        d["read"] = item.read
    return d


def input_of(data: Mapping[str, Any]) -> Input:
    """The inverse of input_json."""
    if data.get("kind") == HTTP:
        return _page(str(data["url"]), str(data.get("fingerprint") or ""))
    read = data.get("read")
    return SourceFile(
        url=str(data["url"]),
        size=int(data["size"]),
        fingerprint=str(data["fingerprint"]),
        mtime=float(data.get("mtime") or 0.0),
        rel=str(data.get("rel", "")),
        start=int(data.get("start", 0)),
        lines=int(data.get("lines", 0)),
        changed=bool(data.get("changed", False)),
        partial=bool(data.get("partial", False)),
        read=dict(read) if read is not None else None,
    )


def inputs_json(items: Iterable[Input]) -> list[dict[str, Any]]:
    return [input_json(item) for item in items]


def inputs_of(data: Iterable[Mapping[str, Any]]) -> list[Input]:
    return [input_of(d) for d in data]


def _fingerprint(page: PageInput) -> str:
    point = page.resume
    if point is None:
        return ""
    counted = "" if point.records is None else f":{point.records}"
    return f"{RESUME}:{point.pages}:{page.key}{counted}"


def _page(url: str, fingerprint: str) -> PageInput:
    kind, _, rest = fingerprint.partition(":")
    if kind != RESUME:  # the endpoint
        return PageInput(url)
    pages, _, rest = rest.partition(":")
    key, _, records = rest.partition(":")
    return PageInput(url, Resume(url, int(pages), int(records) if records else None), key)
