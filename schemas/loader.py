"""Load a pump spec from YAML: one loader, every problem reported as `file:line key.path: message`."""

from __future__ import annotations

import difflib
import os
import re
import types
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ByteSize, ValidationError

from schemas.errors import SpecError
from schemas.spec import Spec, cross_check

Loc = tuple[str | int, ...]
Check = Callable[[Spec], Iterable[tuple[Loc, str]]]

REF_RE = re.compile(r"\$\{(env|secret):([^}]*)\}")
NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Values under these keys of `source` and `sink` are resolved only when used, so that
# a spec model (which Prefect may record as a parameter) never holds a secret.
LAZY_KEYS = frozenset({"headers", "storage_options", "params"})


def load_spec(path: str | os.PathLike[str], checks: Sequence[Check] = ()) -> Spec:
    """Parse and validate one spec file; raise SpecError listing every problem with its line."""
    file = str(path)
    try:
        text = Path(file).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise SpecError(
            f"{file}: no such spec file; check the path (specs live in pumps/NAME.yaml)"
        ) from None
    except (OSError, UnicodeDecodeError) as e:
        raise SpecError(f"{file}: cannot read the spec: {e}") from None
    return parse_spec(text, file, checks)


def parse_spec(text: str, file: str = "<spec>", checks: Sequence[Check] = ()) -> Spec:
    """Like load_spec, from text; `file` names the source in messages."""
    raw, lines = _read_yaml(text, file)
    problems: list[tuple[Loc, str]] = []
    data = _interpolate(raw, (), problems)
    # A value whose reference did not resolve would only fail again as a bad value.
    unresolved = {loc for loc, _ in problems}
    found: list[tuple[Loc, str]] = []
    try:
        spec = Spec.model_validate(data)
    except ValidationError as e:
        found = _describe_all(e.errors(), data, raw)
    else:
        found = list(cross_check(spec))
        for check in checks:
            found += list(check(spec))
    problems += [(loc, msg) for loc, msg in found if loc not in unresolved]
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
            raise SpecError(
                f"{file}: the spec is empty; write a mapping with at least name, source and sink"
            )
        lines: dict[Loc, int] = {}
        dupes: list[tuple[Loc, str]] = []
        _walk(node, (), lines, dupes)
        if dupes:
            raise _spec_error(file, lines, dupes)
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as e:
        raise SpecError(_yaml_problem(file, text, e)) from None
    except yaml.YAMLError as e:
        raise SpecError(f"{file}: not valid YAML: {e}") from None
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        got = "a list" if isinstance(data, list) else repr(data)
        raise SpecError(
            f"{file}:{node.start_mark.line + 1}: a spec is a mapping of keys "
            f"(name: ..., source: ..., sink: ...), not {got}"
        )
    return data, lines


def _yaml_problem(file: str, text: str, e: yaml.MarkedYAMLError) -> str:
    """One line for a YAML syntax error: where, what, where the construct began, the fix."""
    mark = e.problem_mark or e.context_mark
    if mark is None:
        return f"{file}: not valid YAML: {e.problem or e}"
    line = mark.line + 1
    msg = f"{file}:{line}: not valid YAML: {e.problem} at column {mark.column + 1}"
    if e.context and e.context_mark and e.context_mark.line + 1 != line:
        msg += f" ({e.context} from line {e.context_mark.line + 1})"
    source_line = text.splitlines()[mark.line] if mark.line < len(text.splitlines()) else ""
    if "'\\t'" in (e.problem or ""):
        hint = "indent with spaces, not tabs"
    elif "alias" in (e.context or "") and re.search(r":\s+\*", source_line):
        hint = "quote a value that starts with '*', e.g. cron: \"*/15 * * * *\""
    else:
        hint = "check the indentation and quoting"
    return f"{msg}; {hint}"


def _walk(node: yaml.Node, loc: Loc, lines: dict[Loc, int], dupes: list[tuple[Loc, str]]) -> None:
    lines[loc] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key, line = key_node.value, key_node.start_mark.line + 1
            if key in seen:
                dupes.append(
                    ((*loc, key), f"key given twice (first on line {seen[key]}); keep one")
                )
            else:
                seen[key] = line
            _walk(value_node, (*loc, key), lines, dupes)
            lines[(*loc, key)] = line
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
    lazy = len(loc) >= 2 and loc[0] in ("source", "sink") and loc[1] in LAZY_KEYS
    found: list[str] = []
    for m in REF_RE.finditer(value):
        kind, name = m.groups()
        if not NAME_RE.fullmatch(name):
            found.append(
                f"${{{kind}:{name}}} is not a valid reference; "
                f"write ${{{kind}:NAME}} with a NAME of letters, digits and '_'"
            )
        elif kind == "env" and name not in os.environ:
            found.append(
                f"environment variable {name} is not set; export it, or remove ${{env:{name}}}"
            )
        elif kind == "secret" and not lazy:
            found.append(
                f"${{secret:{name}}} may only stand in headers, params or storage_options; "
                f"elsewhere use ${{env:NAME}}"
            )
    if re.search(r"\$\{(?!(env|secret):)", value):
        found.append("unknown reference; use ${env:NAME} or ${secret:NAME}")
    problems += [(loc, msg) for msg in found]
    if lazy or found:
        return value
    return REF_RE.sub(lambda m: os.environ[m.group(2)], value)


# ---------------------------------------------------------------- messages


def _spec_error(file: str, lines: dict[Loc, int], problems: Iterable[tuple[Loc, str]]) -> SpecError:
    """One SpecError for all problems, in the order of the file's lines."""
    located = sorted(((_line_of(lines, loc), loc, msg) for loc, msg in problems), key=_by_line)
    out = []
    for line, loc, msg in located:
        where = f"{file}:{line}" if line else file
        key = f" {_dotted(loc)}:" if loc else ":"
        out.append(f"{where}{key} {msg}")
    unique = list(dict.fromkeys(out))
    return SpecError(unique[0] if len(unique) == 1 else f"{len(unique)} problems in {file}", unique)


def _by_line(item: tuple[int | None, Loc, str]) -> int:
    return item[0] or 0


def _line_of(lines: dict[Loc, int], loc: Loc) -> int | None:
    # A key missing at the top level has no line of its own; the whole file is meant.
    for n in range(len(loc), 0, -1):
        if loc[:n] in lines:
            return lines[loc[:n]]
    return None


def _dotted(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


_EXPECTED = {
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "string_type": "a string",
    "list_type": "a list such as [a, b]",
    "tuple_type": "a list such as [a, b]",
    "set_type": "a list such as [a, b]",
    "dict_type": "a mapping of keys",
    "model_type": "a mapping of keys",
    "model_attributes_type": "a mapping of keys",
}
_BOUNDS = {
    "greater_than_equal": ("ge", "at least"),
    "greater_than": ("gt", "more than"),
    "less_than_equal": ("le", "at most"),
    "less_than": ("lt", "less than"),
}


def _describe_all(errors: Sequence[Any], data: Any, raw: Any) -> list[tuple[Loc, str]]:
    """Pydantic errors as (YAML key path, message); a union's errors on one key become one."""
    by_loc: dict[Loc, list[Any]] = {}
    for err in errors:
        loc = _yaml_loc(tuple(err["loc"]), data, err["type"])
        if err["type"] in ("union_tag_not_found", "union_tag_invalid"):
            loc = (*loc, "type")
        by_loc.setdefault(loc, []).append(err)
    out = []
    for loc, errs in by_loc.items():
        written = _value_at(raw, loc)
        if isinstance(written, str) and "${" in written:
            # Show the reference as written, never the value substituted for it.
            errs = [{**err, "input": written} for err in errs]
        msg = _describe(loc, errs[0], data) if len(errs) == 1 else _describe_union(errs)
        msg = _unsubstitute(msg, _value_at(data, loc), written)
        if errs[0]["type"] == "value_error":
            loc = _narrow(loc, errs[0].get("input"), msg)
        out.append((loc, msg))
    return out


def _narrow(loc: Loc, given: Any, msg: str) -> Loc:
    """A validator's message about a mapping that quotes one of its entries belongs to that entry."""
    if not isinstance(given, dict):
        return loc
    hits = [
        k for k, v in given.items() if repr(k) in msg or (isinstance(v, str) and repr(v) in msg)
    ]
    return (*loc, hits[0]) if len(hits) == 1 else loc


def _describe(loc: Loc, err: Any, data: Any) -> str:
    """One pydantic error as a message that says what is wrong and what is valid."""
    kind, msg, given = err["type"], err["msg"], err.get("input")
    ctx = err.get("ctx") or {}
    if kind == "missing":
        return f"missing required key {loc[-1]!r}" if loc else "missing required key"
    if kind == "extra_forbidden":
        valid = _valid_keys(loc[:-1], data)
        close = difflib.get_close_matches(str(loc[-1]), valid, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        hint += f"; valid keys here: {', '.join(valid)}" if valid else ""
        return f"unknown key {loc[-1]!r}{hint}"
    if kind in ("literal_error", "bool_parsing", "bool_type") and _choices(err):
        return f"unknown value {_show(given)}; valid: {', '.join(_choices(err))}"
    if kind == "union_tag_invalid":
        tag = _value_at(data, loc)
        return f"unknown type {_show(tag)}; valid: {', '.join(_tags(loc[:-1], data))}"
    if kind == "union_tag_not_found":
        return f"missing required key 'type'; valid: {', '.join(_tags(loc[:-1], data))}"
    if kind == "string_pattern_mismatch":
        return _pattern_hint(loc, given)
    if kind == "value_error":
        return _value_hint(given) or msg.removeprefix("Value error, ")
    if kind in ("byte_size", "byte_size_unit"):
        return f"{_show(given)} is not a byte size; write a number and a unit such as 512KiB, 64MiB or 1GiB"
    if kind in _BOUNDS:
        key, words = _BOUNDS[kind]
        bound = ctx.get(key)
        if _annotation_at(loc, data) is ByteSize and isinstance(bound, int):
            bound = _bytes(bound)
        elif isinstance(bound, float) and bound.is_integer():
            bound = int(bound)
        return f"must be {words} {bound} (got {_show(given)})"
    if kind in ("string_too_short", "too_short") and ctx.get("min_length") == 1:
        return f"must not be empty (got {_show(given)})"
    if kind in _EXPECTED:
        return f"expected {_EXPECTED[kind]} (got {_show(given)})"
    return f"{msg[0].lower()}{msg[1:]} (got {_show(given)})"


def _describe_union(errs: list[Any]) -> str:
    """Several errors on one key: each member of a union rejected the value."""
    given = errs[0].get("input")
    choices = [c for err in errs for c in _choices(err)]
    if all(_choices(err) for err in errs):
        return f"unknown value {_show(given)}; valid: {', '.join(dict.fromkeys(choices))}"
    expected = [_EXPECTED.get(err["type"]) for err in errs]
    if all(expected):
        return (
            f"expected {' or '.join(dict.fromkeys(e for e in expected if e))} (got {_show(given)})"
        )
    return "; ".join(dict.fromkeys(e["msg"] for e in errs)) + f" (got {_show(given)})"


def _choices(err: Any) -> list[str]:
    if err["type"] in ("bool_parsing", "bool_type"):
        return ["true", "false"]
    if err["type"] == "literal_error":
        return re.findall(r"'([^']*)'", (err.get("ctx") or {}).get("expected", ""))
    return []


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _bytes(n: int) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size and n % size == 0:
            return f"{n // size}{unit}"
    return f"{n} bytes"


def _unsubstitute(msg: str, value: Any, raw: Any) -> str:
    # A validator's own message may quote the substituted value; put the reference back.
    if isinstance(value, str) and isinstance(raw, str) and value != raw and value:
        return msg.replace(value, raw)
    return msg


def _value_hint(given: Any) -> str | None:
    if isinstance(given, str) and re.fullmatch(r"\s*decimal\(\s*\d+\s*", given):
        return (
            f"{given!r} is a decimal type cut at its comma; "
            f'inside {{...}} quote it: type: "decimal(P,S)"'
        )
    return None


def _pattern_hint(loc: Loc, given: Any) -> str:
    last = loc[-1] if loc else ""
    if last == "name":
        return f"{given!r} is not a valid pump name: use [a-z][a-z0-9_]*, e.g. orders_daily"
    if last == "url":
        return f"{given!r} is not an http(s) URL: it must start with http:// or https://"
    if last == "schema":
        return (
            f"{given!r} is not a schema reference: use 'module:Class' "
            f"(a pandera model in schemas/module.py) or an inline mapping"
        )
    return f"{given!r} does not have the expected form"


def _yaml_loc(loc: Loc, data: Any, kind: str) -> Loc:
    """Drop the segments pydantic adds for unions and validators, keep the YAML keys."""
    out: list[str | int] = []
    cur = data
    for i, part in enumerate(loc):
        last = i == len(loc) - 1
        present = (isinstance(cur, dict) and part in cur) or (
            isinstance(cur, list) and isinstance(part, int) and part < len(cur)
        )
        if present:
            out.append(part)
            cur = _value_at(cur, (part,))
        elif (
            last
            and isinstance(cur, dict)
            and isinstance(part, str)
            and (kind in ("missing", "extra_forbidden") or not _is_noise(part))
        ):
            out.append(part)
    return tuple(out)


def _is_noise(part: str) -> bool:
    # Segment names pydantic adds for union members, tags and validator wrappers.
    return (
        any(ch in part for ch in "[]-")
        or part[:1].isupper()
        or part in {"str", "int", "float", "bool", "list", "dict", "tuple"}
        or part in {"files", "http", "parquet", "delta", "inline", "ref"}
    )


def _value_at(data: Any, loc: Loc) -> Any:
    cur = data
    for part in loc:
        if isinstance(cur, dict):
            cur = cur.get(part)
        elif isinstance(cur, list) and isinstance(part, int) and part < len(cur):
            cur = cur[part]
        else:
            return None
    return cur


def _annotation_at(loc: Loc, data: Any) -> Any:
    """The type the spec model declares at a key path (None where it declares none)."""
    ann: Any = Spec
    for n, part in enumerate(loc):
        ann = _resolve(ann, _value_at(data, loc[:n]))
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            field = ann.model_fields.get(str(part)) or next(
                (f for f in ann.model_fields.values() if f.alias == part), None
            )
            ann = field.annotation if field else None
        elif get_origin(ann) is dict:
            ann = get_args(ann)[1]
        elif get_origin(ann) in (list, tuple):
            ann = get_args(ann)[0]
        else:
            return None
    return _resolve(ann, _value_at(data, loc))


def _resolve(ann: Any, value: Any) -> Any:
    """Unwrap Annotated and Optional; pick the union member this value means (by `type`)."""
    while get_origin(ann) is Annotated:
        ann = get_args(ann)[0]
    if get_origin(ann) not in (Union, types.UnionType):
        return ann
    members = [_resolve(a, value) for a in get_args(ann) if a is not type(None)]
    models = [m for m in members if isinstance(m, type) and issubclass(m, BaseModel)]
    if isinstance(value, dict) and models:
        for m in models:
            if value.get("type") in _model_tags(m):
                return m
        return models[0]
    others = [m for m in members if m not in models]
    return others[0] if others else None


def _model_tags(model: type[BaseModel]) -> tuple[Any, ...]:
    field = model.model_fields.get("type")
    if field is None or get_origin(field.annotation) is not Literal:
        return ()
    return get_args(field.annotation)


def _tags(loc: Loc, data: Any) -> list[str]:
    """The `type` values a tagged union at loc accepts, e.g. files, http."""
    ann: Any = Spec
    for n, part in enumerate(loc):
        ann = _resolve(ann, _value_at(data, loc[:n]))
        is_model = isinstance(ann, type) and issubclass(ann, BaseModel)
        field = ann.model_fields.get(str(part)) if is_model else None
        ann = field.annotation if field else None
    while get_origin(ann) is Annotated:
        ann = get_args(ann)[0]
    models = [m for m in get_args(ann) if isinstance(m, type) and issubclass(m, BaseModel)]
    return [str(t) for m in models for t in _model_tags(m)]


def _valid_keys(loc: Loc, data: Any) -> list[str]:
    model = _annotation_at(loc, data)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return [f.alias or n for n, f in model.model_fields.items()]
    return []
