"""The suite's xdist groups hold: tests that share a costly module fixture, or that must not run
at the same time (a first local Prefect server), run on one worker (tests/conftest.py
ONE_WORKER). pytest 9.2 made pytest-xdist ignore every group without a word (pytest-xdist#1386)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path


def test_the_tests_of_one_xdist_group_run_on_one_worker(tmp_path: Path) -> None:
    (tmp_path / "test_grouped.py").write_text(
        "import pytest\n\n"
        "@pytest.mark.xdist_group('one')\n"
        "@pytest.mark.parametrize('i', range(8))\n"
        "def test_member(i):\n    pass\n"
    )
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-n",
            "2",
            "--dist",
            "loadgroup",
            "-v",
            "-p",
            "no:randomly",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    workers = re.findall(r"\[(gw\d+)\] .*PASSED .*test_member", done.stdout)
    assert len(workers) == 8, done.stdout
    assert len(set(workers)) == 1, f"one group ran on {sorted(set(workers))}:\n{done.stdout}"
