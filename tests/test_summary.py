"""The run's summary (tasks/run/summary.py): counts add up per file, warnings reach every form."""

from __future__ import annotations

from tasks.run.summary import WARNINGS, Counts, Summary


def test_warnings_add_up_once_each_and_reach_every_form_of_the_summary() -> None:
    total = Counts()
    for part in (
        Counts(rows_read=3, warnings=["a: stopped after source.max_pages (2) pages"]),
        Counts(rows_read=4, warnings=["a: stopped after source.max_pages (2) pages", "b | c"]),
        Counts(warnings=[f"w{i}" for i in range(20)]),
    ):
        total.add(part)
    assert total.rows_read == 7
    assert total.warnings[:2] == ["a: stopped after source.max_pages (2) pages", "b | c"]
    assert len(total.warnings) == WARNINGS
    summary = Summary("orders", "r1", counts=Counts(warnings=["a: stopped", "b | c"]))
    assert summary.to_dict()["warnings"] == ["a: stopped", "b | c"]
    assert "**warning:** a: stopped" in summary.to_markdown()
    assert "**warning:** b \\| c" in summary.to_markdown()  # cannot break the markdown
    assert summary.one_line().endswith("; warning: a: stopped; warning: b | c")
    assert "warnings" not in summary.to_metadata()  # metadata is strings: status reads it back
    assert "warning" not in Summary("orders", "r2").one_line()
