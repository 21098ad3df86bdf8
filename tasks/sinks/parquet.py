"""The parquet sink: files under URL/data/ (and URL/rejected/), written whole or not at all.

Each load batch has a deterministic name (`part-RUN-BATCH`), so a replayed batch
overwrites its earlier copy instead of adding a second one.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import fsspec

from schemas.errors import PumpError
from tasks.engine.db import Connection, ident, quote
from tasks.io.storage import storage_error, storage_errors
from tasks.run import faults


def target(url: str, storage_options: dict[str, Any]) -> tuple[fsspec.AbstractFileSystem, str]:
    """The sink's filesystem and its root path (no trailing slash)."""
    fs, root = fsspec.core.url_to_fs(url, **storage_options)
    if is_local(fs):
        root = os.path.abspath(root)
    return fs, root.rstrip("/")


def write_batches(
    con: Connection,
    table: str,
    batches: int,
    fs: fsspec.AbstractFileSystem,
    dest: str,
    run_id: str,
    partition_by: Sequence[str],
    run: Path,
    lineage: bool = False,
) -> None:
    """Write each `_batch` of `table` as `part-RUN-BATCH` file(s) under `dest`; `lineage` keeps
    `_source` and `_row` (rejected rows say where they came from; loaded rows need not).

    All batches are written by one COPY partitioned by batch (one scan of `table`, however
    many batches: a COPY per batch would scan it once per batch), into a private temp
    folder; then batch by batch each file is moved (local) or uploaded into place.
    """
    select = (
        f"SELECT * FROM {table}" if lineage else f"SELECT * EXCLUDE (_source, _row) FROM {table}"
    )
    tmp_root = str(run / "tmp")
    os.makedirs(tmp_root, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f"part-{run_id}-", dir=tmp_root)
    try:
        cols = ", ".join(ident(p) for p in ("_batch", *partition_by))
        con.execute(
            f"COPY ({select}) TO {quote(tmp)} (FORMAT parquet, COMPRESSION zstd, "
            f"PARTITION_BY ({cols}), FILENAME_PATTERN 'part-{{i}}', OVERWRITE_OR_IGNORE)"
        )
        for k in range(batches):
            _place_batch(
                fs,
                os.path.join(tmp, f"_batch={k}"),
                dest,
                f"part-{run_id}-{k:05d}",
                bool(partition_by),
            )
            faults.point("loaded_batch")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _place_batch(
    fs: fsspec.AbstractFileSystem, folder: str, dest: str, name: str, partitioned: bool
) -> None:
    """Move one batch's files into place under the names a batch's own COPY would give them:
    NAME.parquet, or NAME-{i}.parquet in each partition's folder."""
    if not os.path.isdir(folder):
        return
    by_dir: dict[str, list[str]] = {}
    for file in _files_under(folder):
        by_dir.setdefault(os.path.dirname(file), []).append(file)
    for where, found in by_dir.items():
        for i, file in enumerate(found):
            single = not partitioned and len(found) == 1
            final = os.path.join(where, f"{name}.parquet" if single else f"{name}-{i}.parquet")
            os.replace(file, final)
            _place(fs, folder, final, dest)


def remove_run(fs: fsspec.AbstractFileSystem, root: str, run_id: str) -> int:
    """Delete every file an earlier attempt of this run wrote, so a replay starts clean."""
    removed = 0
    with storage_errors(f"sink {root}", "removing a replayed run", "sink.storage_options"):
        fs.invalidate_cache()  # an object store's cached listing may predate that attempt
        for sub in ("data", "rejected"):
            for path in files_in(fs, f"{root}/{sub}"):
                name = path.rsplit("/", 1)[-1]
                if name.startswith(f"part-{run_id}-") and name.endswith(".parquet"):
                    fs.rm_file(path)
                    removed += 1
    return removed


def remove_all(fs: fsspec.AbstractFileSystem, root: str) -> None:
    """Delete all output (for --full-refresh)."""
    with storage_errors(f"sink {root}", "removing output", "sink.storage_options"):
        fs.invalidate_cache()
        for sub in ("data", "rejected"):
            remove_tree(fs, f"{root}/{sub}")


def files_in(fs: fsspec.AbstractFileSystem, folder: str) -> list[str]:
    """Every file below `folder`, its path taken literally: fsspec's glob (and rm and
    expand_path, which glob) would read `[1]` or `?` in a sink path as a pattern."""
    return sorted(fs.find(folder)) if fs.exists(folder) else []


def remove_tree(fs: fsspec.AbstractFileSystem, folder: str) -> None:
    """Delete `folder` and everything below it, its path taken literally (see files_in)."""
    for path in files_in(fs, folder):
        fs.rm_file(path)
    if is_local(fs):  # the folders left (an object store has none)
        shutil.rmtree(folder, ignore_errors=True)


def _files_under(tmp: str) -> list[str]:
    out = []
    real_tmp = os.path.realpath(tmp)
    for dirpath, _dirs, files in os.walk(tmp):
        for f in files:
            path = os.path.join(dirpath, f)
            # Partition values are escaped by DuckDB ('../x' -> '..%2Fx'); check anyway
            # that nothing landed outside the folder we gave it.
            if not os.path.realpath(path).startswith(real_tmp + os.sep):
                raise PumpError(f"refusing to write {path}: outside the sink folder")
            out.append(path)
    return sorted(out)


def _place(fs: fsspec.AbstractFileSystem, tmp: str, file: str, dest: str) -> str:
    rel = os.path.relpath(file, tmp)
    if rel.startswith(".."):
        raise PumpError(f"refusing to write {rel}: outside the sink folder")
    final = f"{dest}/{rel.replace(os.sep, '/')}"
    if is_local(fs):
        try:
            Path(final).parent.mkdir(parents=True, exist_ok=True)
            try:
                os.replace(file, final)
            except OSError:  # another device: copy beside the target, then rename
                part = f"{final}.tmp"
                shutil.copyfile(file, part)
                os.replace(part, final)
        except (
            FileNotFoundError,
            NotADirectoryError,
            IsADirectoryError,
            FileExistsError,
            PermissionError,
        ) as e:
            raise storage_error(e, f"sink {final}", "writing", "sink.storage_options") from None
    else:
        with storage_errors(f"sink {final}", "writing", "sink.storage_options"):
            fs.put_file(file, final)  # one PUT (or a multipart upload): all or nothing
    return final


def is_local(fs: fsspec.AbstractFileSystem) -> bool:
    protocols = fs.protocol if isinstance(fs.protocol, tuple | list) else (fs.protocol,)
    return "file" in protocols or "local" in protocols
