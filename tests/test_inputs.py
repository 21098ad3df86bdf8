"""A run's inputs in manifest.json and state.json: files left by the code before typed
inputs load as typed values and are written back byte for byte (tasks/sources/inputs)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tasks.run.summary import Counts
from tasks.sources.files.listing import SourceFile
from tasks.sources.http import PageInput, Resume
from tasks.state.store import StateStore

KEY = "da097468753b7d52"  # the source key of a resume point (tasks/sources/http)
NEXT = "https://api.example.com/v1/orders?after=21"
# As the code before typed inputs wrote them: a grown file read from its byte 80 (line 5)
# and changed, one staged (`read`: its state entry), the endpoint, a resume point with its
# record count and one left before records were counted.
GROWN = {
    "url": "/data/in/a.csv",
    "size": 120,
    "fingerprint": "120:1700000000.5",
    "mtime": 1700000000.5,
    "rel": "a.csv",
    "start": 80,
    "lines": 4,
    "changed": True,
}
STAGED = {
    "url": "/data/in/b.csv",
    "size": 7,
    "fingerprint": "7:1700000001.0",
    "mtime": 1700000001.0,
    "rel": "b.csv",
    "partial": True,
    "read": {"size": 7, "fp": "7:1700000001.0", "hash": "ab", "lines": 1, "ends": "cd"},
}
ENDPOINT = {
    "kind": "http",
    "url": "https://api.example.com/v1/orders",
    "size": 0,
    "fingerprint": "",
}
COUNTED = {"kind": "http", "url": NEXT, "size": 0, "fingerprint": f"resume:3:{KEY}:120"}
OLD_POINT = {"kind": "http", "url": NEXT, "size": 0, "fingerprint": f"resume:3:{KEY}"}
COUNTS = {
    "files": 1,
    "bytes": 0,
    "batches": 0,
    "rows_read": 5,
    "rows_rejected": 0,
    "rows_filtered": 0,
    "rows_old": 0,
    "rows_staged": 0,
    "errors_sample": [],
    "rest": [COUNTED],
    "warnings": [],
    "content": {},
}
MANIFEST = {
    "run_id": "r1",
    "started_at": 1.5,
    "inputs": [GROWN, STAGED, ENDPOINT],
    "hwm_before": "5",
    "phase": "loading",
    "staged": COUNTS,
    "seq_base": 0,
    "hwm_committed": None,
    "rest": [GROWN, OLD_POINT],
    "since": "5",
    "lookback": 0.0,
    "strict": False,
    "seen": None,
    "seen_from": None,
    "frozen": {},
    "continues": False,
    "known": {},
}
STATE = {
    "version": 2,
    "hwm": "9",
    "seq": 2,
    "files": {"a.csv": {"size": 1, "fp": "x"}},
    "rest": {"inputs": [GROWN, STAGED, COUNTED, OLD_POINT], "hwm": "5"},
}

grown = SourceFile(
    "/data/in/a.csv", 120, "120:1700000000.5", 1700000000.5, "a.csv", 80, 4, changed=True
)
staged = SourceFile(
    "/data/in/b.csv",
    7,
    "7:1700000001.0",
    1700000001.0,
    "b.csv",
    partial=True,
    read={"size": 7, "fp": "7:1700000001.0", "hash": "ab", "lines": 1, "ends": "cd"},
)
endpoint = PageInput("https://api.example.com/v1/orders")
counted = PageInput(NEXT, Resume(NEXT, 3, 120), KEY)
old_point = PageInput(NEXT, Resume(NEXT, 3, None), KEY)


def _written(path: Path, data: dict[str, Any]) -> str:
    text = json.dumps(data, indent=1)  # as StateStore writes it
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return text


def test_a_manifest_left_before_typed_inputs_loads_typed_and_is_written_back_the_same(
    project: Path,
) -> None:
    store = StateStore("p")
    before = _written(store.root / "manifest.json", MANIFEST)
    manifest = store.manifest()
    assert manifest is not None
    assert manifest.inputs == [grown, staged, endpoint]
    assert manifest.rest == [grown, old_point]
    assert manifest.left() == [grown, old_point, counted]
    assert Counts.from_dict(manifest.staged).rest == [counted]
    assert Counts.from_dict(manifest.staged).to_dict() == COUNTS
    store.save_manifest(manifest)
    assert (store.root / "manifest.json").read_text() == before


def test_a_state_left_before_typed_inputs_loads_typed_and_is_written_back_the_same(
    project: Path,
) -> None:
    store = StateStore("p")
    before = _written(store.root / "state.json", STATE)
    committed = store.committed()
    assert committed.rest == [grown, staged, counted, old_point]
    assert committed.rest_hwm == "5"
    store.commit(committed, {})
    assert (store.root / "state.json").read_text() == before
