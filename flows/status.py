"""What `pumphouse status` shows of each pump, as text or as JSON.

The text is one short block per pump, a label and a value a line, the same on a terminal
and in a pipe: it fits 80 columns (a long reason for a failure runs on) and has no box
drawing to strip. `--json` is a list of one object per pump.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from flows.history import History
from schemas.secrets import redact
from schemas.spec import WebhookSource
from tasks.receive.inbox import KEYS_FILE, receiver_dir
from tasks.receive.keys import saved_counts
from tasks.state.store import StateStore


@dataclass(frozen=True)
class PumpStatus:
    """One pump as `status` shows it; `problem` is set instead for a spec that does not load."""

    spec: str
    pump: str | None = None
    last_run: str | None = None
    outcome: str | None = None
    rows_read: int | None = None
    rows_written: int | None = None
    rows_rejected: int | None = None
    high_water_mark: str | None = None
    open_run: str | None = None
    recent_runs: list[str] = field(default_factory=list)
    next_run: str | None = None
    problem: str | None = None
    # A webhook-source pump's receiver: the answers its `serve` gave, {accepted,
    # duplicate, refused}, all zero before any; other pumps have none (not in the JSON).
    receiver: dict[str, int] | None = None

    def to_json(self) -> dict[str, Any]:
        shown = asdict(self)
        if self.receiver is None:
            del shown["receiver"]
        return shown

    def lines(self) -> list[str]:
        """The block `status` prints: the pump's name, then its values, indented."""
        if self.problem is not None:
            return [self.spec, f"  invalid spec: {self.problem}"]
        rows = f"{_n(self.rows_read)} read, {_n(self.rows_written)} written, "
        rows += f"{_n(self.rows_rejected)} rejected"
        last = f"{self.last_run}  {self.outcome}" if self.last_run else "never"
        said = [
            ("last run", last),
            ("rows", rows if self.last_run else "-"),
            ("high-water mark", self.high_water_mark or "-"),
            ("open run", self.open_run),
            ("recent runs", " ".join(self.recent_runs) or None),
            ("next run", self.next_run),
            ("received", _received(self.receiver)),
        ]
        return [str(self.pump)] + [f"  {k:<16} {v}" for k, v in said if v]


def pump_status(spec_path: str, spec: Any, history: History) -> PumpStatus:
    """The pump's status from its run history and its state (the mark, an open run)."""
    store = StateStore(spec.name)
    last = history.runs[0] if history.runs else None
    open_run, committed = store.manifest(), store.committed()
    if open_run:
        opened: str | None = f"{open_run.run_id} ({open_run.phase})"
    elif committed.rest:  # see limits.max_rows_per_run
        opened = f"{len(committed.rest)} input(s) left for the next run"
    else:
        opened = None
    return PumpStatus(
        spec=spec_path,
        pump=spec.name,
        last_run=last.started_at if last else None,
        outcome=redact(last.outcome) if last else None,
        rows_read=_count(last.rows_read) if last else None,
        rows_written=_count(last.rows_written) if last else None,
        rows_rejected=_count(last.rows_rejected) if last else None,
        high_water_mark=redact(str(committed.hwm)) if committed.hwm is not None else None,
        open_run=opened,
        recent_runs=[r.word for r in history.runs],
        next_run=history.next_run or None,
        receiver=_receiver_counts(spec),
    )


def _receiver_counts(spec: Any) -> dict[str, int] | None:
    if not isinstance(spec.source, WebhookSource):
        return None
    saved = saved_counts(receiver_dir(spec.name, spec.source) / KEYS_FILE)
    return saved or {"accepted": 0, "duplicate": 0, "refused": 0}


def _received(counts: dict[str, int] | None) -> str | None:
    if counts is None:
        return None
    return f"{counts['accepted']} accepted, {counts['duplicate']} duplicate, {counts['refused']} refused"


def _count(text: str) -> int | None:
    return int(text) if text.isdigit() else None


def _n(count: int | None) -> str:
    return "-" if count is None else str(count)
