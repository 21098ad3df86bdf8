"""The layout of tasks/ holds: each module in a package, each package's `__all__` naming its
public modules, and no module importing another tasks package's private `_module` (import-linter,
in `make lint`, holds the rest: the layers, and Prefect only where the steps are)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The code whose imports must respect the packages; tests may reach into a package's parts.
CODE = ("flows", "tasks", "schemas", "bench")
# Modules that stay directly in tasks/, used by all: the names of pumphouse's own columns,
# and the rules for a source field's name.
TOP = {"internal", "field_names"}


def _modules() -> dict[str, Path]:
    out = {}
    for top in CODE:
        for path in (ROOT / top).rglob("*.py"):
            if ".venv" in path.parts:
                continue
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def _imported(path: Path, me: str) -> set[str]:
    """The modules `path` imports (at any depth of the file), `from package import module`
    counted as the module."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return found


def test_no_module_imports_another_packages_private_module() -> None:
    modules = _modules()
    wrong = []
    for me, path in sorted(modules.items()):
        for name in sorted(_imported(path, me)):
            package, _, leaf = name.rpartition(".")
            if not name.startswith("tasks.") or not leaf.startswith("_") or name not in modules:
                continue
            if not (me == package or me.startswith(package + ".")):
                wrong.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not wrong, "import through the package's public modules instead:\n" + "\n".join(wrong)


def test_each_task_module_is_in_a_package() -> None:
    flat = sorted(p.stem for p in (ROOT / "tasks").glob("*.py") if p.stem != "__init__")
    assert set(flat) <= TOP, f"tasks/{set(flat) - TOP} belongs in one of the packages"


def test_each_package_names_its_public_modules() -> None:
    for init in sorted((ROOT / "tasks").rglob("__init__.py")):
        folder = init.parent
        if folder == ROOT / "tasks":
            continue
        public = sorted(
            p.stem if p.is_file() else p.name
            for p in folder.iterdir()
            if not p.name.startswith("_") and (p.suffix == ".py" or (p / "__init__.py").is_file())
        )
        tree = ast.parse(init.read_text())
        assert ast.get_docstring(tree), f"{init.relative_to(ROOT)} says what the package is"
        named = [
            ast.literal_eval(n.value)
            for n in tree.body
            if isinstance(n, ast.Assign)
            and any(getattr(t, "id", "") == "__all__" for t in n.targets)
        ]
        assert named == [public], f"{init.relative_to(ROOT)}: __all__ should be {public}"


def test_every_sink_type_has_a_sink() -> None:
    from typing import get_args

    from schemas.spec import Sink
    from tasks.sinks.registry import SINKS

    union = get_args(Sink)[0]
    types = {get_args(model.model_fields["type"].annotation)[0] for model in get_args(union)}
    assert types == set(SINKS) == {"parquet", "delta", "http"}
