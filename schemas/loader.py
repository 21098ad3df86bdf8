"""Load a pump spec from YAML: one loader, every problem reported as `file:line key.path: message`."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from schemas import secrets
from schemas._messages import describe_all
from schemas._problems import Loc, Problem, spec_error
from schemas._yaml import read_yaml
from schemas.errors import SpecError, TransientError
from schemas.spec import Spec, cross_check

# A loader check: more problems found in a valid spec (tasks.transform.guard.filter_problems, ...).
Check = Callable[[Spec], Iterable[Problem]]

REF_RE = re.compile(r"\$\{(env|secret):([^}]*)\}")
# What a reference's NAME may be, and how a message says it.
NAMES = {
    "env": (re.compile(r"[A-Za-z_][A-Za-z0-9_]*"), "of letters, digits and '_'"),
    "secret": (  # Prefect's rule for block names
        re.compile(r"[a-z0-9][a-z0-9-]*"),
        "that is a Prefect block name (lowercase letters, digits, '-')",
    ),
}

# Values under these keys of `source` and `sink` are resolved only when used, so that
# a spec model (which Prefect may record as a parameter) never holds a secret.
LAZY_KEYS = frozenset({"headers", "storage_options", "params", "token"})
# Where a ${...} is resolved at use (section, key): a command that never uses one of these
# (status, query, reset) may load the spec with its env variables unset.
RESOLVED_AT_USE = frozenset((section, key) for section in ("source", "sink") for key in LAZY_KEYS)
# Used by `pumphouse serve` only, which resolves it as it starts: a run need not have it set.
SERVE_ONLY = frozenset({("source", "token")})


def load_spec(
    path: str | os.PathLike[str],
    checks: Sequence[Check] = (),
    *,
    unset_ok: frozenset[tuple[str, str]] = frozenset(),
) -> Spec:
    """Parse and validate one spec file; raise SpecError listing every problem with its line.
    `unset_ok`: (section, key) pairs of RESOLVED_AT_USE whose ${env:NAME} need not be set
    yet, for a command that does not use them."""
    file = str(path)
    try:
        text = Path(file).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise SpecError(
            f"{file}: no such spec file; check the path (specs live in pumps/NAME.yaml)"
        ) from None
    except (OSError, UnicodeDecodeError) as e:
        raise SpecError(f"{file}: cannot read the spec: {e}") from None
    return parse_spec(text, file, checks, unset_ok=unset_ok)


def parse_spec(
    text: str,
    file: str = "<spec>",
    checks: Sequence[Check] = (),
    *,
    unset_ok: frozenset[tuple[str, str]] = frozenset(),
) -> Spec:
    """Like load_spec, from text; `file` names the source in messages."""
    raw, lines = read_yaml(text, file)
    problems: list[Problem] = []
    data = _interpolate(raw, (), problems, unset_ok)
    # A value whose reference did not resolve would only fail again as a bad value.
    unresolved = {loc for loc, _ in problems}
    found: list[Problem] = []
    try:
        spec = Spec.model_validate(data)
    except ValidationError as e:
        found = describe_all(e.errors(), data, raw)
    else:
        found = list(cross_check(spec))
        for check in checks:
            found += list(check(spec))
    problems += [(loc, msg) for loc, msg in found if loc not in unresolved]
    if problems:
        raise spec_error(file, lines, problems)
    return spec


def column_lines(path: str) -> dict[str, str]:
    """Where each inline column is declared in the spec file (`pumps/x.yaml:19`), by name;
    empty if the file no longer reads."""
    try:
        _, lines = read_yaml(Path(path).read_text(encoding="utf-8"), path)
    except (OSError, UnicodeDecodeError, SpecError):
        return {}
    return {
        str(loc[2]): f"{path}:{line}"
        for loc, line in lines.items()
        if len(loc) == 3 and loc[:2] == ("schema", "columns")
    }


def resolve(value: str) -> str:
    """Resolve `${env:NAME}` and `${secret:NAME}` in a lazily kept value, at the moment of use."""

    references: dict[str, str] = {}

    def one(m: re.Match[str]) -> str:
        kind, name = m.group(1), m.group(2)
        if kind == "env":
            if name not in os.environ:
                raise SpecError(f"environment variable {name} is not set; export it before running")
            value = os.environ[name]
        else:
            value = _prefect_secret(name)
        secrets.remember(value)
        references[value] = m.group()
        return value

    resolved = REF_RE.sub(one, value)
    secrets.remember_credentials(resolved)
    secrets.remember_written(resolved, references)
    return resolved


def resolve_mapping(mapping: dict[str, Any]) -> dict[str, Any]:
    """resolve() applied to every string value of a mapping, recursively."""
    out: dict[str, Any] = {}
    for k, v in mapping.items():
        if isinstance(v, str):
            out[k] = resolve(v)
        elif isinstance(v, dict):
            out[k] = resolve_mapping(v)
        else:
            out[k] = v
    return out


def _prefect_secret(name: str) -> str:
    try:
        from prefect.blocks.system import Secret

        value = Secret.load(name).get()  # type: ignore[union-attr]
    except ValueError as e:
        if "Unable to find block document" not in str(e):
            raise TransientError(f"Prefect Secret block {name!r}: {e}; run again") from None
        raise SpecError(
            f"Prefect Secret block {name!r} could not be loaded; create it with "
            f"`prefect block create secret` or in the UI, then run again"
        ) from None
    except Exception as e:  # the server is not reachable: not the spec's fault
        raise TransientError(
            f"Prefect Secret block {name!r} could not be read from the Prefect server "
            f"({type(e).__name__}); check that it is up (PREFECT_API_URL), then run again"
        ) from None
    return str(value)


def _interpolate(
    value: Any, loc: Loc, problems: list[Problem], unset_ok: frozenset[tuple[str, str]]
) -> Any:
    """Check every ${...} reference; substitute env values now except under LAZY_KEYS
    (where, under `unset_ok`, an unset variable is left to the moment of use)."""
    if isinstance(value, dict):
        return {k: _interpolate(v, (*loc, k), problems, unset_ok) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, (*loc, i), problems, unset_ok) for i, v in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value
    lazy = len(loc) >= 2 and loc[0] in ("source", "sink") and loc[1] in LAZY_KEYS
    found: list[str] = []
    for m in REF_RE.finditer(value):
        kind, name = m.groups()
        rule, said = NAMES[kind]
        if not rule.fullmatch(name):
            found.append(
                f"${{{kind}:{name}}} is not a valid reference; "
                f"write ${{{kind}:NAME}} with a NAME {said}"
            )
        elif (
            kind == "env" and name not in os.environ and tuple(loc[:2]) not in unset_ok | SERVE_ONLY
        ):
            found.append(
                f"environment variable {name} is not set; export it, or remove ${{env:{name}}}"
            )
        elif kind == "env" and name in os.environ:
            secrets.remember(os.environ[name])
        elif kind == "secret" and not lazy:
            found.append(
                f"${{secret:{name}}} may only stand in headers, params, storage_options or "
                f"a webhook's token; "
                f"elsewhere use ${{env:NAME}}"
            )
    if re.search(r"\$\{(?!(env|secret):)", value):
        found.append("unknown reference; use ${env:NAME} or ${secret:NAME}")
    problems += [(loc, msg) for msg in found]
    if lazy or found:
        return value
    resolved = REF_RE.sub(lambda m: os.environ[m.group(2)], value)
    secrets.remember_credentials(resolved)  # a URL's user:password, as Basic auth sends it
    secrets.remember_written(resolved, {os.environ[m[2]]: m[0] for m in REF_RE.finditer(value)})
    return resolved
