"""What a run's load keeps from the spec it started with, so a resumed run writes what it began.

A run's load batches (the Delta app transaction versions, the parquet part names, the
webhook's Idempotency-Keys) are cut by `limits.batch_rows`, `sink.partition_by` and the
webhook's `sink.batch_rows`. The manifest freezes them with the run's inputs (`Manifest.frozen`,
key path -> value); a resumed run cuts its batches as the run that started did, whatever the
spec says now (a user who lowers batch_rows after an out-of-memory kill gets it from the next
run on). What decides which rows land where (sink type, URL, mode, key, dedup) cannot be
taken from the old spec quietly: a change there is refused, naming the key.

One logical load may take several runs (limits.max_rows_per_run): a Delta overwrite
replaces the table in the first and appends in the runs that read what it left.
"""

from __future__ import annotations

import json
from typing import Any

from schemas.errors import SpecError
from schemas.secrets import redact, redact_all
from schemas.spec import HttpSink, Spec


def frozen_of(spec: Spec) -> dict[str, Any]:
    """The spec's values a run must keep to its end (JSON: they are saved in the manifest,
    secrets masked: a webhook URL may hold a token)."""
    sink, dedup = spec.sink, spec.transform.dedup
    return redact_all(
        {
            "limits.batch_rows": spec.limits.batch_rows,
            "sink.partition_by": list(sink.partition_by),
            "sink.batch_rows": sink.batch_rows if isinstance(sink, HttpSink) else None,
            "sink.type": sink.type,
            "sink.url": sink.url,
            "sink.mode": sink.mode,
            "sink.key": list(spec.merge_key),
            "transform.dedup": dedup.model_dump(mode="json") if dedup else None,
        }
    )


BATCHING = ("limits.batch_rows", "sink.partition_by", "sink.batch_rows")


def as_started(spec: Spec, frozen: dict[str, Any], continues: bool = False) -> Spec:
    """`spec` with the batching the run started with; a manifest from before `frozen` was
    kept (empty) resumes with the spec as it is. Raises SpecError if the rows would differ.

    A run that `continues` one stopped at max_rows_per_run is part of that run's overwrite:
    the table was replaced once, by that run, so this one appends."""
    sink, limits = spec.sink, spec.limits
    if frozen:
        now = frozen_of(spec)
        changed = [k for k in now if k not in BATCHING and k in frozen and frozen[k] != now[k]]
        if changed:
            raise SpecError(
                "this pump's interrupted run is loading, and the spec changed what it loads: "
                + "; ".join(f"{k} was {_shown(frozen[k])}, now {_shown(now[k])}" for k in changed)
                + ". Put the old value back and run again to finish that run, then change it"
            )
        partition_by = tuple(frozen.get("sink.partition_by", sink.partition_by))
        sink = sink.model_copy(update={"partition_by": partition_by})
        if isinstance(sink, HttpSink) and frozen.get("sink.batch_rows") is not None:
            sink = sink.model_copy(update={"batch_rows": int(frozen["sink.batch_rows"])})
        rows = int(frozen.get("limits.batch_rows", limits.batch_rows))
        limits = limits.model_copy(update={"batch_rows": rows})
    if continues and sink.mode == "overwrite":
        sink = sink.model_copy(update={"mode": "append"})
    return spec.model_copy(update={"sink": sink, "limits": limits})


def _shown(value: Any) -> str:
    return redact(json.dumps(value))
