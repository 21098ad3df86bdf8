"""One pump's receiver, without HTTP: who may post, how often, and storing a body once.

flows/serve.py puts these behind Starlette routes; everything here is plain Python, so the
storing rule (tasks/receive/keys.py) reads in one place.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hmac
import math
import queue
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from schemas.errors import BusyError
from schemas.spec import Spec, WebhookSource
from tasks.receive.inbox import KEYS_FILE, Inbox, file_name
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
    _unsaved: Counts = field(default_factory=Counts, repr=False)
    _counts_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _committer: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="keys"), repr=False
    )

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
            keys=KeyStore(inbox.receiver_dir / KEYS_FILE),
            bucket=TokenBucket(rate, burst=max(1.0, rate)),
            warning=warning,
            _lock_file=lock,
        )

    def plan(self, bodies: list[tuple[bytes, str | None]]) -> Group:
        """Decide, in arrival order, what becomes of bodies (ndjson, Idempotency-Key or
        None) stored together: per body ("accepted", file), or ("duplicate", file) when its
        key was stored within 24 h or is twice in the group. The new ones share one file and
        one key commit (write, then publish). The caller keeps a key in one group at a time."""
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
        return Group(name, now, answers, list(claimed), b"".join(parts))

    def write(self, group: Group) -> Path | None:
        """The first half of storing a group: its keys committed and its file durable under
        a hidden name (returned; None for a bucket or a group of duplicates only). Groups
        may be written concurrently. Raises when the buffer or the keys cannot take them
        (503: nothing acknowledged)."""
        if not group.data:
            return None
        counts = self._take_unsaved()
        # The key commit and the hidden file's fsync wait for the disk together; the file
        # becomes visible only once both are done (see tasks/receive/keys.py).
        claim = self._committer.submit(self.keys.claim, group.keys, group.name, group.at, counts)
        hidden = None
        try:
            hidden = self.inbox.hide(group.name, group.data)
        finally:
            try:
                claim.result()
            except BaseException:
                self.inbox.discard(hidden)
                self._give_back(counts)
                raise
        return hidden

    def publish(self, group: Group, hidden: Path | None) -> Path | None:
        """The second half, in arrival order: the group's file appears (a rename, or one PUT
        to a bucket). Its answers hold once the returned folder is fsynced (Inbox.sync;
        None: nothing left to do)."""
        if not group.data:
            return None
        return self.inbox.publish(group.name, group.data, hidden)

    def count(self, answer: str) -> None:
        """One more answer given ("accepted", "duplicate" or "refused"): in /healthz at
        once, and saved with the keys' next commit (KeyStore.add_counts)."""
        with self._counts_lock:
            setattr(self.counts, answer, getattr(self.counts, answer) + 1)
            setattr(self._unsaved, answer, getattr(self._unsaved, answer) + 1)

    def save_counts(self) -> None:
        """Save the answers given since the last commit (the writer does, when idle)."""
        counts = self._take_unsaved()
        if any(counts.values()):
            self.keys.add_counts(counts)

    def _give_back(self, counts: dict[str, int]) -> None:
        with self._counts_lock:
            for answer, n in counts.items():
                setattr(self._unsaved, answer, getattr(self._unsaved, answer) + n)

    def _take_unsaved(self) -> dict[str, int]:
        with self._counts_lock:
            taken, self._unsaved = vars(self._unsaved), Counts()
        return taken

    def close(self) -> None:
        self._committer.shutdown()
        with contextlib.suppress(Exception):  # a broken key store: the counts are lost
            self.save_counts()
        self.keys.close()
        if self._lock_file is not None:
            self._lock_file.close()  # releases the lock


MAX_GROUP_BODIES = 256
MAX_GROUP_BYTES = 16 * 2**20
GROUPS_AT_ONCE = 4  # groups on their way to the disk together (their fsyncs overlap)
COUNTS_EVERY = 1.0  # seconds idle before the writer saves the answers' counts

_Answer = asyncio.Future[tuple[str, str]]
_Body = tuple[bytes, str | None, _Answer]


@dataclass
class Group:
    """Bodies stored together (Receiver.plan): one file `name`, one key commit."""

    name: str
    at: float  # when it was planned (seconds, UTC): its keys' time
    answers: list[tuple[str, str]]  # per body: ("accepted" or "duplicate", file)
    keys: list[str]  # the keys it stores
    data: bytes  # its new bodies, ndjson (empty: duplicates only)


class Grouper:
    """Three stages per pump. The writer takes every body waiting and plans them as one
    group (one key commit, one file), in arrival order; up to GROUPS_AT_ONCE groups are
    then written at once (key commit and hidden file, each fsynced), so their waits for
    the disk overlap; the syncer publishes finished groups in order, fsyncs their folders
    once and answers them. So bodies that arrive while groups are on their way to the disk
    go together into the next one, and no body waits on a timer. A body whose key is in a
    group not yet answered waits for that group, then is planned again (stored, or 200).
    Answers (200 included) are given only once every group planned before theirs is
    durable."""

    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver
        self._queue: queue.SimpleQueue[list[_Body]] = queue.SimpleQueue()
        self._arriving: list[_Body] = []  # bodies of this turn of the event loop
        self._staged: queue.SimpleQueue[_Staged] = queue.SimpleQueue()
        self._slots = threading.Semaphore(GROUPS_AT_ONCE)
        self._busy: dict[str, list[_Body]] = {}  # key in a group on its way -> bodies held
        self._busy_lock = threading.Lock()
        name = receiver.name
        self._writers = ThreadPoolExecutor(GROUPS_AT_ONCE, thread_name_prefix=f"store-{name}")
        threading.Thread(target=self._plan, name=f"writer-{name}", daemon=True).start()
        threading.Thread(target=self._sync, name=f"syncer-{name}", daemon=True).start()

    def submit(self, data: bytes, key: str | None) -> _Answer:
        """The answer for one body, once its group is durable (or the error). Called on
        the event loop: the bodies of one turn of the loop go to the writer together."""
        answer: _Answer = asyncio.get_running_loop().create_future()
        if not self._arriving:
            answer.get_loop().call_soon(self._hand_over)
        self._arriving.append((data, key, answer))
        return answer

    def _hand_over(self) -> None:
        self._queue.put(self._arriving)
        self._arriving = []

    def _plan(self) -> None:
        while True:
            self._slots.acquire()  # released once a group is answered
            group = self._take()
            # A body whose request is gone (its sender hung up) is not written: nobody is told.
            group = [g for g in group if not g[2].cancelled()]
            with self._busy_lock:
                held = [g for g in group if g[1] is not None and g[1] in self._busy]
                for body in held:
                    self._busy[str(body[1])].append(body)
                group = [g for g in group if not (g[1] is not None and g[1] in self._busy)]
            if not group:
                self._slots.release()
                continue
            answers = [answer for *_, answer in group]
            try:
                planned = self.receiver.plan([(data, key) for data, key, _ in group])
            except Exception as e:
                self._staged.put(_Staged(answers, None, None, e))
                continue
            with self._busy_lock:
                for key in planned.keys:
                    self._busy[key] = []
            written = self._writers.submit(self.receiver.write, planned)
            self._staged.put(_Staged(answers, planned, written, None))

    def _take(self) -> list[_Body]:
        """Every body waiting (at least one; saving the counts while idle)."""
        while True:
            try:
                group = self._queue.get(timeout=COUNTS_EVERY)
                break
            except queue.Empty:  # idle: save the counts of answers given meanwhile
                with contextlib.suppress(Exception):  # a broken key store fails the next body
                    self.receiver.save_counts()
        size = sum(len(data) for data, *_ in group)
        while len(group) < MAX_GROUP_BODIES and size < MAX_GROUP_BYTES:
            try:
                more = self._queue.get_nowait()
            except queue.Empty:
                break
            group += more
            size += sum(len(data) for data, *_ in more)
        return group

    def _sync(self) -> None:
        while True:
            groups = [self._staged.get()]
            while True:
                try:
                    groups.append(self._staged.get_nowait())
                except queue.Empty:
                    break
            folders: dict[Path, None] = {}
            for g in groups:
                if g.error is None and g.group is not None and g.written is not None:
                    try:
                        folder = self.receiver.publish(g.group, g.written.result())
                    except Exception as e:
                        g.error = e
                    else:
                        if folder is not None:
                            folders[folder] = None
            failed: Exception | None = None
            for folder in folders:
                try:
                    self.receiver.inbox.sync(folder)
                except Exception as e:
                    failed = e  # every group here may have relied on it: none is answered
            settled: dict[asyncio.AbstractEventLoop, list[tuple[_Answer, Any]]] = {}
            for g in groups:
                error = g.error or failed
                for i, answer in enumerate(g.answers):
                    outcome = error if error is not None or g.group is None else g.group.answers[i]
                    settled.setdefault(answer.get_loop(), []).append((answer, outcome))
            for loop, outcomes in settled.items():  # one wake-up of the loop, not one a body
                with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                    loop.call_soon_threadsafe(_settle, outcomes)
            for g in groups:
                self._done(g)

    def _done(self, staged: _Staged) -> None:
        """A group is answered: bodies held for its keys are planned again, its slot freed."""
        if staged.group is not None:
            with self._busy_lock:
                held = [b for key in staged.group.keys for b in self._busy.pop(key, [])]
            if held:
                self._queue.put(held)
        self._slots.release()


def _settle(outcomes: list[tuple[_Answer, Any]]) -> None:
    """On the event loop: each answer its result, or its exception."""
    for answer, outcome in outcomes:
        if answer.done():  # its request was cancelled meanwhile
            continue
        if isinstance(outcome, BaseException):
            answer.set_exception(outcome)
        else:
            answer.set_result(outcome)


@dataclass
class _Staged:
    """A group the writer planned: its answers wait for its file and its folder's fsync."""

    answers: list[_Answer]
    group: Group | None
    written: Future[Path | None] | None  # the hidden file, once written (Receiver.write)
    error: Exception | None
