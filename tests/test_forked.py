"""run_cli's forked `pumphouse` (tests/_forked.py) is the command as the real binary runs it,
and a call that changes what the libraries read at import runs the real binary."""

from __future__ import annotations

import os
from pathlib import Path

from tests import _forked as forked
from tests.conftest import run_binary, run_cli, run_python


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
    assert not forked.changed_at_import(args, dict(os.environ))  # else it proves nothing
    assert (got.returncode, got.stdout, got.stderr) == (want.returncode, want.stdout, want.stderr)
    assert got.returncode == 2 and "bad.yaml" in got.stderr


SESSION_FIRST_CALL_CHANGED = """
import os, sys
from pathlib import Path
from tests import _forked as forked

forked.freeze(dict(os.environ))
session = dict(os.environ)
os.environ["PREFECT_API_URL"] = "http://127.0.0.1:9/api"  # as prefect_server_events does
first = forked.completed(("validate", "bad.yaml"), Path.cwd(), session, 300)
del os.environ["PREFECT_API_URL"]
print(first.returncode, forked.forkable(("validate", "bad.yaml"), session))
"""


def test_the_forkserver_starts_with_the_sessions_environment_whatever_the_first_call(
    tmp_path: Path,
) -> None:
    """prefect_server_events changes PREFECT_API_URL for its tests' length: a first forked
    command then must not start the forkserver with that address (every later call would
    run the binary, or record on the wrong server). A fresh process, so that it is the first."""
    (tmp_path / "bad.yaml").write_text("name: bad\nsource: {type: files}\n")
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    done = run_python(SESSION_FIRST_CALL_CHANGED, tmp_path, env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["2", "True"], done.stdout + done.stderr
