"""The flow-run heartbeat (flows/heartbeat.py): the same heartbeat events as Prefect's, and a
run that ends when it ends instead of at the heartbeat thread's next whole second."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from typing import Any

import prefect
import pytest
from prefect import flow, flow_engine
from prefect.events.clients import AssertingEventsClient
from prefect.events.worker import EventsWorker
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
from prefect.testing.fixtures import asserting_events_worker  # noqa: F401  (a fixture)

from flows import heartbeat
from flows.pump import pump  # noqa: F401  (importing the flow installs the heartbeat)


class _Engine:
    """The four things the heartbeat context reads from Prefect's flow run engine."""

    heartbeat_seconds = 30
    flow_run = None

    def __init__(self) -> None:
        self.beats: list[float] = []
        self.logger = logging.getLogger("test")

    def _build_heartbeat_event_template(self) -> tuple[dict[str, str], list[Any]]:
        return {"prefect.resource.id": "prefect.flow-run.x"}, []

    def _emit_flow_run_heartbeat(self, resource: Any, related: Any) -> None:
        self.beats.append(time.monotonic())


def _exit_seconds(send: Any) -> tuple[float, int]:
    """How long leaving the heartbeat context takes after a short run, and the beats sent."""
    engine = _Engine()
    with send(engine):
        time.sleep(0.1)  # a run's work; the thread is asleep between beats meanwhile
        started = time.monotonic()
    return time.monotonic() - started, len(engine.beats)


def test_installed_over_the_prefect_it_was_written_for() -> None:
    # Another Prefect fails here: compare its flow_engine._send_heartbeats with
    # heartbeat.send_heartbeats, then record its hash in PREFECTS_SOURCE.
    assert heartbeat.source_hash(heartbeat.prefects_own()) == heartbeat.PREFECTS_SOURCE
    assert flow_engine._send_heartbeats is heartbeat.send_heartbeats


def test_the_run_ends_at_once_where_prefects_own_waits_for_the_next_second() -> None:
    ours = [_exit_seconds(heartbeat.send_heartbeats) for _ in range(3)]
    assert all(beats == 1 for _, beats in ours)  # the first beat, at the start
    assert max(seconds for seconds, _ in ours) < 0.2, ours
    # Prefect's own, for contrast: its thread sleeps whole seconds, so leaving waits
    # out the rest of one (~0.9 s here, after a 0.1 s run).
    theirs = [_exit_seconds(heartbeat.prefects_own()) for _ in range(2)]
    assert min(seconds for seconds, _ in theirs) > 0.4, theirs


def test_beats_keep_their_interval_until_the_run_ends(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(flow_engine, "MINIMUM_HEARTBEAT_INTERVAL", 0)
    engine = _Engine()
    engine.heartbeat_seconds = 0.1  # type: ignore[assignment]
    with heartbeat.send_heartbeats(engine):
        time.sleep(0.55)
    ended = time.monotonic()
    gaps = [b - a for a, b in zip(engine.beats, engine.beats[1:], strict=False)]
    assert 3 <= len(engine.beats) <= 7, engine.beats
    assert all(gap >= 0.09 for gap in gaps), gaps
    time.sleep(0.25)
    assert all(beat <= ended for beat in engine.beats)  # none after the run ended


def test_a_flow_run_still_sends_its_heartbeat_events(
    prefect_server: str,
    asserting_events_worker: EventsWorker,  # noqa: F811
) -> None:
    seen: dict[str, Any] = {}

    @flow
    def short() -> str:
        seen["id"] = str(prefect.runtime.flow_run.id)
        return "done"

    with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: 30}):
        started = time.monotonic()
        assert short() == "done"
        took = time.monotonic() - started
    asserting_events_worker.drain()
    client = asserting_events_worker._client
    assert isinstance(client, AssertingEventsClient)
    beats = [
        e
        for e in client.events
        if e.event == "prefect.flow-run.heartbeat"
        and e.resource.id == f"prefect.flow-run.{seen['id']}"
    ]
    assert len(beats) >= 1, [e.event for e in client.events]
    assert took < 30  # ended long before a second heartbeat was due


def test_another_prefect_keeps_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(heartbeat, "_prefects_own", heartbeat._prefects_own)  # put back after

    @contextlib.contextmanager
    def changed(engine: Any, join_on_exit: bool = True) -> Iterator[None]:
        yield  # a Prefect whose heartbeat is not the one heartbeat.py was copied from

    monkeypatch.setattr(flow_engine, "_send_heartbeats", changed)
    assert heartbeat.install() is False
    assert flow_engine._send_heartbeats is changed
