"""Staged batches between the machines of a distributed run: the workers stage, the flow loads.

The stage step writes `valid/NNNNN-*.parquet` and `rejected/NNNNN-*.parquet` (NNNNN: the input's
index) into the run's staging folder, and the load step reads that folder. When the stage step
runs on Dask workers that do not share the flow's disk, `PUMPHOUSE_STAGING_URL` names an object
store folder between them: each stage attempt writes to a fresh prefix under it
(`URL/PUMP/RUN/NNNNN-ATTEMPT/`), and the flow copies that prefix into the run's staging folder
and deletes it. A worker killed half way leaves at most an unread prefix behind, never a torn
file the load would read. Either way the flow checks the rows it got against the counts the
stage step reported, so batches staged where the flow cannot see them fail the run instead of
going missing.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import fsspec
import pyarrow.parquet as pq

from schemas.errors import PumpError
from schemas.settings import Settings, settings
from tasks.io.files import is_remote, options_from_json
from tasks.io.storage import storage_errors
from tasks.run import faults
from tasks.run.summary import Counts

KINDS = ("valid", "rejected")
OPTIONS = "PUMPHOUSE_STAGING_STORAGE_OPTIONS"


def target(run_dir: str, index: int, config: Settings = settings) -> str:
    """Where one stage attempt of input `index` writes: the run's staging folder, or with a
    staging URL a prefix of its own under it."""
    if not config.staging_url:
        return run_dir
    run = Path(run_dir)  # .../PUMP/staging/RUN
    attempt = f"{index:05d}-{uuid.uuid4().hex[:8]}"
    return f"{config.staging_url.rstrip('/')}/{run.parent.parent.name}/{run.name}/{attempt}"


@contextlib.contextmanager
def workspace(run_dir: str, config: Settings = settings) -> Iterator[str]:
    """The local folder the stage step writes into: `run_dir` itself, or for a URL a temporary
    folder whose batches are uploaded there when the block ends without an error."""
    if not is_remote(run_dir):
        yield run_dir
    else:
        with tempfile.TemporaryDirectory(prefix="pumphouse-stage-") as local:
            yield local
            _upload(Path(local), run_dir, config)
    faults.point("stage_written")  # on the worker: written, not yet reported to the flow


def _upload(local: Path, url: str, config: Settings) -> None:
    fs, root = _fs(url, config)
    with storage_errors(f"PUMPHOUSE_STAGING_URL {url}", "uploading", OPTIONS):
        if fs.exists(root):  # Dask ran this attempt before, on a worker that died
            fs.rm(root, recursive=True)
        for kind in KINDS:
            for path in sorted((local / kind).glob("*.parquet")):
                fs.put_file(str(path), f"{root}/{kind}/{path.name}")


def clear(run_dir: str) -> None:
    """Remove the run's staged batches, and nothing else of its folder (a sink's notes on
    what this run delivered stay)."""
    for kind in KINDS:
        shutil.rmtree(Path(run_dir) / kind, ignore_errors=True)


def collect(
    source: str,
    run_dir: str,
    index: int,
    url: str,
    counts: Counts,
    keeps_rejected: bool,
    config: Settings = settings,
) -> None:
    """In the flow, once input `index` (at `url`) is staged at `source` (what target() gave):
    its batches are in `run_dir`, as many rows as `counts` says, or this raises."""
    run = Path(run_dir)
    if source != run_dir:
        _fetch(source, run, index, config)
    want = {"valid": counts.rows_staged, "rejected": counts.rows_rejected if keeps_rejected else 0}
    for kind in KINDS:
        got = sum(pq.read_metadata(p).num_rows for p in _batches(run / kind, index))
        if got != want[kind]:
            raise PumpError(
                f"input {url}: its stage step reported {want[kind]} {kind} rows, but "
                f"{run / kind} holds {got} of them. The Dask workers do not share this "
                "machine's disk: set PUMPHOUSE_STAGING_URL to a folder in an object store "
                "that the workers and the flow both reach (s3://bucket/prefix)"
            )


def _fetch(source: str, run: Path, index: int, config: Settings) -> None:
    fs, root = _fs(source, config)
    with storage_errors(f"PUMPHOUSE_STAGING_URL {source}", "downloading", OPTIONS):
        fs.invalidate_cache()
        fetched = []
        for kind in KINDS:
            (run / kind).mkdir(parents=True, exist_ok=True)
            for old in _batches(run / kind, index):
                old.unlink()
            for path in sorted(fs.glob(f"{root}/{kind}/*.parquet")):
                fs.get_file(path, str(run / kind / path.rsplit("/", 1)[-1]))
                fetched.append(path)
        if fetched:  # a file with no rows to stage uploaded nothing
            fs.rm(fetched)


def _batches(folder: Path, index: int) -> list[Path]:
    return sorted(folder.glob(f"{index:05d}-*.parquet"))


def _fs(url: str, config: Settings) -> tuple[fsspec.AbstractFileSystem, str]:
    # The options are resolved where they are used: on each worker, and in the flow.
    options = options_from_json(config.staging_storage_options, OPTIONS)
    fs, root = fsspec.core.url_to_fs(url, **options)
    return fs, str(root).rstrip("/")
