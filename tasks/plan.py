"""Choose a run's inputs once, at its start, or take over an interrupted run's (CONTRACT §2)."""

from __future__ import annotations

import secrets
import shutil
import time
from typing import Any

from schemas.spec import HttpSource, Spec
from tasks import sinks
from tasks.listing import list_files
from tasks.state import Committed, Manifest, StateStore


def new_run_id() -> str:
    """Sortable and unique: UTC time plus a random suffix."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)


def plan_run(spec: Spec, store: StateStore) -> tuple[Manifest, bool]:
    """The run's manifest and whether it resumes an interrupted run.

    A new run freezes its inputs (the files not read yet, or all of them when
    `new_files_only` is off) and the committed high-water mark, and saves them
    before reading anything, so an interrupted run is finished with the same inputs.
    """
    open_run = store.manifest()
    if open_run is not None:
        if open_run.phase == "staging":
            # Staging starts over. What the interrupted attempt staged goes, torn files
            # included: this attempt may stage fewer files (max_rows_per_run), and the load
            # reads every staged file.
            shutil.rmtree(store.run_dir(open_run.run_id), ignore_errors=True)
        return open_run, True
    committed = store.committed()
    manifest = Manifest(
        run_id=new_run_id(),
        started_at=time.time(),
        inputs=_inputs(spec, committed),
        hwm_before=committed.hwm,
        seq_base=max(committed.seq, sinks.committed_seq(spec)),
    )
    store.save_manifest(manifest)
    return manifest, False


def _inputs(spec: Spec, committed: Committed) -> list[dict[str, Any]]:
    """The run's inputs: the files to read, or for an http source the one endpoint (its
    pages are not known before they are read; the frozen cursor fixes what they hold)."""
    source = spec.source
    if isinstance(source, HttpSource):
        return [{"kind": "http", "url": source.url, "size": 0, "fingerprint": ""}]
    files = list_files(source)
    if source.new_files_only:
        files = [f for f in files if not committed.is_read(f.url, f.fingerprint)]
    return [f.to_dict() for f in files]
