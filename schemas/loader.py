"""Load a pump spec from YAML: one loader, every problem reported as `file:line key.path: message`."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from schemas.errors import SpecError
from schemas.spec import Spec, cross_check

Loc = tuple[str | int, ...]
Check = Callable[[Spec], Iterable[tuple[Loc, str]]]

REF_RE = re.compile(r"\$\{(env|secret):([^}]*)\}")
NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Values under these keys are resolved only when used, so that a spec model (which
# Prefect may record as a parameter) never holds a secret.
LAZY_KEYS = frozenset({"headers", "storage_options", "params"})


def load_spec(path: str | os.PathLike[str], checks: Sequence[Check] = ()) -> Spec:
    """Parse and validate one spec file; raise SpecError listing every problem with its line."""
    file = str(path)
    try:
        text = Path(file).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise SpecError(f"{file}: no such spec file; check the path (specs live in pumps/NAME.yaml)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SpecError(f"{file}: cannot read the spec: {e}") from None
    return parse_spec(text, file, checks)


def parse_spec(text: str, file: str = "<spec>", checks: Sequence[Check] = ()) -> Spec:
    """Like load_spec, from text; `file` names the source in messages."""
    data, lines = _read_yaml(text, file)
    problems: list[tuple[Loc, str]] = []
    data = _interpolate(data, (), problems)
    if problems:
        raise _spec_error(file, lines, problems)
    try:
        spec = Spec.model_validate(data)
    except ValidationError as e:
        raise _spec_error(file, lines, [_describe(err, data) for err in e.errors()]) from None
    problems = list(cross_check(spec))
    for check in checks:
        problems += list(check(spec))
    if problems:
        raise _spec_error(file, lines, problems)
    return spec


def resolve(value: str) -> str:
    """Resolve `${env:NAME}` and `${secret:NAME}` in a lazily kept value, at the moment of use."""

    def one(m: re.Match[str]) -> str:
        kind, name = m.group(1), m.group(2)
        if kind == "env":
            if name not in os.environ:
                raise SpecError(f"environment variable {name} is not set; export it before running")
            return os.environ[name]
        return _prefect_secret(name)

    return REF_RE.sub(one, value)


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
    except Exception:
        raise SpecError(
            f"Prefect Secret block {name!r} could not be loaded; create it with "
            f"`prefect block create secret` or in the UI, then run again"
        ) from None
    return str(value)


# ---------------------------------------------------------------- YAML with lines


def _read_yaml(text: str, file: str) -> tuple[Any, dict[Loc, int]]:
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise SpecError(f"{file}: the spec is empty; start from pumps/demo.yaml")
        lines: dict[Loc, int] = {}
        dupes: list[tuple[Loc, int]] = []
        _walk(node, (), lines, dupes)
        if dupes:
            loc, line = dupes[0]
            raise SpecError(f"{file}:{line} {_dotted(loc)}: key given twice; keep one")
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"{file}:{mark.line + 1}" if mark else file
        raise SpecError(f"{where}: not valid YAML: {e.problem or e}") from None
    except yaml.YAMLError as e:
        raise SpecError(f"{file}: not valid YAML: {e}") from None
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        raise SpecError(f"{file}:1: a spec is a mapping of keys (name, source, sink, ...), got {type(data).__name__}")
    return data, lines


def _walk(node: yaml.Node, loc: Loc, lines: dict[Loc, int], dupes: list[tuple[Loc, int]]) -> None:
    lines[loc] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for key_node, value_node in node.value:
            key = key_node.value
            if key in seen:
                dupes.append(((*loc, key), key_node.start_mark.line + 1))
            seen.add(key)
            lines[(*loc, key)] = key_node.start_mark.line + 1
            _walk(value_node, (*loc, key), lines, dupes)
            lines[(*loc, key)] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk(item, (*loc, i), lines, dupes)


def _interpolate(value: Any, loc: Loc, problems: list[tuple[Loc, str]]) -> Any:
    """Check every ${...} reference; substitute env values now except under LAZY_KEYS."""
    if isinstance(value, dict):
        return {k: _interpolate(v, (*loc, k), problems) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, (*loc, i), problems) for i, v in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value
    lazy = any(k in LAZY_KEYS for k in loc)
    for m in REF_RE.finditer(value):
        kind, name = m.groups()
        if not NAME_RE.fullmatch(name):
            problems.append((loc, f"${{{kind}:{name}}} is not a valid reference; names are letters, digits and '_'"))
        elif kind == "env" and name not in os.environ:
            problems.append((loc, f"environment variable {name} is not set; export it, or remove ${{env:{name}}}"))
        elif kind == "secret" and not lazy:
            problems.append((loc, f"${{secret:{name}}} may only stand in headers, params or storage_options"))
    if re.search(r"\$\{(?!(env|secret):)", value):
        problems.append((loc, "unknown reference; use ${env:NAME} or ${secret:NAME}"))
    if lazy or problems:
        return value
    return REF_RE.sub(lambda m: os.environ[m.group(2)], value)


# ---------------------------------------------------------------- messages


def _spec_error(file: str, lines: dict[Loc, int], problems: Iterable[tuple[Loc, str]]) -> SpecError:
    out = []
    for loc, msg in problems:
        line = _line_of(lines, loc)
        where = f"{file}:{line}" if line else file
        key = f" {_dotted(loc)}:" if loc else ""
        out.append(f"{where}{key} {msg}")
    unique = list(dict.fromkeys(out))
    return SpecError(unique[0] if len(unique) == 1 else f"{len(unique)} problems in {file}", unique)


def _line_of(lines: dict[Loc, int], loc: Loc) -> int | None:
    for n in range(len(loc), -1, -1):
        if loc[:n] in lines:
            return lines[loc[:n]]
    return None


def _dotted(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _describe(err: Any, data: Any) -> tuple[Loc, str]:
    """Turn one pydantic error into (path in the YAML, message that says what to do)."""
    loc = _yaml_loc(tuple(err["loc"]), data, err["type"])
    kind, msg, given = err["type"], err["msg"], err.get("input")
    if kind == "missing":
        return loc, f"missing required key {loc[-1]!r}" if loc else "missing required key"
    if kind == "extra_forbidden":
        valid = _valid_keys(loc[:-1], data)
        hint = f"; valid keys here: {', '.join(valid)}" if valid else ""
        return loc, f"unknown key {loc[-1]!r}{hint}"
    if kind == "literal_error":
        return loc, f"{msg[0].lower()}{msg[1:]} (got {given!r})"
    if kind == "union_tag_invalid":
        tags = err.get("ctx", {}).get("expected_tags", "")
        return loc, f"unknown type {err.get('ctx', {}).get('tag')!r}; valid: {tags.replace(chr(39), '')}"
    if kind == "union_tag_not_found":
        return (*loc, "type"), "missing required key 'type'"
    if kind == "string_pattern_mismatch":
        return loc, _pattern_hint(loc, given)
    if kind == "value_error":
        return loc, msg.removeprefix("Value error, ")
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return loc, f"expected a mapping of keys, got {type(given).__name__} {given!r}"
    return loc, f"{msg[0].lower()}{msg[1:]} (got {given!r})"


def _pattern_hint(loc: Loc, given: Any) -> str:
    last = loc[-1] if loc else ""
    if last == "name":
        return f"{given!r} is not a valid pump name: use [a-z][a-z0-9_]*, e.g. orders_daily"
    if last == "url":
        return f"{given!r} is not an http(s) URL: it must start with http:// or https://"
    if last == "schema":
        return f"{given!r} is not a schema reference: use 'module:Class' (a pandera model in schemas/module.py) or an inline mapping"
    return f"{given!r} does not have the expected form"


def _yaml_loc(loc: Loc, data: Any, kind: str) -> Loc:
    """Drop the segments pydantic adds for unions and validators, keep the YAML keys."""
    out: list[str | int] = []
    cur = data
    for i, part in enumerate(loc):
        last = i == len(loc) - 1
        if isinstance(cur, dict) and part in cur:
            out.append(part)
            cur = cur[part]
        elif isinstance(cur, list) and isinstance(part, int) and part < len(cur):
            out.append(part)
            cur = cur[part]
        elif last and kind in ("missing", "extra_forbidden") and isinstance(part, str) and isinstance(cur, dict):
            out.append(part)
        elif (
            isinstance(cur, dict)
            and isinstance(part, str)
            and part not in _noise_segments(part)
            and last
        ):
            out.append(part)
    return tuple(out)


def _noise_segments(part: str) -> set[str]:
    # Segment names pydantic adds for union members, tags and validator wrappers.
    if any(ch in part for ch in "[]-") or part[:1].isupper() or part in {"str", "int", "float", "bool", "list", "dict", "tuple"}:
        return {part}
    if part in {"files", "http", "parquet", "delta", "inline", "ref"}:
        return {part}
    return set()


def _valid_keys(loc: Loc, data: Any) -> list[str]:
    model: Any = Spec
    cur: Any = data
    for part in loc:
        cur = cur.get(part) if isinstance(cur, dict) else None
        if isinstance(part, int):
            continue
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return []
        field = model.model_fields.get(str(part)) or next(
            (f for f in model.model_fields.values() if f.alias == part), None
        )
        if field is None:
            return []
        model = _pick_model(field.annotation, cur)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return [f.alias or n for n, f in model.model_fields.items()]
    return []


def _pick_model(annotation: Any, value: Any) -> Any:
    """The BaseModel an annotation means for this value (by `type` for tagged unions)."""
    candidates = []
    stack = [annotation]
    while stack:
        a = stack.pop()
        if isinstance(a, type) and issubclass(a, BaseModel):
            candidates.append(a)
        elif get_origin(a) is not None or get_args(a):
            stack.extend(get_args(a))
    if len(candidates) > 1 and isinstance(value, dict) and "type" in value:
        for c in candidates:
            tf = c.model_fields.get("type")
            if tf is not None and value["type"] in get_args(tf.annotation):
                return c
    return candidates[0] if candidates else None
