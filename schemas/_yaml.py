"""A spec's YAML, read as YAML 1.2, with the line of every key path; duplicate keys and
syntax errors as located problems."""

from __future__ import annotations

import re
from typing import Any

import yaml

from schemas._problems import Loc, Problem, spec_error
from schemas.errors import SpecError


def read_yaml(text: str, file: str) -> tuple[Any, dict[Loc, int]]:
    """The document (a mapping) and the line of each key path; SpecError for anything else."""
    loader = CoreLoader(text)
    try:
        _check_depth(text, file)  # before composing: PyYAML's composer recurses per level
        node = loader.get_single_node()
        if node is None:
            raise SpecError(
                f"{file}: the spec is empty; write a mapping with at least name, source and sink"
            )
        _check_expansion(node, file)  # before anything follows the aliases
        lines: dict[Loc, int] = {}
        dupes: list[Problem] = []
        _walk(node, (), lines, dupes)
        if dupes:
            raise spec_error(file, lines, dupes)
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as e:
        raise SpecError(_yaml_problem(file, text, e)) from None
    except RecursionError:  # not expected below MAX_DEPTH; a located refusal all the same
        raise SpecError(f"{file}: {_TOO_DEEP}") from None
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


# A spec is small: these are far above any real one and far below what hurts a process.
MAX_DEPTH = 100  # levels of nested lists and mappings, aliases followed
MAX_NODES = 100_000  # values, keys and collections once every alias is written out

_TOO_DEEP = (
    f"the spec nests lists or mappings more than {MAX_DEPTH} levels deep "
    "(a spec needs a few); flatten it"
)


def _check_depth(text: str, file: str) -> None:
    """SpecError at the first collection nested deeper than MAX_DEPTH, read from the parser's
    events (a loop, not a recursion), so no depth can exhaust the stack."""
    depth = 0
    try:
        for event in yaml.parse(text, Loader=CoreLoader):
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    where = f"{file}:{event.start_mark.line + 1}" if event.start_mark else file
                    raise SpecError(f"{where}: {_TOO_DEEP}")
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    except yaml.YAMLError:
        return  # a syntax error: composing reports it with its line


def _check_expansion(root: yaml.Node, file: str) -> None:
    """SpecError when the aliases of the node graph would write out more than MAX_NODES
    values or nest deeper than MAX_DEPTH (a "billion laughs"), or when an alias refers to
    the collection it is in. Sizes are counted once per node (an alias is the same node
    object), so the check costs the graph's size, not its expansion's."""
    size: dict[int, tuple[int, int]] = {}  # id(node) -> (nodes once expanded, depth)
    open_: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        children = _children(node)
        if done:
            open_.discard(id(node))
            nodes = 1 + sum(size[id(c)][0] for c in children)
            depth = 1 + max((size[id(c)][1] for c in children), default=0)
            size[id(node)] = (nodes, depth)
            line = node.start_mark.line + 1
            if nodes > MAX_NODES:
                raise SpecError(
                    f"{file}:{line}: aliases (*name) here expand to more than {MAX_NODES:,} "
                    "values; a spec needs far fewer: write the values out or alias less"
                )
            if depth > MAX_DEPTH:
                raise SpecError(f"{file}:{line}: with its aliases (*name) {_TOO_DEEP}")
            continue
        if id(node) in size:
            continue
        if id(node) in open_:
            raise SpecError(
                f"{file}:{node.start_mark.line + 1}: an alias (*name) refers to the list or "
                "mapping it is in, which never ends; alias a value defined outside it"
            )
        open_.add(id(node))
        stack.append((node, True))
        stack.extend((c, False) for c in children if id(c) not in size)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


class CoreLoader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2's core schema: only true/false are booleans, ints
    are decimal, 0o octal or 0x hex, and `NO`, `yes`, `0123`-as-octal, `1_000`, `12:30:00`
    and `2024-01-01` of YAML 1.1 are what they read as (text, or 123)."""

    # Not ruamel.yaml: only Prefect pulls it in, and its 1.2 loader still makes dates of text.
    yaml_implicit_resolvers: dict[Any, list[tuple[str, re.Pattern[str]]]] = {}


# YAML 1.2.2, 10.3.2 (tag resolution of the core schema); the tag, its regex, first chars.
CORE_SCHEMA = (
    ("bool", r"true|True|TRUE|false|False|FALSE", "tTfF"),
    ("null", r"null|Null|NULL|~|", ["n", "N", "~", ""]),
    ("int", r"[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+", "-+0123456789"),
    (
        "float",
        r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?"
        r"|[-+]?\.(inf|Inf|INF)|\.(nan|NaN|NAN)",
        "-+.0123456789",
    ),
    ("merge", r"<<", "<"),  # `<<: *defaults`, as before: aliases are read as they were
)
for _tag, _pattern, _first in CORE_SCHEMA:
    CoreLoader.add_implicit_resolver(
        f"tag:yaml.org,2002:{_tag}", re.compile(f"^(?:{_pattern})$"), list(_first)
    )


def _core_int(loader: yaml.SafeLoader, node: yaml.Node) -> int:
    """An int of the core schema: 0o17 and 0x1F have a base; 0123 is decimal, unlike 1.1."""
    text = str(loader.construct_scalar(node))  # type: ignore[arg-type]
    try:
        if text[:2] in ("0o", "0x"):
            return int(text[2:], 8 if text[1] == "o" else 16)
        return int(text)
    except ValueError:
        raise yaml.constructor.ConstructorError(
            None, None, f"{text!r} is not an integer", node.start_mark
        ) from None


CoreLoader.add_constructor("tag:yaml.org,2002:int", _core_int)


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


def _walk(node: yaml.Node, loc: Loc, lines: dict[Loc, int], dupes: list[Problem]) -> None:
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
