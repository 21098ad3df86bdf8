"""Platform settings: hard ceilings on spec limits and where state lives.

Set by the platform (environment variables `PUMPHOUSE_*`), never by a spec.
"""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PUMPHOUSE_", frozen=True)

    # Where each pump keeps its state (high-water mark, files read, run manifest,
    # staged batches, lock). Relative paths resolve against the working directory.
    # An fsspec URL (s3://bucket/prefix) keeps the state files there, for every machine
    # that runs the pump; staged batches and the lock then stay under work_dir.
    state_dir: str = ".pumphouse"
    # fsspec options for a state_dir URL, as a JSON object: {"endpoint_url": "...",
    # "key": "${env:NAME}", "secret": "${secret:NAME}"}. Empty: s3fs reads the AWS_*
    # variables and ~/.aws as boto does.
    state_storage_options: str = ""
    # This machine's folder for staged batches and the lock when state_dir is a URL.
    work_dir: str = ".pumphouse"

    # Where the stage step runs: "local" (threads of the flow's process) or "dask" (the
    # workers of the Dask scheduler at dask_cluster, tcp://HOST:8786). A flow run's
    # `executor` and `cluster` parameters (`pumphouse run --executor --cluster`) win.
    executor: str = "local"
    dask_cluster: str = ""
    # An fsspec URL (s3://bucket/prefix) through which Dask workers on other machines hand
    # their staged batches to the flow. Empty: the workers share the flow's disk.
    staging_url: str = ""
    # fsspec options for staging_url, as state_storage_options.
    staging_storage_options: str = ""

    max_batch_rows: int = 10_000_000
    max_batch_bytes: int = 4 * 2**30
    max_max_concurrency: int = 64
    max_requests_per_second: float = 1000.0
    max_max_rows_per_run: int = 10_000_000_000
    max_max_record_bytes: int = 256 * 2**20
    max_memory: int = 256 * 2**30
    max_max_run_seconds: int = 7 * 24 * 3600
    max_max_body_bytes: int = 64 * 2**20  # a webhook source's max_body_bytes
    # The run lock: how long a second run waits for the first before giving up.
    lock_wait_seconds: float = 0.0


settings = Settings()
