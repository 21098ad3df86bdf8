"""A pump's state: committed high-water mark and files read, the open run's manifest, the run lock.

Layout under `PUMPHOUSE_STATE_DIR/NAME/` (default `.pumphouse/NAME/`):

    state.json      committed after the rows it covers are in the sink: {version, hwm, seq,
                    files, seen?, rest?}. `files`: path below the source's base -> {size,
                    fp, hash?, lines?, ends?} (see tasks/state/known); version 1 keyed them by URL,
                    with the fp alone, and a run converts them. `seen`: the rows of the
                    mark's window already loaded (tasks/transform/window). `rest`: the inputs a run
                    stopped at limits.max_rows_per_run left for the next
    manifest.json   the open run: its frozen inputs and phase; gone when the run commits
    runs.jsonl      one summary line per finished run, for `pumphouse status`
    staging/RUN/    the open run's validated batches, until it commits
    lock            held (flock) by the run that may load; released by the OS if it dies

PUMPHOUSE_STATE_DIR may be an fsspec URL (`s3://bucket/pumphouse`): then the three JSON
files live there, one PUT each, and staging and the lock stay on local disk under
`PUMPHOUSE_WORK_DIR/NAME/`. A run resumed on another machine finds no staging there and
stages its frozen inputs again (`staged_here`). The lock is per machine; across machines
one run at a time is Prefect's concurrency limit.
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
from schemas.secrets import redact_all
from schemas.settings import Settings, settings
from tasks.io.files import LocalFiles, RemoteFiles, StateFiles, is_remote
from tasks.run import faults
from tasks.sources.inputs import Input, inputs_json, inputs_of

STATE_VERSION = 2  # 2: files by path relative to the source, with their content's hash
REFRESH = "refresh.pending"  # a --full-refresh that has not finished: the next run redoes it
LOCK = "lock"
RUNS = "runs.jsonl"  # one summary line per finished run
STAGED = ".staged"  # in a run's staging folder: its staging finished on this machine


@dataclass(frozen=True)
class Committed:
    """What the last completed run left behind."""

    hwm: str | None = None
    files: dict[str, Any] = field(
        default_factory=dict
    )  # relative path -> entry (tasks/state/known)
    seq: int = 0  # load batches committed so far, over all runs: the sink's batch sequence
    # Inputs a run stopped at limits.max_rows_per_run left for the next, which reads them
    # before anything new, against the mark the stopped run started with (`rest_hwm`).
    rest: list[Input] = field(default_factory=list)
    rest_hwm: str | None = None
    # (cursor, value hash) of the rows at or above the next run's `since` that runs loaded
    # (tasks/transform/window.py); None in state written before windows were kept.
    seen: list[tuple[str, str]] | None = None
    seen_from: str | None = None  # the lowest cursor `seen` covers (a wider lookback starts here)


@dataclass
class Manifest:
    """The open run: chosen at its start, finished with the same inputs if it is interrupted."""

    run_id: str
    started_at: float
    inputs: list[Input]  # in read order (JSON: tasks/sources/inputs)
    hwm_before: str | None  # rows are new when their cursor is above it
    phase: str = "staging"  # staging -> loading
    staged: dict[str, Any] = field(default_factory=dict)  # filled when phase becomes loading
    seq_base: int = 0  # the sink's batch sequence before this run: load batch k is seq_base + k + 1
    # The committed mark at the start. Above hwm_before when the run reads what a run stopped
    # at max_rows_per_run left (see Committed.rest); the mark after the run is never below it.
    hwm_committed: str | None = None
    rest: list[Input] = field(default_factory=list)  # files the row limit kept out
    # The incremental window (tasks/transform/window.py), frozen: rows with cursor >= `since` are new.
    # A manifest from before windows has no `since`: it read with `>` at hwm_before (`strict`).
    since: str | None = None
    lookback: float = 0.0
    strict: bool = False
    # The window's rows loaded before this run (Committed.seen at its start): a replay of a
    # run killed after its commit must not take its own rows for rows loaded before.
    seen: list[tuple[str, str]] | None = None
    seen_from: str | None = None  # the lowest cursor `seen` covers (a wider lookback starts here)
    # The spec's values that cut the load's batches and say where rows land, as the run began
    # (key path -> value; tasks/run/as_started.py). Empty in a manifest from before: the spec's.
    frozen: dict[str, Any] = field(default_factory=dict)
    # Reads what a run stopped at max_rows_per_run left: the same logical load goes on (a
    # Delta overwrite appends the rest to the rows that run put in place of the old).
    continues: bool = False
    known: dict[str, Any] = field(
        default_factory=dict
    )  # state entries to renew (tasks/state/known)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        if "since" not in data:
            data = {**data, "since": data.get("hwm_before"), "strict": True}
        seen = data.get("seen")
        return cls(
            **{
                **data,
                "seen": [(str(c), str(h)) for c, h in seen] if seen else seen,
                "inputs": inputs_of(data["inputs"]),
                "rest": inputs_of(data.get("rest", [])),
            }
        )

    def to_dict(self) -> dict[str, Any]:
        """The inverse of from_dict: manifest.json."""
        data = asdict(self)
        data["inputs"], data["rest"] = inputs_json(self.inputs), inputs_json(self.rest)
        return data

    def left(self) -> list[Input]:
        """What this run leaves for the next (limits.max_rows_per_run): the files kept out,
        and where an http source stopped (in the staged counts, found again when re-staged)."""
        return self.rest + inputs_of(self.staged.get("rest", []))

    @property
    def hwm_floor(self) -> str | None:
        """The lowest mark this run may commit (a manifest from before `hwm_committed`
        existed read only against the committed mark)."""
        return self.hwm_committed if self.hwm_committed is not None else self.hwm_before


class StateStore:
    """The state of one pump: files under PUMPHOUSE_STATE_DIR (a folder or a URL), staging and lock local."""

    def __init__(self, name: str, config: Settings = settings) -> None:
        self.name = name
        self._files: StateFiles
        if is_remote(config.state_dir):
            # `root` is this machine's folder for the pump: staging and the lock.
            self.root = Path(config.work_dir).absolute() / name
            self._files = RemoteFiles(
                f"{config.state_dir.rstrip('/')}/{name}", config.state_storage_options
            )
        else:
            self.root = Path(config.state_dir.removeprefix("file://")).absolute() / name
            self._files = LocalFiles(self.root)

    @property
    def location(self) -> str:
        """Where the state files are: a local folder or a URL."""
        return self._files.location

    # ---- paths
    @property
    def staging(self) -> Path:
        return self.root / "staging"

    def run_dir(self, run_id: str) -> Path:
        return self.staging / run_id

    def staged_here(self, run_id: str) -> bool:
        """Whether this machine holds the run's finished staging (see mark_staged)."""
        return (self.run_dir(run_id) / STAGED).exists()

    # ---- committed state
    def committed(self) -> Committed:
        data = self._read_json("state.json")
        if not data:
            return Committed()
        rest = data.get("rest") or {}
        return Committed(
            hwm=data.get("hwm"),
            files=dict(data.get("files", {})),
            seq=int(data.get("seq", 0)),
            rest=inputs_of(rest.get("inputs", [])),
            rest_hwm=rest.get("hwm"),
            seen=[(str(c), str(h)) for c, h in data["seen"]] if "seen" in data else None,
            seen_from=data.get("seen_from"),
        )

    def commit(self, committed: Committed, summary: dict[str, Any]) -> None:
        """Commit state and close the run: state.json first, then the manifest goes."""
        data: dict[str, Any] = {
            "version": STATE_VERSION,
            "hwm": committed.hwm,
            "seq": committed.seq,
            "files": committed.files,
        }
        if committed.seen is not None:
            data["seen"], data["seen_from"] = committed.seen, committed.seen_from
        if committed.rest:
            data["rest"] = {"inputs": inputs_json(committed.rest), "hwm": committed.rest_hwm}
        self._write_json("state.json", data)
        faults.point("state_written")
        self.record_run(summary)
        self.drop_manifest()

    def record_run(self, summary: dict[str, Any]) -> None:
        """Add a line to the run history. On an object store best effort: history is not
        state, and a failed run records itself while the store may be the thing failing."""
        line = json.dumps(redact_all(summary), default=str)  # the output URL may hold one
        with contextlib.suppress(PumpError):  # a local append raises OSError, never this
            self._files.append_line(RUNS, line)

    def runs(self, last: int = 10) -> list[dict[str, Any]]:
        data = self._files.read(RUNS)
        if data is None:
            return []
        out = []
        for line in data.decode("utf-8", errors="replace").splitlines()[-last:]:
            with contextlib.suppress(json.JSONDecodeError):
                out.append(json.loads(line))
        return out

    # ---- the open run
    def manifest(self) -> Manifest | None:
        data = self._read_json("manifest.json")
        return Manifest.from_dict(data) if data else None

    def save_manifest(self, manifest: Manifest) -> None:
        self._write_json("manifest.json", manifest.to_dict())

    def mark_staged(self, run_id: str) -> None:
        """Mark the run's staging finished on this machine, its staged batches all on disk:
        before its manifest says "loading" (a crash between the two only re-stages)."""
        marker = self.run_dir(run_id) / STAGED
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()

    def drop_manifest(self) -> None:
        self._files.delete("manifest.json")
        shutil.rmtree(self.staging, ignore_errors=True)

    def reset(self) -> None:
        """Forget the state: committed mark and files, open run. What is not state stays: the
        runs' history (for `status`), rejected rows kept here (an http sink's: output, which
        reset keeps), and the lock file (a run holding it keeps holding it)."""
        self._files.clear(keep=(LOCK, REFRESH, RUNS, "rejected"))
        shutil.rmtree(self.staging, ignore_errors=True)  # local files: cleared with the rest

    # ---- an unfinished --full-refresh
    def refresh_pending(self) -> bool:
        return self._files.read(REFRESH) is not None

    def mark_refresh(self, pending: bool) -> None:
        if pending:
            self._files.write(REFRESH, b"")
        else:
            self._files.delete(REFRESH)

    # ---- the lock
    @contextlib.contextmanager
    def lock(self, wait_seconds: float | None = None) -> Iterator[None]:
        """Hold the pump's run lock. An flock dies with its process, so a killed run never leaves a stale lock."""
        wait = settings.lock_wait_seconds if wait_seconds is None else wait_seconds
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
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

    # ---- JSON files
    def _read_json(self, name: str) -> dict[str, Any] | None:
        data = self._files.read(name)
        if data is None:
            return None
        try:
            return dict(json.loads(data.decode("utf-8")))
        except (json.JSONDecodeError, UnicodeDecodeError, ValueError, TypeError) as e:
            raise PumpError(
                f"state file {self._files.location}/{name} is damaged ({e}); "
                "run `pumphouse reset` for this pump to start over"
            ) from None

    def _write_json(self, name: str, data: dict[str, Any]) -> None:
        self._files.write(name, json.dumps(data, indent=1, default=str).encode())
