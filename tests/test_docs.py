"""docs/spec.md cannot drift from the code: its examples validate, its tables name every key.

Every ```yaml block is validated as `pumphouse validate` does (the preflight's checks but
the Prefect secret lookup, which needs a server: `${secret:}` stays a reference); a block
without `name:` is a fragment, put into BASE in place of its sections.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from schemas._yaml import read_yaml
from schemas.errors import SpecError
from schemas.loader import REF_RE, parse_spec
from schemas.settings import Settings
from schemas.spec import Limits, Spec
from tasks.validate.preflight import CHECKS, secret_problems

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "spec.md"
TEXT = DOC.read_text(encoding="utf-8")
BLOCK = re.compile(r"^```yaml( \(coming\))?\n(.*?)^```$", re.S | re.M)
OFFLINE_CHECKS = tuple(c for c in CHECKS if c is not secret_problems)

# The spec a fragment goes into; its columns are those the fragments name.
BASE = """
name: docs_example
source: {type: files, url: ./landing/orders/, glob: "*.ndjson"}
schema:
  columns:
    order_id:   {type: int64, nullable: false}
    customer:   {type: string}
    amount:     {type: float64}
    status:     {type: string}
    updated_at: {type: timestamp}
sink: {type: parquet, url: ./warehouse/orders}
"""


def _blocks(coming: bool) -> list[Any]:
    found = [
        pytest.param(m.group(2), id=f"line{TEXT[: m.start()].count(chr(10)) + 1}")
        for m in BLOCK.finditer(TEXT)
        if bool(m.group(1)) == coming
    ]
    assert found or coming, f"no ```yaml blocks in {DOC}"  # none may be coming
    return found


def _as_spec(block: str) -> str:
    """The block as a whole spec: itself, or BASE with the block's sections in place."""
    data, _ = read_yaml(block, "block")
    if "name" in data:
        return block
    base, _ = read_yaml(BASE, "base")
    return yaml.safe_dump({**base, **data}, sort_keys=False)


def _validate(text: str, monkeypatch: pytest.MonkeyPatch) -> Spec:
    for kind, name in REF_RE.findall(text):
        if kind == "env":
            monkeypatch.setenv(name, "docs-example-value")
    monkeypatch.chdir(ROOT)  # as a user runs it: `module:Class` from ./schemas/
    return parse_spec(text, str(DOC), OFFLINE_CHECKS)


@pytest.mark.parametrize("block", _blocks(coming=False))
def test_every_yaml_example_validates(block: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _validate(_as_spec(block), monkeypatch)


def test_no_example_is_marked_coming() -> None:
    """Every capability the page shows is built; an example of a planned one would go unchecked."""
    assert not [m.start() for m in BLOCK.finditer(TEXT) if m.group(1)]


def _models(model: type[BaseModel]) -> Iterator[type[BaseModel]]:
    """`model` and every model its fields hold, through unions, lists and Annotated."""
    seen: set[type[BaseModel]] = set()
    todo: list[Any] = [model]
    while todo:
        t = todo.pop()
        if isinstance(t, type) and issubclass(t, BaseModel):
            if t not in seen:
                seen.add(t)
                todo += [f.annotation for f in t.model_fields.values()]
        elif isinstance(t, types.UnionType) or typing.get_origin(t) is not None:
            todo += typing.get_args(t)
    yield from sorted(seen, key=lambda m: m.__name__)


KEYS = [
    pytest.param(model, field.alias or key, id=f"{model.__name__}.{field.alias or key}")
    for model in _models(Spec)
    for key, field in model.model_fields.items()
]


@pytest.mark.parametrize(("model", "key"), KEYS)
def test_every_key_has_a_row_in_a_table(model: type[BaseModel], key: str) -> None:
    """A row whose first cell is the key (`key`, or dotted as `csv.key`)."""
    row = re.compile(rf"^\| `(?:[\w.]+\.)?{re.escape(key)}` \|", re.M)
    assert row.search(TEXT), f"{model.__name__}.{key} has no row in a table of {DOC}"


def test_the_walk_finds_the_nested_models() -> None:
    names = {m.__name__ for m in _models(Spec)}
    assert {"Paginate", "CsvOptions", "Checks", "Range", "Incremental", "HttpSink"} <= names


@pytest.mark.parametrize(
    "key", [k for k in Limits.model_fields if f"max_{k}" in Settings.model_fields]
)
def test_every_limit_ceiling_names_its_variable(key: str) -> None:
    assert f"`PUMPHOUSE_MAX_{key.upper()}`" in TEXT


def _commands() -> set[str]:
    from flows.cli import app

    return {c.name or c.callback.__name__ for c in app.registered_commands}  # type: ignore[union-attr]


def test_every_command_is_in_the_command_table() -> None:
    for name in _commands():
        assert f"| `pumphouse {name}" in TEXT, f"pumphouse {name} is not in {DOC}'s command table"


def test_the_commands_marked_coming_are_not_built_yet() -> None:
    coming = re.findall(r"^\| `pumphouse (\w+)[^|]*` \| \*coming\*", TEXT, re.M)
    assert not set(coming) & _commands(), "a command marked coming is built: describe it"


def test_the_quoted_messages_are_the_codes_own(monkeypatch: pytest.MonkeyPatch) -> None:
    """The problem and the note docs/spec.md quote, as validate says them today."""
    from schemas.notes import spec_notes

    with pytest.raises(SpecError) as refused:
        _validate(_as_spec("sink: {type: parquet, url: ./out, mode: merge}"), monkeypatch)
    problem = refused.value.problems[0].split(" ", 1)[1]  # without FILE:LINE
    assert f" {problem}\n" in TEXT
    spec = _validate(
        _as_spec("transform: {dedup: {key: order_id, order_by: updated_at}}"), monkeypatch
    )
    (where, note), *_ = spec_notes(spec)
    assert f" {'.'.join(map(str, where))}: {note}\n" in TEXT


# The README stays a front door; every link in the docs leads to a file of this repository.
README = ROOT / "README.md"
LINKED_DOCS = [README, ROOT / "bench" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```.*?^```$", re.S | re.M)
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def _prose(doc: Path) -> str:
    """The markdown outside code blocks (a `# comment` or `[x](y)` in a block is neither)."""
    return FENCE.sub("", doc.read_text(encoding="utf-8"))


def _anchors(doc: Path) -> set[str]:
    """The ids GitHub gives the headings: lower case, no punctuation, spaces as hyphens."""
    headings = re.findall(r"^#+ (.+)$", _prose(doc), re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_the_readme_is_at_most_12_kb() -> None:
    size = len(README.read_bytes())
    assert size <= 12 * 1024, f"README.md is {size} bytes; move detail into docs/"


@pytest.mark.parametrize("doc", LINKED_DOCS, ids=lambda d: str(d.relative_to(ROOT)))
def test_every_relative_link_points_into_the_repository(doc: Path) -> None:
    """Each link's file exists, below the repository, without `../`; its anchor is a heading."""
    targets = [t for t in LINK.findall(_prose(doc)) if not re.match(r"[a-z]+:", t)]
    for target in targets:
        path, _, anchor = target.partition("#")
        assert "../" not in path, f"{doc.name}: {target} goes up a folder"
        file = (doc.parent / path).resolve() if path else doc
        assert file.is_relative_to(ROOT) and file.exists(), (
            f"{doc.name}: {target} is not a file here"
        )
        if anchor and file.suffix == ".md":
            assert anchor in _anchors(file), f"{doc.name}: {target}: no heading #{anchor}"


def test_the_link_check_sees_the_links() -> None:
    found = LINK.findall(_prose(README))
    assert "docs/spec.md" in found and "docs/bucket.md" in found
    assert "#only-new-the-mark-lookback-appended-and-replaced-files" in found
