"""One pump's receiver, without HTTP: who may post, how often, and storing a body once.

flows/serve.py puts these behind Starlette routes; everything here is plain Python, so the
storing rule (tasks/receive/keys.py) reads in one place.
"""

from __future__ import annotations

import fcntl
import hmac
import math
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import IO

from schemas.errors import BusyError
from schemas.spec import Spec, WebhookSource
from tasks.receive.inbox import Inbox, file_name
from tasks.receive.keys import KeyStore


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

    def store(self, bodies: list[tuple[bytes, str | None]]) -> list[tuple[str, str]]:
        """Store bodies (ndjson, Idempotency-Key or None) once each, together: per body
        ("accepted", file) once the file is durable, or ("duplicate", file) when its key
        was stored within 24 h. The new ones share one file, one key commit and one fsync.
        Raises when the buffer or the keys cannot take them (503: nothing acknowledged)."""
        now = time.time()
        name = file_name(now)
        answers: list[tuple[str, str]] = []
        claimed: dict[str, None] = {}  # the new keys, in order
        parts: list[bytes] = []
        for data, key in bodies:
            if key is not None and key in claimed:  # sent twice at once: stored once
                answers.append(("duplicate", name))
                continue
            if key is not None:
                earlier = self.keys.file_of(key, now)
                if earlier is not None and self.inbox.exists(earlier):
                    answers.append(("duplicate", earlier))
                    continue
                claimed[key] = None
            parts.append(data)
            answers.append(("accepted", name))
        if parts:
            self.keys.claim(list(claimed), name, now)  # before the file: see tasks/receive/keys.py
            self.inbox.put(name, b"".join(parts))
        return answers

    def close(self) -> None:
        self.keys.close()
        if self._lock_file is not None:
            self._lock_file.close()  # releases the lock


MAX_GROUP_BODIES = 256
MAX_GROUP_BYTES = 16 * 2**20


class Grouper:
    """One writer thread per pump: bodies that arrive while a file is being written go
    together into the next one, so that many small bodies cost one fsync. No body waits
    on a timer: at most for the write in progress, then its own."""

    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver
        self._queue: queue.SimpleQueue[tuple[bytes, str | None, Future[tuple[str, str]]]] = (
            queue.SimpleQueue()
        )
        threading.Thread(target=self._write, name=f"writer-{receiver.name}", daemon=True).start()

    def submit(self, data: bytes, key: str | None) -> Future[tuple[str, str]]:
        """The answer for one body, once its group is durable (or the error)."""
        answer: Future[tuple[str, str]] = Future()
        self._queue.put((data, key, answer))
        return answer

    def _write(self) -> None:
        while True:
            group = [self._queue.get()]
            size = len(group[0][0])
            while len(group) < MAX_GROUP_BODIES and size < MAX_GROUP_BYTES:
                try:
                    group.append(self._queue.get_nowait())
                except queue.Empty:
                    break
                size += len(group[-1][0])
            # A body whose request is gone (its sender hung up) is not written: nobody is told.
            group = [g for g in group if g[2].set_running_or_notify_cancel()]
            if not group:
                continue
            try:
                answers = self.receiver.store([(data, key) for data, key, _ in group])
            except Exception as e:
                for *_, answer in group:
                    answer.set_exception(e)
            else:
                for (*_, answer), outcome in zip(group, answers, strict=True):
                    answer.set_result(outcome)
