"""The HTTP JSON source (`source.type: http`): an API's pages of records as bounded batches.

The run's frozen high-water mark fixes the `{cursor}` in `source.params`, so a run that is
staged again asks for the same pages. Each record's JSON text goes to `_raw` (checked by
the contract like an ndjson line), `_source` is its page's URL without secrets, `_row`
its position in the run. Pages are followed as `source.paginate` says, on the origin of
`source.url` only, up to `source.max_pages`.

A run stops after the page that reaches `limits.max_rows_per_run`; the next page's URL is
left for the next run, which starts there with the same `{cursor}` (in the URL) and mark.
State keeps that URL with the `${...}` references of `source.params` as written, never
their values.
"""

from __future__ import annotations

import bisect
import contextlib
import contextvars
import datetime as dt
import hashlib
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, unquote_plus, urlsplit, urlunsplit

import httpx
import pyarrow as pa

from schemas.errors import DataError
from schemas.loader import REF_RE, resolve, resolve_mapping
from schemas.secrets import redact, written
from schemas.spec import HttpSource, Limits, Paginate
from tasks.engine.json_numbers import dumps
from tasks.io.http import Client, HttpFailure, Manners, Reply, safe_url, utc_iso
from tasks.sources.files.read import Batch
from tasks.sources.records import HEAD_CHARS, Record, bounded, head, table, too_big

CURSOR = "{cursor}"
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}(:?\d{2})?)?")
log = logging.getLogger("pumphouse.http")


def read_pages(
    source: HttpSource,
    cursor: str | None,
    limits: Limits,
    resume: Resume | None = None,
    left: list[Resume] | None = None,
) -> Iterator[Batch]:
    """Batches of kind "json" (record text in `_raw`, `_source` = the page URL, `_row` = position).

    `cursor` is the mark the run reads against (None on a first run: `cursor_start` then).
    `resume`: where earlier runs stopped (see `resume_of`), to go on from instead of the
    first page. With `left`, the pages stop after the one that reaches
    limits.max_rows_per_run, and where to go on from goes into `left`.
    """
    manners = Manners(
        timeout=source.timeout,
        requests_per_second=limits.requests_per_second,
        retries=source.retries,
        max_wait=source.retry_max_wait,
        max_bytes=int(source.max_response_bytes),
    )
    first = first_url(source, cursor_value(cursor, source.cursor_start))
    stop = limits.max_rows_per_run if left is not None else None
    pages: list[tuple[int, str]] = []  # (first row of the page, its URL), for `_source`
    with Client(source.url, resolve_mapping(source.headers), manners) as client:
        found = _pages(client, source, first, resume, stop, [] if left is None else left)
        records = _records(pages, found, int(limits.max_record_bytes))
        for seq, group in enumerate(bounded(records, limits.batch_rows, int(limits.batch_bytes))):
            starts = [start for start, _ in pages]
            urls = [pages[bisect.bisect_right(starts, row) - 1][1] for row in group[0]]
            batch = table("", group, [], ())
            batch = batch.set_column(0, "_source", pa.array(urls, pa.string()))
            yield Batch(batch, "json", seq, sum(len(r) for r in group[1]))


@dataclass(frozen=True)
class Resume:
    """Where a run stopped at limits.max_rows_per_run: the next page (as `portable` keeps
    it), and how many pages (for max_pages) and records (for paginate.total_path) the runs
    before read of this pagination; records None: a point left before they were counted
    (read as 0)."""

    url: str
    pages: int
    records: int | None = 0


@dataclass(frozen=True)
class PageInput:
    """An http source's one input (see tasks/sources/inputs): its endpoint as the spec writes
    it, or, with `resume`, where to go on from (`url` is then `resume.url`). `key` ties that
    point to the source as the spec said it when the point was left."""

    url: str
    resume: Resume | None = None
    key: str = ""


def page_input(source: HttpSource, resume: Resume | None = None) -> PageInput:
    """The run's one input (see tasks/run/plan): the endpoint, or where to go on from."""
    if resume is None:
        return PageInput(written(source.url, source.url))  # references as the spec writes them
    return PageInput(resume.url, resume, _source_key(source))


def resume_of(source: HttpSource, page: PageInput) -> Resume | None:
    """The resume point an input holds; None for the first page: the endpoint, or a point
    left while the spec said another source (the run then reads from the first page, with
    the same mark: pages may come twice, no row is lost)."""
    if page.resume is None:
        return None
    if page.key != _source_key(source):
        _warn(
            f"{safe_url(source.url)}: the run before stopped at limits.max_rows_per_run, and "
            "source has changed since; this run reads from the first page (with the same mark)"
        )
        return None
    return page.resume


def _source_key(source: HttpSource) -> str:
    # Paginate's keys added since resume points were first kept count only when set, so
    # that a point left before then is still this source's.
    unset = {k for k in ("total_path", "has_more_path") if getattr(source.paginate, k) is None}
    paginate = source.paginate.model_dump(mode="json", exclude=unset)
    what = [written(source.url, source.url), source.params, source.records, paginate]
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:16]


def cursor_value(hwm: str | None, start: str | None) -> str | None:
    """What `{cursor}` stands for: the high-water mark as ISO-8601 (UTC, `Z`) when it is a
    timestamp, as it is otherwise (a number); `cursor_start` before the first run."""
    if hwm is None:
        return start
    text = hwm.strip()
    if not _TIMESTAMP.fullmatch(text):
        return hwm
    return utc_iso(dt.datetime.fromisoformat(text))


def first_url(source: HttpSource, cursor: str | None) -> str:
    """`source.url` with `source.params` (secrets resolved, `{cursor}` filled in; a parameter
    that needs a cursor when there is none is left out) and the first page's parameters."""
    params: dict[str, str] = {}
    for name, value in resolve_mapping(source.params).items():
        if CURSOR in value and cursor is None:
            continue
        params[name] = value.replace(CURSOR, cursor or "")
    p = source.paginate
    if p.style == "offset":
        params.update({p.limit_param: str(p.page_size), p.offset_param: "0"})
    elif p.style == "page":
        params.update({p.limit_param: str(p.page_size), p.page_param: "1"})
    return str(httpx.URL(source.url).copy_merge_params(params))


def portable(source: HttpSource, url: str) -> str | None:
    """`url` as state may keep it: the value of each of `source.params` that holds a
    `${...}` reference put back as written. None if a secret would still be in it."""
    written = _referencing(source)
    resolved = resolve_mapping(written)
    kept = _swap(url, {k: (resolved[k], v) for k, v in written.items()})
    parts = urlsplit(kept)
    if "@" in parts.netloc:
        return None
    seen = (kept, unquote(kept), unquote_plus(kept))
    return kept if all(redact(text) == text for text in seen) else None


def resumed(source: HttpSource, url: str) -> str:
    """The inverse of `portable`: the references (as the spec writes them) resolved again."""
    written = _referencing(source)
    return _swap(url, {k: (v, resolve(v)) for k, v in written.items()})


def _referencing(source: HttpSource) -> dict[str, str]:
    return {k: v for k, v in source.params.items() if REF_RE.search(v)}


def _swap(url: str, values: dict[str, tuple[str, str]]) -> str:
    """`url` with each query parameter `name` whose value is `old` set to `new` (for
    `values[name] = (old, new)`); the rest of the URL byte for byte as it was."""
    if not values:
        return url
    parts = urlsplit(url)
    pieces = []
    for piece in parts.query.split("&") if parts.query else ():
        name, eq, value = piece.partition("=")
        old, new = values.get(unquote_plus(name), (None, ""))
        if eq and unquote_plus(value) == old:
            piece = f"{name}={quote(new, safe='')}"
        pieces.append(piece)
    return urlunsplit(parts._replace(query="&".join(pieces)))


def _pages(
    client: Client,
    source: HttpSource,
    first: str,
    resume: Resume | None,
    stop: int | None,
    left: list[Resume],
) -> Iterator[tuple[str, list[Any]]]:
    """(page URL, its records), from `first` or from `resume`, following the pagination
    until it ends or max_pages (counted over the runs a resume point joins); or, once `stop`
    records are read, until the next page, which goes to `left`. An API that refuses the
    page a run resumes at (its token expired) is read again from `first`, with no stop, so
    that the runs make progress."""
    url, done, reply, count = first, 0, None, 0
    if resume is not None:
        url, done, count = resumed(source, resume.url), resume.pages, resume.records or 0
        try:
            reply = client.get_json(url)
        except HttpFailure as e:
            _warn(
                f"{safe_url(url)}: the API refused the page the run before stopped at "
                f"(limits.max_rows_per_run): {e}. This run reads again from the first page, "
                "with the same mark, to the last (rows read before may come again)"
            )
            url, done, stop, count = first, 0, None, 0
    seen, read, short = {url}, 0, 0
    for n in range(done + 1, source.max_pages + 1):
        reply = reply or client.get_json(url)
        records = records_at(reply.data, source.records, url)
        yield url, records
        read += len(records)
        count += len(records)
        if n == 1 and source.paginate.style in ("offset", "page"):
            short = len(records) if len(records) < source.paginate.page_size else 0
        elif n == 2 and short and records:
            _warn_capped(source, short)
        after = next_page(source.paginate, reply, url, records, count)
        reply = None
        if after is None:
            return
        client.check_origin(after, f"page {n} ({safe_url(url)}) links to")
        if after in seen:
            if not records:
                return  # an empty page that points at itself: the end, in some APIs
            raise DataError(
                f"page {n} of {safe_url(source.url)} ({safe_url(url)}) links to a page already "
                f"read ({safe_url(after)}): the API's pagination loops; check source.paginate"
            )
        if stop is not None and read >= stop:
            kept = portable(source, after)
            if kept is not None:
                left.append(Resume(kept, n, count))
                return
            _warn(
                f"{safe_url(source.url)}: limits.max_rows_per_run ({stop}) reached, but the "
                f"next page's URL ({safe_url(after)}) holds a secret that the run's state may "
                "not keep, so this run reads on to the last page"
            )
            stop = None
        seen.add(after)
        url = after
    _warn(
        f"{safe_url(source.url)}: stopped after source.max_pages ({source.max_pages}) pages; "
        "the pages after those are not read (raise source.max_pages to read them)"
    )


def _warn_capped(source: HttpSource, size: int) -> None:
    p = source.paginate
    _warn(
        f"{safe_url(source.url)}: the API sends pages of {size} records, fewer than "
        f"source.paginate.page_size ({p.page_size}) asks for; its pages are read to the end "
        f"all the same (set page_size: {size} to ask for what it sends)"
    )


_HEARD: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
    "pumphouse_http_warnings", default=None
)


@contextlib.contextmanager
def warnings_heard() -> Iterator[list[str]]:
    """The warnings of the reads done inside the block, in order, not logged (for the run's
    summary and log)."""
    heard: list[str] = []
    token = _HEARD.set(heard)
    try:
        yield heard
    finally:
        _HEARD.reset(token)


def warn(message: str) -> None:
    """A warning for the run's summary from any reader (see _warn)."""
    _warn(message)


def _warn(message: str) -> None:
    """A warning for the run's summary and its Prefect log when a stage hears it (see
    warnings_heard; the stage task logs what it heard), else in Python's log."""
    heard = _HEARD.get()
    if heard is not None:
        heard.append(message)
    else:
        log.warning(message)


def next_page(p: Paginate, reply: Reply, url: str, records: list[Any], read: int) -> str | None:
    """The next page's URL after `url` (which gave `reply` and its `records`; `read`
    records so far, these included), or None. Offset and page pagination end at an empty
    page, or where the body says (`total_path`, `has_more_path`), never at a short page:
    an API may send fewer records than `page_size` asks for."""
    here = httpx.URL(url)
    if p.style == "link_header":
        link = reply.links.get("next", {}).get("url")
        return str(httpx.URL(reply.url).join(link)) if link else None
    if p.style == "next_url":
        link = dig(reply.data, p.next_url or "")
        return str(httpx.URL(reply.url).join(str(link))) if link else None
    if p.style == "cursor":
        token = dig(reply.data, p.cursor_path or "")
        if token is None or token == "":
            return None
        return str(here.copy_merge_params({p.cursor_param: str(token)}))
    if p.style in ("offset", "page") and records and not _said_last(p, reply.data, read, url):
        if p.style == "offset":
            offset = int(here.params.get(p.offset_param) or 0) + len(records)
            return str(here.copy_merge_params({p.offset_param: str(offset)}))
        page = int(here.params.get(p.page_param) or 1) + 1
        return str(here.copy_merge_params({p.page_param: str(page)}))
    return None


def _said_last(p: Paginate, data: Any, read: int, url: str) -> bool:
    """Whether the body says its page is the last: `has_more_path` is false, or the
    `read` records reach the count at `total_path`."""
    if p.has_more_path is not None:
        more = dig(data, p.has_more_path)
        if not isinstance(more, bool):
            raise _unexpected(url, "true or false", "has_more_path", p.has_more_path, more)
        if not more:
            return True
    if p.total_path is not None:
        total = dig(data, p.total_path)
        if isinstance(total, str) and total.isdigit():
            total = int(total)
        if not isinstance(total, int) or isinstance(total, bool):
            raise _unexpected(url, "a count of records", "total_path", p.total_path, total)
        if read >= total:
            return True
    return False


def _unexpected(url: str, wanted: str, key: str, path: str, found: Any) -> DataError:
    got = "nothing" if found is None else f"{json.dumps(found)[:80]}"
    return DataError(
        f"{safe_url(url)}: expected {wanted} at source.paginate.{key} {path!r}, found {got}; "
        f"set {key} to its dotted path in the body, or remove it"
    )


def dig(data: Any, path: str) -> Any:
    """The value at a dotted path (`data.items`, `links.0.href`); None where it is missing."""
    for part in path.split(".") if path else ():
        if isinstance(data, dict):
            data = data.get(part)
        elif isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            return None
    return data


def records_at(data: Any, path: str, url: str) -> list[Any]:
    """The page's record list at `source.records` (null there: an empty page)."""
    found = dig(data, path)
    if isinstance(found, list):
        return found
    if found is None and path and _has_parent(data, path):
        return []
    what = f"at source.records {path!r}" if path else "as the body (source.records is empty)"
    got = type(found).__name__ if found is not None else "nothing"
    keys = (
        f" (keys there: {', '.join(map(str, list(data)[:10]))})" if isinstance(data, dict) else ""
    )
    raise DataError(
        f"{safe_url(url)}: expected a list of records {what}, found {got}{keys}; "
        "set source.records to the dotted path of the record list"
    )


def _has_parent(data: Any, path: str) -> bool:
    parent, _, last = path.rpartition(".")
    holder = dig(data, parent)
    return isinstance(holder, dict) and last in holder


def _records(
    pages: list[tuple[int, str]], found: Iterator[tuple[str, list[Any]]], limit: int
) -> Iterator[Record]:
    """Each record's JSON text, numbered across the run; a record over `limit` bytes keeps
    a head and its parse error. Notes in `pages` where each page starts."""
    row = 0
    for url, records in found:
        pages.append((row + 1, safe_url(url)))
        for record in records:
            row += 1
            text = dumps(record)  # every digit of a long decimal kept
            size = len(text.encode())
            if size > limit:
                yield row, head(text), too_big(size, limit), HEAD_CHARS, None
            else:
                yield row, text, None, size, None
