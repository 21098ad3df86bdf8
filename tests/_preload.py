"""Imported once in a test process's forkserver (tests/_forked.py): the libraries a
`pumphouse` run imports, with the environment the command gives Prefect before its
import. Not our own code: each forked command imports that itself, so it reads its own
PUMPHOUSE_* settings and builds its console for its own output. Not Dask either: a run
with executor dask starts its workers from there."""

import importlib
import os

from tests._forked import cli_env

# What `pumphouse run` imports, by `python -X importtime`: the costly ones, Prefect's
# lazy imports during a flow included.
LIBRARIES = (
    "deltalake",
    "duckdb",
    "fastapi.encoders",
    "fsspec",
    "httpx",
    "ibis.expr.datatypes",
    "pandas",
    "pandera.ibis",
    "prefect",
    "prefect.client.schemas.schedules",
    "prefect.concurrency.sync",
    "prefect.flow_engine",
    "prefect.task_engine",
    "prefect.utilities.visualization",
    "pyarrow.compute",
    "pyarrow.dataset",
    "pyarrow.parquet",
    "pydantic.v1",  # Prefect's flow decorator looks for v1 models in the signature
    "pydantic_settings",
    "rich.console",
    "typer",
    "yaml",
)

os.environ.update(cli_env(dict(os.environ), ()))
for name in LIBRARIES:
    importlib.import_module(name)
