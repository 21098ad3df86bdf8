"""The HTTP JSON source (`source.type: http`): an API's pages of records as bounded batches.

The run's frozen high-water mark fixes the `{cursor}` in `source.params`, so a run that is
staged again asks for the same pages. Each record's JSON text goes to `_raw` (checked by
the contract like an ndjson line), `_source` is its page's URL without secrets, `_row`
its position in the run. Pages are followed as `source.paginate` says, on the origin of
`source.url` only, up to `source.max_pages`.
"""

from __future__ import annotations

import bisect
import datetime as dt
import json
import logging
import re
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pyarrow as pa

from schemas.errors import DataError
from schemas.loader import resolve_mapping
from schemas.spec import HttpSource, Limits, Paginate
from tasks._http import Client, Manners, Reply, safe_url, utc_iso
from tasks._records import HEAD_CHARS, Record, bounded, head, table, too_big
from tasks.read import Batch

CURSOR = "{cursor}"
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}(:?\d{2})?)?")
log = logging.getLogger("pumphouse.http")


def read_pages(source: HttpSource, cursor: str | None, limits: Limits) -> Iterator[Batch]:
    """Batches of kind "json" (record text in `_raw`, `_source` = the page URL, `_row` = position).

    `cursor` is the committed high-water mark (None on a first run: `cursor_start` then).
    """
    manners = Manners(
        timeout=source.timeout,
        requests_per_second=limits.requests_per_second,
        retries=source.retries,
        max_wait=source.retry_max_wait,
        max_bytes=int(source.max_response_bytes),
    )
    first = first_url(source, cursor_value(cursor, source.cursor_start))
    pages: list[tuple[int, str]] = []  # (first row of the page, its URL), for `_source`
    with Client(source.url, resolve_mapping(source.headers), manners) as client:
        records = _records(pages, _pages(client, source, first), int(limits.max_record_bytes))
        for seq, group in enumerate(bounded(records, limits.batch_rows, int(limits.batch_bytes))):
            starts = [start for start, _ in pages]
            urls = [pages[bisect.bisect_right(starts, row) - 1][1] for row in group[0]]
            batch = table("", group, [], ())
            batch = batch.set_column(0, "_source", pa.array(urls, pa.string()))
            yield Batch(batch, "json", seq, sum(len(r) for r in group[1]))


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


def _pages(client: Client, source: HttpSource, url: str) -> Iterator[tuple[str, list[Any]]]:
    """(page URL, its records), following the pagination until it ends or max_pages."""
    seen = {url}
    for n in range(1, source.max_pages + 1):
        reply = client.get_json(url)
        records = records_at(reply.data, source.records, url)
        yield url, records
        after = next_page(source.paginate, reply, url, records)
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
        seen.add(after)
        url = after
    _warn(
        f"{safe_url(source.url)}: stopped after source.max_pages ({source.max_pages}) pages; "
        "the pages after those are not read (raise source.max_pages to read them)"
    )


def _warn(message: str) -> None:
    """A warning in the Prefect run's log when there is a run, else in Python's. (There is
    no run unless prefect is loaded: it is not imported here, as it costs a second.)"""
    context = sys.modules.get("prefect.context")
    if context and (context.TaskRunContext.get() or context.FlowRunContext.get()):
        from prefect import get_run_logger

        get_run_logger().warning(message)
    else:
        log.warning(message)


def next_page(p: Paginate, reply: Reply, url: str, records: list[Any]) -> str | None:
    """The next page's URL after `url` (which gave `reply` and its `records`), or None."""
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
    if p.style in ("offset", "page") and len(records) >= p.page_size:
        if p.style == "offset":
            offset = int(here.params.get(p.offset_param) or 0) + len(records)
            return str(here.copy_merge_params({p.offset_param: str(offset)}))
        page = int(here.params.get(p.page_param) or 1) + 1
        return str(here.copy_merge_params({p.page_param: str(page)}))
    return None


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
            text = json.dumps(record, ensure_ascii=False, separators=(",", ":"))
            size = len(text.encode())
            if size > limit:
                yield row, head(text), too_big(size, limit), HEAD_CHARS, None
            else:
                yield row, text, None, size, None
