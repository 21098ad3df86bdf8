"""What a data engineer would pick from a sample's columns, each with the reason to give:
a key, a cursor, isin and `ge: 0` checks. Conservative: the written spec must pass every
row of the sample, so each proposal holds for all of it."""

from __future__ import annotations

import re
from dataclasses import dataclass

from tasks.infer.profile import FEW, Column

MEANINGFUL = 100  # rows a sample needs before few distinct values say anything
NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")  # a column the spec can declare and name
ID = re.compile(r"(?i)^(id|uuid|guid|key|code)$|(_id|_key|_uuid|_code)$")
CAMEL_ID = re.compile(r"[a-z](Id|ID)$")  # orderId, OrderID
CURSOR = (
    re.compile(
        r"(?i)^(updated|modified|changed|last_?modified|last_?updated)(_?(at|on|time|ts|date))?$"
    ),
    re.compile(r"(?i)(updated|modified|changed)"),
)
AMOUNT = re.compile(
    r"(?i)(amount|count|qty|quantity|price|total|cost|fee|revenue|balance|units|stock|"
    r"size|bytes|duration|weight|age|items|num|^n_|"
    r"menge|anzahl|betrag|preis|montant|prix|quantit|importe|cantidad|precio)"
)


@dataclass(frozen=True)
class Proposal:
    value: str
    why: str


def key(columns: list[Column], rows: int) -> Proposal | None:
    """A column unique and never NULL in the sample, `id`-like names first."""
    unique = [
        c for c in columns
        if c.type in ("int64", "string") and NAME.match(c.name) and c.nulls == 0
        and c.distinct == rows and rows > 1
    ]  # fmt: skip
    if not unique:
        return None
    best = sorted(unique, key=lambda c: (not _id_like(c.name), columns.index(c)))[0]
    named = " and named like a key" if _id_like(best.name) else ""
    return Proposal(best.name, f"unique and never empty in {rows:,} sampled rows{named}")


def cursor(columns: list[Column]) -> Proposal | None:
    """An `updated_at`-like date or timestamp, never NULL in the sample."""
    for pattern in CURSOR:
        for c in columns:
            if c.temporal and c.nulls == 0 and NAME.match(c.name) and pattern.search(c.name):
                return Proposal(c.name, f"a {c.type} named like a last-change time, never empty")
    return None


def isin(column: Column, rows: int) -> Proposal | None:
    """The values of a text column that has few of them, when the sample is big enough."""
    if column.type != "string" or not column.values or rows < MEANINGFUL:
        return None
    if column.distinct > FEW or column.distinct * 5 > rows:
        return None
    return Proposal(
        ", ".join(column.values),
        f"{column.distinct} distinct values in {rows:,} sampled rows",
    )


def non_negative(column: Column) -> Proposal | None:
    """`ge: 0` for a count or amount never below 0 in the sample."""
    if not column.numeric or column.least is None or column.least < 0:
        return None
    if not AMOUNT.search(column.name) or _id_like(column.name):
        return None
    return Proposal("0", "a count or amount, never below 0 in the sample")


def _id_like(name: str) -> bool:
    return bool(ID.search(name) or CAMEL_ID.search(name))
