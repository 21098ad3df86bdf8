"""A spec's YAML read with the line of every key path; duplicate keys and syntax errors as located problems."""

from __future__ import annotations

import re
from typing import Any

import yaml

from schemas._problems import Loc, Problem, spec_error
from schemas.errors import SpecError


def read_yaml(text: str, file: str) -> tuple[Any, dict[Loc, int]]:
    """The document (a mapping) and the line of each key path; SpecError for anything else."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise SpecError(
                f"{file}: the spec is empty; write a mapping with at least name, source and sink"
            )
        lines: dict[Loc, int] = {}
        dupes: list[Problem] = []
        _walk(node, (), lines, dupes)
        if dupes:
            raise spec_error(file, lines, dupes)
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
