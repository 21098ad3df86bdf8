"""A pump's recent runs for `pumphouse status`: from Prefect when a server is configured,
else from the local run history (`runs.jsonl` in the pump's state).

Prefect sees what local state cannot: runs on other machines, runs waiting or late, runs
that crashed before they could write anything, and the next scheduled run. A run's
counts come from the metadata of its `pump-NAME` artifact.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from schemas.secrets import redact
from tasks.run.deployment import FLOW_NAME, prefect_key, run_tag
from tasks.run.summary import outcome
from tasks.state.store import StateStore

RECENT = 5  # runs shown per pump


@dataclass(frozen=True)
class RunLine:
    """One run as `status` shows it."""

    started_at: str
    outcome: str  # ok | failed: why | running | late | crashed: why | ...
    rows_read: str = "-"
    rows_written: str = "-"
    rows_rejected: str = "-"

    @property
    def word(self) -> str:
        return self.outcome.split(":", 1)[0]


@dataclass(frozen=True)
class History:
    runs: list[RunLine] = field(default_factory=list)  # newest first
    next_run: str = ""  # the next scheduled run, when Prefect knows one


def from_summary(record: dict[str, Any]) -> RunLine:
    """A run from its summary: a line of runs.jsonl, or an artifact's metadata."""

    def count(key: str) -> str:
        value = record.get(key)
        return "-" if value is None or value == "" else str(value)

    return RunLine(
        started_at=str(record.get("started_at") or "-"),
        outcome=outcome(record),
        rows_read=count("rows_read"),
        rows_written=count("rows_written"),
        rows_rejected=count("rows_rejected"),
    )


def read_histories(names: list[str]) -> tuple[dict[str, History], str, str | None]:
    """Each pump's History, where they came from, and a warning when Prefect did not answer."""
    from prefect.client.orchestration import get_client

    from flows.orchestration import api_url

    url = api_url()
    trouble: BaseException | None = None
    if url:
        try:
            with get_client(sync_client=True) as client:
                trouble = client.api_healthcheck()
                if trouble is None:
                    found = {name: prefect_history(client, name) for name in names}
                    return found, f"runs from Prefect at {url}", None
        except Exception as e:
            trouble = e
    local = {name: local_history(StateStore(name)) for name in names}
    if trouble is None:
        return local, "runs from local state (no Prefect server configured)", None
    warning = (
        f"Prefect at {url} did not answer ({type(trouble).__name__}); showing runs from local state"
    )
    return local, "runs from local state", warning


def local_history(store: StateStore) -> History:
    return History([from_summary(r) for r in reversed(store.runs(RECENT))])


def prefect_history(client: Any, pump: str) -> History:
    """The pump's runs in Prefect: flow runs of the generic flow tagged `pump:NAME`."""
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        ArtifactFilterKey,
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterExpectedStartTime,
        FlowRunFilterState,
        FlowRunFilterStateType,
        FlowRunFilterTags,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort

    now = datetime.now(UTC)
    flows = FlowFilter(name=FlowFilterName(any_=[FLOW_NAME]))
    tagged = FlowRunFilterTags(all_=[run_tag(pump)])
    recent = client.read_flow_runs(
        flow_filter=flows,
        flow_run_filter=FlowRunFilter(
            tags=tagged, expected_start_time=FlowRunFilterExpectedStartTime(before_=now)
        ),
        sort=FlowRunSort.EXPECTED_START_TIME_DESC,
        limit=RECENT,
    )
    upcoming = client.read_flow_runs(
        flow_filter=flows,
        flow_run_filter=FlowRunFilter(
            tags=tagged,
            expected_start_time=FlowRunFilterExpectedStartTime(after_=now),
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED])),
        ),
        sort=FlowRunSort.EXPECTED_START_TIME_ASC,
        limit=1,
    )
    summaries: dict[Any, dict[str, str]] = {}
    if recent:
        for artifact in client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=[prefect_key(pump)]),
                flow_run_id=ArtifactFilterFlowRunId(any_=[r.id for r in recent]),
            )
        ):
            summaries[artifact.flow_run_id] = artifact.metadata_ or {}
    return History(
        runs=[_run_line(r, summaries.get(r.id)) for r in recent],
        next_run=_when(upcoming[0].expected_start_time) if upcoming else "",
    )


def _run_line(flow_run: Any, summary: dict[str, str] | None) -> RunLine:
    if summary:  # the run got as far as publishing its summary
        return from_summary(summary)
    state = flow_run.state
    name = state.name if state is not None else "unknown"
    words = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", name).lower()  # AwaitingRetry -> awaiting retry
    if state is not None and state.is_final() and not state.is_completed() and state.message:
        words += ": " + redact(state.message.splitlines()[0])
    return RunLine(
        started_at=_when(flow_run.start_time or flow_run.expected_start_time), outcome=words
    )


def _when(moment: datetime | None) -> str:
    if moment is None:
        return "-"
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
