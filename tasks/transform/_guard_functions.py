"""Which functions a filter may call: refused by name or prefix, or judged by DuckDB's
catalog (kind, stability); a macro by its body. Use under _guard_catalog.LOCK."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tasks.transform._guard_catalog import catalog

ONLY = "only scalar, deterministic functions"
# Refused even where the catalog calls them deterministic: their result depends on the
# process, the session's settings or the catalog, so replaying a run could differ; the
# json_*_sql functions parse or plan SQL given as a string, a way around this guard.
ENVIRONMENT = frozenset(
    {
        "getenv", "current_setting", "getvariable", "version", "current_database",
        "current_catalog", "current_schema", "current_schemas", "current_user", "current_role",
        "session_user", "user", "current_query", "current_query_id", "current_connection_id",
        "current_transaction_id", "in_search_path", "txid_current", "stats", "vector_type",
        "json_serialize_plan", "json_serialize_sql", "json_deserialize_sql", "index_key",
    }
)  # fmt: skip
# Refused by their catalog stability already; named so that a DuckDB upgrade which
# relabels one cannot let the clock or chance into a replayable run.
CLOCK_AND_CHANCE = frozenset(
    {
        "random", "setseed", "uuid", "uuidv4", "uuidv7", "gen_random_uuid", "nextval",
        "currval", "setval", "now", "today", "current_date", "current_time",
        "current_timestamp", "localtime", "localtimestamp", "current_localtime",
        "current_localtimestamp", "get_current_time", "get_current_timestamp",
        "transaction_timestamp", "ago", "sleep_ms", "pg_sleep", "write_log",
    }
)  # fmt: skip
# They call a function named by a string (aggregate(l, 'getenv')), which this guard never
# sees, or handle aggregates' states. Found by the catalog too: a `function_name` parameter.
BY_NAME = frozenset(
    {
        "aggregate", "list_aggregate", "list_aggr", "array_aggregate", "array_aggr",
        "to_aggregate_state", "combine", "finalize",
    }
)  # fmt: skip
BY_NAME_FIX = "call a list function itself instead, e.g. list_sum(l) or list_reduce with a lambda"
# They build a string or list as long as a number they are given: one row could take all
# the memory or hours. Refused, not bounded: a bound would be one more rule to get right.
UNBOUNDED = frozenset(
    {
        "repeat", "lpad", "rpad", "range", "generate_series", "list_resize", "array_resize",
        "bar", "to_base", "format", "printf",
    }
)  # fmt: skip
UNBOUNDED_FIX = (
    "test the row's values as they are, e.g. starts_with(s, 'ab'), left(s, 3) = 'abc', "
    "length(s) > 3, ltrim(code, '0') = '42'"
)
# Files, tables, the catalog and DuckDB's internal helpers.
DENIED_PREFIXES = ("read_", "glob", "query", "sniff_", "parquet_", "duckdb_", "pg_", "__")

# Judges a macro's catalog entry: why its body is refused, or None.
MacroJudge = Callable[[dict[str, Any]], str | None]

# Why each function (by lower-cased name) is refused, or None: judged once per process.
_verdicts: dict[str, str | None] = {}


def function_problem(name: str, macro_problem: MacroJudge) -> str | None:
    """Why a function may not be called in a filter, or None; memoised per process.

    A macro is allowed when `macro_problem` finds nothing wrong with its catalog entry.
    """
    key = name.lower()
    if key not in _verdicts:
        _verdicts[key] = "it is a macro that calls itself"  # in progress: a cycle is refused
        _verdicts[key] = _judge_function(name, key, macro_problem)
    return _verdicts[key]


def calls_by_name(name: str) -> bool:
    """True for a function that calls another given its name as a string."""
    key = name.lower()
    entries = catalog().get(key) or []
    return key in BY_NAME or any("function_name" in (e["parameters"] or []) for e in entries)


def _judge_function(name: str, key: str, macro_problem: MacroJudge) -> str | None:
    shown = "count(*)" if key == "count_star" else name
    entries = catalog().get(key)
    refused = f"function {shown} is not allowed"
    if calls_by_name(key):
        return f"{refused} (it calls a function given by name, which this check cannot see): {ONLY}; {BY_NAME_FIX}"
    if key in UNBOUNDED:
        return f"{refused} (it builds a string or list of any size, which one row could fill memory with): {ONLY}; {UNBOUNDED_FIX}"
    why = None
    if key in ENVIRONMENT:
        why = "it reads the environment, settings or catalog"
    elif key in CLOCK_AND_CHANCE:
        why = "its result changes from run to run"
    elif key.startswith(DENIED_PREFIXES):
        why = "it reads files, tables or DuckDB's internals"
    if why:
        return f"{refused} ({why}): {ONLY}"
    if not entries:
        return f"unknown function {shown}; use DuckDB's built-in scalar, deterministic functions"
    kinds = {e["function_type"] for e in entries}
    scalars = [e for e in entries if e["function_type"] == "scalar"]
    macros = [e for e in entries if e["function_type"] == "macro"]
    if kinds & {"aggregate", "window"}:
        why = "an aggregate; the filter sees one row at a time"
    elif not scalars and not macros:
        why = "a table function"
    elif scalars and not any(e["stability"] == "CONSISTENT" for e in scalars):
        # Some overloads of +, year(), strftime() depend on the time zone, which the
        # engine pins to UTC, so one consistent overload is enough.
        why = "its result changes from run to run"
    elif any(macro_problem(e) for e in macros):
        why = "it expands to SQL that is not allowed here"
    return None if why is None else f"function {shown} is not allowed ({why}): {ONLY}"
