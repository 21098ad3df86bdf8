"""`schema: module:Class`: the pandera.ibis DataFrameModel (or schema) in schemas/module.py,
imported once per version of the file."""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
import threading
from pathlib import Path
from types import ModuleType

import pandera.ibis as pa

from schemas.errors import SpecError

_lock = threading.Lock()
_modules: dict[Path, tuple[int, ModuleType]] = {}


def load_ref(ref: str) -> pa.DataFrameSchema:
    """The schema `ref` ("module:Class") names; SpecError saying what to define where."""
    module, _, cls = ref.partition(":")
    rel = "schemas/" + module.replace(".", "/") + ".py"

    def fail(what: str) -> SpecError:
        return SpecError(
            f"schema {ref!r}: {what}; define class {cls}(pandera.ibis.DataFrameModel) in {rel}"
        )

    path = Path.cwd() / rel
    try:
        mod = (
            _module_at(path, module)
            if path.is_file()
            else importlib.import_module(f"schemas.{module}")
        )
    except ModuleNotFoundError as e:
        parts = f"schemas.{module}".split(".")
        if e.name in {".".join(parts[: i + 1]) for i in range(len(parts))}:
            raise fail(
                f"there is no {rel} in {Path.cwd()} and no module schemas.{module}"
            ) from None
        raise fail(f"importing {rel} failed: {type(e).__name__}: {e}") from None
    except Exception as e:
        raise fail(f"importing {rel} failed: {type(e).__name__}: {e}") from None
    obj = getattr(mod, cls, None)
    if isinstance(obj, pa.DataFrameSchema):
        return obj
    if obj is None:
        raise fail(f"{rel} has no {cls}")
    if not (isinstance(obj, type) and issubclass(obj, pa.DataFrameModel)):
        what = f"the class {obj.__qualname__}" if isinstance(obj, type) else repr(obj)[:60]
        raise fail(f"{cls} in {rel} is {what}, not a pandera.ibis.DataFrameModel")
    try:
        return obj.to_schema()
    except Exception as e:
        raise fail(f"{cls} is not a valid model: {type(e).__name__}: {e}") from None


def _module_at(path: Path, module: str) -> ModuleType:
    """Import a schemas/ file by path, once per version of the file (batches reuse it)."""
    stamp = path.stat().st_mtime_ns
    with _lock:
        hit = _modules.get(path)
        if hit and hit[0] == stamp:
            return hit[1]
        name = "_pumphouse_schemas_" + re.sub(r"\W", "_", module)
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        # pandera resolves a model's annotations through sys.modules[cls.__module__].
        sys.modules[name] = mod
        try:
            spec.loader.exec_module(mod)
        except BaseException:
            sys.modules.pop(name, None)
            raise
        _modules[path] = (stamp, mod)
        return mod
