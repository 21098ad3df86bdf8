"""The one generic Prefect flow: run the pump a spec describes, once.

Each Prefect task wraps one pure step from `tasks/`; only small values (spec
models, paths, counts) cross task boundaries. State is committed here, last.
"""

from __future__ import annotations

import time
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.futures import PrefectFuture, as_completed

from schemas.errors import DataError
from schemas.secrets import redact, redact_all
from schemas.spec import Spec
from tasks import faults, progress, sinks
from tasks.preflight import load
from tasks.state import Manifest, StateStore
from tasks.steps import commit_task, load_task, masked, plan_task, stage_task
from tasks.summary import Counts, Summary


@flow(name="pump", flow_run_name="{spec_path}", log_prints=False, validate_parameters=True)
def pump(spec_path: str, full_refresh: bool = False) -> dict[str, Any]:
    """Run the pump described by the spec at `spec_path` (relative to the project folder)."""
    started = time.perf_counter()
    logger = get_run_logger()
    spec = load(spec_path)
    store = StateStore(spec.name)
    summary = Summary(pump=spec.name, run_id="-", output=spec.sink.url)
    summary.started_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    try:
        with store.lock():
            _locked_run(spec, store, summary, full_refresh, started)
    except Exception as e:
        clean = masked(e)
        summary.status, summary.error = "failed", str(clean)
        summary.seconds = time.perf_counter() - started
        store.record_run(redact_all(summary.to_dict()))
        _publish(spec, summary)
        logger.error(redact(f"{summary.one_line()}: {clean}"))
        if clean is e:
            raise
        raise clean from None
    _publish(spec, summary)
    logger.info(redact(summary.one_line()))
    return redact_all(summary.to_dict())


def _locked_run(
    spec: Spec, store: StateStore, summary: Summary, full_refresh: bool, started: float
) -> None:
    """Plan, stage, load, commit: everything that must hold the pump's lock."""
    if full_refresh or store.refresh_pending():
        _forget(spec, store)
    manifest, summary.resumed = plan_task(spec, store)
    faults.point("planned")
    progress.emit("total_files", len(manifest.inputs))
    summary.run_id, summary.hwm_before = manifest.run_id, manifest.hwm_before
    run_dir = str(store.run_dir(manifest.run_id))
    if manifest.phase == "staging":
        try:
            summary.counts = _stage_all(spec, manifest, run_dir)
            _gate(spec, summary.counts)
        except Exception:
            store.drop_manifest()  # nothing reached the sink: the next run lists afresh
            raise
        # Freeze what this run covers before anything reaches the sink.
        manifest.phase, manifest.staged = "loading", summary.counts.to_dict()
        store.save_manifest(manifest)
        faults.point("staged")
    else:
        summary.counts = Counts(**manifest.staged)
    loaded = load_task(spec, store, manifest)
    faults.point("loaded")
    summary.rows_written, summary.rows_duplicate = loaded.rows_written, loaded.rows_duplicate
    summary.hwm_after = loaded.hwm_after
    summary.seconds = time.perf_counter() - started
    commit_task(store, manifest, loaded, summary.to_dict())


def _stage_all(spec: Spec, manifest: Manifest, run_dir: str) -> Counts:
    """Stage the inputs, at most max_concurrency at once, stopping at max_rows_per_run."""
    limits = spec.limits
    total = Counts()
    done: dict[int, Counts] = {}
    pending: dict[PrefectFuture[Counts], int] = {}
    queue = list(enumerate(manifest.inputs))
    while queue or pending:
        while (
            queue
            and len(pending) < limits.max_concurrency
            and total.rows_read < limits.max_rows_per_run
        ):
            i, f = queue.pop(0)
            pending[stage_task.submit(spec, run_dir, i, f, manifest.hwm_before)] = i
        if not pending:
            break  # the row limit is reached: the rest waits for the next run
        fut = next(as_completed(list(pending)))
        i = pending.pop(fut)
        done[i] = fut.result()
        total.add(done[i])
        faults.point("staged_file")
    manifest.inputs = [manifest.inputs[i] for i in sorted(done)]  # what the row limit let in
    return total


def _gate(spec: Spec, counts: Counts) -> None:
    """Fail before loading when the data breaks the contract beyond what the spec allows."""
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
        raise DataError(
            f"{counts.rows_rejected} of {counts.rows_read} rows ({ratio:.1%}) are invalid, over "
            f"limits.max_invalid_ratio {spec.limits.max_invalid_ratio:.1%}; nothing was loaded. "
            f"First problems: {sample}. Fix the data, or raise limits.max_invalid_ratio"
        )


def _forget(spec: Spec, store: StateStore) -> None:
    """--full-refresh: drop the output and the state, keep the lock.

    Marked first, so that a run killed half way through is finished by the next run
    (output gone but state kept would otherwise leave the sink empty for good).
    """
    store.mark_refresh(True)
    sinks.remove_all(spec, store.root)
    faults.point("refresh_output_removed")
    store.reset()
    store.mark_refresh(False)


def _publish(spec: Spec, summary: Summary) -> None:
    key = "pump-" + spec.name.replace("_", "-")
    try:
        create_markdown_artifact(
            markdown=summary.to_markdown(), key=key, description=summary.one_line()
        )
    except Exception as e:  # the run's outcome must not depend on the artifact store
        get_run_logger().warning(f"could not publish the run summary artifact: {e}")
