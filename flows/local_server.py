"""The Prefect server `pumphouse run` records on when none is configured.

Prefect's own answer is a temporary server per process (~9 s to start, every run). Instead,
the first run starts a local Prefect server in the background, from PREFECT_HOME (the same
database the temporary one would use), and later runs reuse it: every run is still a flow
run on a real Prefect server, seen by `prefect flow-run ls` and the UI. It stops by itself
after PUMPHOUSE_PREFECT_SERVER_IDLE seconds (default 600; 0: never) without a run, or with
`prefect server stop`. PUMPHOUSE_PREFECT_SERVER=temporary keeps Prefect's own way.

Run as `python -m flows.local_server HOME PORT IDLE`, this module is that server's keeper:
it runs `prefect server start` and stops it when no run has used it for IDLE seconds.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from schemas.errors import PumpError

RECORD = "pumphouse-server.json"  # in PREFECT_HOME: the URL of the server started here
PID_FILE = "server.pid"  # Prefect's own name: `prefect server stop` reads it
USE_FILE = "pumphouse-server.use"  # each run holds a shared lock on it, and touches it
DEFAULT_PORT = 4200  # Prefect's
DEFAULT_IDLE = 600.0
START_TIMEOUT = 300.0  # a bound on a hang: a first start on a busy machine can take minutes
_HELD: list[Any] = []  # this process's lock on USE_FILE, held until it exits


def use_local_server(say: object = None) -> str | None:
    """Point Prefect at the local server, starting it if need be; its API URL, or None when a
    server is configured (PREFECT_API_URL, a Prefect profile) or the temporary one is asked for.
    `say(text)` tells the user when a server is started (a first run waits for it)."""
    home = _unconfigured_home()
    if home is None:
        return None
    _hold(home)  # before the server is started or found: it must not stop under this run
    return _point_at(ensure_server(home, say))


def use_running_server() -> str | None:
    """Point Prefect at the local server a run started, if it runs now (it is not started);
    its API URL, or None when a server is configured, the temporary one is asked for, or
    none runs. For `status` and `deploy`: they see what `run` recorded."""
    home = _unconfigured_home()
    url = _recorded(home) if home is not None else None
    if home is None or url is None or not serves(url, home):
        return None
    return _point_at(url)


def _unconfigured_home() -> Path | None:
    """PREFECT_HOME when no server is configured and the local one is wanted, else None."""
    if os.environ.get("PUMPHOUSE_PREFECT_SERVER", "").lower() == "temporary":
        return None
    if os.environ.get("PREFECT_API_URL"):
        return None
    from prefect.settings import get_current_settings

    settings = get_current_settings()
    if settings.api.url:
        return None
    return Path(settings.home)


def _point_at(url: str) -> str:
    """Prefect's settings (this process's, and its children's) name the server at `url`."""
    os.environ["PREFECT_API_URL"] = url
    from prefect.context import refresh_global_settings_context

    refresh_global_settings_context()
    return url


def ensure_server(home: Path, say: object = None) -> str:
    """The URL of the healthy local server of `home`, started now if none runs."""
    home.mkdir(parents=True, exist_ok=True)
    with (home / "pumphouse-server.lock").open("a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two first runs at once start one server
        known = _recorded(home)
        if known and serves(known, home):
            return known
        pid = _pid(home)
        if pid is not None and known:  # ours, still starting (or stuck)
            return _wait(known, pid, home)
        if pid is not None:
            raise PumpError(
                f"a Prefect server started from {home} runs (pid {pid}) but pumphouse does not "
                "know its address; set PREFECT_API_URL to it, or stop it with `prefect server stop`"
            )
        port = DEFAULT_PORT if _free(DEFAULT_PORT) else _any_port()
        url = f"http://127.0.0.1:{port}/api"
        if callable(say):
            say(
                f"starting a local Prefect server at {url[:-4]} for this and later runs "
                "(stop it with `prefect server stop`)"
            )
        try:
            return _started(home, port, url)
        except Stopped:  # a first start can fail by itself (seen under load): once more
            port = _any_port()
            return _started(home, port, f"http://127.0.0.1:{port}/api")


class Stopped(PumpError):
    """The server stopped while starting."""


def _started(home: Path, port: int, url: str) -> str:
    proc = _start(home, port)
    (home / PID_FILE).write_text(str(proc.pid))
    (home / RECORD).write_text(json.dumps({"url": url, "pid": proc.pid}))
    return _wait(url, proc.pid, home)


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def serves(url: str, home: Path) -> bool:
    """A healthy Prefect server at `url` runs from `home`, as its own settings say: not
    whatever else answers on the port once our server is gone."""
    if not healthy(url):
        return False
    try:
        with urllib.request.urlopen(f"{url}/admin/settings", timeout=5) as r:
            its_home = json.load(r)["home"]
        return Path(its_home).expanduser().resolve() == home.expanduser().resolve()
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _hold(home: Path) -> None:
    """Keep the server up while this process runs (a shared lock), and mark it used now."""
    home.mkdir(parents=True, exist_ok=True)
    use = (home / USE_FILE).open("a+")
    fcntl.flock(use, fcntl.LOCK_SH)
    os.utime(home / USE_FILE)
    _HELD.append(use)


def _start(home: Path, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
    }
    env.pop("PREFECT_API_URL", None)
    idle = os.environ.get("PUMPHOUSE_PREFECT_SERVER_IDLE") or str(DEFAULT_IDLE)
    argv = [sys.executable, "-m", "flows.local_server", str(home), str(port), idle]
    (home / USE_FILE).touch()
    with (home / "pumphouse-server.log").open("ab") as log:
        return subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # outlives this command, and its Ctrl-C
        )


def _wait(url: str, pid: int, home: Path) -> str:
    deadline = time.monotonic() + START_TIMEOUT
    error, why = PumpError, f"did not start within {START_TIMEOUT:g} s"
    while time.monotonic() < deadline:
        if serves(url, home):
            return url
        if not _alive(pid):  # e.g. another server took the port first
            error, why = Stopped, "stopped while starting"
            break
        time.sleep(0.2)
    raise error(
        f"the local Prefect server ({url}) {why}; see {home / 'pumphouse-server.log'}, run "
        "again, or set PREFECT_API_URL to a running server"
    )


def _recorded(home: Path) -> str | None:
    try:
        return str(json.loads((home / RECORD).read_text())["url"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _pid(home: Path) -> int | None:
    """The pid in Prefect's server.pid if that process is alive; a stale file is removed."""
    path = home / PID_FILE
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        return None
    if _alive(pid):
        return pid
    path.unlink(missing_ok=True)
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A dead child of ours stays a zombie until reaped: not alive.
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return done == 0


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _any_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def keep(home: Path, port: int, idle: float) -> int:
    """Run the Prefect server until it has gone `idle` seconds without a run (0: forever), or
    until SIGTERM (`prefect server stop`)."""
    prefect = Path(sys.executable).with_name("prefect")
    argv = [str(prefect), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    server = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop.set())
    last = time.monotonic()
    while not stop.wait(2.0) and server.poll() is None:
        used = (
            time.time() - (home / USE_FILE).stat().st_mtime if (home / USE_FILE).exists() else 1e9
        )
        last = max(last, time.monotonic() - used)
        if _in_use(home):
            last = time.monotonic()
        elif idle and time.monotonic() - last > idle:
            break
    server.terminate()
    try:
        server.wait(30)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()
    if _pid(home) in (os.getpid(), None):
        (home / PID_FILE).unlink(missing_ok=True)
        (home / RECORD).unlink(missing_ok=True)
    return 0


def _in_use(home: Path) -> bool:
    """A run holds its shared lock: an exclusive one cannot be had."""
    try:
        with (home / USE_FILE).open("a+") as f:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(f, fcntl.LOCK_UN)
    except BlockingIOError:
        return True
    except OSError:
        return False
    return False


if __name__ == "__main__":
    sys.exit(keep(Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])))
