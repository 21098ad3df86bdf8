"""The receiver's idempotency keys: which `Idempotency-Key` went into which buffer file, for 24 h.

Two SQLite tables in `_receiver/keys.sqlite` beside the buffer (tasks/receive/inbox.py): sqlite3 is in
the standard library, a commit in WAL mode with `synchronous=FULL` is on disk when it
returns, lookups are by index, and expired keys are deleted in place, so the file stays
bounded by what 24 h of requests at `limits.requests_per_second` can bring. Keys are kept
as their SHA-256, so a row has a fixed size whatever a sender puts in the header. The
second table, `counts`, keeps how many answers of each kind the receivers gave (for
`pumphouse status`), added to in the same commits.

The rule that makes a kill -9 safe at any point:

    A key is *seen* when its row is there AND the file the row names is in the buffer.
    The row is committed (durably) BEFORE the file is visible (renamed into place, or
    PUT), and 202 comes after both. (The hidden temp file may be written meanwhile.)

- killed before the row: nothing stored, nothing acknowledged; the retry stores it.
- killed after the row, before the file is whole: the row names a file that is not there,
  so the key is not seen; the retry stores the body (a new file, the row updated).
- killed after the file, before the answer: row and file are there; the retry gets 200 and
  the body stays stored once.
One receiver per buffer (its lock) and one writer thread per pump (tasks/receive/server.Grouper:
groups are planned one after another, a key twice in one group is stored once, and a body
whose key is in a group still being written waits for that group's answer) keep two
writers of one key apart, though several groups are written at once.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import time
from pathlib import Path

Counts = dict[str, int]  # answer (accepted, duplicate, refused) -> how many

TTL_SECONDS = 24 * 3600
EXPIRE_EVERY = 60.0  # seconds between deletions of expired keys


def digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class KeyStore:
    """Idempotency keys -> the buffer file holding that body, each for TTL_SECONDS."""

    def __init__(self, path: Path, ttl: float = TTL_SECONDS) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.ttl = ttl
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS keys (key TEXT PRIMARY KEY, file TEXT NOT NULL, "
            "at REAL NOT NULL)"
        )
        self._db.execute("CREATE INDEX IF NOT EXISTS keys_at ON keys (at)")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS counts (answer TEXT PRIMARY KEY, n INTEGER NOT NULL)"
        )
        self._expired_at = 0.0
        # Lookups on their own connection: in WAL mode a read never waits for a commit
        # on its way to the disk, so the next group is planned meanwhile.
        self._reader = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._read_lock = threading.Lock()

    def file_of(self, key: str, now: float | None = None) -> str | None:
        """The file a body with `key` went into within the TTL, if a row says so."""
        now = time.time() if now is None else now
        with self._read_lock:  # fetchall: the read ends here, a later one sees new commits
            rows = self._reader.execute(
                "SELECT file FROM keys WHERE key = ? AND at > ?", (digest(key), now - self.ttl)
            ).fetchall()
        return str(rows[0][0]) if rows else None

    def claim(
        self, keys: list[str], file: str, now: float | None = None, counts: Counts | None = None
    ) -> None:
        """Record, durably and in one commit, that the bodies with `keys` go into `file`
        (before writing it), and add `counts` (answers given since the last commit)."""
        now = time.time() if now is None else now
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.executemany(
                    "INSERT OR REPLACE INTO keys (key, file, at) VALUES (?, ?, ?)",
                    [(digest(key), file, now) for key in keys],
                )
                self._add(counts or {})
                if now - self._expired_at > EXPIRE_EVERY:
                    self._db.execute("DELETE FROM keys WHERE at <= ?", (now - self.ttl,))
                    self._expired_at = now
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def add_counts(self, counts: Counts) -> None:
        """Add answers given (accepted, duplicate, refused) to the saved totals."""
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._add(counts)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def _add(self, counts: Counts) -> None:
        self._db.executemany(
            "INSERT INTO counts (answer, n) VALUES (?, ?) "
            "ON CONFLICT (answer) DO UPDATE SET n = n + excluded.n",
            [(answer, n) for answer, n in counts.items() if n],
        )

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM keys").fetchone()[0])

    def close(self) -> None:
        with self._read_lock:
            self._reader.close()
        with self._lock:
            self._db.close()


def saved_counts(path: Path) -> Counts | None:
    """The answers a pump's receivers gave, as saved in `path` (read only; None when no
    receiver ran there yet). Saved with each key commit, and at least every second while
    idle: a receiver killed with -9 loses the last second's counts, never a body."""
    if not path.is_file():
        return None
    db = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT answer, n FROM counts").fetchall()
    except sqlite3.OperationalError:  # made by a receiver that kept no counts
        return None
    finally:
        db.close()
    found = {"accepted": 0, "duplicate": 0, "refused": 0}
    found.update({str(answer): int(n) for answer, n in rows})
    return found
