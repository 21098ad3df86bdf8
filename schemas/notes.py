"""Notes on a valid spec: what it will do that its author may not expect. `validate` prints
them as `note: FILE:LINE key.path: message`; a note never makes a spec invalid."""

from __future__ import annotations

from pathlib import Path

from schemas._problems import Problem, located
from schemas._yaml import read_yaml
from schemas.spec import PAGINATE_KEYS, HttpSource, Paginate, Spec, paginate_key_unread


def spec_notes(spec: Spec) -> list[Problem]:
    """The notes on `spec` as (key path, message) pairs; empty when there is nothing to say."""
    found: list[Problem] = []
    sink = spec.sink
    if spec.transform.dedup and sink.mode == "append":
        # An append sink gets each run's deduplicated rows (CONTRACT §2): a key that comes
        # again in a later run lands again, which "dedup" alone may not lead one to expect.
        what = {"delta": "a delta sink with mode: append", "http": "an http sink"}.get(
            sink.type, f"a {sink.type} sink"
        )
        found.append(
            (
                ("transform", "dedup"),
                f"keeps one row per key within a run; {what} adds each run's rows, so a key "
                "read again in a later run lands again; for one row per key across runs use "
                "sink.type: delta with sink.mode: merge",
            )
        )
    if isinstance(spec.source, HttpSource):
        p = spec.source.paginate
        for key in sorted(p.model_fields_set - {"style"}, key=list(Paginate.model_fields).index):
            if key not in PAGINATE_KEYS[p.style] and key not in ("total_path", "has_more_path"):
                found.append((("source", "paginate", key), paginate_key_unread(p, key)))
    return found


def located_notes(file: str, spec: Spec) -> list[str]:
    """The notes on `spec`, read from `file`, as `FILE:LINE key.path: message` lines."""
    found = spec_notes(spec)
    if not found:
        return []
    _, lines = read_yaml(Path(file).read_text(encoding="utf-8-sig"), file)
    return located(file, lines, found)
