"""RELIABILITY.md says what the tests prove, no more and no less."""

from __future__ import annotations

from tests.reliability import AREAS, DOC, collect, render


def test_reliability_md_is_what_the_tests_say() -> None:
    want = render(collect())
    have = DOC.read_text(encoding="utf-8") if DOC.exists() else ""
    assert have == want, "RELIABILITY.md is out of date with the tests: run `make reliability`"


def test_every_area_has_proof() -> None:
    covered = {row.area for row in collect()}
    assert covered == set(AREAS), f"no reliability test for: {sorted(set(AREAS) - covered)}"
