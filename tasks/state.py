"""A pump's state: committed high-water mark and files read, the open run's manifest, the run lock.

Layout under `PUMPHOUSE_STATE_DIR/NAME/` (default `.pumphouse/NAME/`):

    state.json      committed after the rows it covers are in the sink
    manifest.json   the open run: its frozen inputs and phase; gone when the run commits
    runs.jsonl      one summary line per finished run, for `pumphouse status`
    staging/RUN/    the open run's validated batches, until it commits
    lock            held (flock) by the run that may load; released by the OS if it dies
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from schemas.errors import BusyError, PumpError
from schemas.settings import Settings, settings
from tasks import faults

STATE_VERSION = 1
REFRESH = "refresh.pending"  # a --full-refresh that has not finished: the next run redoes it


@dataclass(frozen=True)
class Committed:
    """What the last completed run left behind."""

    hwm: str | None = None
    files: dict[str, str] = field(default_factory=dict)  # url -> fingerprint
    seq: int = 0  # load batches committed so far, over all runs: the sink's batch sequence

    def is_read(self, url: str, fingerprint: str) -> bool:
        return self.files.get(url) == fingerprint


@dataclass
class Manifest:
    """The open run: chosen at its start, finished with the same inputs if it is interrupted."""

    run_id: str
    started_at: float
    inputs: list[dict[str, Any]]  # SourceFile.to_dict() values, in read order
    hwm_before: str | None
    phase: str = "staging"  # staging -> loading
    staged: dict[str, Any] = field(default_factory=dict)  # filled when phase becomes loading
    seq_base: int = 0  # the sink's batch sequence before this run: load batch k is seq_base + k + 1


class StateStore:
    """File-backed state of one pump. Every write is atomic (temp file, fsync, rename)."""

    def __init__(self, name: str, config: Settings = settings) -> None:
        self.name = name
        self.root = Path(config.state_dir).absolute() / name

    # ---- paths
    @property
    def staging(self) -> Path:
        return self.root / "staging"

    def run_dir(self, run_id: str) -> Path:
        return self.staging / run_id

    # ---- committed state
    def committed(self) -> Committed:
        data = self._read_json("state.json")
        if not data:
            return Committed()
        return Committed(
            hwm=data.get("hwm"), files=dict(data.get("files", {})), seq=int(data.get("seq", 0))
        )

    def commit(self, committed: Committed, summary: dict[str, Any]) -> None:
        """Commit state and close the run: state.json first, then the manifest goes."""
        self._write_json(
            "state.json",
            {
                "version": STATE_VERSION,
                "hwm": committed.hwm,
                "seq": committed.seq,
                "files": committed.files,
            },
        )
        faults.point("state_written")
        self.record_run(summary)
        self.drop_manifest()

    def record_run(self, summary: dict[str, Any]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / "runs.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(summary, default=str) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def runs(self, last: int = 10) -> list[dict[str, Any]]:
        path = self.root / "runs.jsonl"
        if not path.exists():
            return []
        lines = path.read_text(encoding="utf-8").splitlines()
        out = []
        for line in lines[-last:]:
            with contextlib.suppress(json.JSONDecodeError):
                out.append(json.loads(line))
        return out

    # ---- the open run
    def manifest(self) -> Manifest | None:
        data = self._read_json("manifest.json")
        return Manifest(**data) if data else None

    def save_manifest(self, manifest: Manifest) -> None:
        self._write_json("manifest.json", asdict(manifest))

    def drop_manifest(self) -> None:
        manifest = self.manifest()
        with contextlib.suppress(FileNotFoundError):
            (self.root / "manifest.json").unlink()
        if manifest:
            shutil.rmtree(self.run_dir(manifest.run_id), ignore_errors=True)
        shutil.rmtree(self.staging, ignore_errors=True)

    def reset(self) -> None:
        """Forget everything: committed state, open run, history. The lock file stays:
        a run holding it keeps holding it."""
        if not self.root.exists():
            return
        for entry in self.root.iterdir():
            if entry.name in ("lock", REFRESH):
                continue
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)

    # ---- an unfinished --full-refresh
    def refresh_pending(self) -> bool:
        return (self.root / REFRESH).exists()

    def mark_refresh(self, pending: bool) -> None:
        if pending:
            self.root.mkdir(parents=True, exist_ok=True)
            write_atomic(self.root / REFRESH, b"")
        else:
            (self.root / REFRESH).unlink(missing_ok=True)

    # ---- the lock
    @contextlib.contextmanager
    def lock(self, wait_seconds: float | None = None) -> Iterator[None]:
        """Hold the pump's run lock. An flock dies with its process, so a killed run never leaves a stale lock."""
        wait = settings.lock_wait_seconds if wait_seconds is None else wait_seconds
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            deadline = time.monotonic() + wait
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as e:
                    if e.errno not in (errno.EAGAIN, errno.EACCES):
                        raise
                    if time.monotonic() >= deadline:
                        holder = (
                            os.pread(fd, 200, 0).decode(errors="replace").strip()
                            or "another process"
                        )
                        raise BusyError(
                            f"pump {self.name!r} is already running ({holder}); "
                            f"wait for that run to finish, then run again"
                        ) from None
                    time.sleep(0.2)
            os.ftruncate(fd, 0)
            os.pwrite(
                fd,
                f"pid {os.getpid()} since {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}".encode(),
                0,
            )
            yield
        finally:
            os.close(fd)  # closing releases the flock

    # ---- atomic JSON
    def _read_json(self, name: str) -> dict[str, Any] | None:
        path = self.root / name
        try:
            return dict(json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            return None
        except (json.JSONDecodeError, ValueError) as e:
            raise PumpError(
                f"state file {path} is damaged ({e}); run `pumphouse reset` for this pump to start over"
            ) from None

    def _write_json(self, name: str, data: dict[str, Any]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        write_atomic(self.root / name, json.dumps(data, indent=1, default=str).encode())


def write_atomic(path: Path, data: bytes) -> None:
    """Write a file so that readers see the old or the new content, never a torn one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
