"""Choose a run's inputs once, at its start, or take over an interrupted run's (CONTRACT §2)."""

from __future__ import annotations

import secrets
import shutil
import time
from dataclasses import replace
from typing import Any

from schemas.spec import FilesSource, HttpSource, Spec
from tasks.run.as_started import frozen_of
from tasks.sinks import registry as sinks
from tasks.sources.files.listing import SourceFile, list_files
from tasks.sources.http import PageInput, page_input
from tasks.sources.inputs import Input
from tasks.state.known import unread
from tasks.state.store import Committed, Manifest, StateStore
from tasks.transform.window import later, since


def new_run_id() -> str:
    """Sortable and unique: UTC time plus a random suffix."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)


def plan_run(spec: Spec, store: StateStore) -> tuple[Manifest, bool]:
    """The run's manifest and whether it resumes an interrupted run.

    A new run freezes its inputs (the files not read yet, or all of them when
    `new_files_only` is off) and the committed high-water mark, and saves them
    before reading anything, so an interrupted run is finished with the same inputs.
    What a run stopped at max_rows_per_run left comes first, alone, against the mark that
    run started with: the mark it committed would otherwise hide the older rows left.
    """
    open_run = store.manifest()
    if open_run is not None:
        before = open_run.frozen
        # Nothing of a run still staging is in the sink: it loads as the spec says now.
        # One that was loading keeps its batching (a manifest from before: from now on).
        if open_run.phase == "staging" or not open_run.frozen:
            open_run.frozen = frozen_of(spec)
        changed = open_run.frozen != before
        if open_run.phase == "staging":
            # Staging starts over. What the interrupted attempt staged goes, torn files
            # included: this attempt may stage fewer files (max_rows_per_run), and the load
            # reads every staged file.
            shutil.rmtree(store.run_dir(open_run.run_id), ignore_errors=True)
            changed = _as_listed_now(spec, open_run) or changed
        if changed:
            store.save_manifest(open_run)
        return open_run, True
    committed = store.committed()
    (inputs, known), mark = _inputs(spec, committed), committed.hwm
    http = isinstance(spec.source, HttpSource)
    rest = _still_there(committed.rest, inputs, http) if committed.rest else []
    if rest:
        inputs, mark = rest, committed.rest_hwm
    incremental = spec.transform.incremental
    lookback = incremental.lookback if incremental else 0.0
    legacy = committed.seen is None and mark is not None  # see tasks/transform/window.py
    manifest = Manifest(
        run_id=new_run_id(),
        started_at=time.time(),
        inputs=inputs,
        hwm_before=mark,
        since=mark if legacy else later(since(mark, lookback), committed.seen_from),
        lookback=lookback,
        strict=legacy,
        seen=committed.seen,
        seen_from=committed.seen_from,
        seq_base=max(committed.seq, sinks.committed_seq(spec)),
        hwm_committed=committed.hwm,
        frozen=frozen_of(spec),
        continues=bool(rest),
        known=known,
    )
    store.save_manifest(manifest)
    return manifest, False


def _inputs(spec: Spec, committed: Committed) -> tuple[list[Input], dict[str, dict[str, Any]]]:
    """The run's inputs: the files to read, or for an http source the one endpoint (its
    pages are not known before they are read; the frozen cursor fixes what they hold);
    and the entries of files known already that state should hold anew (see tasks/state/known)."""
    source = spec.source
    if isinstance(source, HttpSource):
        return [page_input(source)], {}
    assert isinstance(
        source, FilesSource
    )  # a webhook source runs as files (tasks/receive/inbox.py)
    files, known = list_files(source), dict[str, dict[str, Any]]()
    if source.new_files_only:
        files, known = unread(source, files, committed.files)
    return list(files), known


def _as_listed_now(spec: Spec, manifest: Manifest) -> bool:
    """Give the interrupted run's files the size and fingerprint they have now: it reads
    them as they are now, and what it commits must say so (else the next run would read a
    file it has loaded again). A file since removed is left out. The modification time
    stays as the run froze it (unless it has none: a manifest from before them): it orders
    the run's rows. True if any changed."""
    if isinstance(spec.source, HttpSource) or not manifest.inputs:
        return False
    assert isinstance(spec.source, FilesSource)  # a webhook source runs as files
    files = [f for f in manifest.inputs if isinstance(f, SourceFile)]
    frozen = {f.url: f.mtime for f in files}
    listed = [replace(f, mtime=frozen.get(f.url) or f.mtime) for f in list_files(spec.source)]
    fresh: list[Input] = list(_as_now(files, listed))
    changed = fresh != manifest.inputs
    manifest.inputs = fresh
    return changed


def relocated(spec: Spec, inputs: list[Input]) -> list[Input]:
    """A loading run's frozen inputs at the URLs its source lists them under now (the project
    or the mount moved since): the same path below the source, the frozen size, start and
    modification time, so the run reads the same bytes. Those not found keep their URL."""
    if not isinstance(spec.source, FilesSource) or not any(
        isinstance(f, SourceFile) and f.rel for f in inputs
    ):
        return inputs
    now = {f.rel: f.url for f in list_files(spec.source) if f.rel}
    return [
        replace(f, url=now[f.rel])
        if isinstance(f, SourceFile) and f.rel in now and now[f.rel] != f.url
        else f
        for f in inputs
    ]


def _still_there(rest: list[Input], listed: list[Input], http: bool) -> list[Input]:
    """What a run stopped at max_rows_per_run left that is still there, as it is now: a
    file since removed is not asked for, one since changed is read as it is now (against
    the same mark). An http source's resume point stays while the source is http (see
    `resume_of` for a source changed since)."""
    if http:
        return [f for f in rest if isinstance(f, PageInput)]
    files = [f for f in listed if isinstance(f, SourceFile)]
    return list(_as_now([f for f in rest if isinstance(f, SourceFile)], files))


def _as_now(inputs: list[SourceFile], listed: list[SourceFile]) -> list[SourceFile]:
    """`inputs` as `listed` has them now (size, fingerprint); those not listed left out. A
    grown file is still read from where the frozen input says (and whether it changed
    stays), unless it is now shorter than that: then it is read whole."""
    now = {f.url: f for f in listed}
    return [_still(f, now[f.url]) for f in inputs if f.url in now]


def _still(frozen: SourceFile, now: SourceFile) -> SourceFile:
    if frozen.start > now.size:
        return replace(now, changed=True)
    if frozen.start:
        now = replace(now, start=frozen.start, lines=frozen.lines)
    return replace(now, changed=True) if frozen.changed else now
