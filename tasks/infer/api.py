"""The first pages of a JSON API: where the record list is in the body, how the API pages
(a `Link` header, a next URL or a cursor token in the body, offset or page parameters in
the URL), and the records as an ndjson file for `files` to read like any other."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from schemas.errors import UsageError
from schemas.spec import Paginate
from tasks.engine import json_numbers
from tasks.io.http import Client, HttpFailure, Manners, Reply, safe_url
from tasks.sources.http import dig, next_page

MAX_PAGES = 5  # pages read for a sample, whatever their size
NEXT_KEYS = ("next", "next_url", "nextUrl", "next_page_url", "next_link", "href")
CURSOR_KEYS = ("next_cursor", "nextCursor", "cursor", "next_token", "nextPageToken", "after")
OFFSET_PARAMS = ("offset", "skip", "start")
PAGE_PARAMS = ("page", "page_number", "p")
LIMIT_PARAMS = ("limit", "per_page", "page_size", "size", "count")


@dataclass
class ApiSample:
    """The source section's keys, and the records read from the first pages."""

    source: dict[str, Any]
    records: list[Any] = field(default_factory=list)
    pages: int = 0


def sample_api(url: str, headers: dict[str, str], rows: int, timeout: float = 30) -> ApiSample:
    """GET `url` (and the next pages, up to `rows` records or MAX_PAGES pages)."""
    manners = Manners(timeout=timeout, requests_per_second=5, retries=1, max_wait=5)
    base, params = _split(url)
    with Client(url, headers, manners) as client:
        first = _get(client, url)
        path = records_path(first.data)
        if path is None:
            raise UsageError(
                f"{safe_url(url)}: no list of records in the response; give the URL of an "
                "endpoint that answers a JSON list, or an object holding one"
            )
        paginate, params = pagination(first, params)
        records = list(dig(first.data, path) if path else first.data)
        pages, reply, here = 1, first, url
        model = Paginate(**paginate)
        while len(records) < rows and pages < MAX_PAGES:
            page = dig(reply.data, path) if path else reply.data
            nxt = next_page(model, reply, here, page or [], len(records))
            if not nxt:
                break
            reply, here = _get(client, nxt), nxt
            records.extend((dig(reply.data, path) if path else reply.data) or [])
            pages += 1
    source: dict[str, Any] = {"type": "http", "url": base}
    if params:
        source["params"] = params
    if path:
        source["records"] = path
    source["paginate"] = paginate
    return ApiSample(source, records[:rows], pages)


def write_ndjson(records: list[Any], path: str) -> None:
    """The records one per line, numbers as the API wrote them."""
    with open(path, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json_numbers.dumps(r) + "\n")


def records_path(data: Any, prefix: str = "", depth: int = 3) -> str | None:
    """The dotted path of the body's record list (a list of objects; "" when the body is
    one), the longest such list at the shallowest depth; None if there is none."""
    if isinstance(data, list):
        return prefix if all(isinstance(r, dict) for r in data) else None
    if not isinstance(data, dict) or depth == 0:
        return None
    lists = [(len(v), k) for k, v in data.items() if isinstance(v, list) and _objects(v)]
    if lists:
        return f"{prefix}{max(lists)[1]}"
    for k, v in data.items():
        if isinstance(v, dict) and (found := records_path(v, f"{prefix}{k}.", depth - 1)):
            return found
    return None


def pagination(reply: Reply, params: dict[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """The `paginate` section the first page says, and the URL's other query parameters."""
    if reply.links.get("next", {}).get("url"):
        return {"style": "link_header"}, params
    if (found := _find(reply.data, NEXT_KEYS, _is_url)) is not None:
        return {"style": "next_url", "next_url": found}, params
    if (found := _find(reply.data, CURSOR_KEYS, _is_token)) is not None:
        return {
            "style": "cursor",
            "cursor_path": found,
            "cursor_param": _cursor_param(found),
        }, params
    limit = next((p for p in LIMIT_PARAMS if p in params), None)
    counter = next((p for p in OFFSET_PARAMS if p in params), None)
    style = "offset"
    if counter is None:
        counter, style = next((p for p in PAGE_PARAMS if p in params), None), "page"
    if counter is None:
        return {"style": "none"}, params
    paginate: dict[str, Any] = {"style": style, f"{style}_param": counter}
    rest = {k: v for k, v in params.items() if k not in (counter, limit)}
    if limit is not None:
        paginate["limit_param"] = limit
        if params[limit].isdigit() and 1 <= int(params[limit]) <= 100_000:
            paginate["page_size"] = int(params[limit])
    if (more := _find(reply.data, ("has_more", "hasMore", "more"), _is_bool)) is not None:
        paginate["has_more_path"] = more
    elif total := _find(reply.data, ("total", "total_count", "totalCount"), _is_count):
        paginate["total_path"] = total
    return paginate, rest


def _get(client: Client, url: str) -> Reply:
    try:
        return client.get_json(url)
    except HttpFailure as e:
        where = f"GET {safe_url(url)}: HTTP {e.status}"
        if e.status in (401, 403):
            raise UsageError(
                f"{where}, the API wants credentials; give them with "
                "--header 'Authorization: Bearer TOKEN'"
            ) from None
        if e.status == 404:
            raise UsageError(f"{where}, not found; is the URL right?") from None
        raise UsageError(e.message.split("; the server said")[0]) from None


def _split(url: str) -> tuple[str, dict[str, str]]:
    parts = urlsplit(url)
    base = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    return base, dict(parse_qsl(parts.query, keep_blank_values=True))


def _objects(v: list[Any]) -> bool:
    return bool(v) and all(isinstance(r, dict) for r in v)


def _find(
    data: Any, keys: tuple[str, ...], ok: Any, prefix: str = "", depth: int = 3
) -> str | None:
    """The dotted path of a value under one of `keys` that `ok` accepts (outside lists)."""
    if not isinstance(data, dict) or depth == 0:
        return None
    for k in keys:
        if k in data and ok(data[k]):
            return f"{prefix}{k}"
    for k, v in data.items():
        if isinstance(v, dict) and (found := _find(v, keys, ok, f"{prefix}{k}.", depth - 1)):
            return found
    return None


def _is_url(v: Any) -> bool:
    return isinstance(v, str) and (v.startswith(("http://", "https://", "/", "?")))


def _is_token(v: Any) -> bool:
    return isinstance(v, str) and bool(v) and not _is_url(v)


def _is_bool(v: Any) -> bool:
    return isinstance(v, bool)


def _is_count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _cursor_param(path: str) -> str:
    last = path.rsplit(".", 1)[-1]
    return "cursor" if last in ("next_cursor", "nextCursor", "cursor") else last
