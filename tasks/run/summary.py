"""A run's summary: the counts per step, as a dict for --json, as markdown for the artifact."""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from tasks.sources.inputs import Input, inputs_json, inputs_of

# The steps of a run, in order, as `Summary.durations` names them.
STEPS = ("refresh", "plan", "stage", "load", "commit")


WARNINGS = 10  # a run's summary keeps its first warnings, each once


@dataclass
class Counts:
    """Rows through the steps of one run; adds up per file and per batch."""

    files: int = 0
    bytes: int = 0
    batches: int = 0
    rows_read: int = 0
    rows_rejected: int = 0
    rows_filtered: int = 0
    rows_old: int = 0  # not newer than the high-water mark
    rows_staged: int = 0
    errors_sample: list[str] = field(default_factory=list)
    # Inputs left for the next run: where an http source stopped at max_rows_per_run.
    rest: list[Input] = field(default_factory=list)
    # What the run should tell its user (an http source stopped at max_pages), each once.
    warnings: list[str] = field(default_factory=list)
    # One file's: what state keeps of its bytes (see tasks/state/known); not added up.
    content: dict[str, Any] = field(default_factory=dict)

    def add(self, other: Counts) -> None:
        for name in (
            "files",
            "bytes",
            "batches",
            "rows_read",
            "rows_rejected",
            "rows_filtered",
            "rows_old",
            "rows_staged",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.errors_sample = (self.errors_sample + other.errors_sample)[:5]
        self.rest = self.rest + other.rest
        self.warnings = list(dict.fromkeys(self.warnings + other.warnings))[:WARNINGS]

    def to_dict(self) -> dict[str, Any]:
        """As the manifest keeps it (`staged`)."""
        return {**asdict(self), "rest": inputs_json(self.rest)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Counts:
        return cls(**{**data, "rest": inputs_of(data.get("rest", []))})


@dataclass
class Summary:
    pump: str
    run_id: str
    status: str = "ok"
    resumed: bool = False
    counts: Counts = field(default_factory=Counts)
    rows_duplicate: int = 0
    rows_written: int = 0
    hwm_before: str | None = None
    hwm_after: str | None = None
    inputs_left: int = 0  # left for the next run by limits.max_rows_per_run
    output: str = ""
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # the flow process's, all its threads (not Dask workers')
    started_at: str = ""
    error: str | None = None
    durations: dict[str, float] = field(default_factory=dict)  # seconds per step
    workdir: str = field(default_factory=os.getcwd)  # where a relative output URL points

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        """Time one step of the run; a step that fails still counts the time it took."""
        began = time.perf_counter()
        try:
            yield
        finally:
            self.durations[name] = self.durations.get(name, 0.0) + time.perf_counter() - began

    def to_dict(self) -> dict[str, Any]:
        c = self.counts
        return {
            "pump": self.pump,
            "run_id": self.run_id,
            "status": self.status,
            "resumed": self.resumed,
            "rows_read": c.rows_read,
            "rows_written": self.rows_written,
            "rows_rejected": c.rows_rejected,
            "rows_invalid": c.rows_rejected,
            "rows_filtered": c.rows_filtered,
            "rows_old": c.rows_old,
            "rows_duplicate": self.rows_duplicate,
            "files": c.files,
            "bytes": c.bytes,
            "batches": c.batches,
            "hwm_before": self.hwm_before,
            "hwm_after": self.hwm_after,
            "inputs_left": self.inputs_left,
            "warnings": list(c.warnings),
            "rejected_sample": list(c.errors_sample[:3]),  # file:row: problem (spec line)
            "output": self.output,
            "seconds": round(self.seconds, 3),
            "cpu_seconds": round(self.cpu_seconds, 3),
            "durations": {k: round(v, 3) for k, v in self.durations.items()},
            "started_at": self.started_at,
            "error": self.error,
        }

    def to_markdown(self) -> str:
        """The artifact: what happened to the rows, where they went, how long each step took."""
        d = self.to_dict()
        counts = [
            ("files read", d["files"]),
            ("bytes read", d["bytes"]),
            ("rows read", d["rows_read"]),
            ("rows rejected (invalid)", d["rows_rejected"]),
            ("rows filtered out", d["rows_filtered"]),
            ("rows not newer than the mark", d["rows_old"]),
            ("duplicate rows dropped", d["rows_duplicate"]),
            ("rows written", d["rows_written"]),
            ("high-water mark before", d["hwm_before"] or "-"),
            ("high-water mark after", d["hwm_after"] or "-"),
            *([("inputs left for the next run", d["inputs_left"])] if d["inputs_left"] else []),
            ("output", _located(d["output"], self.workdir)),
            ("seconds", d["seconds"]),
        ]
        steps = [(s, d["durations"][s]) for s in STEPS if s in d["durations"]]
        head = f"## pump `{self.pump}`: {self.status}\n\nrun `{self.run_id}`" + (
            " (resumed)" if self.resumed else ""
        )
        if self.started_at:
            head += f", started {self.started_at}"
        said = f"\n\n**error:** {_cell(self.error)}" if self.error else ""
        said += "".join(f"\n\n**warning:** {_cell(w)}" for w in d["warnings"])
        return (
            f"{head}{said}\n\n"
            + _table(("step", "value"), counts)
            + ("\n" + _table(("step", "seconds"), steps) if steps else "")
        )

    def to_metadata(self) -> dict[str, str]:
        """The summary as the artifact's metadata (strings only), which `status` reads back."""
        return {
            k: ("" if v is None else str(v))
            for k, v in self.to_dict().items()
            if not isinstance(v, dict | list)
        }

    def one_line(self) -> str:
        d = self.to_dict()
        return (
            f"pump {self.pump}: {self.status} in {d['seconds']}s: {d['rows_read']} read, "
            f"{d['rows_rejected']} rejected, {d['rows_filtered']} filtered, {d['rows_old']} old, "
            f"{d['rows_duplicate']} duplicate, {d['rows_written']} written"
            + (f"; high-water mark {d['hwm_after']}" if d["hwm_after"] else "")
            + (
                f"; stopped at limits.max_rows_per_run, {d['inputs_left']} input(s) left "
                "for the next run"
                if d["inputs_left"]
                else ""
            )
            + "".join(f"; warning: {w}" for w in d["warnings"])
        )


def outcome(record: dict[str, Any]) -> str:
    """`ok`, or `failed: why`, from a summary dict (run history or artifact metadata)."""
    status = str(record.get("status") or "-")
    return f"{status}: {record['error']}" if record.get("error") else status


def _located(url: str, workdir: str) -> str:
    """A relative output path with the folder it is relative to (the run's project folder)."""
    if not url or "://" in url or os.path.isabs(url):
        return url
    return f"{url} (in {workdir})"


def _table(header: tuple[str, str], rows: list[tuple[str, Any]]) -> str:
    lines = [f"| {header[0]} | {header[1]} |", "|---|---|"]
    lines += [f"| {k} | {_cell(v)} |" for k, v in rows]
    return "\n".join(lines) + "\n"


def _cell(value: Any) -> str:
    """A value that cannot break the markdown table (a `|` or a newline in an error or URL)."""
    return str(value).replace("|", "\\|").replace("\n", " ")


def located(sample: list[str], column_at: dict[str, str]) -> list[str]:
    """Each `file:row: col: problem, ...` of a run's first rejected rows with the spec line
    of each problem's column: `carrier: 'UA' is not int64 (pumps/flights.yaml:19)`."""
    if not column_at:
        return sample
    names = "|".join(re.escape(c) for c in sorted(column_at, key=len, reverse=True))
    item = re.compile(rf"(?:(?<=^)|(?<=: )|(?<=, ))({names}): (.*?)(?=, (?:{names}|_\w+): |$)")
    out = []
    for line in sample:
        where, sep, problems = line.partition(": ")
        shown = item.sub(lambda m: f"{m[1]}: {m[2]} ({column_at[m[1]]})", problems)
        out.append(where + sep + shown)
    return out
