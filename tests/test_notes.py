"""`pumphouse validate` notes what a valid spec does that its author may not expect, and
still exits 0: here, that dedup on an append sink spans one run (CONTRACT §2)."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import run_in_process
from tests.data import spec_text

PARQUET = "sink:\n  type: parquet\n  url: ./out/{name}\n  partition_by: [status]\n"
SINKS = {
    "in_parquet": PARQUET,
    "in_delta": "sink:\n  type: delta\n  url: ./out/{name}\n  mode: append\n",
    "to_hook": "sink:\n  type: http\n  url: https://hooks.example.com/ingest\n",
    "merged": "sink:\n  type: delta\n  url: ./out/{name}\n  mode: merge\n",
    "replaced": "sink:\n  type: delta\n  url: ./out/{name}\n  mode: overwrite\n",
}
DEDUP = "  dedup: {key: [order_id], order_by: updated_at, keep: latest}"
ACROSS = "for one row per key across runs use sink.type: delta with sink.mode: merge"


def write(project: Path, name: str, sink: str = PARQUET, dedup: bool = True) -> str:
    """tests/data.py's orders spec as pump `name`, with `sink`, with or without its dedup."""
    text = spec_text(name=name, out=f"./out/{name}")
    text = text.replace(PARQUET.format(name=name), sink.format(name=name))
    if not dedup:
        text = text.replace(DEDUP + "\n", "")
    assert sink.format(name=name) in text and (DEDUP in text) == dedup
    (project / "pumps" / f"{name}.yaml").write_text(text)
    return f"pumps/{name}.yaml"


def test_validate_notes_dedup_on_an_append_sink_and_exits_0(project: Path) -> None:
    (project / "in").mkdir()
    specs = [write(project, name, sink) for name, sink in SINKS.items()]
    specs.append(write(project, "plain", dedup=False))
    done = run_in_process("validate", *specs, cwd=project)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"ok: {s} (pump {Path(s).stem})" for s in specs]
    line = spec_text().splitlines().index(DEDUP) + 1
    assert done.stderr.splitlines() == [
        f"note: pumps/{name}.yaml:{line} transform.dedup: keeps one row per key within a "
        f"run; {what} adds each run's rows, so a key read again in a later run lands again; "
        + ACROSS
        for name, what in [
            ("in_parquet", "a parquet sink"),
            ("in_delta", "a delta sink with mode: append"),
            ("to_hook", "an http sink"),
        ]
    ]


def test_validate_notes_a_paginate_key_the_style_does_not_read(project: Path) -> None:
    # A key of another style (limit_param under cursor) is a mistake that does nothing;
    # CONTRACT §1 lists every key under one style, so it is noted, not refused.
    (project / "pumps" / "api.yaml").write_text(
        "name: api\n"
        "source:\n"
        "  type: http\n"
        "  url: https://api.example.com/v1/orders\n"
        "  paginate:\n"
        "    style: cursor\n"
        "    cursor_path: meta.next\n"
        "    limit_param: per_page\n"
        "    page_size: 50\n"
        "sink: {type: parquet, url: ./out/api}\n"
    )
    done = run_in_process("validate", "pumps/api.yaml", cwd=project)
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [
        f"note: pumps/api.yaml:{line} source.paginate.{key}: {key} does nothing for style "
        f"cursor; it is for style offset or page: remove {key}, or set style: offset"
        for line, key in ((8, "limit_param"), (9, "page_size"))
    ]
