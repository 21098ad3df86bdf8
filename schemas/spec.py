"""The pump spec as typed data (CONTRACT §1): frozen pydantic models, unknown keys forbidden.

Field-level rules live on the models; rules that relate two sections (a dedup key
must be a column, `mode: merge` needs a delta sink) live in `cross_check`, which
returns problems with the key path they belong to, so the loader can name the line.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ByteSize,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from schemas.settings import settings

NAME_PATTERN = r"^[a-z][a-z0-9_]*$"
SCALAR_TYPES = ("int32", "int64", "float64", "bool", "string", "date", "timestamp")
DECIMAL_RE = re.compile(r"^decimal\((\d+),\s*(\d+)\)$")
FORMATS = ("ndjson", "json", "csv", "parquet")
EPOCH_FORMATS = ("epoch_s", "epoch_ms")  # a column's format: seconds or milliseconds since 1970
EXTENSION_FORMATS = {
    ".ndjson": "ndjson",
    ".jsonl": "ndjson",
    ".json": "json",
    ".csv": "csv",
    ".tsv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}
DELTA_SCHEMES = ("file", "s3", "s3a")  # where the delta sink writes: tested there
SINK_MODES = {
    "parquet": ("append",),
    "delta": ("append", "merge", "overwrite"),
    "http": ("append",),
}


def _not_a_flag(error: str, message: str) -> BeforeValidator:
    """`true` is not a count or a number, though Python takes a bool for an int (text such
    as "5000" stays accepted: that is what `${env:NAME}` gives)."""

    def check(value: Any) -> Any:
        if isinstance(value, bool):
            raise PydanticCustomError(error, message)
        return value

    return BeforeValidator(check)


Count = Annotated[int, _not_a_flag("int_type", "Input should be a valid integer")]
Number = Annotated[float, _not_a_flag("float_type", "Input should be a valid number")]


def _as_text(value: Any) -> Any:
    """A query parameter or header is text on the wire: `true` goes as `true` (as APIs
    expect, not Python's `True`), a number as written. Nothing, a list or a mapping is
    refused: there is no one right way to send it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return value
    got = "nothing" if value is None else "a mapping" if isinstance(value, dict) else repr(value)
    raise ValueError(
        f"expected text, a number or true/false (got {got}); write the one value to send, "
        'e.g. "a,b" for a list, or remove the key'
    )


Text = Annotated[str, BeforeValidator(_as_text)]  # a query parameter's or a header's value


class Model(BaseModel):
    """Base of every spec section: immutable, and an unknown key is an error."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _seconds(value: Any) -> Any:
    """Accept 30, 30s, 500ms, 2m, 1h; return seconds as a float."""
    if isinstance(value, bool):
        raise ValueError(f"{DURATION} (got {value!r})")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*", value)
        if m:
            factor = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}[
                m.group(2) or "s"
            ]
            return float(m.group(1)) * factor
    raise ValueError(f"{DURATION} (got {value!r})")


DURATION = "expected a duration: a number and a unit (ms, s, m, h, d), e.g. 30s, 500ms or 2d"


Seconds = Annotated[float, BeforeValidator(_seconds), Field(gt=0)]


# ---------------------------------------------------------------- sources


def _zone(v: str) -> str:
    """An IANA time zone name, or ValueError with the nearest known name."""
    import zoneinfo

    try:
        zoneinfo.ZoneInfo(v)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        import difflib

        close = difflib.get_close_matches(v, sorted(zoneinfo.available_timezones()), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(
            f"unknown time zone {v!r}{hint}; use an IANA name such as UTC or Europe/Berlin"
        ) from None
    return v


Zone = Annotated[str, AfterValidator(_zone)]


class CsvOptions(Model):
    delimiter: str = ","  # one character, or auto: DuckDB's sniffer finds it in each file
    header: bool = True
    null_values: tuple[str, ...] = ("", "NA")
    quote: str = Field('"', min_length=1, max_length=1)

    @field_validator("delimiter")
    @classmethod
    def _one_character_or_auto(cls, v: str) -> str:
        if v != "auto" and len(v) != 1:
            raise ValueError(
                f"expected one character such as ',', ';', '|' or \"\\t\", or auto to find it "
                f"in each file (got {v!r})"
            )
        return v


class FilesSource(Model):
    type: Literal["files"]
    url: str = Field(min_length=1)
    glob: str | None = None
    format: Literal["ndjson", "json", "csv", "parquet"] | None = None
    compression: Literal["infer", "none", "gzip", "zstd"] = "infer"
    csv: CsvOptions = CsvOptions()
    storage_options: dict[str, Any] = Field(default_factory=dict)
    new_files_only: bool = True
    timezone: Zone = "UTC"  # of timestamps that carry no offset


class Paginate(Model):
    style: Literal["link_header", "next_url", "cursor", "offset", "page", "none"] = "none"
    next_url: str | None = None
    cursor_path: str | None = None
    cursor_param: str = "cursor"
    limit_param: str = "limit"
    offset_param: str = "offset"
    page_param: str = "page"
    page_size: Count = Field(100, ge=1, le=100_000)
    total_path: str | None = None  # offset / page: the body's record count; stop at it
    has_more_path: str | None = None  # offset / page: the body's flag; stop when false


class HttpSource(Model):
    type: Literal["http"]
    url: str = Field(pattern=r"^https?://", min_length=8)
    params: dict[str, Text] = Field(default_factory=dict)
    cursor_start: str | None = None
    headers: dict[str, Text] = Field(default_factory=dict)
    records: str = ""
    paginate: Paginate = Paginate()
    max_pages: Count = Field(10_000, ge=1)
    timeout: Seconds = 30.0
    format: Literal["json"] = "json"
    retries: Count = Field(5, ge=0, le=20)  # more tries after a 429, 5xx or dropped connection
    retry_max_wait: Seconds = 60.0  # cap on one wait between tries, Retry-After included
    max_response_bytes: ByteSize = Field(ByteSize(64 * 2**20), ge=1024)  # per page, decoded
    timezone: Zone = "UTC"  # of timestamps that carry no offset


WEBHOOK_REF = re.compile(r"^\$\{(env|secret):[^}]+\}$")


class WebhookSource(Model):
    """Partners POST records; `pumphouse serve` makes each body a file in `buffer`, and a run
    reads the buffer as a files source of ndjson (tasks/receive/inbox.py)."""

    type: Literal["webhook"]
    path: str | None = Field(None, pattern=r"^/[A-Za-z0-9/_.~-]*$")  # None: /ingest/NAME
    token: str = Field(min_length=1)  # a reference, resolved by `serve` only
    buffer: str | None = Field(
        None, min_length=1
    )  # None: the pump's inbox (tasks/receive/inbox.py)
    storage_options: dict[str, Any] = Field(default_factory=dict)
    max_body_bytes: ByteSize = Field(ByteSize(2**20), ge=1024)
    timezone: Zone = "UTC"  # of timestamps that carry no offset

    @field_validator("token")
    @classmethod
    def _a_reference(cls, v: str) -> str:
        if not WEBHOOK_REF.match(v):  # a token written in the spec would live in git
            raise ValueError(
                "write the token as a reference, ${secret:NAME} (a Prefect Secret block) or "
                "${env:NAME}, not as text in the spec"
            )
        return v

    @field_validator("max_body_bytes")
    @classmethod
    def _under_ceiling(cls, v: ByteSize) -> ByteSize:
        ceiling = ByteSize(settings.max_max_body_bytes)
        if v > ceiling:
            raise ValueError(
                f"{v.human_readable()} is over the ceiling of {ceiling.human_readable()} "
                "(raise it with PUMPHOUSE_MAX_MAX_BODY_BYTES if you must)"
            )
        return v


Source = Annotated[FilesSource | HttpSource | WebhookSource, Field(discriminator="type")]


# ---------------------------------------------------------------- contract


class Range(Model):
    min: Any = None
    max: Any = None


class Checks(Model):
    eq: Any = None
    ne: Any = None
    gt: Any = None
    ge: Any = None
    lt: Any = None
    le: Any = None
    isin: list[Any] | None = None
    notin: list[Any] | None = None
    in_range: Range | None = None
    str_matches: str | None = None
    str_length: Range | None = None

    @field_validator("str_matches")
    @classmethod
    def _regex_compiles(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as e:
                raise ValueError(f"not a valid regular expression: {e}") from None
        return v

    def given(self) -> Iterator[tuple[str, Any]]:
        """The checks the spec names, in a stable order."""
        for name in type(self).model_fields:
            value = getattr(self, name)
            if value is not None:
                yield name, value


def _column_type(value: Any) -> Any:
    if isinstance(value, str):
        v = value.strip().lower()
        if v in SCALAR_TYPES:
            return v
        m = DECIMAL_RE.match(v)
        if m and 1 <= int(m.group(1)) <= 38 and int(m.group(2)) <= int(m.group(1)):
            return f"decimal({int(m.group(1))},{int(m.group(2))})"
    raise ValueError(
        f"unknown type {value!r}; valid: {', '.join(SCALAR_TYPES)}, "
        "decimal(P,S) with 1 <= P <= 38 and 0 <= S <= P"
    )


ColumnType = Annotated[str, BeforeValidator(_column_type)]


class Column(Model):
    type: ColumnType
    nullable: bool = True
    unique: bool = False
    checks: Checks = Checks()
    format: str | None = None  # strftime codes, or epoch_s / epoch_ms: dates and times as text

    @field_validator("format")
    @classmethod
    def _format_fits(cls, v: str | None, info: ValidationInfo) -> str | None:
        kind = info.data.get("type")
        if v is not None and kind not in ("date", "timestamp", None):
            raise ValueError(
                f"format {v!r} is for date and timestamp columns, not {kind}; "
                "drop it or declare the column as date or timestamp"
            )
        if v is not None and v not in EPOCH_FORMATS and "%" not in v:
            raise ValueError(
                f"format {v!r} has no strftime code; write it with codes such as "
                "'%d/%m/%Y' or '%b %d %Y %H:%M', or use epoch_s or epoch_ms"
            )
        return v

    @model_validator(mode="before")
    @classmethod
    def _flags_among_checks(cls, v: Any) -> Any:
        """`nullable` and `unique` may stand among the checks too (the contract lists them
        with the checks); either way they are the column's own flags."""
        if not isinstance(v, dict) or not isinstance(v.get("checks"), dict):
            return v
        checks, out = dict(v["checks"]), dict(v)
        for flag in ("nullable", "unique"):
            if flag not in checks:
                continue
            value = checks.pop(flag)
            if flag in out and out[flag] != value:
                raise ValueError(
                    f"{flag} is given twice, {out[flag]!r} and {value!r} under checks; "
                    "keep one of them"
                )
            out[flag] = value
        out["checks"] = checks
        return out


class SchemaSpec(Model):
    strict: bool | Literal["filter"] = False
    coerce: bool = True
    columns: dict[str, Column] = Field(min_length=1)

    @field_validator("columns")
    @classmethod
    def _column_names(cls, v: dict[str, Column]) -> dict[str, Column]:
        for name in v:
            if not name or name.startswith("_"):
                raise ValueError(
                    f"column name {name!r} is reserved: names starting with '_' are pumphouse's own"
                )
        return v


SCHEMA_REF = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$"
SchemaRef = Annotated[str, Field(pattern=SCHEMA_REF)]
SchemaField = Annotated[
    Annotated[SchemaSpec, Tag("inline")] | Annotated[SchemaRef, Tag("ref")],
    Discriminator(lambda v: "ref" if isinstance(v, str) else "inline"),
]


# ---------------------------------------------------------------- transforms


class Incremental(Model):
    cursor: str = Field(min_length=1)
    # Rows up to this late (cursor below the mark) are still read; loaded ones are not again.
    lookback: Annotated[float, BeforeValidator(_seconds), Field(ge=0)] = 0.0


class Dedup(Model):
    key: tuple[str, ...] = Field(min_length=1)
    order_by: str | None = None
    keep: Literal["latest", "first"] = "latest"

    @field_validator("key", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v


class Transform(Model):
    select: tuple[str, ...] | None = None
    rename: dict[str, str] = Field(default_factory=dict)
    filter: str | None = Field(None, min_length=1)
    incremental: Incremental | None = None
    dedup: Dedup | None = None

    @field_validator("rename")
    @classmethod
    def _rename_targets(cls, v: dict[str, str]) -> dict[str, str]:
        for new in v.values():
            if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", new):
                raise ValueError(
                    f"cannot rename to {new!r}: use letters, digits and '_', starting with a letter"
                )
        return v


# ---------------------------------------------------------------- sinks


def _one_or_many(v: Any) -> Any:
    return [v] if isinstance(v, str) else v


Names = Annotated[tuple[str, ...], BeforeValidator(_one_or_many)]


class _TableSink(Model):
    """A sink that is a dataset at a storage URL (files on disk or in a bucket)."""

    type: str  # narrowed by each sink; declared here to keep it first among the keys
    url: str = Field(min_length=1)
    mode: str = "append"
    key: Names | None = None
    partition_by: Names = ()
    storage_options: dict[str, Any] = Field(default_factory=dict)


class ParquetSink(_TableSink):
    type: Literal["parquet"]


class DeltaSink(_TableSink):
    type: Literal["delta"]


class HttpSink(Model):
    type: Literal["http"]
    url: str = Field(pattern=r"^https?://", min_length=8)
    mode: str = "append"
    format: Literal["ndjson", "json"] = "ndjson"
    batch_rows: Count = Field(500, ge=1, le=100_000)
    headers: dict[str, Text] = Field(default_factory=dict)
    key: Names | None = None
    partition_by: Names = ()
    timeout: Seconds = 30.0
    retries: Count = Field(5, ge=0, le=20)  # more tries after a 429, 5xx or dropped connection
    retry_max_wait: Seconds = 60.0  # cap on one wait between tries, Retry-After included


Sink = Annotated[ParquetSink | DeltaSink | HttpSink, Field(discriminator="type")]


# ---------------------------------------------------------------- limits, schedule


def _ceiling(name: str) -> Any:
    return getattr(settings, f"max_{name}")


class Limits(Model):
    """Every limit has a default; the platform settings hold the hard ceilings."""

    batch_rows: Count = Field(100_000, ge=1)
    batch_bytes: ByteSize = Field(ByteSize(64 * 2**20), ge=1024)
    max_concurrency: Count = Field(4, ge=1)
    requests_per_second: Number = Field(10.0, gt=0)
    max_rows_per_run: Count = Field(10_000_000, ge=1)
    max_record_bytes: ByteSize = Field(ByteSize(2**20), ge=16)
    max_invalid_ratio: Number = Field(0.05, ge=0, le=1)
    memory: ByteSize = Field(ByteSize(2**30), ge=64 * 2**20)
    max_run_seconds: Seconds = 6 * 3600.0  # a duration: 7200, 2h

    @field_validator(
        "batch_rows",
        "batch_bytes",
        "max_concurrency",
        "requests_per_second",
        "max_rows_per_run",
        "max_record_bytes",
        "memory",
        "max_run_seconds",
    )
    @classmethod
    def _under_ceiling(cls, v: Any, info: Any) -> Any:
        ceiling = _ceiling(info.field_name)
        if v > ceiling:
            # Byte sizes are shown as written (8.0GiB), not as a count of bytes.
            if isinstance(v, ByteSize):
                v, ceiling = v.human_readable(), ByteSize(ceiling).human_readable()
            raise ValueError(
                f"{v} is over the ceiling of {ceiling} "
                f"(raise it with PUMPHOUSE_MAX_{info.field_name.upper()} if you must)"
            )
        return v


CRON_FIELDS = (
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day-of-month", 1, 31),
    ("month", 1, 12),
    ("day-of-week", 0, 7),
)


def _never_fires(cron: str) -> bool:
    """No time matches `cron` (e.g. February 31): Prefect's scheduler would fail on it."""
    import datetime as dt

    from cronsim import CronSim, CronSimError

    start = dt.datetime(2000, 1, 1)
    try:
        next(CronSim(cron, start))
    except StopIteration:  # no match in 50 years
        return True
    except CronSimError:  # impossible days, or syntax cronsim lacks: any month tells which
        minute, hour, day, _, weekday = cron.split()
        try:
            CronSim(f"{minute} {hour} {day} * {weekday}", start)
        except CronSimError:
            return False  # Prefect's croniter has accepted it; its scheduler decides
        return True
    return False


class Schedule(Model):
    cron: str
    timezone: Zone = "UTC"

    @field_validator("cron")
    @classmethod
    def _cron(cls, v: str) -> str:
        fields = v.split()
        if len(fields) != 5:  # a 6th field would be seconds to Prefect's croniter
            raise ValueError(
                f"{v!r} has {len(fields)} fields; a cron string has 5: "
                f"{' '.join(f[0] for f in CRON_FIELDS)}, e.g. '*/15 * * * *'"
            )
        for (what, lo, hi), field in zip(CRON_FIELDS, fields, strict=True):
            for number in re.findall(r"(?<![/\d])\d+", field):  # not the step after '/'
                if not lo <= int(number) <= hi:
                    raise ValueError(f"{v!r}: {what} {number} is out of range {lo}-{hi}")
            for first, last in re.findall(r"(\d+)-(\d+)", field):
                if int(first) > int(last):
                    raise ValueError(
                        f"{v!r}: {what} range {first}-{last} runs backwards; a range goes from "
                        f"low to high, and one that wraps is two: {first}-{hi},{lo}-{last}"
                    )
        from prefect.client.schemas.schedules import CronSchedule

        try:
            CronSchedule(cron=v, timezone="UTC")
        except Exception:
            raise ValueError(f"{v!r} is not a valid cron string, e.g. '*/15 * * * *'") from None
        if _never_fires(v):
            raise ValueError(
                f"{v!r} never fires (no month has that day); fix the day-of-month or month"
            )
        return v


# ---------------------------------------------------------------- the spec


class Spec(Model):
    name: str = Field(pattern=NAME_PATTERN, max_length=63)
    source: Source
    schema_: SchemaField | None = Field(None, alias="schema")
    on_invalid: Literal["quarantine", "drop", "fail"] = "quarantine"
    transform: Transform = Transform()
    sink: Sink
    limits: Limits = Limits()
    schedule: Schedule | None = None

    @property
    def merge_key(self) -> tuple[str, ...]:
        """The sink key, defaulting to the dedup key (CONTRACT §1)."""
        if self.sink.key:
            return self.sink.key
        return self.transform.dedup.key if self.transform.dedup else ()


# Without order_by the row kept per key would be whichever arrived last (or first), so a
# correction file named before the original would lose to it.
DEDUP_NEEDS_ORDER_BY = (
    "needs order_by, the column that says which row of a key is the latest (or, with "
    "keep: first, the earliest); add order_by: <a column>, e.g. order_by: updated_at"
)


def lookback_needs_time(cursor: str, kind: str) -> str:
    return (
        f"needs a date or timestamp cursor ({cursor!r} is {kind}, which cannot go back in "
        "time); set lookback: 0s, or use a timestamp column as the cursor"
    )


def cross_check(spec: Spec) -> list[tuple[tuple[str | int, ...], str]]:
    """Rules that relate sections. Returns (key path, message) pairs; empty when all hold."""
    problems: list[tuple[tuple[str | int, ...], str]] = []
    sink, t = spec.sink, spec.transform

    valid_modes = SINK_MODES[sink.type]
    if sink.mode not in valid_modes:
        needs = [k for k, modes in SINK_MODES.items() if sink.mode in modes]
        hint = f" needs sink.type {' or '.join(needs)}" if needs else " is not a sink mode"
        problems.append(
            (
                ("sink", "mode"),
                f"{sink.mode!r}{hint} (got {sink.type}); valid for {sink.type}: {', '.join(valid_modes)}",
            )
        )
    if sink.type == "delta" and sink.mode == "merge" and not spec.merge_key:
        problems.append(
            (("sink", "key"), "mode 'merge' needs a key: set sink.key or transform.dedup.key")
        )
    if t.dedup and t.dedup.order_by is None:
        problems.append((("transform", "dedup"), DEDUP_NEEDS_ORDER_BY))
    scheme = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", sink.url)
    if sink.type == "delta" and scheme and scheme.group(1).lower() not in DELTA_SCHEMES:
        problems.append(
            (
                ("sink", "url"),
                f"a delta table lives on a local path or an s3:// URL (got {scheme.group(1)}://); "
                "e.g. ./warehouse/orders or s3://bucket/orders",
            )
        )
    if sink.type == "delta" and re.search(r"[\[\]]", sink.url):  # deltalake cannot parse it
        problems.append(
            (
                ("sink", "url"),
                "deltalake cannot open a table whose path holds '[' or ']'; "
                "name the folder without them",
            )
        )

    if isinstance(spec.source, HttpSource):
        problems += _paginate_problems(spec.source.paginate)

    if isinstance(spec.source, FilesSource) and source_format(spec.source) is None:
        problems.append(
            (
                ("source", "format"),
                f"cannot tell the format from {spec.source.glob or spec.source.url!r}; "
                f"set source.format to one of {', '.join(FORMATS)}",
            )
        )

    # Column names: only checkable against an inline schema that fixes the columns.
    schema = spec.schema_
    if isinstance(schema, SchemaSpec) and schema.strict is not False:
        cols = list(schema.columns)
        problems += _names_exist(cols, t.select, ("transform", "select"))
        problems += _names_exist(cols, tuple(t.rename), ("transform", "rename"))
    if isinstance(schema, SchemaSpec):  # extra fields may add more, checked when read
        named = list(t.select) if t.select is not None else list(schema.columns)
        if (twice := renamed_twice(t.rename, named)) is not None:
            problems.append((("transform", "rename"), twice))
    if t.incremental and t.incremental.lookback and isinstance(schema, SchemaSpec):
        cursor = t.incremental.cursor
        src = next((s for s, d in t.rename.items() if d == cursor), cursor)
        kind = str(schema.columns[src].type) if src in schema.columns else None
        if kind is not None and kind not in ("date", "timestamp"):
            problems.append(
                (("transform", "incremental", "lookback"), lookback_needs_time(cursor, kind))
            )
    out = output_columns(spec)
    if out is not None:
        if t.incremental:
            problems += _names_exist(
                out, (t.incremental.cursor,), ("transform", "incremental", "cursor")
            )
        if t.dedup:
            problems += _names_exist(out, t.dedup.key, ("transform", "dedup", "key"))
            if t.dedup.order_by:
                problems += _names_exist(
                    out, (t.dedup.order_by,), ("transform", "dedup", "order_by")
                )
        problems += _names_exist(out, sink.partition_by, ("sink", "partition_by"))
        problems += _names_exist(out, sink.key or (), ("sink", "key"))
    if isinstance(schema, SchemaSpec) and schema.strict is False:
        problems += _undeclared(spec, schema, out is None)
    return problems


def _undeclared(
    spec: Spec, schema: SchemaSpec, later_steps: bool
) -> list[tuple[tuple[str | int, ...], str]]:
    """Under strict: false a column the schema does not declare may still come from the
    files, so only a name that is nearly a declared one is refused (`carier`), as a typo."""
    t, sink = spec.transform, spec.sink
    declared = list(schema.columns)
    named: list[tuple[tuple[str | int, ...], list[str], tuple[str, ...]]] = [
        (("transform", "select"), declared, t.select or ()),
        (("transform", "rename"), declared, tuple(t.rename)),
    ]
    if later_steps:
        out = [t.rename.get(c, c) for c in declared]
        if t.incremental:
            named.append((("transform", "incremental", "cursor"), out, (t.incremental.cursor,)))
        if t.dedup:
            named.append((("transform", "dedup", "key"), out, t.dedup.key))
            if t.dedup.order_by:
                named.append((("transform", "dedup", "order_by"), out, (t.dedup.order_by,)))
        named.append((("sink", "partition_by"), out, sink.partition_by))
        named.append((("sink", "key"), out, sink.key or ()))
    problems: list[tuple[tuple[str | int, ...], str]] = []
    for path, known, names in named:
        for name in names:
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.8)
            if name not in known and close:
                problems.append(
                    (
                        path,
                        f"column {name!r} is not declared (did you mean {close[0]!r}?); fix "
                        f"the name, or declare {name!r} under schema.columns if the files have it",
                    )
                )
    return problems


def _paginate_problems(p: Paginate) -> list[tuple[tuple[str | int, ...], str]]:
    """A pagination style that reads a path from the body needs that path; the paths that
    say where offset / page pagination ends are for those styles only."""
    problems: list[tuple[tuple[str | int, ...], str]] = []
    needs = {"next_url": "next_url", "cursor": "cursor_path"}.get(p.style)
    if needs is not None and not getattr(p, needs):
        problems.append(
            (
                ("source", "paginate", needs),
                f"style {p.style} needs {needs}: the dotted path in the body, e.g. "
                + ("links.next" if needs == "next_url" else "meta.next_cursor"),
            )
        )
    for key in ("total_path", "has_more_path"):
        if getattr(p, key) is not None and p.style not in ("offset", "page"):
            problems.append((("source", "paginate", key), paginate_key_unread(p, key)))
    return problems


def paginate_key_unread(p: Paginate, key: str) -> str:
    """What to say of a paginate key that style `p.style` does not read."""
    styles = [style for style, keys in PAGINATE_KEYS.items() if key in keys]
    return (
        f"{key} does nothing for style {p.style}; it is for style {' or '.join(styles)}: "
        f"remove {key}, or set style: {styles[0]}"
    )


# The keys each pagination style reads. The others are refused where reading them would
# change when reading stops (total_path, has_more_path), else noted: CONTRACT §1 lists
# every key under one style as a reference.
PAGINATE_KEYS = {
    "link_header": (),
    "next_url": ("next_url",),
    "cursor": ("cursor_path", "cursor_param"),
    "offset": ("limit_param", "offset_param", "page_size", "total_path", "has_more_path"),
    "page": ("limit_param", "page_param", "page_size", "total_path", "has_more_path"),
    "none": (),
}


def _names_exist(
    known: list[str], names: tuple[str, ...] | None, path: tuple[str | int, ...]
) -> list[tuple[tuple[str | int, ...], str]]:
    missing = [n for n in names or () if n not in known]
    if not missing:
        return []
    return [(path, f"unknown column {_nearest(missing, known)}; columns here: {', '.join(known)}")]


def _nearest(missing: list[str], known: list[str]) -> str:
    """The missing names, each with the nearest known name when one is close (`carier`)."""
    said = []
    for name in missing:
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.7)
        said.append(f"{name!r} (did you mean {close[0]!r}?)" if close else repr(name))
    return ", ".join(said)


def renamed_twice(rename: dict[str, str], columns: list[str]) -> str | None:
    """The problem when `rename` over `columns` gives two columns one name (DuckDB's names
    are case-insensitive: it would make one of them `name_1`); None when it does not."""
    seen: dict[str, str] = {}
    for column in columns:
        name = rename.get(column, column)
        other = seen.setdefault(name.lower(), column)
        if other != column:
            first, second = sorted((other, column), key=lambda c: c not in rename)
            return (
                f"renaming {first!r} to {rename[first]!r} gives two columns named "
                f"{rename[first]!r} ({second!r} is one); rename to another name, or rename "
                f"{second!r} too"
            )
    return None


def output_columns(spec: Spec) -> list[str] | None:
    """Column names after select and rename, when an inline schema fixes them; else None."""
    schema = spec.schema_
    if spec.transform.select is not None:
        cols = list(spec.transform.select)
    elif isinstance(schema, SchemaSpec) and schema.strict is not False:
        cols = list(schema.columns)
    else:
        return None  # extra columns may come through, so the names are not known up front
    return [spec.transform.rename.get(c, c) for c in cols]


def source_format(source: FilesSource) -> str | None:
    """The source's format: explicit, or from the extension of its glob or URL."""
    if source.format:
        return source.format
    name = (source.glob or source.url).lower()
    for ext in (".gz", ".zst", ".zstd"):
        name = name.removesuffix(ext)
    for ext, fmt in EXTENSION_FORMATS.items():
        if name.endswith(ext):
            return fmt
    return None
