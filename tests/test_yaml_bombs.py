"""Specs built to exhaust the YAML loader: alias bombs and deep nesting are refused, located,
before anything expands them (issue "what a red team broke", 15)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from tests.conftest import run_in_process
from tests.data import spec_text

# The real command: a bomb that went off would take a process down, not the test run.
pytestmark = pytest.mark.subprocess


def _bomb(levels: int) -> str:
    """A "billion laughs": each level a list of nine aliases of the level before."""
    names = "abcdefghij"
    lines = ["name: orders", "a: &a [" + ",".join(["lol"] * 9) + "]"]
    lines += [
        f"{n}: &{n} [" + ",".join([f"*{p}"] * 9) + "]"
        for p, n in itertools.pairwise(names[: levels + 1])
    ]
    return "\n".join(lines) + "\n"


def _validate(project: Path, text: str) -> tuple[int, str]:
    (project / "pumps" / "orders.yaml").write_text(text)
    (project / "in").mkdir(exist_ok=True)
    done = run_in_process("validate", "pumps/orders.yaml", cwd=project)
    return done.returncode, done.stderr


@pytest.mark.reliability(
    "hostile spec",
    'a 400-byte "billion laughs" of nested aliases, and one of 8 levels, in `pumphouse validate`',
    "exit 2 at once with file:line of the alias that crosses the bound (100,000 values once "
    "expanded) and the fix; nothing is expanded",
)
@pytest.mark.parametrize("levels", [8, 9])
def test_an_alias_bomb_is_refused_before_it_expands(project: Path, levels: int) -> None:
    text = _bomb(levels)
    assert len(text) < 400
    code, stderr = _validate(project, text)
    assert code == 2, stderr
    # 9**5 values: level 5 is the first past 100,000, on line 7 (level 0 is on line 2)
    assert stderr.splitlines() == [
        "pumps/orders.yaml:7: aliases (*name) here expand to more than 100,000 values; "
        "a spec needs far fewer: write the values out or alias less"
    ]


@pytest.mark.reliability(
    "hostile spec",
    "5,000-deep nesting in a spec: flow lists `[[[...]]]`, flow mappings `{a: {a: ...}}` "
    "and block mappings",
    "exit 2 with file:line where it passes 100 levels and the fix; no RecursionError",
)
@pytest.mark.parametrize(
    ("source", "line"),
    [
        ("[" * 5000 + "]" * 5000, 2),
        ("{a: " * 5000 + "1" + "}" * 5000, 2),
        ("\n" + "".join(" " * i + "a:\n" for i in range(1, 5000)) + " " * 5000 + "b: 1", 102),
    ],
    ids=["flow-lists", "flow-mappings", "block-mappings"],
)
def test_deep_nesting_is_refused_with_its_line(project: Path, source: str, line: int) -> None:
    code, stderr = _validate(project, f"name: orders\nsource: {source}\n")
    assert code == 2, stderr
    assert stderr.splitlines() == [
        f"pumps/orders.yaml:{line}: the spec nests lists or mappings more than 100 levels "
        "deep (a spec needs a few); flatten it"
    ]


def test_an_alias_to_its_own_mapping_is_refused(project: Path) -> None:
    code, stderr = _validate(project, "name: orders\nsource: &s {a: *s}\n")
    assert code == 2, stderr
    assert stderr.splitlines() == [
        "pumps/orders.yaml:2: an alias (*name) refers to the list or mapping it is in, "
        "which never ends; alias a value defined outside it"
    ]


def test_a_spec_with_a_few_aliases_still_works(project: Path) -> None:
    text = spec_text().replace(
        "    customer:   {type: string}", "    customer:   &text {type: string}"
    )
    text = text.replace("    status:     {type: string,", "    status:     {<<: *text,")
    code, stderr = _validate(project, text)
    assert code == 0, stderr
