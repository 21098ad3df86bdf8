"""The data contract step: one SELECT that types a batch and lists, per row, the pandera
checks it fails (`_errors`), all inside DuckDB; plus the spec's schema problems for validate."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

import duckdb
import ibis
import ibis.expr.datatypes as dt
import pandera.ibis as pa

from schemas.errors import SpecError
from schemas.spec import Spec
from tasks import _checks
from tasks._duckdb import connect, ident, quote

Problem = tuple[tuple[str | int, ...], str]

RESERVED = ("_source", "_row", "_raw", "_parse_error", "_errors", "_original")
_BOOKKEEPING = ("_source", "_row", "_raw", "_parse_error", "__ph_ok")
# Looks like a JSON object (valid if try(json_...) then parses it). The regex, for leading
# whitespace, runs only on rows not starting with '{': ltrim(_raw, chars) costs twice as much.
_OBJECT = (
    r"_parse_error IS NULL AND (starts_with(_raw, '{') OR regexp_matches(_raw, '^[ \t\n\r]+\{'))"
)
_NUMBER_START = ", ".join(quote(c) for c in "-0123456789")


def pandera_schema(spec: Spec) -> pa.DataFrameSchema | None:
    """The spec's pandera (ibis backend) schema: built from the inline columns or loaded from
    `schema: "module:Class"`; None without a schema. Raises SpecError."""
    return _checks.load_schema(spec)


def check_batch(
    con: duckdb.DuckDBPyConnection,
    spec: Spec,
    relation: str,
    kind: Literal["json", "columns"],
) -> str:
    """SQL that checks the batch in `relation` (a table or view on `con`) against the spec.

    `relation` has `_source`, `_row`, `_raw`, `_parse_error` and, for kind "columns", the
    record's fields; for kind "json" each record's JSON text is in `_raw`. The result has
    the output columns (schema columns cast to their types, then extra fields per `strict`,
    sorted by name), then `_source`, `_row`, `_raw`, `_errors` (VARCHAR[], [] when valid)
    and `_original` (a STRUCT of each field's value as text). `unique` is checked within
    the batch. For json the batch's keys are read here with one query on `con`. Without a
    schema json keys get the types DuckDB sees in the batch, columns pass through, and only
    unreadable records are errors.
    """
    if kind not in ("json", "columns"):
        raise ValueError(f"kind must be 'json' or 'columns', not {kind!r}")
    # Timestamps without an offset are read in the session's zone: it must be UTC.
    zone = con.execute("SELECT current_setting('TimeZone')").fetchall()[0][0]
    if zone != "UTC":
        raise ValueError(
            f"the connection's TimeZone is {zone!r}; open it with tasks._duckdb.connect"
        )
    return _batch_sql(con, _checks.load_schema(spec), ident(relation), kind)


def schema_problems(spec: Spec) -> list[Problem]:
    """Problems `pumphouse validate` reports: a `schema: "module:Class"` that cannot be loaded or
    run, an inline check that cannot apply to its column's type (a loader check)."""
    s = spec.schema_
    if s is None:
        return []
    con = connect(memory_bytes=256 * 2**20)
    try:
        if isinstance(s, str):
            try:
                schema = _checks.load_schema(spec)
                problem = _dry_run(con, schema) if schema is not None else None
            except SpecError as e:
                return [(("schema",), e.message)]
            return [(("schema",), f"schema {s!r}: {problem}")] if problem else []
        problems: list[Problem] = []
        for name, column in s.columns.items():
            dtype = _checks.column_dtype(column.type)
            for check_name, value in column.checks.given():
                try:
                    check = _checks.inline_check(check_name, value)
                    one = pa.DataFrameSchema({name: pa.Column(dtype, checks=[check], name=name)})
                    problem = _dry_run(con, one)
                except (SpecError, ValueError) as e:
                    problem = str(e)
                if problem:
                    where = ("schema", "columns", name, "checks", check_name)
                    message = f"{value!r} does not apply to a {column.type} column: {problem}"
                    problems.append((where, message))
        return problems
    finally:
        con.close()


def _dry_run(con: duckdb.DuckDBPyConnection, schema: pa.DataFrameSchema) -> str | None:
    """Run the checks on one row of sample values: catches what only DuckDB notices (an RE2
    regex it rejects, `isin: [x]` on a number column). Returns the error's first line."""
    values = "".join(f", {_sample(c.dtype, c.sql)} AS {ident(c.name)}" for c in _Column.of(schema))
    try:
        con.execute(
            "CREATE OR REPLACE TABLE probe AS SELECT 'probe' AS _source, 0::BIGINT AS _row, "
            f"NULL::VARCHAR AS _raw, NULL::VARCHAR AS _parse_error{values}"
        )
        # Select _errors: it needs every check, so none is optimised away.
        con.execute(
            f"SELECT _errors FROM ({_batch_sql(con, schema, 'probe', 'columns')})"
        ).fetchall()
    except duckdb.Error as e:
        return str(e).strip().splitlines()[0]
    return None


def _sample(dtype: dt.DataType, sql: str) -> str:
    if dtype.is_string():
        return "'x'"
    if dtype.is_boolean():
        return "TRUE"
    if dtype.is_numeric():
        return f"CAST(1 AS {sql})"
    if dtype.is_temporal():
        return f"TRY_CAST('2000-01-01' AS {sql})"
    return f"CAST(NULL AS {sql})"


def _batch_sql(
    con: duckdb.DuckDBPyConnection, schema: pa.DataFrameSchema | None, source: str, kind: str
) -> str:
    cols = _Column.of(schema) if schema is not None else []
    strict = schema.strict if schema is not None else False
    plan = _Plan(kind, source, dtypes={c.name: c.dtype for c in cols})
    if schema is not None:
        plan.checks = _checks.row_checks(schema, ibis.table(plan.dtypes, name=_checks.TYPED))
    if kind == "json":
        fields = _json_fields(con, source, schema is not None, strict)
    else:
        rel = con.sql(f"SELECT * FROM {source} LIMIT 0")
        fields = {
            n: str(t) for n, t in zip(rel.columns, rel.types, strict=True) if n not in RESERVED
        }
    for c in cols:
        plan.add_column(c, fields.get(c.name, ""))
    if strict != "filter":
        extras = sorted(k for k in fields if k not in plan.dtypes)
        named = _nameable(extras, list(plan.dtypes))
        for k in extras:
            if k in named or strict is True:
                keep = k in named and strict is not True
                plan.add_extra(k, fields[k], keep=keep, unknown=strict is True, named=k in named)
    if schema is not None:
        plan.add_table_rules(schema)
    return plan.sql()


@dataclass(frozen=True)
class _Column:
    """One schema column, as the SQL needs it."""

    name: str
    dtype: dt.DataType
    sql: str
    coerce: bool
    nullable: bool
    unique: str | None  # pandera's report_duplicates, when the column is unique

    @staticmethod
    def of(schema: pa.DataFrameSchema) -> list[_Column]:
        out = []
        for name, c in schema.columns.items():
            if c.regex:
                raise SpecError(f"schema: column {name!r} is a regex; name each column")
            dtype = c.dtype.type if c.dtype is not None else dt.string
            coerce = bool(schema.coerce or c.coerce or c.dtype is None)
            unique = c.report_duplicates if c.unique else None
            out.append(
                _Column(name, dtype, _checks.sql_type(dtype), coerce, bool(c.nullable), unique)
            )
        return out


@dataclass
class _Plan:
    """The query's pieces, filled column by column, then put together by `sql`."""

    kind: str
    source: str
    dtypes: dict[str, dt.DataType]
    checks: list[_checks.RowCheck] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)  # json keys; index i+1 in __ph_s, __ph_j
    need_json: bool = False  # json: also extract each value's JSON text, __ph_j
    typed: list[tuple[str, str]] = field(default_factory=list)  # (SQL, alias) of __ph_typed
    flags: list[tuple[str, str]] = field(default_factory=list)  # (error label, condition)
    outputs: list[str] = field(default_factory=list)
    original: list[tuple[str, str]] = field(default_factory=list)  # (field, alias)

    def _path(self, key: str) -> int:
        self.paths.append(key)
        return len(self.paths)

    def add_column(self, c: _Column, source_type: str) -> None:
        o = f"__ph_o{len(self.typed)}"
        if self.kind == "json":
            i = self._path(c.name)
            text, value = f"__ph_s[{i}]", _cast(f"__ph_s[{i}]", "VARCHAR", c)
            if not c.coerce:
                self.need_json = True
                matches = _json_kind_matches(f"CAST(__ph_j[{i}] AS VARCHAR)", c.dtype)
                value = f"CASE WHEN {matches} THEN {value} END"
        elif not source_type:  # a missing field is NULL
            text, value = "CAST(NULL AS VARCHAR)", f"CAST(NULL AS {c.sql})"
        else:
            text = _as_text(ident(c.name), source_type)
            value = _cast(ident(c.name), source_type, c)
            if not c.coerce and not _same_type(source_type, c.sql):
                value = f"CAST(NULL AS {c.sql})"  # pandera's coerce=False: the type must match
        self.typed += [(text, o), (value, c.name)]
        self.outputs.append(c.name)
        self.original.append((c.name, o))
        v = ident(c.name)
        if not c.nullable:
            nan = f" OR COALESCE(isnan({v}), FALSE)" if c.dtype.is_floating() else ""
            self.flags.append((f"{c.name}: not_nullable", f"{o} IS NULL{nan}"))
        if value != text:  # else the value is the text itself and cannot fail its type
            label = f"{c.name}: dtype('{_checks.type_label(c.dtype)}')"
            self.flags.append((label, f"{o} IS NOT NULL AND {v} IS NULL"))
        self._add_checks(c.name)
        if c.unique:
            self.flags.append((f"{c.name}: unique", _duplicate([c.name], c.unique)))

    def add_extra(
        self, name: str, source_type: str, *, keep: bool, unknown: bool, named: bool
    ) -> None:
        x = f"__ph_x{len(self.typed)}"
        if self.kind == "json":
            i = self._path(name)
            text, present = f"__ph_s[{i}]", f"__ph_j[{i}] IS NOT NULL"  # JSON null is present
            value = f"TRY_CAST({text} AS {source_type})" if source_type else text
        else:
            text, value = _as_text(ident(name), source_type), ident(name)
            present = f"{value} IS NOT NULL"
        if named:
            self.typed.append((text, x))
            self.original.append((name, x))
        if keep:
            self.typed.append((value, name))
            self.outputs.append(name)
        if unknown:
            self.need_json = self.need_json or self.kind == "json"
            u = f"__ph_u{len(self.typed)}"
            self.typed.append((present, u))
            self.flags.append((f"_record: unknown column {name!r}", u))

    def add_table_rules(self, schema: pa.DataFrameSchema) -> None:
        self._add_checks(None)
        unique = schema.unique or []
        for g in [unique] if all(isinstance(u, str) for u in unique) else unique:
            if g:
                label = f"_record: unique({', '.join(g)})"
                self.flags.append((label, _duplicate(list(g), schema.report_duplicates)))

    def _add_checks(self, column: str | None) -> None:
        self.flags += [
            (c.label, f"__ph_c{i}") for i, c in enumerate(self.checks) if c.column == column
        ]

    def sql(self) -> str:
        ctes = []
        if self.kind == "json":
            paths = "[" + ", ".join(quote(_pointer(p)) for p in self.paths) + "]"
            # try(): invalid JSON is NULL, not a failed batch; one parse reads every field.
            parse = (
                f"try(json_extract_string(_raw, {paths}))" if self.paths else "try(json_keys(_raw))"
            )
            sel = f"SELECT _source, _row, _raw, _parse_error, CASE WHEN {_OBJECT} THEN {parse} END AS __ph_s"
            if self.need_json:
                sel += f", CASE WHEN {_OBJECT} THEN try(json_extract(_raw, {paths})) END AS __ph_j"
            ctes.append(f"__ph_in AS (\n  {sel}\n  FROM {self.source}\n)")
            head, source = (
                "SELECT _source, _row, _raw, _parse_error, __ph_s IS NOT NULL AS __ph_ok",
                "__ph_in",
            )
        else:
            head, source = (
                "SELECT _source, _row, _raw, _parse_error, _parse_error IS NULL AS __ph_ok",
                self.source,
            )
        typed = "".join(f",\n    {sql} AS {ident(alias)}" for sql, alias in self.typed)
        ctes.append(f"{_checks.TYPED} AS (\n  {head}{typed}\n  FROM {source}\n)")
        checked = _checks.TYPED
        if self.checks:
            aliases = [*_BOOKKEEPING, *(a for _, a in self.typed)]
            # Only the schema columns' types matter to the checks; the rest pass through.
            columns: dict[str, Any] = {a: self.dtypes.get(a, dt.string) for a in aliases}
            table = ibis.table(self.dtypes, name=_checks.TYPED)
            ctes.append(
                f"__ph_checked AS (\n{_checks.compile_checks(self.checks, table, columns)}\n)"
            )
            checked = "__ph_checked"
        flags = "".join(f", {cond} AS __ph_f{i}" for i, (_, cond) in enumerate(self.flags))
        ctes.append(f"__ph_flags AS (\n  SELECT *{flags} FROM {checked}\n)")
        return "WITH " + ",\n".join(ctes) + "\n" + self._final()

    def _final(self) -> str:
        errors = "CASE WHEN _parse_error IS NOT NULL THEN ['_record: ' || _parse_error]"
        if self.kind == "json":
            errors += " WHEN NOT __ph_ok THEN ['_record: not a JSON object']"
        if self.flags:
            # Most rows are valid: one OR over the flags spares them building a list.
            failed = " OR ".join(f"__ph_f{i}" for i in range(len(self.flags)))
            items = ", ".join(
                f"CASE WHEN __ph_f{i} THEN {quote(label)} END"
                for i, (label, _) in enumerate(self.flags)
            )
            errors += f" WHEN NOT ({failed}) THEN CAST([] AS VARCHAR[])"
            errors += f" ELSE list_filter([{items}], lambda e: e IS NOT NULL) END"
        else:
            errors += " ELSE CAST([] AS VARCHAR[]) END"
        outputs = "".join(f"{ident(n)}, " for n in self.outputs)
        # DuckDB cannot unnest an empty struct: with no fields at all the record is the value.
        original = ", ".join(f"{ident(n)} := {a}" for n, a in self.original) or "_record := _raw"
        return (
            f"SELECT {outputs}_source, _row, _raw,\n  {errors} AS _errors,\n"
            f"  struct_pack({original}) AS _original\nFROM __ph_flags"
        )


def _cast(expr: str, source_type: str, c: _Column) -> str:
    """SQL for `expr` as the column's type; NULL when it does not convert."""
    if c.sql == "VARCHAR":
        return expr if source_type == "VARCHAR" else f"CAST({expr} AS VARCHAR)"
    if _same_type(source_type, c.sql):
        return expr
    if c.dtype.is_integer() and not _is_integer(source_type):
        # TRY_CAST rounds '1.5' to 2; an integer column must not silently change a value.
        cast = f"TRY_CAST({expr} AS {c.sql})"
        return f"CASE WHEN TRY_CAST({expr} AS DOUBLE) = {cast} THEN {cast} END"
    if c.dtype.is_timestamp() and c.dtype.timezone is None and source_type == "VARCHAR":
        # A TIMESTAMP cast drops a '+02:00' offset; through TIMESTAMPTZ (UTC) it is applied.
        return f"TRY_CAST(TRY_CAST({expr} AS TIMESTAMPTZ) AS TIMESTAMP)"
    return f"TRY_CAST({expr} AS {c.sql})"


def _as_text(expr: str, source_type: str) -> str:
    return expr if source_type == "VARCHAR" else f"CAST({expr} AS VARCHAR)"


def _json_kind_matches(json_text: str, dtype: dt.DataType) -> str:
    """coerce: false with JSON: the value's JSON type must already be the column's kind."""
    if dtype.is_boolean():
        return f"{json_text} IN ('true', 'false')"
    if dtype.is_numeric():
        return f"left({json_text}, 1) IN ({_NUMBER_START})"
    return f"starts_with({json_text}, '\"')"


def _duplicate(columns: list[str], report: str) -> str:
    """TRUE on rows whose values in `columns` occur more than once in the batch (NULLs never do)."""
    part = ", ".join(ident(c) for c in columns)
    present = " AND ".join(f"{ident(c)} IS NOT NULL" for c in columns)
    if report in ("exclude_first", "exclude_last"):
        desc = " DESC" if report == "exclude_last" else ""
        order = f"_source{desc}, _row{desc}"
        return f"{present} AND row_number() OVER (PARTITION BY {part} ORDER BY {order}) > 1"
    return f"{present} AND count(*) OVER (PARTITION BY {part}) > 1"


def _same_type(source_type: str, target: str) -> bool:
    return str(duckdb.sqltype(source_type)) == str(duckdb.sqltype(target))


def _is_integer(source_type: str) -> bool:
    return str(duckdb.sqltype(source_type)) in (
        *("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT"),
        *("UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT", "UHUGEINT"),
    )


def _pointer(key: str) -> str:
    """A JSON pointer (RFC 6901) to a top-level key: exact for any key, quotes included."""
    return "/" + key.replace("~", "~0").replace("/", "~1")


def _nameable(extras: list[str], names: list[str]) -> set[str]:
    """Extra fields that can be columns (and `_original` fields). DuckDB names are case-insensitive,
    so one differing from a taken name only by case (or one of ours) stays in `_raw` only."""
    taken = {n.lower() for n in (*names, *RESERVED)}
    kept = set()
    for k in extras:
        if k.lower() not in taken and not k.startswith("__ph_"):
            kept.add(k)
            taken.add(k.lower())
    return kept


def _json_fields(
    con: duckdb.DuckDBPyConnection, source: str, has_schema: bool, strict: Any
) -> dict[str, str]:
    """The batch's top-level JSON keys, sorted, each with a DuckDB type to read it as ("" =
    text); types are inferred only without a schema; no keys when extras are dropped."""
    if strict == "filter":
        return {}
    objects = f"FROM {source} WHERE {_OBJECT}"
    if has_schema:
        keys = con.sql(f"SELECT DISTINCT unnest(try(json_keys(_raw))) {objects}").fetchall()
        return dict.fromkeys(sorted(k for (k,) in keys), "")
    # A batch has few distinct shapes, so merging json_structure's answers here is cheap.
    rows = con.sql(
        f"SELECT DISTINCT CAST(try(json_structure(_raw)) AS VARCHAR) {objects}"
    ).fetchall()
    kinds: dict[str, set[str]] = {}
    for (structure,) in rows:
        shape = json.loads(structure) if structure else {}
        for k, v in shape.items() if isinstance(shape, dict) else ():
            kinds.setdefault(k, set()).add(v if isinstance(v, str) else "NESTED")
    return {k: _inferred(kinds[k]) for k in sorted(kinds)}


def _inferred(kinds: set[str]) -> str:
    """One DuckDB type for a key's JSON types across the batch; text when they disagree."""
    kinds = kinds - {"NULL"}
    if kinds and kinds <= {"UBIGINT", "BIGINT"}:
        return "BIGINT"
    if kinds and kinds <= {"UBIGINT", "BIGINT", "DOUBLE"}:
        return "DOUBLE"
    return "BOOLEAN" if kinds == {"BOOLEAN"} else ""
