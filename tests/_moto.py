"""A real S3 API for tests: moto in server mode on loopback, and a fault proxy in front of it.

`moto_s3` runs moto's `ThreadedMotoServer` (as s3fs's own tests do) in this process. `FaultProxy` forwards raw HTTP to it and, on a schedule, answers `503 SlowDown`
or drops the connection after moto answered; it also counts the body bytes it serves
per object key, so a test can see how much of an object a reader fetched.
`enforce_auth` switches on moto's credential checks for one IAM user's key pair.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx

from tests.data import spec_text

REGION = "us-east-1"
# The moto server's own (unchecked until enforce_auth) credentials, for setting buckets up.
ADMIN = {"key": "testing-admin", "secret": "testing-admin-secret"}

SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def moto_s3() -> Iterator[str]:
    """A moto S3 server on loopback (moto's ThreadedMotoServer); yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    # Port 0: the server binds a free port itself (no window for a neighbour to take it).
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def s3(endpoint: str, key: str = ADMIN["key"], secret: str = ADMIN["secret"]) -> Any:
    """An s3fs filesystem on `endpoint`, not shared with any other (no instance or listing cache)."""
    import s3fs

    return s3fs.S3FileSystem(
        key=key,
        secret=secret,
        endpoint_url=endpoint,
        client_kwargs={"region_name": REGION},
        skip_instance_cache=True,
        use_listings_cache=False,
    )


def make_bucket(
    endpoint: str, name: str, key: str = ADMIN["key"], secret: str = ADMIN["secret"]
) -> None:
    """Create bucket `name` (the moto server's backend is shared by the whole test process)."""
    import boto3

    boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
    ).create_bucket(Bucket=name)


# What the specs name the credentials by: the pump's (and the Dask workers') environment.
ENV_KEY, ENV_SECRET = "${env:PUMP_S3_KEY}", "${env:PUMP_S3_SECRET}"


def _options(endpoint: str, key: str, secret: str, **extra: Any) -> dict[str, Any]:
    return {
        "key": key,
        "secret": secret,
        "endpoint_url": endpoint,
        "client_kwargs": {"region_name": REGION},
        **extra,
    }


def storage_options(
    endpoint: str, key: str = ENV_KEY, secret: str = ENV_SECRET, **extra: Any
) -> str:
    """A spec's `storage_options:` block (YAML flow style) for `endpoint`."""
    return _flow_yaml(_options(endpoint, key, secret, **extra))


def options_json(endpoint: str, key: str = ENV_KEY, secret: str = ENV_SECRET) -> str:
    """The same options as a PUMPHOUSE_*_STORAGE_OPTIONS setting (a JSON object)."""
    return json.dumps(_options(endpoint, key, secret))


def s3_spec(
    bucket: str, endpoint: str, opts: str | None = None, sink: str = "out/orders", **kw: Any
) -> str:
    """tests/data's order spec reading s3://BUCKET/in/ and landing in s3://BUCKET/SINK, both
    reached at `endpoint` with `opts` (default: the credentials from the environment)."""
    opts = opts or storage_options(endpoint)
    url = f"s3://{bucket}/{sink}"
    text = spec_text(src=f"s3://{bucket}/in/", out=url, **kw)
    text = text.replace('  glob: "*.ndjson"\n', f'  glob: "*.ndjson"\n  storage_options: {opts}\n')
    return text.replace(f"  url: {url}\n", f"  url: {url}\n  storage_options: {opts}\n")


def put_objects(bucket: str, objects: dict[str, bytes]) -> None:
    """Store `objects` (key -> body) in `bucket` straight through moto's backend, which the
    server in this process serves from: the same objects a PUT each would make (key, body,
    ETag), without a signed request per object, which costs far more CPU here than the test."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    backend = s3_backends[DEFAULT_ACCOUNT_ID]["global"]
    for key, body in objects.items():
        backend.put_object(bucket, key, body)


def upload(fs: Any, folder: Path, bucket: str) -> None:
    """The NDJSON files in `folder` into s3://BUCKET/in/."""
    for path in sorted(folder.glob("*.ndjson")):
        fs.put_file(str(path), f"{bucket}/in/{path.name}")


def _flow_yaml(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_flow_yaml(v)}" for k, v in value.items()) + "}"
    if isinstance(value, str):
        return '"' + value + '"'
    return str(value).lower() if isinstance(value, bool) else str(value)


# ---- moto's credential checks ---------------------------------------------------------------


@dataclass(frozen=True)
class Keys:
    key: str
    secret: str


@contextlib.contextmanager
def enforce_auth(endpoint: str) -> Iterator[Keys]:
    """Make moto check every request's signature against one IAM user allowed s3:*; yields
    that user's key pair. Credentials moto does not know get 403 InvalidAccessKeyId, a wrong
    secret 403 SignatureDoesNotMatch. The switch is moto-wide, so it is put back afterwards."""
    import boto3

    iam = boto3.client(
        "iam",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=ADMIN["key"],
        aws_secret_access_key=ADMIN["secret"],
    )
    user = f"pump-{time.monotonic_ns()}"
    iam.create_user(UserName=user)
    iam.put_user_policy(
        UserName=user,
        PolicyName="s3",
        PolicyDocument='{"Version": "2012-10-17", "Statement": '
        '[{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}',
    )
    made = iam.create_access_key(UserName=user)["AccessKey"]
    httpx.post(f"{endpoint}/moto-api/reset-auth", content=b"0").raise_for_status()
    try:
        yield Keys(made["AccessKeyId"], made["SecretAccessKey"])
    finally:
        httpx.post(f"{endpoint}/moto-api/reset-auth", content=b"inf").raise_for_status()


# ---- the fault proxy -------------------------------------------------------------------------


@dataclass
class Faults:
    """Which requests fail: every `slow_down`-th gets 503 SlowDown before moto sees it, every
    `reset`-th loses its connection after moto answered. 0 = never."""

    slow_down: int = 0
    reset: int = 0


@dataclass
class Traffic:
    requests: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    body_bytes: Counter[str] = field(default_factory=Counter)  # served, per "bucket/key" path
    lines: list[str] = field(default_factory=list)  # "METHOD /path?query status"


class FaultProxy:
    """A threaded HTTP proxy on loopback in front of `upstream`, injecting `faults`."""

    def __init__(self, upstream: str, faults: Faults | None = None) -> None:
        self.upstream = urlsplit(upstream)
        self.faults = faults or Faults()
        self.traffic = Traffic()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)

    def _decide(self) -> str:
        """The fault this request gets ('' for none)."""
        f = self.faults
        with self._lock:
            self.traffic.requests += 1
            n = self.traffic.requests
            for kind, every in (("slow_down", f.slow_down), ("reset", f.reset)):
                if every and n % every == 0:
                    self.traffic.faults[kind] += 1
                    return kind
        return ""

    def _served(self, method: str, path: str, status: int, nbytes: int) -> None:
        with self._lock:
            self.traffic.lines.append(f"{method} {path} {status}")
            if method == "GET":
                self.traffic.body_bytes[unquote(urlsplit(path).path).lstrip("/")] += nbytes


def _handler(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                parts: list[bytes] = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        return b"".join(parts)
                    parts.append(self.rfile.read(size))
                    self.rfile.readline()
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _forward(self) -> None:
            body = self._body()
            fault = proxy._decide()
            if fault == "slow_down":
                self.send_response(503)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(SLOW_DOWN)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(SLOW_DOWN)
                proxy._served(self.command, self.path, 503, 0)
                return
            up = http.client.HTTPConnection(
                str(proxy.upstream.hostname), proxy.upstream.port, timeout=60
            )
            try:
                headers = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() not in ("transfer-encoding", "connection", "content-length")
                }
                headers["Content-Length"] = str(len(body))
                up.request(self.command, self.path, body=body, headers=headers)
                resp = up.getresponse()
                if fault == "reset":
                    resp.read()
                    self.close_connection = True
                    with contextlib.suppress(OSError):
                        self.connection.shutdown(socket.SHUT_RDWR)
                    proxy._served(self.command, self.path, 0, 0)
                    return
                self.send_response(resp.status, resp.reason)
                length = resp.getheader("Content-Length")
                for k, v in resp.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                sent = 0
                if self.command == "HEAD" or resp.status in (204, 304):
                    self.send_header("Content-Length", length or "0")
                    self.end_headers()
                    resp.read()
                elif length is not None:
                    self.send_header("Content-Length", length)
                    self.end_headers()
                    while chunk := resp.read(1 << 16):
                        self.wfile.write(chunk)
                        sent += len(chunk)
                else:
                    data = resp.read()
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    sent = len(data)
                proxy._served(self.command, self.path, resp.status, sent)
            finally:
                up.close()

        do_GET = do_PUT = do_POST = do_PATCH = do_DELETE = do_HEAD = _forward

    return Handler
