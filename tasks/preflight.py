"""Everything `pumphouse validate` checks: the spec itself, then what needs the engine to tell."""

from __future__ import annotations

from schemas.loader import load_spec
from schemas.spec import Spec
from tasks.contract import schema_problems
from tasks.guard import filter_problems

CHECKS = (filter_problems, schema_problems)


def load(spec_path: str) -> Spec:
    """Parse and validate a spec, then check its filter and its data contract."""
    return load_spec(spec_path, checks=CHECKS)
