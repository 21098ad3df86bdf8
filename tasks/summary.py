"""A run's summary: the counts per step, as a dict for --json and as markdown for the artifact."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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
    output: str = ""
    seconds: float = 0.0
    started_at: str = ""
    error: str | None = None

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
            "output": self.output,
            "seconds": round(self.seconds, 3),
            "started_at": self.started_at,
            "error": self.error,
        }

    def to_markdown(self) -> str:
        d = self.to_dict()
        rows = [
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
            ("output", d["output"]),
            ("seconds", d["seconds"]),
        ]
        head = f"## pump `{self.pump}`: {self.status}\n\nrun `{self.run_id}`" + (
            " (resumed)" if self.resumed else ""
        )
        table = "\n".join(f"| {k} | {v} |" for k, v in rows)
        error = f"\n\n**error:** {self.error}" if self.error else ""
        return f"{head}\n\n| step | value |\n|---|---|\n{table}{error}\n"

    def one_line(self) -> str:
        d = self.to_dict()
        return (
            f"pump {self.pump}: {self.status} in {d['seconds']}s: {d['rows_read']} read, "
            f"{d['rows_rejected']} rejected, {d['rows_filtered']} filtered, {d['rows_old']} old, "
            f"{d['rows_duplicate']} duplicate, {d['rows_written']} written"
            + (f"; high-water mark {d['hwm_after']}" if d["hwm_after"] else "")
        )
