"""The one generic Prefect flow: run the pump a spec describes, once.

Each Prefect task wraps one pure step from `tasks/`; only small values (spec
models, paths, counts) cross task boundaries. State is committed here, last.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any, ParamSpec, TypeVar

from prefect import Flow, get_run_logger
from prefect.futures import PrefectFuture, as_completed
from prefect.settings import get_current_settings

from flows.executor import Executor, Stager, choose, stager
from flows.orchestration import one_run_at_a_time, publish, tag_run
from schemas.errors import DataError, InputGone, SinkRefused
from schemas.loader import column_lines
from schemas.secrets import redact, redact_all
from schemas.settings import settings
from schemas.spec import FilesSource, Spec
from tasks.io.failures import resource_error
from tasks.receive.inbox import as_files
from tasks.run import deadline, faults, progress
from tasks.run.as_started import as_started
from tasks.run.deadline import Deadline
from tasks.run.load import keep_rejected, spec_culprit
from tasks.run.plan import relocated
from tasks.run.steps import commit_task, load_task, masked, plan_task
from tasks.run.summary import Counts, Summary, located
from tasks.sinks import registry as sinks
from tasks.sources.files.listing import SourceFile, nothing_listed, safe_url
from tasks.staging import folder as staging
from tasks.staging import kept
from tasks.staging.stage import one_engine
from tasks.state.known import same_bytes
from tasks.state.store import Manifest, StateStore
from tasks.transform.window import widened
from tasks.validate.preflight import load

P = ParamSpec("P")
R = TypeVar("R")
PLAIN = (str, bool, int, float, type(None))  # JSON as they are


class PumpFlow(Flow[P, R]):
    """A Prefect flow whose plain parameters (strings, flags, None) are recorded as they are:
    Prefect's own serialize_parameters passes each through FastAPI's jsonable_encoder, whose
    first use imports FastAPI, a good part of a small run's CPU, to give back the same
    values. Any other value goes Prefect's way."""

    def serialize_parameters(self, parameters: dict[str, Any]) -> dict[str, Any]:
        if all(type(v) in PLAIN for v in parameters.values()):  # exact types: an Enum's is encoded
            return dict(parameters)
        return super().serialize_parameters(parameters)


def _flow(**options: Any) -> Callable[[Callable[P, R]], PumpFlow[P, R]]:
    """`@flow(**options)`, as a PumpFlow."""
    return lambda fn: PumpFlow(fn=fn, **options)


# Prefect keeps no result of a run: a pump's outcome is in its sink, its state and its
# summary artifact, and a rerun is idempotent. Naming the storage Prefect falls back to
# (where it keeps a failed run's exception) spares three requests a run asking the server
# for its default one.
@_flow(
    name="pump",
    flow_run_name="{spec_path}",
    log_prints=False,
    validate_parameters=True,
    persist_result=False,
    result_storage=get_current_settings().results.local_storage_path,
)
def pump(
    spec_path: str,
    full_refresh: bool = False,
    executor: str | None = None,
    cluster: str | None = None,
) -> dict[str, Any]:
    """Run the pump described by the spec at `spec_path` (relative to the project folder);
    `executor` "dask" stages on the Dask cluster at `cluster` (see flows/executor.py)."""
    started, cpu = time.perf_counter(), time.process_time()
    run_on = choose(executor, cluster)
    logger = get_run_logger()
    spec = as_files(load(spec_path))  # a webhook source is read as the files in its buffer
    tag_run(spec.name)
    store = StateStore(spec.name)
    summary = Summary(pump=spec.name, run_id="-", output=spec.sink.url)
    summary.started_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    limits = spec.limits
    clock = Deadline(limits.max_run_seconds, settings.max_max_run_seconds, int(limits.memory))
    try:
        with store.lock(), one_run_at_a_time(spec.name), clock.running():
            _locked_run(
                spec, store, summary, full_refresh, (started, cpu), run_on, column_lines(spec_path)
            )
    except Exception as e:
        # Past the deadline (or the memory ceiling), whatever stopped the run (an interrupted
        # query) is the deadline.
        clean = masked(clock.error() if clock.expired.is_set() else resource_error(e) or e)
        summary.status, summary.error = "failed", str(clean)
        summary.seconds = time.perf_counter() - started
        summary.cpu_seconds = time.process_time() - cpu
        store.record_run(summary.to_dict())  # it masks secrets itself
        publish(summary)
        logger.error(redact(f"{summary.one_line()}: {clean}"))
        if clean is e:
            raise
        raise clean from None
    publish(summary)
    logger.info(redact(summary.one_line()))
    return redact_all(summary.to_dict())


def _locked_run(
    spec: Spec,
    store: StateStore,
    summary: Summary,
    full_refresh: bool,
    started: tuple[float, float],  # perf_counter and process_time at the flow's start
    run_on: Executor,
    column_at: dict[str, str],
) -> None:
    """Plan, stage, load, commit: everything that must hold the pump's lock."""
    if full_refresh or store.refresh_pending():
        with summary.step("refresh"):
            _forget(spec, store)
    with summary.step("plan"):
        manifest, summary.resumed = plan_task(spec, store)
    load_spec = as_started(spec, manifest.frozen, manifest.continues)  # as the run began
    faults.point("planned")
    progress.emit("total_files", len(manifest.inputs))
    summary.run_id, summary.hwm_before = manifest.run_id, manifest.hwm_before
    run_dir = str(store.run_dir(manifest.run_id))
    with _run_engine(spec, run_dir, run_on):  # a local run: stage to load in one DuckDB
        if manifest.phase == "staging":
            try:
                with summary.step("stage"):
                    summary.counts = _stage_all(spec, manifest, run_dir, run_on)
                samples = located(summary.counts.errors_sample, column_at)
                summary.counts.errors_sample = samples
                _gate(spec, summary.counts, run_dir, store.location)
            except Exception:
                if (
                    not deadline.passed()
                ):  # else it stays, as a crash leaves it: the next run finishes it
                    store.drop_manifest()  # nothing reached the sink: the next run lists afresh
                raise
            _freeze(store, manifest, summary.counts)
            faults.point("staged")
        elif store.staged_here(manifest.run_id):
            summary.counts = Counts.from_dict(manifest.staged)
        else:
            with summary.step("stage"):
                summary.counts = _restage(load_spec, store, manifest, run_dir, run_on)
        deadline.check()
        with summary.step("load"):
            try:
                loaded = load_task(load_spec, store, manifest)
            except SinkRefused:
                store.drop_manifest()  # nothing of this run reached the sink: read it afresh once fixed
                raise
    faults.point("loaded")
    summary.rows_written, summary.rows_duplicate = loaded.rows_written, loaded.rows_duplicate
    summary.counts.rows_old += loaded.rows_seen  # new by the cursor, loaded by a run before
    if (
        note := widened(manifest.hwm_before, manifest.since, manifest.lookback, manifest.strict)
    ) and note not in summary.counts.warnings:
        summary.counts.warnings.append(note)
    if not manifest.inputs and (note := _nothing_listed(spec, store)):
        summary.counts.warnings.append(note)
    summary.hwm_after, summary.inputs_left = loaded.hwm_after, len(manifest.left())
    summary.seconds = time.perf_counter() - started[0]
    summary.cpu_seconds = time.process_time() - started[1]
    with summary.step("commit"):
        commit_task(store, manifest, loaded, summary.to_dict())


@contextlib.contextmanager
def _run_engine(spec: Spec, run_dir: str, run_on: Executor) -> Iterator[None]:
    """While open, a local run stages and loads in one DuckDB, which keeps its staged valid
    rows (tasks/staging/kept); Dask workers stage in DuckDBs of their own."""
    if run_on.kind != "local":
        yield
        return
    with one_engine(spec, run_dir, _width(spec, run_on), keep=True):
        yield


def _nothing_listed(spec: Spec, store: StateStore) -> str | None:
    """Why a files source listed nothing, when the user should hear it: its folder is not
    there, or nothing matches on the first run (no state yet)."""
    if not isinstance(spec.source, FilesSource):
        return None
    committed = store.committed()
    return nothing_listed(spec.source, first_run=not committed.files and committed.hwm is None)


def _stage_all(spec: Spec, manifest: Manifest, run_dir: str, run_on: Executor) -> Counts:
    """Stage the inputs on `run_on`, at most `_width` at once, stopping at max_rows_per_run."""
    width = _width(spec, run_on)
    with stager(spec, run_dir, run_on, width) as stage:
        return _stage_each(stage, spec, manifest, width)


def _width(spec: Spec, run_on: Executor) -> int:
    """Inputs staged at once: max_concurrency, but local files no more than there are cores.
    DuckDB already uses every core for one file, so more at once only take turns and hold
    more memory (orders-1m on 2 cores: peak RSS 800 -> 505 MiB, time the same or ~5% less;
    in the run's one DuckDB, 3 or 4 at once were no faster than 2).
    Files in a bucket or pages over HTTP wait on the network: those keep max_concurrency,
    as do Dask workers, which have cores of their own."""
    width = spec.limits.max_concurrency
    source = spec.source
    local = isinstance(source, FilesSource) and not staging.is_remote(source.url)
    if run_on.kind == "local" and local:
        width = min(width, cores())
    return width


def cores() -> int:
    """The cores this process may run on: its CPU affinity where the OS keeps one (Linux),
    else the machine's (macOS has no os.sched_getaffinity)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def _stage_each(stage: Stager, spec: Spec, manifest: Manifest, width: int) -> Counts:
    limits = spec.limits
    read = 0  # rows read by the inputs done so far
    done: dict[int, Counts] = {}
    pending: dict[PrefectFuture[Counts], int] = {}
    queue = list(enumerate(manifest.inputs))
    while queue or pending:
        while queue and len(pending) < width and read < limits.max_rows_per_run:
            i, f = queue.pop(0)
            pending[stage.submit(i, f, manifest.since)] = i
        if not pending:
            break  # the row limit is reached: the rest waits for the next run
        fut = next(as_completed(list(pending)))
        i = pending.pop(fut)
        done[i] = stage.result(fut, i)
        read += done[i].rows_read
        if done[i].content and isinstance(file := manifest.inputs[i], SourceFile):
            manifest.inputs[i] = replace(file, read=done[i].content)  # state keeps it at commit
        faults.point("staged_file")
    # What the row limit let in; the rest goes first in the next run (tasks/run/plan.py).
    left = [f for i, f in enumerate(manifest.inputs) if i not in done]
    manifest.inputs = [manifest.inputs[i] for i in sorted(done)]
    manifest.rest = left + manifest.rest
    # Summed in input order, not as the files finished: the error sample, the warnings and
    # what an http source left are the same in every run of the same inputs.
    total = Counts()
    for i in sorted(done):
        total.add(done[i])
    if left or total.rest:
        get_run_logger().info(
            f"stopped at limits.max_rows_per_run ({limits.max_rows_per_run:,} rows, "
            f"{read:,} read): the rest is read first by the next run"
        )
    return total


def _restage(
    spec: Spec, store: StateStore, manifest: Manifest, run_dir: str, run_on: Executor
) -> Counts:
    """A run that was loading elsewhere (state in an object store), or that kept its staged
    rows in a DuckDB gone with its process (tasks/staging/kept), has no staged batches here:
    stage the same frozen inputs again, then load as usual (the load replaces what this run
    wrote before). On failure the manifest stays: part of the run may be in the sink already,
    and only a replay of this run removes it."""
    staging.clear(run_dir)  # the sink's notes stay: a webhook's delivered chunks are skipped
    manifest.inputs = relocated(spec, manifest.inputs)
    frozen = list(manifest.inputs)
    try:
        counts = _stage_all(spec, manifest, run_dir, run_on)
    except InputGone as e:
        raise _restore(e.url or "an input", e.what) from None
    for was, now in zip(frozen, manifest.inputs, strict=False):  # those staged: a prefix
        if isinstance(was, SourceFile) and isinstance(now, SourceFile) and not same_bytes(was, now):
            raise _restore(safe_url(now.url), "changed")
    _freeze(store, manifest, counts)  # the inputs the row limit let in this time, and the mark
    return counts


def _restore(url: str, what: str) -> DataError:
    return DataError(
        f"{url}: the file {what} since this run listed it; the run stopped while loading and "
        "reads its inputs again to finish: restore the file as it was and run again (or "
        "`pumphouse reset` the pump to start over)"
    )


def _freeze(store: StateStore, manifest: Manifest, counts: Counts) -> None:
    """Freeze what this run covers (inputs, counts) before anything reaches the sink, and mark
    its staging done here when every staged row is on disk: rows kept in the run's DuckDB go
    with it, so a run stopped before its load finished stages again."""
    if not kept.any_kept(store.run_dir(manifest.run_id)):
        store.mark_staged(manifest.run_id)
    manifest.phase, manifest.staged = "loading", counts.to_dict()
    store.save_manifest(manifest)


def _gate(spec: Spec, counts: Counts, run_dir: str, state: str) -> None:
    """Fail before loading when the data breaks the contract beyond what the spec allows;
    the rejected rows are then still shown by `pumphouse query` (NAME_rejected)."""
    if not counts.rows_rejected:
        return
    sample = "; ".join(counts.errors_sample[:3])
    if spec.on_invalid == "fail":
        raise DataError(
            f"{counts.rows_rejected} of {counts.rows_read} rows are invalid and on_invalid is 'fail': {sample}; "
            "fix the data, or set on_invalid: quarantine"
        )
    ratio = counts.rows_rejected / max(counts.rows_read, 1)
    if ratio > spec.limits.max_invalid_ratio:
        keep_rejected(spec, run_dir, state)
        shown = f" (see them with pumphouse query: {spec.name}_rejected)" * (
            spec.on_invalid == "quarantine"
        )
        culprit = spec_culprit(run_dir, counts.rows_read)
        fix = (
            f"{culprit[0].upper()}{culprit[1:]}"
            if culprit
            else "Fix the data, or raise limits.max_invalid_ratio"
        )
        raise DataError(
            f"{counts.rows_rejected} of {counts.rows_read} rows ({ratio:.1%}) are invalid, over "
            f"limits.max_invalid_ratio {spec.limits.max_invalid_ratio:.1%}; nothing was "
            f"loaded{shown}. First problems: {sample}. {fix}"
        )


def _forget(spec: Spec, store: StateStore) -> None:
    """--full-refresh: drop the output and the state, keep the lock.

    Marked first, so that a run killed half way through is finished by the next run
    (output gone but state kept would otherwise leave the sink empty for good).
    """
    store.mark_refresh(True)
    sinks.remove_all(spec, store.location)
    faults.point("refresh_output_removed")
    store.reset()
    store.mark_refresh(False)
