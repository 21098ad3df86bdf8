"""Where a run's stage step runs: threads of the flow's own process, or a Dask cluster's workers.

Only the per-input stage step (read, check, transform, write staged batches) moves to Dask,
through prefect-dask's DaskTaskRunner; plan, load and commit stay in the flow, which stays the
one place state is committed. A stage step is idempotent, so Dask running it again after its
worker died (at least once) changes nothing, and a step whose workers keep dying fails the run
while it is still staging: nothing has reached the sink, the run is dropped and read afresh.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from concurrent.futures import CancelledError
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prefect import get_run_logger
from prefect.futures import PrefectFuture

from schemas.errors import TransientError, UsageError
from schemas.secrets import redact
from schemas.settings import Settings, settings
from schemas.spec import Spec
from tasks.run import progress
from tasks.run.steps import stage_task
from tasks.run.summary import Counts
from tasks.sources.inputs import Input
from tasks.staging import folder as staging

if TYPE_CHECKING:
    from prefect_dask import DaskTaskRunner

KINDS = ("local", "dask")


@dataclass(frozen=True)
class Executor:
    kind: str = "local"
    cluster: str | None = None  # the Dask scheduler's address, for kind "dask"


def choose(executor: str | None, cluster: str | None, config: Settings = settings) -> Executor:
    """The executor a run asked for (flow parameters, `pumphouse run --executor --cluster`),
    else the platform's (PUMPHOUSE_EXECUTOR, PUMPHOUSE_DASK_CLUSTER). A cluster alone means dask."""
    kind = (executor or ("dask" if cluster else config.executor) or "local").strip().lower()
    if kind not in KINDS:
        raise UsageError(f"executor {kind!r} is not one pumphouse has; valid: {', '.join(KINDS)}")
    if kind == "local":
        if cluster:
            raise UsageError(
                f"--cluster {cluster} needs --executor dask (the local executor has no cluster)"
            )
        return Executor()
    address = (cluster or config.dask_cluster).strip()
    if not address:
        raise UsageError(
            "executor dask needs the Dask scheduler's address: pass --cluster tcp://HOST:8786 "
            "or set PUMPHOUSE_DASK_CLUSTER"
        )
    _needs_dask()
    return Executor("dask", address)


def _needs_dask() -> None:
    """Dask comes with the `dask` extra; a base install says how to add it, before any run."""
    try:
        import prefect_dask  # noqa: F401  (and distributed, which it imports)
    except ImportError as e:
        raise UsageError(
            f"executor dask needs Dask, and {e.name or 'prefect_dask'} is not installed in "
            f"{sys.prefix}: install the dask extra (pip install 'pumphouse[dask]', or "
            "uv sync --extra dask), or run with --executor local"
        ) from None


class Stager:
    """Submits each input's stage step and hands back its counts once its staged batches are
    in the run's staging folder (copied there from PUMPHOUSE_STAGING_URL, and counted)."""

    def __init__(
        self, spec: Spec, run_dir: str, runner: DaskTaskRunner | None = None, cluster: str = ""
    ) -> None:
        self.spec, self.run_dir, self.cluster = spec, run_dir, cluster
        self._runner = runner  # a started DaskTaskRunner; None: the flow's own task runner
        self._where: dict[int, tuple[str, str]] = {}  # index -> (staged at, input URL)

    def submit(self, index: int, file: Input, hwm: str | None) -> PrefectFuture[Counts]:
        if self._runner is None:
            return stage_task.submit(self.spec, self.run_dir, index, file, hwm)
        where = staging.target(self.run_dir, index)
        self._where[index] = (where, file.url)
        params = {"spec": self.spec, "run_dir": where, "index": index, "file": file, "hwm": hwm}
        future: PrefectFuture[Counts] = self._runner.submit(stage_task, params)
        return future

    def result(self, future: PrefectFuture[Counts], index: int) -> Counts:
        """The stage step's counts (its error if it failed); with Dask, its batches collected."""
        if self._runner is None:
            return future.result()
        from distributed.scheduler import KilledWorker

        where, url = self._where.pop(index)
        try:
            counts = future.result()
        except KilledWorker as e:
            raise TransientError(
                f"input {url}: the Dask workers staging it died {e.allowed_failures + 1} "
                f"times (cluster {self.cluster}); see the workers' logs (out of memory? lower "
                "limits.memory or give workers more), then run again"
            ) from None
        except CancelledError:
            raise TransientError(
                f"input {url}: the Dask cluster {self.cluster} dropped its stage step (the "
                "scheduler restarted or this flow lost it); run again"
            ) from None
        keeps_rejected = self.spec.on_invalid != "drop"
        staging.collect(where, self.run_dir, index, url, counts, keeps_rejected)
        progress.emit("files", 1)  # the worker's own progress events stay on the worker
        progress.emit("rows", counts.rows_read)
        return counts


@contextlib.contextmanager
def stager(spec: Spec, run_dir: str, executor: Executor, width: int) -> Iterator[Stager]:
    """A Stager on the executor, for `width` inputs at once: locally, in the flow's threads
    (flows/pump opens the run's one DuckDB around it); for Dask, connected to the scheduler
    for as long as it is open."""
    if executor.kind == "local" or executor.cluster is None:
        yield Stager(spec, run_dir)
        return
    from prefect_dask import DaskTaskRunner

    with DaskTaskRunner(address=executor.cluster) as runner:
        try:
            workers = len(runner.client.nthreads())
        except OSError as e:
            raise TransientError(
                f"could not reach the Dask scheduler at {executor.cluster} ({e}); check "
                "--cluster or PUMPHOUSE_DASK_CLUSTER and that the scheduler is running"
            ) from None
        through = f", batches through {settings.staging_url}" if settings.staging_url else ""
        get_run_logger().info(
            redact(
                f"staging on the Dask cluster at {executor.cluster} ({workers} workers){through}"
            )
        )
        yield Stager(spec, run_dir, runner, executor.cluster)
