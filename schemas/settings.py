"""Platform settings: hard ceilings on spec limits and where state lives.

Set by the platform (environment variables `PUMPHOUSE_*`), never by a spec.
"""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PUMPHOUSE_", frozen=True)

    # Where each pump keeps its state (high-water mark, files read, run manifest,
    # staged batches, lock). Relative paths resolve against the working directory.
    state_dir: str = ".pumphouse"

    max_batch_rows: int = 10_000_000
    max_batch_bytes: int = 4 * 2**30
    max_max_concurrency: int = 64
    max_requests_per_second: float = 1000.0
    max_max_rows_per_run: int = 10_000_000_000
    max_max_record_bytes: int = 256 * 2**20
    max_memory: int = 256 * 2**30
    # The run lock: how long a second run waits for the first before giving up.
    lock_wait_seconds: float = 0.0


settings = Settings()
