"""The bounded transforms and the filter guard.

sql: select, rename, filter, incremental per batch and dedup per run, as SQL text; window:
the incremental window (the mark, lookback, rows seen at the mark); guard: what a filter may
use, judged on DuckDB's parse of it (its parts: _guard_*).
"""

__all__ = ["guard", "sql", "window"]
