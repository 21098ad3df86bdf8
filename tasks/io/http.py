"""The one HTTP client of the http source and the webhook sink: httpx with manners and safety.

Manners: a token bucket holds `limits.requests_per_second`; 429, 5xx, dropped connections,
cut-off bodies and timeouts are retried with exponential backoff and jitter, honouring
`Retry-After` up to a cap; any other 4xx fails at once. `timeout` bounds a whole request,
redirects, headers and body (a server that trickles bytes never trips httpx's per-read
timeouts); the run's deadline and SIGTERM (tasks/run/deadline.py) end one at once. Safety: every request, redirect
and next-page link stays on the origin of the configured URL, TLS is verified (httpx's
default; SSL_CERT_FILE names a private CA), a response is read up to a size cap, and no
message holds a secret: URLs are shown without `user:password@` and with query values
that are secrets masked.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import email.utils
import random
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus, urlsplit, urlunsplit

import httpx

from schemas.errors import DataError, PumpError, RetriesSpent
from schemas.secrets import MASK, redact
from tasks.engine.json_numbers import parse as parse_json
from tasks.run import deadline

BACKOFF_BASE = 0.5  # seconds before the first retry; doubled for each one after
QUICK_RETRIES = 2  # for a refused connection: a server restarting is back in a second or two
MAX_REDIRECTS = 5
SNIPPET = 200  # characters of an error response's body quoted in the message
# Query parameters whose values are masked in messages even when no ${secret:} put them there.
SENSITIVE = re.compile(r"(?i)token|key|secret|passw|auth|signature|^sig$|credential|session")
REASONS = {
    401: "unauthorized: check the credentials in {where}.headers",
    403: "forbidden: the credentials in {where}.headers do not give access to it",
    404: "not found: check {where}.url",
}


class HttpFailure(PumpError):
    """A response that is not retried (a 4xx other than 429): the status is kept for the caller."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.__class__, (self.message, self.status))


@dataclass(frozen=True)
class Manners:
    """How one client behaves: the spec's timeout, rate, retries and size cap."""

    timeout: float
    requests_per_second: float
    retries: int = 5
    max_wait: float = 60.0  # cap on any one wait, Retry-After included
    max_bytes: int = 64 * 2**20  # a larger response body is refused (or, for the sink, cut)
    cap_is_error: bool = True  # the sink only needs a reply's status: it reads a head of it
    where: str = "source"  # the spec section named in messages


@dataclass(frozen=True)
class Reply:
    url: str  # the final URL, after redirects
    links: dict[str | None, dict[str, str]]
    data: Any = None  # the parsed JSON, when asked for


class _Retry(Exception):
    """A failure worth another try: what it was, and the wait the server asked for.
    `kind`: transient | json | refused | unresolved (see _no_connection)."""

    def __init__(
        self, what: str, retry_after: float | None = None, kind: str = "transient", detail: str = ""
    ):
        super().__init__(what)
        self.what, self.retry_after, self.kind, self.detail = what, retry_after, kind, detail


def _no_connection(error: BaseException, what: str) -> _Retry:
    """The _Retry of a failed try: of kind `refused` or `unresolved` when no connection could
    be made (httpx keeps the OS error in the exception's context), else `transient`."""
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, ConnectionRefusedError):
            return _Retry(what, kind="refused")
        if isinstance(cause, socket.gaierror):
            known = cause.errno == socket.EAI_NONAME  # no such name: asking again will not help
            return _Retry(what, kind="unresolved", detail="no such host" if known else str(cause))
        cause = cause.__cause__ or cause.__context__
    return _Retry(what)


class TokenBucket:
    """At most `rate` requests per second, one at a time: a request that comes early waits."""

    def __init__(self, rate: float, burst: float = 1.0) -> None:
        self.rate, self.burst = rate, burst
        self.tokens, self.stamp = burst, time.monotonic()
        self._lock = threading.Lock()

    def take(self) -> None:
        with self._lock:
            now = time.monotonic()
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            self.tokens -= 1.0  # reserved now; below zero means wait for it
            wait = -self.tokens / self.rate
        if wait > 0:
            deadline.sleep(wait)


def origin(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) with the default port filled in."""
    u = httpx.URL(url)
    return u.scheme, u.host, u.port or {"http": 80, "https": 443}.get(u.scheme, 0)


def safe_url(url: str | httpx.URL) -> str:
    """The URL for messages and lineage: no `user:password@`, secret query values masked."""
    parts = urlsplit(str(url))
    pieces = []
    for piece in parts.query.split("&") if parts.query else ():
        name, eq, value = piece.partition("=")
        plain = unquote_plus(value)
        if eq and plain and (SENSITIVE.search(unquote_plus(name)) or redact(plain) != plain):
            piece = f"{name}={MASK}"
        pieces.append(piece)
    netloc = parts.netloc.rpartition("@")[2]
    return redact(urlunsplit((parts.scheme, netloc, parts.path, "&".join(pieces), "")))


def utc_iso(when: dt.datetime) -> str:
    """A timestamp as it travels over HTTP: ISO-8601 in UTC with a `Z` (naive means UTC)."""
    if when.tzinfo is not None:
        when = when.astimezone(dt.UTC).replace(tzinfo=None)
    return when.isoformat() + "Z"


def retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header: a number of seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def backoff(attempt: int, manners: Manners, asked: float | None, rnd: random.Random) -> float:
    """The wait before retry number `attempt` (0-based): what the server asked, up to the cap;
    else exponential with jitter (half fixed, half random), up to the cap."""
    if asked is not None:
        return min(asked, manners.max_wait)
    ceiling = min(manners.max_wait, BACKOFF_BASE * 2**attempt)
    return ceiling / 2 + rnd.uniform(0, ceiling / 2)


class Client:
    """An httpx client bound to one origin (that of `base_url`), with `Manners`."""

    def __init__(self, base_url: str, headers: dict[str, str], manners: Manners) -> None:
        self.base, self.origin, self.manners = base_url, origin(base_url), manners
        self.bucket = TokenBucket(manners.requests_per_second)
        self.rnd = random.Random()
        self.http = httpx.Client(headers=headers, timeout=manners.timeout, follow_redirects=False)
        # The request under way, for `_cut` (a Client makes one request at a time).
        self._socket: socket.socket | None = None  # of the connection it uses
        self._live = False
        self._why = ""  # why it was cut: "timeout", "stopped"
        self._guard = threading.Lock()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()

    def get_json(self, url: str) -> Reply:
        """GET `url` and parse its body as JSON (an unparsable body is retried like a cut one)."""
        return self.request("GET", url, parse=True)

    def post(self, url: str, content: bytes, headers: dict[str, str]) -> Reply:
        return self.request("POST", url, content=content, headers=headers)

    def request(
        self,
        method: str,
        url: str,
        *,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
        parse: bool = False,
    ) -> Reply:
        """One request with retries. Raises HttpFailure (4xx), RetriesSpent (retries spent),
        DataError (a body over the cap, or still not JSON), PumpError (left the origin, TLS)."""
        self.check_origin(url, "the URL")
        started = time.monotonic()
        for attempt in range(self.manners.retries + 1):
            self.bucket.take()
            try:
                with self._bounded():
                    return self._once(method, url, content, headers, parse)
            except _Retry as problem:
                if problem.kind in ("refused", "unresolved") and attempt >= self._quick(problem):
                    self._unreachable(method, url, problem)
                if attempt == self.manners.retries:
                    self._give_up(method, url, problem, attempt + 1, started)
                deadline.sleep(backoff(attempt, self.manners, problem.retry_after, self.rnd))
        raise AssertionError("unreachable")  # pragma: no cover

    def check_origin(self, url: str, what: str) -> None:
        """Refuse a URL on another origin than the configured one (credentials go with requests)."""
        try:
            there = origin(url)
        except httpx.InvalidURL:
            raise DataError(f"{what} {safe_url(url)!r} is not a valid URL") from None
        if there != self.origin:
            raise PumpError(
                f"{what} {safe_url(url)} is on another origin than {self.manners.where}.url "
                f"({safe_url(self.base)}); pumphouse never leaves the origin it was given, "
                f"so its credentials cannot leak: point {self.manners.where}.url at that origin"
            )

    @contextlib.contextmanager
    def _bounded(self) -> Iterator[None]:
        """One try, redirects included, cut at `timeout` or once the run's deadline passes
        (SIGTERM): its socket is shut down, which wakes a read blocked in it."""
        timer = threading.Timer(self.manners.timeout, self._cut, ("timeout",))
        timer.daemon = True
        with self._guard:
            self._live, self._why = True, ""
        with deadline.on_expiry(lambda: self._cut("stopped")):
            timer.start()
            try:
                yield
            finally:
                timer.cancel()
                with self._guard:
                    self._live = False

    def _cut(self, why: str) -> None:
        with self._guard:
            if not self._live or self._socket is None:
                return
            self._why = self._why or why
            with contextlib.suppress(OSError):
                self._socket.shutdown(socket.SHUT_RDWR)

    def _trace(self, event: str, info: dict[str, Any]) -> None:
        """httpx's `trace` extension: notes the socket of each new connection, for `_cut`."""
        if event in ("connection.connect_tcp.complete", "connection.start_tls.complete"):
            stream = info.get("return_value")
            with self._guard:
                self._socket = stream.get_extra_info("socket") if stream is not None else None
                if self._why and self._socket is not None:  # cut while it was connecting
                    with contextlib.suppress(OSError):
                        self._socket.shutdown(socket.SHUT_RDWR)

    def _cut_short(self) -> _Retry:
        """Why a try that was cut failed: the run stopped (OutOfTime), or the timeout."""
        if self._why == "stopped":
            deadline.check()
        return _Retry(
            f"no complete answer within {self.manners.where}.timeout ({self.manners.timeout:g}s)"
        )

    def _once(
        self,
        method: str,
        url: str,
        content: bytes | None,
        headers: dict[str, str] | None,
        parse: bool,
    ) -> Reply:
        for _ in range(MAX_REDIRECTS + 1):
            request = self.http.build_request(
                method, url, content=content, headers=headers, extensions={"trace": self._trace}
            )
            try:
                response = self.http.send(request, stream=True)
                try:
                    body = self._read(response, url)
                finally:
                    response.close()
            except (httpx.TransportError, httpx.DecodingError) as e:
                if self._why:
                    raise self._cut_short() from None
                if "CERTIFICATE_VERIFY_FAILED" in str(e):
                    raise PumpError(
                        f"{method} {safe_url(url)}: the server's TLS certificate could not be "
                        f"verified ({redact(str(e))}); fix its certificate, or trust its CA with "
                        "SSL_CERT_FILE=/path/to/ca.pem"
                    ) from None
                detail = redact(str(e)).rstrip(".") or "no detail"
                raise _no_connection(e, f"{type(e).__name__}: {detail}") from None
            if response.is_redirect:
                url = self._redirect(method, url, response)
                continue
            return self._judge(method, url, response, body, parse)
        raise PumpError(f"{method} {safe_url(url)}: more than {MAX_REDIRECTS} redirects")

    def _read(self, response: httpx.Response, url: str) -> bytes:
        """The decoded body, refused beyond the size cap (`_bounded` ends one that trickles)."""
        cap = self.manners.max_bytes
        chunks, size = [], 0
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > cap and not self.manners.cap_is_error:
                chunks.append(chunk[: max(0, cap - size + len(chunk))])
                break
            if size > cap:
                raise DataError(
                    f"{response.request.method} {safe_url(url)}: the response is over "
                    f"{cap} bytes; ask for smaller pages (source.paginate.page_size) or raise "
                    f"{self.manners.where}.max_response_bytes"
                )
            deadline.check()
            chunks.append(chunk)
        return b"".join(chunks)

    def _redirect(self, method: str, url: str, response: httpx.Response) -> str:
        target = str(httpx.URL(url).join(response.headers.get("location", "")))
        self.check_origin(target, f"{method} {safe_url(url)} redirects to")
        if method != "GET" and response.status_code not in (307, 308):
            raise PumpError(
                f"{method} {safe_url(url)} answered HTTP {response.status_code} (a redirect that "
                f"would drop the body); set {self.manners.where}.url to {safe_url(target)}"
            )
        return target

    def _judge(
        self, method: str, url: str, response: httpx.Response, body: bytes, parse: bool
    ) -> Reply:
        status = response.status_code
        if status == 429 or status >= 500:
            raise _Retry(f"HTTP {status}", retry_after(response.headers.get("retry-after")))
        if not 200 <= status < 300:
            reason = REASONS.get(status, "{where} refused the request").format(
                where=self.manners.where
            )
            # Masked before it is cut: a secret the cut goes through would no longer match.
            text = body[: SNIPPET + 65536].decode("utf-8", "replace")
            said = redact(text)[:SNIPPET].replace("\n", " ").strip()
            raise HttpFailure(
                f"{method} {safe_url(url)} failed with HTTP {status}, {reason}"
                + (f"; the server said: {said}" if said else ""),
                status,
            )
        data = None
        if parse:
            try:
                data = parse_json(body)
            except ValueError as e:  # UnicodeDecodeError is a ValueError too
                raise _Retry(f"the response is not valid JSON ({e})", kind="json") from None
        return Reply(str(response.url), response.links, data)

    def _quick(self, problem: _Retry) -> int:
        """Retries for a connection that could not be made: none for a name that does not
        exist, a few quick ones otherwise (a server restarting, DNS failing for a moment)."""
        if problem.detail == "no such host":
            return 0
        return min(QUICK_RETRIES, self.manners.retries)

    def _unreachable(self, method: str, url: str, problem: _Retry) -> None:
        """A host that refuses the connection or has no address: likely a wrong URL, not a
        server failing or throttling, so said at once, with the host and port tried."""
        _, host, port = origin(url)
        where = self.manners.where
        if problem.kind == "refused":
            raise RetriesSpent(
                f"{method} {safe_url(url)}: {host}:{port} refused the connection (nothing "
                f"listens there); is {where}.url right, and is the server up?"
            )
        raise RetriesSpent(
            f"{method} {safe_url(url)}: the host {host} (port {port}) does not resolve "
            f"({problem.detail}); is {where}.url right?"
        )

    def _give_up(self, method: str, url: str, problem: _Retry, tries: int, started: float) -> None:
        spent = time.monotonic() - started
        where = self.manners.where
        if problem.kind == "json":
            raise DataError(
                f"{method} {safe_url(url)}: {problem.what}, {tries} times; "
                f"check that {where}.url is a JSON API"
            )
        raise RetriesSpent(
            f"{method} {safe_url(url)} failed {tries} times in {spent:.1f}s, last with "
            f"{problem.what}; the server is failing or throttling: try again later "
            f"({where}.retries and {where}.retry_max_wait set how long pumphouse keeps trying)"
        )
