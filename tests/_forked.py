"""`pumphouse` processes forked from a pre-imported parent: the same command, without the
seconds each fresh process spends importing Prefect, pandas, pyarrow and DuckDB.

One forkserver per test process (multiprocessing's, started on first use: a fresh
interpreter, not a fork of pytest) imports the libraries a run uses (tests/_preload.py);
each command is a new process forked from it, which imports our own code, reads the
PUMPHOUSE_* settings and runs `flows.cli:entry` (the installed script's entry point) with
its own argv, working directory, environment, stdout and stderr, and exits with the code
the script would (-9 when killed).

What the libraries read when they are imported is fixed in the forkserver: Prefect's
settings (PREFECT_*, set for the whole session in conftest, and the console level the
command sets before importing Prefect), Python's and the locale's, the native libraries'
thread pools. A call that would change one of those runs the real binary instead
(`forkable`).
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

PUMPHOUSE = str(Path(sys.executable).with_name("pumphouse"))

# Read when the libraries are imported or Python starts: a call must see them as the
# forkserver did. (PUMPHOUSE_* are read by our own code, imported in each child.)
AT_IMPORT = (
    "PREFECT_",
    "DO_NOT_TRACK",
    "PYTHON",
    "LANG",
    "LC_",
    "TZ",
    "ARROW_",
    "OMP_",
    "OPENBLAS_",
    "MKL_",
    "NUMEXPR_",
    "DASK_",
)


def cli_env(env: dict[str, str], args: tuple[str, ...]) -> dict[str, str]:
    """`env` as Prefect sees it when the command imports it (flows.cli sets these first)."""
    env = dict(env)
    if "-v" not in args and "--verbose" not in args:
        env["PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL"] = "CRITICAL"
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    env.setdefault("DO_NOT_TRACK", "1")
    return env


def at_import(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k.startswith(AT_IMPORT)}


_context: Any = None
_session_env: dict[str, str] | None = None  # what the forkserver starts with (`freeze`)
_started = False


def freeze(env: dict[str, str]) -> None:
    """Fix the session's environment, as conftest sets it before any test: the forkserver
    starts with it even if the first command comes while a test has changed os.environ for
    a while (e.g. prefect_server_events's PREFECT_API_URL), and only calls that keep it fork."""
    global _session_env
    _session_env = dict(env)


def forkable(args: tuple[str, ...], env: dict[str, str]) -> bool:
    """Whether `pumphouse ARGS` with the whole environment `env` runs as it would in a fresh
    process when forked: what the libraries read at import is what the forkserver read."""
    return not changed_at_import(args, env)


def changed_at_import(args: tuple[str, ...], env: dict[str, str]) -> list[str]:
    """The variables read at import whose value in `env` (for `pumphouse ARGS`) is not the
    forkserver's."""
    session = _session_env if _session_env is not None else dict(os.environ)
    want, have = at_import(cli_env(env, args)), at_import(cli_env(session, ()))
    return sorted(k for k in want.keys() | have.keys() if want.get(k) != have.get(k))


def _start(process: Any) -> None:
    """Start a forked command; the first also starts the forkserver, with the session's
    environment (multiprocessing hands it the current one)."""
    global _started
    if _started or _session_env is None:
        process.start()
        return
    _started = True
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(_session_env)
    try:
        process.start()
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _forkserver() -> Any:
    """This process's forkserver context; the server starts with the first command."""
    global _context
    if _context is None:
        _context = multiprocessing.get_context("forkserver")
        _context.set_forkserver_preload(["tests._preload"])
    return _context


def _child(args: tuple[str, ...], cwd: str, env: dict[str, str], out: str, err: str) -> None:
    """In the forked process: the command's argv, folder, environment and output files,
    then the installed script's entry point. Its SystemExit is the process's exit code."""
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    sys.argv = [PUMPHOUSE, *args]
    sys.stdout.flush()  # nothing of the forkserver's own goes into the command's output
    sys.stderr.flush()
    for fd, path in ((1, out), (2, err)):
        f = os.open(path, os.O_WRONLY | os.O_TRUNC)
        os.dup2(f, fd)
        os.close(f)
    from flows.cli import entry

    entry()


class Forked:
    """A forked `pumphouse ARGS`, used as a subprocess.Popen with text stdout and stderr
    captured: pid, poll, wait, send_signal, kill, communicate, returncode."""

    def __init__(self, args: tuple[str, ...], cwd: Path, env: dict[str, str]) -> None:
        self.args = [PUMPHOUSE, *args]
        self._dir = tempfile.TemporaryDirectory(prefix="pumphouse-forked-")
        self._out = os.path.join(self._dir.name, "stdout")
        self._err = os.path.join(self._dir.name, "stderr")
        for path in (self._out, self._err):
            Path(path).touch()
        self._process = _forkserver().Process(
            target=_child, args=(args, str(cwd), env, self._out, self._err)
        )
        _start(self._process)
        self.pid: int = self._process.pid
        self._code: int | None = None

    @property
    def returncode(self) -> int | None:
        if self._code is None:
            self._code = self._process.exitcode
        return self._code

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        self._process.join(timeout)
        if self.returncode is None:
            raise subprocess.TimeoutExpired(self.args, timeout or 0)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:  # as Popen: never a pid that may have been reused
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(9)

    def communicate(self, timeout: float | None = None) -> tuple[str, str]:
        """Wait for the exit (TimeoutExpired after `timeout`), then what it printed."""
        self.wait(timeout)
        out, err = (Path(p).read_text(errors="replace") for p in (self._out, self._err))
        self._process.close()
        self._dir.cleanup()
        return out, err


def completed(
    args: tuple[str, ...], cwd: Path, env: dict[str, str], timeout: float
) -> subprocess.CompletedProcess[str]:
    """`pumphouse ARGS` forked, as subprocess.run(capture_output=True, text=True) gives it."""
    proc = Forked(args, cwd, env)
    try:
        out, err = proc.communicate(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    assert proc.returncode is not None
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
