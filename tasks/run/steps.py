"""The run's steps as Prefect tasks: each a thin wrapper over one pure function.

Retries are declared here, once, by error type. Errors leave a step with secrets
masked, so nothing Prefect records (states, logs, tracebacks) can hold one.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from schemas.errors import PumpError, RetriesSpent, SpecError, TransientError
from schemas.secrets import redact
from schemas.spec import Spec
from tasks.run.load import Loaded, load_run
from tasks.run.plan import plan_run
from tasks.run.summary import Counts
from tasks.sources.inputs import Input
from tasks.staging.stage import stage_input
from tasks.state.known import files_read
from tasks.state.store import Committed, Manifest, StateStore
from tasks.transform.window import Window

P = ParamSpec("P")
R = TypeVar("R")


def transient(task: Any, task_run: Any, state: Any) -> bool:
    """Retry only what may pass on a second try; a spec or data error never will, and an
    HTTP request has had the retries its spec allows."""
    try:
        state.result()
    except RetriesSpent:
        return False
    except TransientError:
        return True
    except Exception:
        return False
    return False


def masked(error: BaseException) -> BaseException:
    """The error with secrets masked: the same one if it holds none, else a PumpError of its kind."""
    text = str(error)
    clean = redact(text)
    if isinstance(error, SpecError):
        problems = [redact(p) for p in error.problems]
        if clean == text and tuple(problems) == error.problems:
            return error
        return SpecError(clean, problems)
    if clean == text:
        return error
    if isinstance(error, PumpError):
        return type(error)(clean)
    return PumpError(f"{type(error).__name__}: {clean}")


def secret_safe(fn: Callable[P, R]) -> Callable[P, R]:
    """Re-raise any error with secrets masked and without its chain (which would show them)."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except Exception as e:
            clean = masked(e)
            if clean is e:
                raise
            raise clean from None

    return wrapper


@task(name="plan", cache_policy=NO_CACHE)
@secret_safe
def plan_task(spec: Spec, store: StateStore) -> tuple[Manifest, bool]:
    return plan_run(spec, store)


@task(
    name="stage",
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=2,
    retry_condition_fn=transient,
)
@secret_safe
def stage_task(spec: Spec, run_dir: str, index: int, file: Input, hwm: str | None) -> Counts:
    counts = stage_input(spec, run_dir, index, file, hwm)
    for warning in counts.warnings:
        get_run_logger().warning(warning)
    return counts


@task(
    name="load",
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=2,
    retry_condition_fn=transient,
)
@secret_safe
def load_task(spec: Spec, store: StateStore, manifest: Manifest) -> Loaded:
    seen = tuple(manifest.seen or ())
    window = Window(
        manifest.hwm_before,
        manifest.since,
        manifest.lookback,
        manifest.strict,
        seen,
        manifest.seen_from,
    )
    return load_run(
        spec,
        str(store.run_dir(manifest.run_id)),
        manifest.run_id,
        manifest.hwm_floor,
        manifest.seq_base,
        store.location,
        window,
        bool(manifest.left()),
        manifest.inputs,
    )


@task(name="commit", cache_policy=NO_CACHE)
@secret_safe
def commit_task(
    store: StateStore, manifest: Manifest, loaded: Loaded, summary: dict[str, Any]
) -> None:
    """Add the run's files to those read, move the mark and the batch sequence, close the run."""
    files = files_read(store.committed().files, manifest)
    seq = manifest.seq_base + loaded.batches
    rest = manifest.left()
    rest_hwm = manifest.hwm_before if rest else None  # what is left is read against it
    seen, seen_from = (
        (loaded.seen, loaded.seen_from)
        if loaded.seen is not None
        else (manifest.seen, manifest.seen_from)
    )
    committed = Committed(
        hwm=loaded.hwm_after,
        files=files,
        seq=seq,
        rest=rest,
        rest_hwm=rest_hwm,
        seen=seen,
        seen_from=seen_from,
    )
    store.commit(committed, summary)
