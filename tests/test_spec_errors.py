"""Every way a spec can be wrong, with the exact lines `pumphouse validate` must print (CONTRACT §1).

Each case is the good BASE spec with one change (a few need two), and the full message
lines it must produce: file, line, key path, what is wrong and what is valid. Changing
a message means changing this table, on purpose.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import pytest

from schemas.errors import SpecError
from schemas.loader import load_spec, parse_spec
from schemas.spec import DURATION, FilesSource
from tasks.validate.preflight import CHECKS, secret_problems

FILE = "pumps/orders.yaml"
OFFLINE_CHECKS = tuple(c for c in CHECKS if c is not secret_problems)  # no Prefect server
UNSET = "PUMPHOUSE_TEST_UNSET"  # an environment variable the tests make sure is not set

FILES_SOURCE = """\
source:
  type: files
  url: s3://exports/orders/
  glob: "*.ndjson"
  format: ndjson
  compression: infer
  csv: {delimiter: ",", header: true}
  storage_options: {key: "${secret:orders-s3-key}"}
  new_files_only: true
"""
SCHEMA = """\
schema:
  strict: true
  coerce: true
  columns:
    order_id: {type: int64, nullable: false, checks: {ge: 0}}
    customer: {type: string}
    amount: {type: "decimal(12,2)", checks: {ge: 0}}
    status: {type: string, checks: {isin: [open, paid, void]}}
    updated_at: {type: timestamp}
    email: {type: string, checks: {str_matches: "^[^@]+@[^@]+$"}}
"""
PARQUET_SINK = """\
sink:
  type: parquet
  url: ./warehouse/orders
  mode: append
  partition_by: [status]
"""
# Line numbers in the expected messages refer to this text; lines 2-10 are FILES_SOURCE,
# 11-20 SCHEMA, 28-32 PARQUET_SINK.
BASE = (
    "name: orders\n"
    + FILES_SOURCE
    + SCHEMA
    + """\
on_invalid: quarantine
transform:
  select: [order_id, customer, amount, status, updated_at]
  rename: {customer: customer_id}
  filter: "status <> 'void'"
  incremental: {cursor: updated_at}
  dedup: {key: [order_id], order_by: updated_at, keep: latest}
"""
    + PARQUET_SINK
    + """\
limits:
  batch_rows: 100000
  batch_bytes: 64MiB
  max_invalid_ratio: 0.05
  memory: 1GiB
schedule:
  cron: "*/15 * * * *"
  timezone: UTC
"""
)
# Same length as FILES_SOURCE, so swapping it in keeps every later line number.
HTTP_SOURCE = """\
source:
  type: http
  url: https://api.example.com/v1/orders
  params: {updated_since: "{cursor}"}
  cursor_start: "1970-01-01T00:00:00Z"
  headers: {Authorization: "Bearer ${env:ORDERS_TOKEN}"}
  records: data.items
  paginate: {style: cursor, cursor_path: meta.next_cursor}
  timeout: 30s
"""
HTTP_SINK = """\
sink:
  type: http
  url: https://hooks.example.com/ingest
  format: ndjson
  batch_rows: 500
"""

TOP_KEYS = "name, source, schema, on_invalid, transform, sink, limits, schedule"
TYPES = "int32, int64, float64, bool, string, date, timestamp, decimal(P,S) with 1 <= P <= 38 and 0 <= S <= P"
COLUMNS_OUT = "order_id, customer_id, amount, status, updated_at"
COLUMNS_IN = "order_id, customer, amount, status, updated_at, email"


@dataclass(frozen=True)
class Bad:
    """A spec that must fail: BASE with `edits` applied, and every line it must print."""

    id: str
    edits: tuple[
        tuple[str | None, str], ...
    ]  # (text of BASE, its replacement); None: the whole file
    problems: tuple[str, ...]
    checks: bool = False  # also the preflight's checks that need DuckDB (the filter's types)

    def also(self, old: str, new: str) -> Bad:
        return Bad(self.id, (*self.edits, (old, new)), self.problems, self.checks)

    def text(self) -> str:
        text = BASE
        for old, new in self.edits:
            if old is None:
                text = new
                continue
            assert text.count(old) == 1, f"{self.id}: {old!r} must occur once in the spec"
            text = text.replace(old, new)
        return text


def bad(id: str, old: str | None, new: str, *problems: str) -> Bad:
    return Bad(id, ((old, new),), problems)


def checked(id: str, old: str | None, new: str, *problems: str) -> Bad:
    """A case that only the preflight's checks find, as `pumphouse validate` runs them."""
    return Bad(id, ((old, new),), problems, checks=True)


BAD_SPECS: list[Bad] = [
    # ---------------------------------------------------------------- unknown keys
    bad(
        "unknown top-level key",
        "name: orders\n",
        "name: orders\nowner: data-team\n",
        f"pumps/orders.yaml:2 owner: unknown key 'owner'; valid keys here: {TOP_KEYS}",
    ),
    bad(
        "unknown source key, a typo",
        '  glob: "*.ndjson"',
        '  globb: "*.ndjson"',
        "pumps/orders.yaml:5 source.globb: unknown key 'globb' (did you mean 'glob'?); "
        "valid keys here: type, url, glob, format, compression, csv, storage_options, new_files_only, "
        "timezone",
    ),
    bad(
        "unknown check",
        "    customer: {type: string}",
        "    customer: {type: string, checks: {between: [1, 2]}}",
        "pumps/orders.yaml:16 schema.columns.customer.checks.between: unknown key 'between'; "
        "valid keys here: eq, ne, gt, ge, lt, le, isin, notin, in_range, str_matches, str_length",
    ),
    bad(
        "unknown limit",
        "  memory: 1GiB",
        "  memory: 1GiB\n  max_memory: 2GiB",
        "pumps/orders.yaml:38 limits.max_memory: unknown key 'max_memory' (did you mean 'memory'?); "
        "valid keys here: batch_rows, batch_bytes, max_concurrency, requests_per_second, "
        "max_rows_per_run, max_record_bytes, max_invalid_ratio, memory, max_run_seconds",
    ),
    bad(
        "key of another sink type",
        "  partition_by: [status]",
        "  partition_by: [status]\n  batch_rows: 500",
        "pumps/orders.yaml:33 sink.batch_rows: unknown key 'batch_rows'; "
        "valid keys here: type, url, mode, key, partition_by, storage_options",
    ),
    # ---------------------------------------------------------------- wrong types
    bad(
        "string for int",
        "  batch_rows: 100000",
        "  batch_rows: lots",
        "pumps/orders.yaml:34 limits.batch_rows: expected a whole number (got 'lots')",
    ),
    bad(
        "bool for a ratio",
        "  max_invalid_ratio: 0.05",
        "  max_invalid_ratio: true",
        "pumps/orders.yaml:36 limits.max_invalid_ratio: expected a number (got True)",
    ),
    bad(
        "bool for int",
        "  batch_rows: 100000",
        "  batch_rows: true",
        "pumps/orders.yaml:34 limits.batch_rows: expected a whole number (got True)",
    ),
    bad(
        "string for bool",
        "  new_files_only: true",
        "  new_files_only: sometimes",
        "pumps/orders.yaml:10 source.new_files_only: unknown value 'sometimes'; valid: true, false",
    ),
    bad(
        "list for string",
        "name: orders",
        "name: [orders]",
        "pumps/orders.yaml:1 name: expected a string (got ['orders'])",
    ),
    bad(
        "list for mapping",
        '  csv: {delimiter: ",", header: true}',
        '  csv: [",", true]',
        "pumps/orders.yaml:8 source.csv: expected a mapping of keys (got [',', True])",
    ),
    bad(
        "csv delimiter of two characters",
        '  csv: {delimiter: ",", header: true}',
        '  csv: {delimiter: ";;", header: true}',
        "pumps/orders.yaml:8 source.csv.delimiter: expected one character such as ',', ';', "
        "'|' or \"\\t\", or auto to find it in each file (got ';;')",
    ),
    bad(
        "string for a section",
        FILES_SOURCE,
        "source: s3://exports/orders/\n",
        "pumps/orders.yaml:2 source: expected a mapping of keys (got 's3://exports/orders/')",
    ),
    bad(
        "mapping for list",
        "  select: [order_id, customer, amount, status, updated_at]",
        "  select: {order_id: 1}",
        "pumps/orders.yaml:23 transform.select: expected a list such as [a, b] (got {'order_id': 1})",
    ),
    bad(
        "string for list",
        "{isin: [open, paid, void]}",
        "{isin: open}",
        "pumps/orders.yaml:18 schema.columns.status.checks.isin: "
        "expected a list such as [a, b] (got 'open')",
    ),
    bad(
        "strict is neither a bool nor filter",
        "  strict: true",
        "  strict: maybe",
        "pumps/orders.yaml:12 schema.strict: unknown value 'maybe'; valid: true, false, filter",
    ),
    # ---------------------------------------------------------------- missing keys
    bad(
        "missing name",
        "name: orders\n",
        "",
        "pumps/orders.yaml name: missing required key 'name'",
    ),
    bad(
        "missing source",
        FILES_SOURCE,
        "",
        "pumps/orders.yaml source: missing required key 'source'",
    ),
    bad(
        "missing sink",
        PARQUET_SINK,
        "",
        "pumps/orders.yaml sink: missing required key 'sink'",
    ),
    bad(
        "missing source.url",
        "  url: s3://exports/orders/\n",
        "",
        "pumps/orders.yaml:2 source.url: missing required key 'url'",
    ),
    bad(
        "missing source.type",
        "  type: files\n",
        "",
        "pumps/orders.yaml:2 source.type: missing required key 'type'; valid: files, http, webhook",
    ),
    bad(
        "missing schedule.cron",
        '  cron: "*/15 * * * *"\n',
        "",
        "pumps/orders.yaml:38 schedule.cron: missing required key 'cron'",
    ),
    # ---------------------------------------------------------------- names and choices
    bad(
        "bad pump name",
        "name: orders",
        "name: Orders-Daily",
        "pumps/orders.yaml:1 name: 'Orders-Daily' is not a valid pump name: "
        "use [a-z][a-z0-9_]*, e.g. orders_daily",
    ),
    bad(
        "unknown source type",
        "  type: files",
        "  type: ftp",
        "pumps/orders.yaml:3 source.type: unknown type 'ftp'; valid: files, http, webhook",
    ),
    bad(
        "unknown sink type",
        "  type: parquet",
        "  type: csv",
        "pumps/orders.yaml:29 sink.type: unknown type 'csv'; valid: parquet, delta, http",
    ),
    bad(
        "bad format",
        "  format: ndjson",
        "  format: xml",
        "pumps/orders.yaml:6 source.format: unknown value 'xml'; valid: ndjson, json, csv, parquet",
    ),
    bad(
        "bad compression",
        "  compression: infer",
        "  compression: bz2",
        "pumps/orders.yaml:7 source.compression: unknown value 'bz2'; valid: infer, none, gzip, zstd",
    ),
    bad(
        "bad on_invalid",
        "on_invalid: quarantine",
        "on_invalid: ignore",
        "pumps/orders.yaml:21 on_invalid: unknown value 'ignore'; valid: quarantine, drop, fail",
    ),
    bad(
        "bad dedup keep",
        "keep: latest",
        "keep: last",
        "pumps/orders.yaml:27 transform.dedup.keep: unknown value 'last'; valid: latest, first",
    ),
    bad(
        "bad paginate style",
        FILES_SOURCE,
        HTTP_SOURCE.replace("style: cursor", "style: scroll"),
        "pumps/orders.yaml:9 source.paginate.style: unknown value 'scroll'; "
        "valid: link_header, next_url, cursor, offset, page, none",
    ),
    bad(
        "bad http sink format",
        PARQUET_SINK,
        HTTP_SINK.replace("format: ndjson", "format: csv"),
        "pumps/orders.yaml:31 sink.format: unknown value 'csv'; valid: ndjson, json",
    ),
    # ---------------------------------------------------------------- sink mode
    bad(
        "merge into parquet",
        "  mode: append",
        "  mode: merge",
        "pumps/orders.yaml:31 sink.mode: 'merge' needs sink.type delta (got parquet); "
        "valid for parquet: append",
    ),
    bad(
        "a mode no sink has",
        "  mode: append",
        "  mode: upsert",
        "pumps/orders.yaml:31 sink.mode: 'upsert' is not a sink mode (got parquet); "
        "valid for parquet: append",
    ),
    Bad(
        "merge without a key",
        (
            ("  dedup: {key: [order_id], order_by: updated_at, keep: latest}\n", ""),
            (
                "  type: parquet\n  url: ./warehouse/orders\n  mode: append\n",
                "  type: delta\n  url: ./warehouse/orders\n  mode: merge\n",
            ),
        ),
        (
            "pumps/orders.yaml:27 sink.key: mode 'merge' needs a key: "
            "set sink.key or transform.dedup.key",
        ),
    ),
    bad(
        "dedup without order_by",
        "  dedup: {key: [order_id], order_by: updated_at, keep: latest}",
        "  dedup: {key: [order_id], keep: latest}",
        "pumps/orders.yaml:27 transform.dedup: needs order_by, the column that says which row "
        "of a key is the latest (or, with keep: first, the earliest); add order_by: <a column>, "
        "e.g. order_by: updated_at",
    ),
    bad(
        "dedup with an empty order_by",
        "order_by: updated_at, keep: latest}",
        "order_by: , keep: first}",
        "pumps/orders.yaml:27 transform.dedup: needs order_by, the column that says which row "
        "of a key is the latest (or, with keep: first, the earliest); add order_by: <a column>, "
        "e.g. order_by: updated_at",
    ),
    # ---------------------------------------------------------------- columns (strict schema)
    bad(
        "unknown dedup key",
        "key: [order_id]",
        "key: [order_no]",
        f"pumps/orders.yaml:27 transform.dedup.key: unknown column 'order_no' (did you mean 'order_id'?); columns here: {COLUMNS_OUT}",
    ),
    bad(
        "unknown dedup order_by",
        "order_by: updated_at",
        "order_by: modified",
        f"pumps/orders.yaml:27 transform.dedup.order_by: unknown column 'modified'; columns here: {COLUMNS_OUT}",
    ),
    bad(
        "unknown incremental cursor",
        "{cursor: updated_at}",
        "{cursor: modified}",
        f"pumps/orders.yaml:26 transform.incremental.cursor: unknown column 'modified'; columns here: {COLUMNS_OUT}",
    ),
    bad(
        "unknown partition column",
        "  partition_by: [status]",
        "  partition_by: [state]",
        f"pumps/orders.yaml:32 sink.partition_by: unknown column 'state' (did you mean 'status'?); columns here: {COLUMNS_OUT}",
    ),
    bad(
        "unknown select column",
        "amount, status, updated_at]",
        "amount, status, updated_at, total]",
        f"pumps/orders.yaml:23 transform.select: unknown column 'total'; columns here: {COLUMNS_IN}",
    ),
    bad(
        "rename of a column not in the schema",
        "{customer: customer_id}",
        "{client: customer_id}",
        f"pumps/orders.yaml:24 transform.rename: unknown column 'client'; columns here: {COLUMNS_IN}",
    ),
    bad(
        "misspelt select column, strict: false",
        "  strict: true",
        "  strict: false",
        "pumps/orders.yaml:23 transform.select: column 'custmer' is not declared (did you mean "
        "'customer'?); fix the name, or declare 'custmer' under schema.columns if the files have it",
    ).also("order_id, customer, amount", "order_id, custmer, amount"),
    bad(
        "misspelt dedup key, strict: false and no select",
        "  strict: true",
        "  strict: false",
        "pumps/orders.yaml:26 transform.dedup.key: column 'ordr_id' is not declared (did you "
        "mean 'order_id'?); fix the name, or declare 'ordr_id' under schema.columns if the files "
        "have it",
    )
    .also("  select: [order_id, customer, amount, status, updated_at]\n", "")
    .also("key: [order_id]", "key: [ordr_id]"),
    bad(
        "misspelt sink key after rename",
        "  partition_by: [status]",
        "  partition_by: [status]\n  key: [customer]",
        f"pumps/orders.yaml:33 sink.key: unknown column 'customer' (did you mean 'customer_id'?); "
        f"columns here: {COLUMNS_OUT}",
    ),
    checked(
        "filter with a literal that is not of its column's type",
        "filter: \"status <> 'void'\"",
        "filter: \"amount > '15 minutes'\"",
        "pumps/orders.yaml:25 transform.filter: cannot be evaluated on the declared column "
        'types: Could not convert string "15 minutes" to DECIMAL(12,2); write each value as its '
        "column's declared type (a number for a number column, quoted text for a string), or "
        "CAST the column",
    ),
    checked(
        "filter comparing a text column with a number",
        "filter: \"status <> 'void'\"",
        'filter: "customer_id > 2"',
        "pumps/orders.yaml:25 transform.filter: cannot be evaluated on the declared column "
        "types: Cannot compare values of type VARCHAR and type INTEGER_LITERAL - an explicit "
        "cast is required; write each value as its column's declared type (a number for a "
        "number column, quoted text for a string), or CAST the column",
    ),
    checked(
        "filter with a timestamp literal that is not one",
        "filter: \"status <> 'void'\"",
        "filter: \"updated_at > 'yesterday'\"",
        "pumps/orders.yaml:25 transform.filter: cannot be evaluated on the declared column "
        'types: invalid timestamp field format: "yesterday", expected format is '
        "(YYYY-MM-DD HH:MM[:SS[.US]][±HH[:MM[:SS]]| ZONE]); write each value as its column's "
        "declared type (a number for a number column, quoted text for a string), or CAST the "
        "column",
    ),
    bad(
        "bad rename target",
        "{customer: customer_id}",
        "{customer: customer id}",
        "pumps/orders.yaml:24 transform.rename.customer: cannot rename to 'customer id': "
        "use letters, digits and '_', starting with a letter",
    ),
    bad(
        "unknown column type",
        "    updated_at: {type: timestamp}",
        "    updated_at: {type: datetime}",
        f"pumps/orders.yaml:19 schema.columns.updated_at.type: unknown type 'datetime'; valid: {TYPES}",
    ),
    bad(
        "decimal precision over 38",
        '{type: "decimal(12,2)"',
        '{type: "decimal(40,2)"',
        f"pumps/orders.yaml:17 schema.columns.amount.type: unknown type 'decimal(40,2)'; valid: {TYPES}",
    ),
    bad(
        "decimal cut at its comma by a {...} mapping",
        '{type: "decimal(12,2)"',
        "{type: decimal(12,2)",
        "pumps/orders.yaml:17 schema.columns.amount.type: 'decimal(12' is a decimal type cut at "
        'its comma; inside {...} quote it: type: "decimal(P,S)"',
        "pumps/orders.yaml:17 schema.columns.amount.2): unknown key '2)'; "
        "valid keys here: type, nullable, unique, checks, format",
    ),
    bad(
        "bad regex in str_matches",
        '"^[^@]+@[^@]+$"',
        '"^[a-"',
        "pumps/orders.yaml:20 schema.columns.email.checks.str_matches: "
        "not a valid regular expression: unterminated character set at position 1",
    ),
    bad(
        "reserved column name",
        "    email:",
        "    _email:",
        "pumps/orders.yaml:20 schema.columns._email: column name '_email' is reserved: "
        "names starting with '_' are pumphouse's own",
    ),
    # ---------------------------------------------------------------- limits
    bad(
        "limit below its minimum",
        "  batch_rows: 100000",
        "  batch_rows: 0",
        "pumps/orders.yaml:34 limits.batch_rows: must be at least 1 (got 0)",
    ),
    bad(
        "limit above its ceiling",
        "  batch_rows: 100000",
        "  batch_rows: 100000000",
        "pumps/orders.yaml:34 limits.batch_rows: 100000000 is over the ceiling of 10000000 "
        "(raise it with PUMPHOUSE_MAX_BATCH_ROWS if you must)",
    ),
    bad(
        "byte size above its ceiling",
        "  memory: 1GiB",
        "  memory: 1TiB",
        "pumps/orders.yaml:37 limits.memory: 1.0TiB is over the ceiling of 256.0GiB "
        "(raise it with PUMPHOUSE_MAX_MEMORY if you must)",
    ),
    bad(
        "byte size below its minimum",
        "  memory: 1GiB",
        "  memory: 10MiB",
        "pumps/orders.yaml:37 limits.memory: must be at least 64MiB (got '10MiB')",
    ),
    bad(
        "bad byte unit",
        "  batch_bytes: 64MiB",
        "  batch_bytes: 64XB",
        "pumps/orders.yaml:35 limits.batch_bytes: '64XB' is not a byte size; "
        "write a number and a unit such as 512KiB, 64MiB or 1GiB",
    ),
    bad(
        "invalid ratio over 1",
        "  max_invalid_ratio: 0.05",
        "  max_invalid_ratio: 1.5",
        "pumps/orders.yaml:36 limits.max_invalid_ratio: must be at most 1 (got 1.5)",
    ),
    bad(
        "zero request rate",
        "  memory: 1GiB",
        "  memory: 1GiB\n  requests_per_second: 0",
        "pumps/orders.yaml:38 limits.requests_per_second: must be more than 0 (got 0)",
    ),
    # ---------------------------------------------------------------- schedule
    bad(
        "cron with 4 fields",
        '"*/15 * * * *"',
        '"*/15 * * *"',
        "pumps/orders.yaml:39 schedule.cron: '*/15 * * *' has 4 fields; a cron string has 5: "
        "minute hour day-of-month month day-of-week, e.g. '*/15 * * * *'",
    ),
    bad(
        "cron with 6 fields (Prefect would read the 6th as seconds)",
        '"*/15 * * * *"',
        '"*/15 * * * * *"',
        "pumps/orders.yaml:39 schedule.cron: '*/15 * * * * *' has 6 fields; a cron string has "
        "5: minute hour day-of-month month day-of-week, e.g. '*/15 * * * *'",
    ),
    bad(
        "cron that never fires",
        '"*/15 * * * *"',
        '"0 0 31 2 *"',
        "pumps/orders.yaml:39 schedule.cron: '0 0 31 2 *' never fires (no month has that day); "
        "fix the day-of-month or month",
    ),
    bad(
        "cron range backwards",
        '"*/15 * * * *"',
        '"5-1 * * * *"',
        "pumps/orders.yaml:39 schedule.cron: '5-1 * * * *': minute range 5-1 runs backwards; "
        "a range goes from low to high, and one that wraps is two: 5-59,0-1",
    ),
    bad(
        "cron hour out of range",
        '"*/15 * * * *"',
        '"*/15 25 * * *"',
        "pumps/orders.yaml:39 schedule.cron: '*/15 25 * * *': hour 25 is out of range 0-23",
    ),
    bad(
        "cron not quoted",
        '"*/15 * * * *"',
        "*/15 * * * *",
        "pumps/orders.yaml:39: not valid YAML: expected alphabetic or numeric character, "
        "but found '/' at column 10; quote a value that starts with '*', e.g. cron: \"*/15 * * * *\"",
    ),
    bad(
        "unknown time zone",
        "  timezone: UTC",
        "  timezone: Mars/Olympus",
        "pumps/orders.yaml:40 schedule.timezone: unknown time zone 'Mars/Olympus'; "
        "use an IANA name such as UTC or Europe/Berlin",
    ),
    bad(
        "source time zone misspelt",
        "  new_files_only: true\n",
        "  new_files_only: true\n  timezone: America/Los_Angles\n",
        "pumps/orders.yaml:11 source.timezone: unknown time zone 'America/Los_Angles' "
        "(did you mean 'America/Los_Angeles'?); use an IANA name such as UTC or Europe/Berlin",
    ),
    bad(
        "format on a number column",
        "    order_id: {type: int64, nullable: false, checks: {ge: 0}}",
        '    order_id: {type: int64, nullable: false, checks: {ge: 0}, format: "%Y"}',
        "pumps/orders.yaml:15 schema.columns.order_id.format: format '%Y' is for date and "
        "timestamp columns, not int64; drop it or declare the column as date or timestamp",
    ),
    bad(
        "format without a strftime code",
        "    updated_at: {type: timestamp}",
        "    updated_at: {type: timestamp, format: dd/mm/yyyy}",
        "pumps/orders.yaml:19 schema.columns.updated_at.format: format 'dd/mm/yyyy' has no "
        "strftime code; write it with codes such as '%d/%m/%Y' or '%b %d %Y %H:%M', "
        "or use epoch_s or epoch_ms",
    ),
    bad(
        "bad duration",
        FILES_SOURCE,
        HTTP_SOURCE.replace("timeout: 30s", "timeout: 30 parsecs"),
        f"pumps/orders.yaml:10 source.timeout: {DURATION} (got '30 parsecs')",
    ),
    bad(
        "lookback that does not parse",
        "{cursor: updated_at}",
        "{cursor: updated_at, lookback: 2 days}",
        f"pumps/orders.yaml:26 transform.incremental.lookback: {DURATION} (got '2 days')",
    ),
    bad(
        "max_run_seconds that does not parse",
        "  memory: 1GiB\n",
        "  memory: 1GiB\n  max_run_seconds: 1h30m\n",
        f"pumps/orders.yaml:38 limits.max_run_seconds: {DURATION} (got '1h30m')",
    ),
    bad(
        "has_more_path under style cursor",
        FILES_SOURCE,
        HTTP_SOURCE.replace("meta.next_cursor}", "meta.next_cursor, has_more_path: more}"),
        "pumps/orders.yaml:9 source.paginate.has_more_path: has_more_path does nothing for "
        "style cursor; it is for style offset or page: remove has_more_path, or set style: offset",
    ),
    # ---------------------------------------------------------------- ${env:...} and ${secret:...}
    bad(
        "unset env var in a url",
        "url: s3://exports/orders/",
        f"url: s3://${{env:{UNSET}}}/orders/",
        f"pumps/orders.yaml:4 source.url: environment variable {UNSET} is not set; "
        f"export it, or remove ${{env:{UNSET}}}",
    ),
    bad(
        "unset env var in headers",
        FILES_SOURCE,
        HTTP_SOURCE.replace("ORDERS_TOKEN", UNSET),
        f"pumps/orders.yaml:7 source.headers.Authorization: environment variable {UNSET} "
        f"is not set; export it, or remove ${{env:{UNSET}}}",
    ),
    bad(
        "malformed env reference",
        "${secret:orders-s3-key}",
        "${env:}",
        "pumps/orders.yaml:9 source.storage_options.key: ${env:} is not a valid reference; "
        "write ${env:NAME} with a NAME of letters, digits and '_'",
    ),
    bad(
        "a secret name Prefect cannot have",
        "${secret:orders-s3-key}",
        "${secret:Orders_S3_Key}",
        "pumps/orders.yaml:9 source.storage_options.key: ${secret:Orders_S3_Key} is not a valid "
        "reference; write ${secret:NAME} with a NAME that is a Prefect block name (lowercase "
        "letters, digits, '-')",
    ),
    bad(
        "secret outside headers, params and storage_options",
        "url: s3://exports/orders/",
        "url: s3://${secret:bucket}/orders/",
        "pumps/orders.yaml:4 source.url: ${secret:bucket} may only stand in headers, params, "
        "storage_options or a webhook's token; elsewhere use ${env:NAME}",
    ),
    bad(
        "unknown kind of reference",
        "url: s3://exports/orders/",
        "url: s3://${vault:BUCKET}/orders/",
        "pumps/orders.yaml:4 source.url: unknown reference; use ${env:NAME} or ${secret:NAME}",
    ),
    bad(
        "bad schema reference",
        SCHEMA,
        "schema: not a ref\n",
        "pumps/orders.yaml:11 schema: 'not a ref' is not a schema reference: use 'module:Class' "
        "(a pandera model in schemas/module.py) or an inline mapping",
    ),
    # ---------------------------------------------------------------- YAML itself
    bad(
        "YAML syntax error",
        "name: orders",
        "name: orders: daily",
        "pumps/orders.yaml:1: not valid YAML: mapping values are not allowed here at column 13; "
        "check the indentation and quoting",
    ),
    bad(
        "tab indentation",
        "  compression: infer",
        "\tcompression: infer",
        "pumps/orders.yaml:7: not valid YAML: found character '\\t' that cannot start any token "
        "at column 1; indent with spaces, not tabs",
    ),
    bad(
        "duplicate key",
        "on_invalid: quarantine\n",
        "on_invalid: quarantine\non_invalid: drop\n",
        "pumps/orders.yaml:22 on_invalid: key given twice (first on line 21); keep one",
    ),
    bad(
        "empty file",
        None,
        "",
        "pumps/orders.yaml: the spec is empty; write a mapping with at least name, source and sink",
    ),
    bad(
        "only comments",
        None,
        "# orders, some day\n",
        "pumps/orders.yaml: the spec is empty; write a mapping with at least name, source and sink",
    ),
    bad(
        "a top-level list",
        None,
        "- name: orders\n",
        "pumps/orders.yaml:1: a spec is a mapping of keys (name: ..., source: ..., sink: ...), "
        "not a list",
    ),
    # ---------------------------------------------------------------- http source and sink, formats
    bad(
        "http source url not http(s)",
        FILES_SOURCE,
        HTTP_SOURCE.replace("https://api", "ftp://api"),
        "pumps/orders.yaml:4 source.url: 'ftp://api.example.com/v1/orders' is not an http(s) URL: "
        "it must start with http:// or https://",
    ),
    bad(
        "http sink url not http(s)",
        PARQUET_SINK,
        HTTP_SINK.replace("https://hooks", "hooks"),
        "pumps/orders.yaml:30 sink.url: 'hooks.example.com/ingest' is not an http(s) URL: "
        "it must start with http:// or https://",
    ),
    bad(
        "http sink batch_rows 0",
        PARQUET_SINK,
        HTTP_SINK.replace("batch_rows: 500", "batch_rows: 0"),
        "pumps/orders.yaml:32 sink.batch_rows: must be at least 1 (got 0)",
    ),
    bad(
        "format not inferable",
        '  glob: "*.ndjson"\n  format: ndjson\n',
        '  glob: "*.dat"\n',
        "pumps/orders.yaml:2 source.format: cannot tell the format from '*.dat'; "
        "set source.format to one of ndjson, json, csv, parquet",
    ),
]


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORDERS_TOKEN", "t0ken")
    monkeypatch.delenv(UNSET, raising=False)


def test_the_table_is_broad_and_its_ids_unique() -> None:
    assert len(BAD_SPECS) >= 40
    ids = [case.id for case in BAD_SPECS]
    assert len(set(ids)) == len(ids)


@pytest.mark.parametrize(
    "text",
    [
        BASE,
        BASE.replace(FILES_SOURCE, HTTP_SOURCE),
        BASE.replace(PARQUET_SINK, HTTP_SINK),
    ],
    ids=["files-parquet", "http-source", "http-sink"],
)
def test_the_base_specs_are_valid(text: str) -> None:
    # Each bad spec differs from a valid one only by its change.
    assert parse_spec(text, FILE).name == "orders"
    assert parse_spec(text, FILE, OFFLINE_CHECKS).name == "orders"  # as validate checks it


def test_csv_delimiter_auto_is_valid() -> None:
    auto = BASE.replace('delimiter: ","', "delimiter: auto")
    spec = parse_spec(auto, FILE)
    assert isinstance(spec.source, FilesSource) and spec.source.csv.delimiter == "auto"


@pytest.mark.parametrize("case", BAD_SPECS, ids=[case.id for case in BAD_SPECS])
@pytest.mark.reliability(
    "hostile spec",
    "71 bad specs: unknown keys, wrong types, bad cron, impossible limits, unresolvable secrets",
    "exit 2 with file:line key.path: message, valid values and the fix",
)
def test_bad_spec_message(case: Bad) -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec(case.text(), FILE, OFFLINE_CHECKS if case.checks else ())
    assert caught.value.problems == case.problems
    expected = (
        case.problems[0] if len(case.problems) == 1 else f"{len(case.problems)} problems in {FILE}"
    )
    assert str(caught.value) == expected


def test_every_problem_is_listed_in_file_order() -> None:
    text = (
        BASE.replace("name: orders", "name: Orders")
        .replace("  format: ndjson", "  format: xml")
        .replace("url: s3://exports/orders/", f"url: s3://${{env:{UNSET}}}/orders/")
        .replace("keep: latest", "keep: last")
        .replace("  batch_rows: 100000", "  batch_rows: 0")
        .replace('"*/15 * * * *"', '"*/15 25 * * *"')
        .replace("  timezone: UTC", "  timezone: UTC\n  every: 15m")
    )
    with pytest.raises(SpecError) as caught:
        parse_spec(text, FILE)
    assert caught.value.problems == (
        "pumps/orders.yaml:1 name: 'Orders' is not a valid pump name: use [a-z][a-z0-9_]*, e.g. orders_daily",
        f"pumps/orders.yaml:4 source.url: environment variable {UNSET} is not set; "
        f"export it, or remove ${{env:{UNSET}}}",
        "pumps/orders.yaml:6 source.format: unknown value 'xml'; valid: ndjson, json, csv, parquet",
        "pumps/orders.yaml:27 transform.dedup.keep: unknown value 'last'; valid: latest, first",
        "pumps/orders.yaml:34 limits.batch_rows: must be at least 1 (got 0)",
        "pumps/orders.yaml:39 schedule.cron: '*/15 25 * * *': hour 25 is out of range 0-23",
        "pumps/orders.yaml:41 schedule.every: unknown key 'every'; valid keys here: cron, timezone",
    )
    assert str(caught.value) == "7 problems in pumps/orders.yaml"


def test_cross_section_problems_are_all_listed() -> None:
    # Renaming the key column breaks every place that names it.
    text = BASE.replace("select: [order_id,", "select: [id,")
    with pytest.raises(SpecError) as caught:
        parse_spec(text, FILE)
    out = "id, customer_id, amount, status, updated_at"
    assert caught.value.problems == (
        f"pumps/orders.yaml:23 transform.select: unknown column 'id'; columns here: {COLUMNS_IN}",
        f"pumps/orders.yaml:27 transform.dedup.key: unknown column 'order_id'; columns here: {out}",
    )


@pytest.mark.reliability(
    "secrets",
    "a bad value that came from ${env:}",
    "the message names the key, never the value",
)
def test_a_substituted_value_never_shows_in_a_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORDERS_API", "ftp://robot:hunter2@api.example.com")
    text = BASE.replace(FILES_SOURCE, HTTP_SOURCE).replace(
        "https://api.example.com/v1/orders", "${env:ORDERS_API}/v1/orders"
    )
    with pytest.raises(SpecError) as caught:
        parse_spec(text, FILE)
    assert caught.value.problems == (
        "pumps/orders.yaml:4 source.url: '${env:ORDERS_API}/v1/orders' is not an http(s) URL: "
        "it must start with http:// or https://",
    )
    assert "hunter2" not in str(caught.value)


def test_a_long_substituted_value_is_not_shown_even_in_part(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ORDERS_ROWS", "s3cr3t-" * 20)
    text = BASE.replace("  batch_rows: 100000", "  batch_rows: ${env:ORDERS_ROWS}")
    with pytest.raises(SpecError) as caught:
        parse_spec(text, FILE)
    assert caught.value.problems == (
        "pumps/orders.yaml:34 limits.batch_rows: expected a whole number (got '${env:ORDERS_ROWS}')",
    )


def test_an_env_reference_in_a_typed_value_is_substituted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORDERS_ROWS", "5000")
    text = BASE.replace("  batch_rows: 100000", "  batch_rows: ${env:ORDERS_ROWS}")
    assert parse_spec(text, FILE).limits.batch_rows == 5000


def test_load_spec_names_a_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "pumps" / "nope.yaml"
    with pytest.raises(SpecError) as caught:
        load_spec(missing)
    assert caught.value.problems == (
        f"{missing}: no such spec file; check the path (specs live in pumps/NAME.yaml)",
    )


def test_load_spec_reports_the_path_it_was_given(tmp_path: Path) -> None:
    path = tmp_path / "orders.yaml"
    path.write_text(BASE.replace("  mode: append", "  mode: merge"), encoding="utf-8")
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    assert caught.value.problems == (
        f"{path}:31 sink.mode: 'merge' needs sink.type delta (got parquet); valid for parquet: append",
    )


def test_spec_error_survives_pickling() -> None:
    # Prefect persists exceptions; the problem lines must come back intact.
    with pytest.raises(SpecError) as caught:
        parse_spec(
            BASE.replace("keep: latest", "keep: last").replace("name: orders", "name: 1x"), FILE
        )
    again = pickle.loads(pickle.dumps(caught.value))
    assert isinstance(again, SpecError)
    assert again.problems == caught.value.problems
    assert str(again) == str(caught.value)
    assert again.exit_code == 2
