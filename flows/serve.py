"""`pumphouse serve`: partners' webhooks into each webhook-source pump's buffer (CONTRACT §1, §4).

A Starlette app on uvicorn: `POST <path>` per pump (default /ingest/NAME), `GET /healthz`.
A POST is checked in the order that costs least to refuse: token (401), rate (429),
Content-Type (415), size (413, never read past the limit), JSON (400); then stored by the
pump's writer thread (tasks/receive/server.Grouper) and answered 202 only once durable, 200 for
a key seen before, 503 when the buffer cannot take it. The token is never logged or stored.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from schemas.errors import UsageError
from schemas.loader import resolve
from schemas.secrets import redact
from schemas.spec import Spec, WebhookSource
from tasks.receive.bodies import BodyError, as_ndjson, media_kind, records_of
from tasks.receive.server import Grouper, Receiver, authorized

log = logging.getLogger("uvicorn.error")  # uvicorn configures it: stderr
MAX_KEY_CHARS = 255


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


async def _read_capped(request: Request, limit: int) -> bytes | None:
    """The body, or None as soon as it is longer than `limit` (the rest is never read)."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _endpoint(pump: Receiver) -> Callable[[Request], Any]:
    writer = Grouper(pump)

    async def receive(request: Request) -> Response:
        refused = await _refusal(request, pump)
        if isinstance(refused, Response):
            pump.count("refused")
            return refused
        data, key = refused
        if not data:
            pump.count("accepted")
            return JSONResponse({"status": "accepted", "records": 0}, status_code=202)
        try:
            outcome, _ = await writer.submit(data, key)
        except Exception as e:
            pump.count("refused")
            log.error(redact(f"pump {pump.name}: 503, body not stored: {e}"))
            return _error(
                503,
                "the body could not be stored; nothing was kept, retry later",
                {"Retry-After": "5"},
            )
        if outcome == "duplicate":
            pump.count("duplicate")
            return JSONResponse({"status": "duplicate"}, status_code=200)
        pump.count("accepted")
        return JSONResponse({"status": "accepted", "records": data.count(b"\n")}, status_code=202)

    return receive


async def _refusal(request: Request, pump: Receiver) -> Response | tuple[bytes, str | None]:
    """The answer refusing the request, or its body as ndjson and its Idempotency-Key."""
    if not authorized(request.headers.get("authorization"), pump.token):
        return _error(
            401,
            "missing or wrong token: send Authorization: Bearer TOKEN",
            {"WWW-Authenticate": "Bearer"},
        )
    wait = pump.bucket.take()
    if wait:
        return _error(
            429, f"over pump {pump.name}'s limits.requests_per_second; retry after {wait} s",
            {"Retry-After": str(wait)},
        )  # fmt: skip
    kind = media_kind(request.headers.get("content-type"))
    if kind is None:
        return _error(
            415, "send Content-Type application/json, application/x-ndjson or application/ndjson"
        )
    key = request.headers.get("idempotency-key")
    if key is not None and not 1 <= len(key) <= MAX_KEY_CHARS:
        return _error(400, f"Idempotency-Key must have 1 to {MAX_KEY_CHARS} characters")
    body = await _read_capped(request, pump.max_body_bytes)
    if body is None:
        return _error(
            413, f"the body is over max_body_bytes ({pump.max_body_bytes} bytes); send less at once"
        )
    try:
        return as_ndjson(records_of(body, kind)), key
    except BodyError as e:
        return _error(400, str(e))
    except Exception as e:  # a bug of the receiver's, not the sender's: one line, no traceback
        log.error(redact(f"pump {pump.name}: 500, body not stored: {type(e).__name__}: {e}"))
        return _error(500, "the receiver failed on this body; nothing was kept")


def build_app(pumps: Sequence[Receiver]) -> Starlette:
    """The receiver's ASGI app: one POST route per pump, and GET /healthz."""

    async def healthz(request: Request) -> Response:
        return JSONResponse(
            {
                "status": "ok",
                "pumps": [
                    {
                        "name": p.name,
                        "path": p.path,
                        "buffer": redact(p.inbox.url),
                        **vars(p.counts),
                    }
                    for p in pumps
                ],
            }
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        # On SIGINT/SIGTERM uvicorn ends the process by the signal once the app is shut
        # down, so the last counts are saved here, not after uvicorn.run returns.
        for p in pumps:
            p.save_counts()

    routes = [Route("/healthz", healthz, methods=["GET"])]
    routes += [Route(p.path, _endpoint(p), methods=["POST"]) for p in pumps]
    return Starlette(routes=routes, lifespan=lifespan)


def open_receivers(specs: Sequence[tuple[str, Spec]]) -> list[Receiver]:
    """A receiver per spec (file, spec); UsageError for a spec that is not a webhook
    source, or two that share a path."""
    paths: dict[str, str] = {}
    for file, spec in specs:
        if not isinstance(spec.source, WebhookSource):
            raise UsageError(
                f"{file}: source.type is {spec.source.type}; serve receives for "
                "source.type webhook only (run the others with pumphouse run)"
            )
        path = spec.source.path or f"/ingest/{spec.name}"
        if path in paths or path == "/healthz":
            raise UsageError(
                f"{file}: path {path} is also served for {paths.get(path, 'the health check')}; "
                "give each webhook source its own source.path"
            )
        paths[path] = file
    opened: list[Receiver] = []
    try:
        for _, spec in specs:
            assert isinstance(spec.source, WebhookSource)
            opened.append(Receiver.open(spec, resolve(spec.source.token)))
    except BaseException:
        for r in opened:
            r.close()
        raise
    return opened


def serve(
    specs: Sequence[tuple[str, Spec]], host: str, port: int, say: Callable[[str], None]
) -> None:
    """Run the receiver until SIGINT or SIGTERM."""
    pumps = open_receivers(specs)
    try:
        for p in pumps:
            say(f"pump {p.name}: POST {p.path} -> {redact(p.inbox.url)}")
            if p.warning:
                say(f"warning: {p.warning}")
        # No access log: a line per request costs the event loop more than the request
        # itself; refusals of the buffer (503) and errors are still logged.
        uvicorn.run(build_app(pumps), host=host, port=port, log_level="info", access_log=False)
    finally:
        for p in pumps:
            p.close()
