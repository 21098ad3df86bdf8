"""The one door to DuckDB.

db: connections (memory, spill folder, UTC, the sandbox), SQL text helpers, Arrow in and out;
shared: one DuckDB shared by the pieces of work a process runs at once;
json_numbers: numbers in JSON text taken as written (no double rounding them).
"""

__all__ = ["db", "json_numbers", "shared"]
