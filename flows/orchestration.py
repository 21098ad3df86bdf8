"""What a pump's flow run does in Prefect besides pumping: its tag, its one slot, its artifact.

- Every flow run of a pump carries the tag `pump:NAME` (deployed runs get it from the
  deployment; a run by hand adds it), which `pumphouse status` and the UI filter on.
- A deployed run also holds the pump's global concurrency limit `pump-NAME` (limit 1)
  while it holds the pump's lock, so workers on different machines never run one pump
  twice at once. A run by hand relies on the lock alone: after a `kill -9` the OS frees a
  lock at once, while Prefect keeps a dead run's slot until its lease (a minute) runs out.
- A run by hand sends no flow-run heartbeat unless one is configured.
- Every run publishes its summary as a markdown artifact `pump-NAME` whose metadata holds
  the summary's values, for `pumphouse status` to read back.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import httpx
from prefect import get_run_logger
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.actions import ArtifactCreate, GlobalConcurrencyLimitCreate
from prefect.client.schemas.objects import ConcurrencyLeaseHolder
from prefect.concurrency.sync import concurrency
from prefect.context import FlowRunContext, SettingsContext, get_settings_context
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from prefect.settings import get_current_settings

from schemas.errors import BusyError
from schemas.secrets import redact, redact_all
from schemas.settings import settings
from tasks.run.deployment import prefect_key, run_tag
from tasks.run.summary import Summary

LEASE_SECONDS = 60  # Prefect's shortest lease: how long a crashed run's slot outlives it


def api_url() -> str | None:
    """The Prefect server runs and deployments go to; None on Prefect's embedded default."""
    return get_current_settings().api.url or None


def ensure_limit(client: SyncPrefectClient, name: str) -> bool:
    """Create the global concurrency limit `name` (limit 1) if it is missing; True if created."""
    try:
        client.read_global_concurrency_limit_by_name(name)
        return False
    except ObjectNotFound:
        pass
    try:
        client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))
    except ObjectAlreadyExists:  # another run or deploy created it just now
        return False
    return True


def tag_run(pump: str) -> None:
    """Give the current flow run the pump's tag, unless it has it already (best effort)."""
    ctx = FlowRunContext.get()
    if ctx is None or ctx.flow_run is None or run_tag(pump) in ctx.flow_run.tags:
        return
    tags = [*ctx.flow_run.tags, run_tag(pump)]
    try:
        with get_client(sync_client=True) as client:
            client.update_flow_run(ctx.flow_run.id, tags=tags)
    except Exception as e:  # a run must not fail because a label could not be set
        get_run_logger().warning(f"could not tag the flow run {run_tag(pump)!r}: {e}")


def heartbeat_only_if_configured() -> contextlib.AbstractContextManager[Any]:
    """Prefect's settings with no flow-run heartbeat by default: its thread sleeps whole
    seconds and a run's end waits for it (~0.5 s a run). A frequency set in the environment
    (PREFECT_FLOWS_HEARTBEAT_FREQUENCY, for zombie-run automations), a profile or
    prefect.toml is kept; deployed runs keep Prefect's default.

    What `temporary_settings(set_defaults=...)` does, as a copy of the current settings:
    that rebuilds them from every source (~0.1 s a command)."""
    context = get_settings_context()
    current = context.settings
    if "heartbeat_frequency" in current.flows.model_fields_set:  # set by a source: kept
        return contextlib.nullcontext()
    flows = current.flows.model_copy(update={"heartbeat_frequency": None})
    return SettingsContext(
        profile=context.profile, settings=current.model_copy(update={"flows": flows})
    )


@contextlib.contextmanager
def one_run_at_a_time(pump: str) -> Iterator[None]:
    """In a deployed run, hold the pump's global concurrency limit; else do nothing.

    Waits as long as the run lock does (`PUMPHOUSE_LOCK_WAIT_SECONDS`, default 0: not at all),
    then fails with BusyError before anything is read or loaded.
    """
    ctx = FlowRunContext.get()
    if ctx is None or ctx.flow_run is None or ctx.flow_run.deployment_id is None:
        yield
        return
    name, wait = prefect_key(pump), settings.lock_wait_seconds
    with get_client(sync_client=True) as client:
        ensure_limit(client, name)
    began = time.monotonic()
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(
                concurrency(
                    name,
                    occupy=1,
                    timeout_seconds=wait if wait > 0 else None,
                    max_retries=0 if wait <= 0 else None,
                    lease_duration=LEASE_SECONDS,
                    strict=True,
                    holder=ConcurrencyLeaseHolder(type="flow_run", id=ctx.flow_run.id),
                )
            )
        except Exception as e:
            if not _is_busy(e):
                raise
            note = f" (waited {wait:g} s)" if wait > 0 else ""
            raise BusyError(
                f"pump {pump!r} is already running: another flow run holds Prefect's "
                f"concurrency limit {name!r}{note}; wait for that run to finish, then run "
                "again (a crashed run frees it within a minute or two; "
                "PUMPHOUSE_LOCK_WAIT_SECONDS makes runs wait)"
            ) from None
        waited = time.monotonic() - began
        get_run_logger().info(
            f"holding Prefect's concurrency limit {name!r}"
            + (f" after waiting {waited:.1f} s" if waited >= 1 else "")
        )
        yield


def _is_busy(error: BaseException) -> bool:
    """The slot is taken: a timeout while waiting, or HTTP 423 when not waiting."""
    if isinstance(error, TimeoutError):
        return True
    cause = error.__cause__
    return isinstance(cause, httpx.HTTPStatusError) and cause.response.status_code == 423


def publish(summary: Summary) -> None:
    """The run's summary as a markdown artifact `pump-NAME` (best effort: a run's outcome
    must not depend on the artifact store)."""
    ctx = FlowRunContext.get()
    flow_run_id = ctx.flow_run.id if ctx is not None and ctx.flow_run is not None else None
    artifact = ArtifactCreate(
        key=prefect_key(summary.pump),
        type="markdown",
        data=redact(summary.to_markdown()),
        description=redact(summary.one_line()),
        metadata_=_redacted(summary.to_metadata()),
        flow_run_id=flow_run_id,
    )
    try:
        with get_client(sync_client=True) as client:
            client.create_artifact(artifact)
    except Exception as e:
        get_run_logger().warning(f"could not publish the run summary artifact: {redact(str(e))}")


def _redacted(metadata: dict[str, str]) -> dict[str, Any]:
    return dict(redact_all(metadata))
