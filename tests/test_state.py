"""The state store: atomic commits, the run lock across processes, resets that keep the lock."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from pathlib import Path

import pytest

from schemas.errors import BusyError, PumpError
from tasks.sources.files.listing import SourceFile
from tasks.state.store import Committed, Manifest, StateStore


def test_commit_then_read_back_and_manifest_goes(project: Path) -> None:
    store = StateStore("orders")
    store.save_manifest(
        Manifest(
            run_id="r1",
            started_at=1.0,
            inputs=[SourceFile("a", 1, "f")],
            hwm_before=None,
        )
    )
    (store.run_dir("r1") / "valid").mkdir(parents=True)
    assert store.manifest() is not None
    store.commit(Committed(hwm="2024-01-01", files={"a": "f"}), {"status": "ok", "rows_read": 3})
    assert store.committed() == Committed(hwm="2024-01-01", files={"a": "f"})
    assert store.manifest() is None
    assert not store.run_dir("r1").exists()
    assert store.runs() == [{"status": "ok", "rows_read": 3}]


@pytest.mark.reliability(
    "bad data",
    "a damaged state file",
    "a clear error saying to run `pumphouse reset`",
)
def test_damaged_state_file_says_how_to_recover(project: Path) -> None:
    store = StateStore("orders")
    store.root.mkdir(parents=True)
    (store.root / "state.json").write_text("{not json")
    with pytest.raises(PumpError, match="pumphouse reset"):
        store.committed()


def _hold_lock(name: str, state_dir: str, ready: object, seconds: float) -> None:
    os.chdir(state_dir)
    with StateStore(name).lock():
        ready.set()  # type: ignore[attr-defined]
        time.sleep(seconds)


def test_a_second_run_cannot_take_the_lock_and_a_killed_holder_releases_it(project: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=("orders", str(project), ready, 60))
    holder.start()
    assert ready.wait(30)
    with (
        pytest.raises(BusyError, match=r"pump 'orders' is already running \(pid \d+"),
        StateStore("orders").lock(wait_seconds=0.5),
    ):
        pass
    os.kill(holder.pid, signal.SIGKILL)  # kill -9: no cleanup code runs
    holder.join(10)
    with StateStore("orders").lock(wait_seconds=5):
        assert (project / ".pumphouse" / "orders" / "lock").exists()


def test_reset_keeps_the_lock_file_it_runs_under(project: Path) -> None:
    store = StateStore("orders")
    with store.lock():
        store.commit(Committed(hwm="5", files={}), {"status": "ok"})
        (store.root / "rejected").mkdir()  # an http sink's rejected rows: output, not state
        (store.root / "rejected" / "part-r1-00000.parquet").write_bytes(b"PAR1")
        store.reset()
        assert store.committed() == Committed()
        assert (store.root / "lock").exists()
        assert store.runs() == [{"status": "ok"}]  # history, for `status`
        assert (store.root / "rejected" / "part-r1-00000.parquet").read_bytes() == b"PAR1"
        with pytest.raises(BusyError), StateStore("orders").lock(wait_seconds=0):
            pass
