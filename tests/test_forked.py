"""run_cli's forked `pumphouse` (tests/_forked.py) is the command as the real binary runs it,
and a call that changes what the libraries read at import runs the real binary."""

from __future__ import annotations

import os
from pathlib import Path

from tests import _forked as forked
from tests.conftest import run_binary, run_cli


def test_a_call_that_changes_what_libraries_read_at_import_is_not_forked() -> None:
    here = dict(os.environ)
    assert forked.forkable(("validate", "x.yaml"), here)
    assert forked.forkable(("run", "x.yaml"), {**here, "PUMPHOUSE_FAULT": "staged"})
    assert not forked.forkable(("run", "x.yaml", "-v"), here)  # Prefect's console level
    assert not forked.forkable(("run", "x.yaml"), {**here, "PREFECT_API_URL": "http://h/api"})
    assert not forked.forkable(("run", "x.yaml"), {**here, "LC_ALL": "C"})


def test_a_forked_command_prints_and_exits_as_the_binary(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("name: bad\nsource: {type: files}\n")
    args = ("validate", "bad.yaml")
    got, want = run_cli(*args, cwd=tmp_path), run_binary(*args, cwd=tmp_path)
    assert forked.forkable(args, dict(os.environ))
    assert (got.returncode, got.stdout, got.stderr) == (want.returncode, want.stdout, want.stderr)
    assert got.returncode == 2 and "bad.yaml" in got.stderr
