"""Everything `pumphouse validate` checks: the spec itself, then what needs the engine to tell."""

from __future__ import annotations

from typing import Any

from schemas._problems import Loc, Problem
from schemas.errors import SpecError
from schemas.loader import LAZY_KEYS, REF_RE, load_spec, resolve
from schemas.spec import Spec
from tasks.contract import schema_problems
from tasks.guard import filter_problems
from tasks.overlap import overlap_problems


def secret_problems(spec: Spec) -> list[Problem]:
    """A loader check: each `${secret:NAME}` (in headers, params, storage_options) names a
    Prefect Secret block that loads. They are resolved again when used, so a rotated
    secret is picked up; this only finds a missing one before anything runs."""
    problems: list[Problem] = []
    for section in ("source", "sink"):
        dumped = getattr(spec, section).model_dump()
        for key in LAZY_KEYS:
            problems += _unresolved(dumped.get(key), (section, key))
    return problems


def _unresolved(value: Any, loc: Loc) -> list[Problem]:
    if isinstance(value, dict):  # as resolve_mapping goes: dicts, not lists
        return [p for k, v in value.items() for p in _unresolved(v, (*loc, k))]
    if not isinstance(value, str):
        return []
    problems: list[Problem] = []
    for m in REF_RE.finditer(value):
        if m.group(1) == "secret":
            try:
                resolve(m.group(0))
            except SpecError as e:
                problems.append((loc, str(e)))
    return problems


CHECKS = (filter_problems, schema_problems, secret_problems, overlap_problems)


def load(spec_path: str) -> Spec:
    """Parse and validate a spec, then check its filter and its data contract."""
    return load_spec(spec_path, checks=CHECKS)
