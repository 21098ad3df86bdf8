"""A webhook source's buffer (its inbox): where `pumphouse serve` makes each accepted body a
file, and what a run of the pump reads as a files source of ndjson.

Layout under the buffer (default `PUMPHOUSE_STATE_DIR/_inbox/NAME/`; a folder or a bucket URL):

    YYYY/MM/DD/HHMMSS-<id>.ndjson   accepted bodies (one, or those that arrived together),
                                    a record a line; names sort by arrival (UTC), `<id>` a
                                    sortable id (sortable_id)
    YYYY/MM/DD/.NAME.tmp            a local file being written: hidden from runs, removed
                                    by the receiver's next start if a kill left it
    _receiver/                      the receiver's lock and idempotency keys (local buffer;
                                    for a bucket they stay under PUMPHOUSE_WORK_DIR/_receiver/NAME)

The default lies outside the pump's state folder (`.pumphouse/NAME/`) on purpose: `reset`
and `--full-refresh` forget that folder, and the inbox is data, not state. Names starting
with '_' or '.' are hidden from a files source, so runs read only the bodies.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from fsspec.core import url_to_fs

from schemas.errors import TransientError
from schemas.loader import resolve_mapping
from schemas.settings import settings
from schemas.spec import FilesSource, Spec, WebhookSource
from tasks.io.files import is_remote

T = TypeVar("T")
KEYS_FILE = "keys.sqlite"
GLOB = "**/*.ndjson"
CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # ULID's alphabet: sorts as its numbers do
_last = (0, 0)  # (milliseconds, randomness) of the last id made here
_last_lock = threading.Lock()


def sortable_id(now_ms: int) -> str:
    """A ULID: 48 bits of milliseconds then 80 random bits, 26 characters of Crockford
    base32, so text order is time order. Within one millisecond of one process the random
    part counts up (ULID's monotonic rule), so files written here sort by arrival; the
    randomness keeps ids apart across a restart or a second machine in the same
    millisecond. (Python 3.11 has no uuid7; a counter alone would collide after a restart.)"""
    global _last
    with _last_lock:
        ms, rand = _last
        if now_ms <= ms and rand + 1 < 2**80:
            now_ms, rand = ms, rand + 1  # the clock went back or stood: keep order anyway
        else:
            rand = secrets.randbits(80)
        _last = (now_ms, rand)
    value = (now_ms << 80) | rand
    return "".join(CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


def file_name(now: float) -> str:
    """`YYYY/MM/DD/HHMMSS-<id>.ndjson` for a body arriving at `now` (seconds, UTC)."""
    ms = int(now * 1000)
    stamp = time.strftime("%Y/%m/%d/%H%M%S", time.gmtime(ms / 1000))
    return f"{stamp}-{sortable_id(ms)}.ndjson"


def buffer_of(name: str, source: WebhookSource) -> tuple[str, dict[str, Any]]:
    """The buffer's URL and its storage options (unresolved, as the spec writes them)."""
    if source.buffer:
        return source.buffer.rstrip("/"), dict(source.storage_options)
    url = f"{settings.state_dir.rstrip('/')}/_inbox/{name}"
    if is_remote(settings.state_dir):  # the state location's own options
        raw = settings.state_storage_options.strip()
        return url, dict(json.loads(raw)) if raw else {}
    return url.removeprefix("file://"), {}


def receiver_dir(name: str, source: WebhookSource) -> Path:
    """Where the receiver keeps its lock and keys (KEYS_FILE): `_receiver/` in a local
    buffer, PUMPHOUSE_WORK_DIR/_receiver/NAME for a bucket."""
    url, _ = buffer_of(name, source)
    if is_remote(url):
        return Path(settings.work_dir).absolute() / "_receiver" / name
    return Path(url.removeprefix("file://")).absolute() / "_receiver"


def as_files(spec: Spec) -> Spec:
    """A webhook-source spec as the run reads it: a files source of ndjson over its buffer,
    so every promise about files holds (contract, quarantine, new files, state). A local
    buffer is made if no body came yet: a run then reads nothing rather than failing."""
    if not isinstance(spec.source, WebhookSource):
        return spec
    url, options = buffer_of(spec.name, spec.source)
    if not is_remote(url):
        Path(url).mkdir(parents=True, exist_ok=True)
    files = FilesSource(
        type="files",
        url=url,
        glob=GLOB,
        format="ndjson",
        storage_options=options,
        timezone=spec.source.timezone,
    )
    return spec.model_copy(update={"source": files})


class StoreFailed(TransientError):
    """The buffer could not take a body (a full disk, an unreachable bucket): answer 503."""


class Inbox:
    """One pump's buffer: put a body as a new file, atomically; tell whether a file is there."""

    def __init__(self, name: str, source: WebhookSource) -> None:
        self.name = name
        self.url, options = buffer_of(name, source)
        self.remote = is_remote(self.url)
        self.receiver_dir = receiver_dir(name, source)
        if self.remote:
            self._fs, self._root = url_to_fs(self.url, **resolve_mapping(options))
        else:
            self._root = str(Path(self.url.removeprefix("file://")).absolute())

    def prepare(self) -> str | None:
        """Make the buffer, and remove the temp files a killed receiver left (only one
        receiver writes a buffer: the caller holds its lock). A bucket that cannot be
        reached yet is not fatal: bodies are answered 503 until it can; the warning is
        returned."""
        self.receiver_dir.mkdir(parents=True, exist_ok=True)
        if self.remote:  # a prefix with an object, so that a run finds the buffer
            try:
                self._fs.pipe_file(f"{self._root}/_receiver", b"")
            except Exception as e:
                return (
                    f"pump {self.name}: cannot write to its buffer {self.url} yet "
                    f"({type(e).__name__}: {e}); bodies are answered 503 until it can"
                )
            return None
        for tmp in Path(self._root).glob("*/*/*/.*.tmp"):
            tmp.unlink(missing_ok=True)
        return None

    def put(self, rel: str, data: bytes) -> None:
        """Store `data` as the file `rel`, whole or not at all, durable on return; a failure
        raises StoreFailed and leaves nothing a run would read."""
        folder = self.publish(rel, data, self.hide(rel, data))
        if folder is not None:
            self.sync(folder)

    def hide(self, rel: str, data: bytes) -> Path | None:
        """The first half of put for a local buffer: `data` durable in a hidden temp file
        beside `rel`, which a run never reads (its path returned; None for a bucket, where
        publish does it all). Writing it may overlap with the key commit that must come
        before publish (tasks/receive/keys.py)."""
        if self.remote:
            return None
        return self._storing(lambda: _write_hidden(Path(self._root) / rel, data))

    def publish(self, rel: str, data: bytes, hidden: Path | None) -> Path | None:
        """The second half: the file `rel` appears whole (a rename, or one PUT to a bucket).
        A local rename is durable only once its folder (returned) is synced: sync()."""
        if hidden is None:
            self._storing(lambda: self._fs.pipe_file(f"{self._root}/{rel}", data))  # atomic
            return None
        final = Path(self._root) / rel
        try:
            self._storing(lambda: os.rename(hidden, final))
        except StoreFailed:
            self.discard(hidden)
            raise
        return final.parent

    def sync(self, folder: Path) -> None:
        """Make the renames into `folder` durable: one fsync for every file renamed there."""
        self._storing(lambda: _fsync_dir(folder))

    def discard(self, hidden: Path | None) -> None:
        if hidden is not None:
            with contextlib.suppress(OSError):
                hidden.unlink()

    def _storing(self, step: Callable[[], T]) -> T:
        try:
            return step()
        except Exception as e:
            raise StoreFailed(
                f"pump {self.name}: cannot store the body in its buffer "
                f"({type(e).__name__}: {e}); free space or fix the buffer, the sender retries"
            ) from None

    def exists(self, rel: str) -> bool:
        if self.remote:
            return bool(self._fs.exists(f"{self._root}/{rel}"))
        return (Path(self._root) / rel).is_file()


def _write_hidden(final: Path, data: bytes) -> Path:
    """`data` in a temp name beside `final`, fsynced: a kill at any point leaves at most a
    hidden temp file (removed at the next start). The rename into place and the folder's
    fsync come after (Inbox.publish, Inbox.sync). Each new folder is synced into its parent,
    or a power loss could drop the day's folder with the file in it."""
    _make_dirs(final.parent)
    tmp = final.with_name(f".{final.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return tmp


def _make_dirs(folder: Path) -> None:
    if folder.is_dir():
        return
    _make_dirs(folder.parent)
    with contextlib.suppress(FileExistsError):
        folder.mkdir()
    _fsync_dir(folder.parent)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
