"""One pump's receiver, without HTTP: who may post, how often, and storing a body once.

flows/serve.py puts these behind Starlette routes; everything here is plain Python, so the
storing rule (tasks/inbox_keys.py) reads in one place.
"""

from __future__ import annotations

import fcntl
import hmac
import math
import threading
import time
from dataclasses import dataclass, field
from typing import IO

from schemas.errors import BusyError
from schemas.spec import Spec, WebhookSource
from tasks.inbox import Inbox, file_name
from tasks.inbox_keys import KeyStore


class TokenBucket:
    """`rate` requests a second on average, bursts of up to `burst`: one bucket per pump."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self._tokens, self._at = burst, time.monotonic()
        self._lock = threading.Lock()

    def take(self, now: float | None = None) -> int:
        """0 when a request may go now (a token is taken), else whole seconds to wait."""
        now = time.monotonic() if now is None else now
        with self._lock:
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
            self._at = now
            if self._tokens >= 1:
                self._tokens -= 1
                return 0
            return max(1, math.ceil((1 - self._tokens) / self.rate))


def authorized(header: str | None, token: str) -> bool:
    """`Authorization: Bearer TOKEN` with the pump's token, compared in constant time."""
    scheme, _, given = (header or "").partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode("utf-8"), token.encode("utf-8"))


@dataclass
class Counts:
    accepted: int = 0
    duplicate: int = 0
    refused: int = 0


@dataclass
class Receiver:
    """What `serve` holds for one webhook-source pump."""

    name: str
    path: str
    token: str = field(repr=False)
    max_body_bytes: int
    inbox: Inbox
    keys: KeyStore
    bucket: TokenBucket
    counts: Counts = field(default_factory=Counts)
    warning: str | None = None  # what `serve` should say as it starts
    _lock_file: IO[bytes] | None = field(default=None, repr=False)

    @classmethod
    def open(cls, spec: Spec, token: str) -> Receiver:
        """Take the buffer's lock (one receiver per buffer), clear what a killed one left,
        open the keys."""
        source = spec.source
        assert isinstance(source, WebhookSource)
        inbox = Inbox(spec.name, source)
        inbox.receiver_dir.mkdir(parents=True, exist_ok=True)
        lock = open(inbox.receiver_dir / "lock", "ab")  # noqa: SIM115 (held while serving)
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise BusyError(
                f"pump {spec.name}: another `pumphouse serve` receives into {inbox.url} "
                f"(lock {inbox.receiver_dir / 'lock'}); stop it, or serve this spec there"
            ) from None
        warning = inbox.prepare()
        rate = spec.limits.requests_per_second
        return cls(
            name=spec.name,
            path=source.path or f"/ingest/{spec.name}",
            token=token,
            max_body_bytes=int(source.max_body_bytes),
            inbox=inbox,
            keys=KeyStore(inbox.receiver_dir / "keys.sqlite"),
            bucket=TokenBucket(rate, burst=max(1.0, rate)),
            warning=warning,
            _lock_file=lock,
        )

    def store(self, data: bytes, key: str | None) -> tuple[str, str]:
        """Store a body's ndjson once: ("accepted", file) once it is durable, or
        ("duplicate", file) when `key` was stored within 24 h. Raises when the buffer or
        the keys cannot take it (answer 503: nothing acknowledged)."""
        now = time.time()
        name = file_name(now)
        if key is not None:
            earlier = self.keys.file_of(key, now)
            if earlier is not None and self.inbox.exists(earlier):
                return "duplicate", earlier
            self.keys.claim(key, name, now)  # before the file: see tasks/inbox_keys.py
        self.inbox.put(name, data)
        return "accepted", name

    def close(self) -> None:
        self.keys.close()
        if self._lock_file is not None:
            self._lock_file.close()  # releases the lock
