"""Real HTTP servers on loopback for the http source and sink tests, each in its own thread.

- `PagedAPI`: a JSON API of order records in every pagination style of the contract
  (link_header, next_url, cursor, offset, page, none), filtering by `updated_since`.
- `Scripted`: a fault server that answers request N as its script says (a status with
  headers, a reset connection, a cut-off body, invalid JSON, a slow answer), then hands
  over to the app behind it.
- `Files`: files at paths, behind Basic auth; `EchoAuth`: a 401 that echoes the
  Authorization header.
- `Receiver`: a webhook that records every POST (headers, rows) and answers 2xx, or as
  scripted, or 413 above a row count.

`serve(app)` runs one; every request is recorded in `app.seen`. `api_spec` and `hook_spec`
are tests/data.py's orders spec reading such an API, or writing to such a webhook.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import gzip
import itertools
import json
import random
import socket
import ssl
import struct
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from tests.data import spec_text


@dataclass
class Seen:
    """One request as the server got it."""

    method: str
    path: str  # path and query, as sent
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() when it arrived

    @property
    def query(self) -> dict[str, str]:
        return dict(parse_qsl(urlsplit(self.path).query, keep_blank_values=True))


@dataclass
class Answer:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    action: str = "send"  # send | reset | truncate | slow | trickle | drip
    delay: float = 0.0  # slow: before the answer; trickle, drip: between bytes

    @staticmethod
    def json(data: Any, status: int = 200, **headers: str) -> Answer:
        return Answer(
            status, json.dumps(data).encode(), {"Content-Type": "application/json", **headers}
        )


class App:
    """What a server answers; subclasses override `answer`. Records every request."""

    gzip = False

    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self.base = ""  # http://127.0.0.1:PORT, set by serve()
        self.lock = threading.Lock()

    def answer(self, req: Seen) -> Answer:
        return Answer(404, b"not here")

    def __call__(self, req: Seen) -> Answer:
        with self.lock:
            self.seen.append(req)
        return self.answer(req)


# ---------------------------------------------------------------- the paginating API


class PagedAPI(App):
    """GET /v1/orders: `records` newer than or at `updated_since`, paginated in `style`.

    For link_header, next_url and cursor the server picks the page size (`page_size`); for
    offset and page the client's `limit` does, up to `max_limit`, and `meta` holds `total`
    (the records the query matches) and `has_more`. Records are under `data` (or the body
    is the list, `wrap=""`). `token` (if set) is the bearer token the API wants.
    """

    def __init__(
        self,
        records: list[dict[str, Any]],
        style: str,
        page_size: int = 7,
        wrap: str = "data",
        token: str | None = None,
        gzip: bool = False,
        max_limit: int | None = None,
    ) -> None:
        super().__init__()
        self.records, self.style, self.page_size, self.wrap = records, style, page_size, wrap
        self.token, self.gzip, self.max_limit = token, gzip, max_limit

    def answer(self, req: Seen) -> Answer:
        url = urlsplit(req.path)
        if url.path != "/v1/orders":
            return Answer(404, b'{"error": "no such endpoint"}')
        if self.token and req.headers.get("authorization") != f"Bearer {self.token}":
            return Answer(401, b'{"error": "bad token"}')
        q = req.query
        rows = [r for r in self.records if r["updated_at"] >= q.get("updated_since", "")]
        start, size = self._window(q)
        page = rows[start : start + size]
        after = start + size if start + size < len(rows) else None
        body: Any = {self.wrap: page} if self.wrap else page
        headers: dict[str, str] = {}
        s = self.style
        if s == "link_header" and after is not None:
            headers["Link"] = f'<{self.base}{self._with(q, after=str(after))}>; rel="next"'
        elif s == "next_url":
            body["links"] = {"next": self._with(q, after=str(after)) if after else None}
        elif s == "cursor":
            token = base64.urlsafe_b64encode(f"o{after}".encode()).decode() if after else None
            body["meta"] = {"next_cursor": token}
        elif s in ("offset", "page") and self.wrap:
            body["meta"] = {"total": len(rows), "has_more": after is not None}
        return Answer.json(body, **headers)

    def _window(self, q: dict[str, str]) -> tuple[int, int]:
        s = self.style
        if s == "none":
            return 0, 10**9
        if s in ("link_header", "next_url"):
            return int(q.get("after", 0)), self.page_size
        if s == "cursor":
            c = q.get("cursor")
            return (int(base64.urlsafe_b64decode(c).decode()[1:]) if c else 0), self.page_size
        limit = min(int(q["limit"]), self.max_limit or 10**9)
        if s == "offset":
            return int(q.get("offset", 0)), limit
        return (int(q.get("page", 1)) - 1) * limit, limit

    def _with(self, q: dict[str, str], **more: str) -> str:
        return "/v1/orders?" + urlencode({**q, **more})


# ---------------------------------------------------------------- the fault server


class Scripted(App):
    """Answers request N with script[N] (if there is one), else as `then` does.

    Script entries: an int status (with a JSON error body); (status, {headers}); "reset"
    (connection dropped, no answer); "truncate" (`then`'s answer, cut in half); "invalid"
    (200 with a body that is not JSON); ("slow", seconds) (`then`'s answer, late);
    ("trickle", seconds) (`then`'s answer, headers at once, then its body one byte every so
    many seconds, forever); ("drip", seconds) (the same from its status line on).
    """

    def __init__(self, script: list[Any], then: App) -> None:
        super().__init__()
        self.script, self.then = list(script), then
        self.gzip = then.gzip

    def answer(self, req: Seen) -> Answer:
        with self.lock:
            step = self.script.pop(0) if self.script else None
        if step is None:
            return self.then(req)
        if isinstance(step, int):
            return Answer.json({"error": f"scripted {step}"}, step)
        if isinstance(step, tuple) and isinstance(step[0], int):
            status, headers = step
            return Answer.json({"error": f"scripted {status}"}, status, **headers)
        if step == "reset":
            return Answer(action="reset")
        if step == "invalid":
            return Answer(200, b'{"data": [{"order_id": 1,', {"Content-Type": "application/json"})
        real = self.then(req)
        if step == "truncate":
            real.action = "truncate"
        else:
            real.action, real.delay = str(step[0]), float(step[1])
        return real


# ---------------------------------------------------------------- files and credentials


class Files(App):
    """GET PATH: the bytes `files` holds for it, to a client that sends Basic auth for
    `user`/`password` (when set); 401 otherwise."""

    def __init__(self, files: dict[str, bytes], user: str = "", password: str = "") -> None:
        super().__init__()
        self.files, self.user, self.password = files, user, password

    def answer(self, req: Seen) -> Answer:
        if self.user:
            sent = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
            if req.headers.get("authorization") != f"Basic {sent}":
                return Answer(401, b"who are you?")
        body = self.files.get(urlsplit(req.path).path)
        return Answer(404, b"not here") if body is None else Answer(200, body)


class EchoAuth(App):
    """Answers 401 to everything, echoing the request's Authorization header in its body
    (as careless APIs do)."""

    def answer(self, req: Seen) -> Answer:
        said = {"error": "bad credentials", "authorization": req.headers.get("authorization")}
        return Answer.json(said, 401)


# ---------------------------------------------------------------- the webhook


class Receiver(App):
    """POST /hook: records each request's Idempotency-Key and rows (ndjson or a JSON array).

    Answers `script` first (as Scripted does, statuses, "reset" and ("trickle", seconds):
    an answer that never ends), then 413 for a body
    of more than `max_rows` rows, else 200.
    """

    def __init__(self, script: list[Any] | None = None, max_rows: int | None = None) -> None:
        super().__init__()
        self.script, self.max_rows = list(script or []), max_rows
        self.accepted: list[tuple[str, list[dict[str, Any]]]] = []  # (key, rows) answered 2xx

    def answer(self, req: Seen) -> Answer:
        if req.method != "POST" or urlsplit(req.path).path != "/hook":
            return Answer(404, b"no such hook")
        with self.lock:
            step = self.script.pop(0) if self.script else None
        if step == "reset":
            return Answer(action="reset")
        if isinstance(step, int):
            return Answer.json({"error": "scripted"}, step)
        if isinstance(step, tuple) and step[0] == "trickle":
            return Answer(200, b'{"ok": true}', action="trickle", delay=float(step[1]))
        if isinstance(step, tuple):
            return Answer.json({"error": "scripted"}, step[0], **step[1])
        rows = parse_rows(req)
        if self.max_rows is not None and len(rows) > self.max_rows:
            return Answer.json({"error": "too large"}, 413)
        with self.lock:
            self.accepted.append((req.headers.get("idempotency-key", ""), rows))
        return Answer.json({"ok": True}, 200)

    def rows(self) -> list[dict[str, Any]]:
        """Every row accepted, duplicates included."""
        return [r for _, rows in self.accepted for r in rows]

    def by_key(self) -> list[dict[str, Any]]:
        """The rows a receiver that honours Idempotency-Key keeps: each key's rows once."""
        kept: dict[str, list[dict[str, Any]]] = {}
        for key, rows in self.accepted:
            kept.setdefault(key, rows)
        return [r for rows in kept.values() for r in rows]


def parse_rows(req: Seen) -> list[dict[str, Any]]:
    text = req.body.decode()
    if req.headers.get("content-type", "").startswith("application/json"):
        return list(json.loads(text))
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def as_counter(rows: list[dict[str, Any]]) -> Counter[tuple[Any, ...]]:
    """Rows as a multiset of (column, value) tuples, for exact comparisons."""
    return Counter(tuple(sorted(r.items())) for r in rows)


# ---------------------------------------------------------------- running a server


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _serve(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        req = Seen(
            self.command,
            self.path,
            {k.lower(): v for k, v in self.headers.items()},
            body,
            time.monotonic(),
        )
        ans = self.server.app(req)
        if ans.action == "reset":
            self.request.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            self.request.close()
            return
        if ans.action == "slow":
            time.sleep(ans.delay)
        if ans.action == "drip":
            self._trickle(f"HTTP/1.1 {ans.status} OK\r\nContent-Length: 9\r\n".encode(), ans.delay)
            return
        data, headers = ans.body, dict(ans.headers)
        if self.server.app.gzip and "gzip" in req.headers.get("accept-encoding", ""):
            data, headers["Content-Encoding"] = gzip.compress(data), "gzip"
        self.send_response(ans.status)
        for k, v in headers.items():
            self.send_header(k, v)
        endless = ans.action == "trickle"
        self.send_header("Content-Length", str(2**40 if endless else len(data)))
        self.end_headers()
        if endless:
            self._trickle(data, ans.delay)
            return
        if ans.action == "truncate":
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.request.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(data)

    def _trickle(self, data: bytes, every: float) -> None:
        """The body one byte every `every` seconds, forever (`data` over and over, under a
        Content-Length it never reaches), until the client hangs up or the server shuts down."""
        self.close_connection = True
        for byte in itertools.cycle(data or b" "):
            if self.server.stopping.wait(every):
                return
            try:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
            except OSError:
                return

    def finish(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            super().finish()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, app: App) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.app = app
        self.stopping = threading.Event()  # set at shutdown: trickling answers end

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a dropped connection (the client timed out, a scripted reset) is expected here


@contextlib.contextmanager
def serve(app: App, tls: tuple[str, str] | None = None) -> Iterator[str]:
    """Run `app` on a free loopback port; yields its base URL (http://127.0.0.1:PORT).
    With `tls` (certificate file, key file) it speaks https."""
    server = _Server(app)
    scheme = "http"
    if tls:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*tls)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    app.base = f"{scheme}://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield app.base
    finally:
        server.stopping.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


# ---------------------------------------------------------------- data


def api_orders(n: int, seed: int = 1, start: dt.datetime | None = None) -> list[dict[str, Any]]:
    """`n` order records in `updated_at` order, as an API returns them: later versions of
    earlier orders, voids, and some that break the contract (negative amount, bad status)."""
    rnd = random.Random(seed)
    base = start or dt.datetime(2026, 3, 8, tzinfo=dt.UTC)
    out: list[dict[str, Any]] = []
    next_id = 0
    for i in range(n):
        if next_id and rnd.random() < 0.15:
            oid = rnd.randrange(next_id)
        else:
            oid, next_id = next_id, next_id + 1
        rec = {
            "order_id": oid,
            "customer": rnd.choice(["c1", "c2", None]),
            "amount": round(rnd.uniform(0, 500), 2),
            "status": rnd.choice(["open", "paid", "paid", "void"]),
            "updated_at": (base + dt.timedelta(minutes=i)).isoformat().replace("+00:00", "Z"),
        }
        roll = rnd.random()
        if roll < 0.03:
            rec["amount"] = -1.0
        elif roll < 0.05:
            rec["status"] = "lost"
        out.append(rec)
    return out


def self_signed(folder: Any) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 (and its key), as PEM files in `folder`."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = f"{folder}/cert.pem", f"{folder}/key.pem"
    with open(cert_file, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_file, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return cert_file, key_file


# ---------------------------------------------------------------- specs

FILES_SOURCE = 'source:\n  type: files\n  url: ./in/\n  glob: "*.ndjson"\n'
PARQUET_SINK = "sink:\n  type: parquet\n  url: ./out/orders\n  partition_by: [status]\n"


def api_spec(url: str, batch_rows: int, source_extra: str = "") -> str:
    """tests/data.py's orders spec reading a `PagedAPI(..., "cursor")` at `url` (from the
    high-water mark on) instead of files; `source_extra` is more `source:` lines."""
    api_source = (
        f"source:\n  type: http\n  url: {url}/v1/orders\n"
        '  params: {updated_since: "{cursor}"}\n  records: data\n'
        "  paginate: {style: cursor, cursor_path: meta.next_cursor}\n"
    )
    return _fast(spec_text(batch_rows=batch_rows), FILES_SOURCE, api_source + source_extra)


def hook_spec(url: str, batch_rows: int, hook_rows: int) -> str:
    """tests/data.py's orders spec (files in ./in/) posting to a `Receiver` at `url`."""
    hook_sink = (
        f"sink:\n  type: http\n  url: {url}/hook\n  batch_rows: {hook_rows}\n"
        "  retry_max_wait: 0.05\n"
    )
    return _fast(spec_text(batch_rows=batch_rows), PARQUET_SINK, hook_sink)


def _fast(text: str, old: str, new: str) -> str:
    """`text` with `old` replaced by `new`, and no rate limit to speak of (limits: is last)."""
    assert old in text
    return text.replace(old, new) + "  requests_per_second: 1000\n"
