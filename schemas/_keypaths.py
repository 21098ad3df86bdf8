"""Key paths in the spec: pydantic's error locations as YAML key paths, the value written at
one, and what the spec model declares there (its type, valid keys, union tags)."""

from __future__ import annotations

import types
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel

from schemas._problems import Loc
from schemas.spec import Spec


def yaml_loc(loc: Loc, data: Any, kind: str) -> Loc:
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
            cur = value_at(cur, (part,))
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


def value_at(data: Any, loc: Loc) -> Any:
    """The value at a key path of parsed YAML, or None where there is none."""
    cur = data
    for part in loc:
        if isinstance(cur, dict):
            cur = cur.get(part)
        elif isinstance(cur, list) and isinstance(part, int) and part < len(cur):
            cur = cur[part]
        else:
            return None
    return cur


def annotation_at(loc: Loc, data: Any) -> Any:
    """The type the spec model declares at a key path (None where it declares none)."""
    return _resolve(_declared_at(loc, data), value_at(data, loc))


def valid_keys(loc: Loc, data: Any) -> list[str]:
    """The keys the model at a key path accepts, as written in YAML (aliases)."""
    model = annotation_at(loc, data)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return [f.alias or n for n, f in model.model_fields.items()]
    return []


def tags(loc: Loc, data: Any) -> list[str]:
    """The `type` values a tagged union at loc accepts, e.g. files, http."""
    ann = _declared_at(loc, data)
    while get_origin(ann) is Annotated:
        ann = get_args(ann)[0]
    models = [m for m in get_args(ann) if isinstance(m, type) and issubclass(m, BaseModel)]
    return [str(t) for m in models for t in _model_tags(m)]


def _declared_at(loc: Loc, data: Any) -> Any:
    """The annotation at a key path as declared, unions not yet resolved (None if none)."""
    ann: Any = Spec
    for n, part in enumerate(loc):
        ann = _resolve(ann, value_at(data, loc[:n]))
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
    return ann


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
