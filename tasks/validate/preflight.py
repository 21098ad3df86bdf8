"""Everything `pumphouse validate` checks: the spec itself, then what needs the engine to tell."""

from __future__ import annotations

import re
from typing import Any

from schemas._problems import Loc, Problem
from schemas.errors import PumpError, SpecError
from schemas.loader import LAZY_KEYS, REF_RE, load_spec, resolve
from schemas.spec import FilesSource, Spec, source_format
from tasks.contract.check import schema_problems
from tasks.sources.files.listing import list_files, safe_url
from tasks.sources.files.read import first_line_problem
from tasks.transform.guard import filter_problems
from tasks.validate.overlap import overlap_problems


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


CHECKED_FILES = 3  # local CSV files whose first line validate reads


def csv_problems(spec: Spec) -> list[Problem]:
    """A check of `validate`: a local CSV source whose first files' header is one column holding
    another delimiter (`a;b;c` read with ','): every row would fail, so validate says it."""
    source = spec.source
    if not isinstance(source, FilesSource) or source_format(source) != "csv":
        return []
    scheme = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", source.url)
    if scheme and scheme.group(1).lower() != "file":
        return []  # a bucket is not read by validate
    try:
        files = list_files(source)
    except PumpError:
        return []  # a run says what is wrong with the folder
    problems: list[Problem] = []
    for file in files[:CHECKED_FILES]:
        path = file.url.removeprefix("file://")
        if not path.lower().endswith((".csv", ".tsv")):
            continue  # compressed: read by the run only
        said = first_line_problem(source, file, path)
        if said is not None:
            where = (
                ("source", "csv", "delimiter") if "csv" in source.model_fields_set else ("source",)
            )
            problems.append((where, f"{safe_url(file.url)}: line 1: {said}"))
            break
    return problems


CHECKS = (filter_problems, schema_problems, secret_problems, overlap_problems)


def load(spec_path: str) -> Spec:
    """Parse and validate a spec, then check its filter and its data contract."""
    return load_spec(spec_path, checks=CHECKS)


def validate(spec_path: str) -> Spec:
    """As `load`, and for `pumphouse validate` also a first look at local CSV files. Not in
    a run: files already loaded under an earlier delimiter would stop every later run."""
    return load_spec(spec_path, checks=(*CHECKS, csv_problems))
