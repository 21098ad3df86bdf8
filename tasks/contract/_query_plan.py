"""The contract query's pieces, filled column by column (typed values, their text, failure
flags) and put together as one SELECT that lists each row's failed checks in `_errors`."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from typing import Any

import ibis
import ibis.expr.datatypes as dt
import pandera.ibis as pa

from tasks.contract import _checks, _formats
from tasks.contract._casts import as_text, cast, same_type
from tasks.contract._json_fields import extract, json_kind_matches
from tasks.contract.columns import Column, type_label
from tasks.engine.db import ident, quote
from tasks.internal import PREFIX, RECORD

_BOOKKEEPING = (*RECORD, f"{PREFIX}ok")
SHOWN = 60  # characters of a value shown in an error


@dataclass
class QueryPlan:
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
    # Bookkeeping columns of the source passed through to the result; `unique` is then
    # checked within each group of equal values of them (a file's batches in one query).
    carry: tuple[str, ...] = ()
    # `_raw` and `_original` only on rejected rows (NULL on valid ones): staging needs them
    # nowhere else, and they are most of the bytes.
    lean: bool = False
    # json: a record may hold a number a double does not keep (tasks.engine.json_numbers).
    long: bool = True
    said: dict[int, str] = field(default_factory=dict)  # flag index -> its message as SQL
    # Labels that name the row's value ({value}), by the alias of the value's text.
    shown: dict[str, str] = field(default_factory=dict)

    def _path(self, key: str) -> int:
        self.paths.append(key)
        return len(self.paths)

    def add_column(self, c: Column, source_type: str) -> None:
        """A schema column: its typed value and text, and the flags of its type, nullability,
        checks and uniqueness. `source_type` is its type in a columns batch ("" = missing)."""
        o = f"__ph_o{len(self.typed)}"
        if c.format and source_type.upper().startswith(("DATE", "TIMESTAMP")):
            c = replace(c, format=None)  # `format` is for text; a typed value needs none
        if self.kind == "json":
            i = self._path(c.name)
            text, value = f"__ph_s[{i}]", cast(f"__ph_s[{i}]", "VARCHAR", c)
            if not c.coerce:
                self.need_json = True
                matches = json_kind_matches(f"CAST(__ph_j[{i}] AS VARCHAR)", c.dtype)
                value = f"CASE WHEN {matches} THEN {value} END"
        elif not source_type:  # a missing field is NULL
            text, value = "CAST(NULL AS VARCHAR)", f"CAST(NULL AS {c.sql})"
        else:
            text = as_text(ident(c.name), source_type)
            value = cast(ident(c.name), source_type, c)
            if not c.coerce and not same_type(source_type, c.sql):
                value = f"CAST(NULL AS {c.sql})"  # pandera's coerce=False: the type must match
        if _formats.applies(c) and (self.kind == "json" or source_type):
            value = _formats.value(text, c)  # the spec says how its text reads
        self.typed += [(text, o), (value, c.name)]
        self.outputs.append(c.name)
        self.original.append((c.name, o))
        v = ident(c.name)
        if not c.nullable:
            nan = f" OR COALESCE(isnan({v}), FALSE)" if c.dtype.is_floating() else ""
            self.flags.append((f"{c.name}: not_nullable", f"{o} IS NULL{nan}"))
        if _formats.applies(c):
            for label, cond, message in _formats.flags(c, o, v):
                self.said[len(self.flags)] = message
                self.flags.append((label, cond))
        elif value != text:  # else the value is the text itself and cannot fail its type
            label = f"{c.name}: {{value}} is not {type_label(c.dtype)}"
            self.flags.append((label, f"{o} IS NOT NULL AND {v} IS NULL"))
            self.shown[label] = o
        self._add_checks(c.name)
        if c.unique:
            self.flags.append((f"{c.name}: unique", _duplicate([c.name], c.unique, self.carry)))

    def add_extra(self, names: list[str], source_type: str, *, keep: bool, unknown: bool) -> None:
        """A field the schema does not name, in `_original`, kept as an output column (`keep`)
        and/or flagged as an unknown column (`unknown`, strict schemas). `names`: its spellings
        (DuckDB's names ignore case, so keys differing only by case are one field, named by the
        first); a record holding two of them is invalid."""
        x = f"__ph_x{len(self.typed)}"
        name = names[0]
        if self.kind == "json":
            at = [self._path(n) for n in names]
            parts = [f"__ph_s[{i}]" for i in at]
            text = parts[0] if len(parts) == 1 else f"COALESCE({', '.join(parts)})"
            present = [f"__ph_j[{i}] IS NOT NULL" for i in at]  # JSON null is present
            value = f"TRY_CAST({text} AS {source_type})" if source_type else text
        else:  # a relation's names already differ in more than case
            text, value = as_text(ident(name), source_type), ident(name)
            present = [f"{value} IS NOT NULL"]
        self.typed.append((text, x))
        self.original.append((name, x))
        if keep:
            self.typed.append((value, name))
            self.outputs.append(name)
        if unknown:
            for n, p in zip(names, present, strict=True):
                self._flag_present(f"_record: unknown column {n!r}", p)
        elif len(names) > 1:
            for (a, pa_), (b, pb) in itertools.combinations(zip(names, present, strict=True), 2):
                self._flag_present(
                    f"_record: fields {a!r} and {b!r} differ only in case", f"{pa_} AND {pb}"
                )

    def reject_present(self, names: list[str], label: str) -> None:
        """Fields that make the record holding any of them invalid, with the one error `label`."""
        if self.kind == "json":
            present = [f"__ph_j[{self._path(n)}] IS NOT NULL" for n in names]
        else:
            present = [f"{ident(n)} IS NOT NULL" for n in names]
        self._flag_present(label, " OR ".join(present))

    def _flag_present(self, label: str, present: str) -> None:
        self.need_json = self.need_json or self.kind == "json"
        u = f"__ph_u{len(self.typed)}"
        self.typed.append((present, u))
        self.flags.append((label, u))

    def add_table_rules(self, schema: pa.DataFrameSchema) -> None:
        """The schema's table-level checks and unique column groups."""
        self._add_checks(None)
        unique = schema.unique or []
        for g in [unique] if all(isinstance(u, str) for u in unique) else unique:
            if g:
                label = f"_record: unique({', '.join(g)})"
                flag = _duplicate(list(g), schema.report_duplicates, self.carry)
                self.flags.append((label, flag))

    def _add_checks(self, column: str | None) -> None:
        self.flags += [
            (c.label, f"__ph_c{i}") for i, c in enumerate(self.checks) if c.column == column
        ]

    def sql(self) -> str:
        """The whole query: typed values, compiled checks, flags, then `_errors`."""
        ctes = []
        meta = "_source, _row, _raw, _parse_error" + "".join(f", {ident(c)}" for c in self.carry)
        if self.kind == "json":
            sel = f"SELECT {meta}, {extract(self.paths, self.need_json, self.long)}"
            ctes.append(f"__ph_in AS (\n  {sel}\n  FROM {self.source}\n)")
            head, source = f"SELECT {meta}, __ph_s IS NOT NULL AS __ph_ok", "__ph_in"
        else:
            head, source = f"SELECT {meta}, _parse_error IS NULL AS __ph_ok", self.source
        typed = "".join(f",\n    {sql} AS {ident(alias)}" for sql, alias in self.typed)
        ctes.append(f"{_checks.TYPED} AS (\n  {head}{typed}\n  FROM {source}\n)")
        checked = _checks.TYPED
        if self.checks:
            aliases = [*_BOOKKEEPING, *self.carry, *(a for _, a in self.typed)]
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

    def _label(self, label: str) -> str:
        """SQL for an error's text: the label, with the row's value (cut short) where it says
        {value}, so that `carrier: 'UA' is not int64` shows what was wrong."""
        if label not in self.shown:
            return quote(label)
        o = self.shown[label]
        value = f"CASE WHEN length({o}) > {SHOWN} THEN left({o}, {SHOWN - 3}) || '...' ELSE {o} END"
        before, after = label.split("{value}", 1)
        head, tail = quote(before + "'"), quote("'" + after)
        return f"{head} || {value} || {tail}"

    def _final(self) -> str:
        errors = "CASE WHEN _parse_error IS NOT NULL THEN ['_record: ' || _parse_error]"
        bad = ["_parse_error IS NOT NULL"]
        if self.kind == "json":
            errors += " WHEN NOT __ph_ok THEN ['_record: not a JSON object']"
            bad.append("NOT __ph_ok")
        if self.flags:
            # Most rows are valid: one OR over the flags spares them building a list.
            failed = " OR ".join(f"__ph_f{i}" for i in range(len(self.flags)))
            items = ", ".join(
                f"CASE WHEN __ph_f{i} THEN {self.said.get(i) or self._label(label)} END"
                for i, (label, _) in enumerate(self.flags)
            )
            errors += f" WHEN NOT ({failed}) THEN CAST([] AS VARCHAR[])"
            errors += f" ELSE list_filter([{items}], lambda e: e IS NOT NULL) END"
            bad.append(f"({failed})")
        else:
            errors += " ELSE CAST([] AS VARCHAR[]) END"
        outputs = "".join(f"{ident(n)}, " for n in self.outputs)
        carry = "".join(f", {ident(c)}" for c in self.carry)
        # DuckDB cannot unnest an empty struct: with no fields at all the record is the value.
        original = ", ".join(f"{ident(n)} := {a}" for n, a in self.original) or "_record := _raw"
        raw, original = "_raw", f"struct_pack({original})"
        if self.lean:
            rejected = " OR ".join(bad)
            raw, original = (f"CASE WHEN {rejected} THEN {x} END" for x in (raw, original))
        return (
            f"SELECT {outputs}_source, _row{carry}, {raw} AS _raw,\n  {errors} AS _errors,\n"
            f"  {original} AS _original\nFROM __ph_flags"
        )


def _duplicate(columns: list[str], report: str, within: tuple[str, ...] = ()) -> str:
    """TRUE on rows whose values in `columns` occur more than once in the batch (NULLs never do);
    `within`: bookkeeping columns that tell the batches of one query apart."""
    part = ", ".join(ident(c) for c in (*within, *columns))
    present = " AND ".join(f"{ident(c)} IS NOT NULL" for c in columns)
    if report in ("exclude_first", "exclude_last"):
        desc = " DESC" if report == "exclude_last" else ""
        order = f"_source{desc}, _row{desc}"
        return f"{present} AND row_number() OVER (PARTITION BY {part} ORDER BY {order}) > 1"
    return f"{present} AND count(*) OVER (PARTITION BY {part}) > 1"
