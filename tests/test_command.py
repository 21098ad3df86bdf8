"""The command as a new user meets it (issue 21, items 6 and 7): nothing goes silent, a host
that cannot be reached is named at once, and `--version`, `status` and a failed first run
behave on a terminal, in a pipe and in a folder that is not a project. What a command prints
and leaves behind is checked in this process (run_in_process); a terminal, `--version` and
another environment's server need the real command.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from tests._http_servers import App, api_spec, hook_spec, serve
from tests.conftest import run_binary, run_in_process
from tests.data import spec_text, write_orders
from tests.test_cli import cli, in_process


def closed_port_url() -> str:
    """The base URL of a real local HTTP server that has been stopped: its port refuses."""
    with serve(App()) as url:
        pass
    return url


def test_a_source_host_that_refuses_is_named_at_once(project: Path, prefect_server: str) -> None:
    base = closed_port_url()
    port = base.rsplit(":", 1)[1]
    # Retries as a throttling server gets them would take minutes: a refusal is not one.
    spec = api_spec(base, batch_rows=100, source_extra="  retries: 8\n  retry_max_wait: 60s\n")
    (project / "pumps" / "api.yaml").write_text(spec)
    done = run_in_process("run", "pumps/api.yaml", cwd=project)
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        f"error: GET {base}/v1/orders: 127.0.0.1:{port} refused the connection "
        "(nothing listens there); is source.url right, and is the server up?"
    )


def test_a_source_host_that_does_not_resolve_is_named_at_once(
    project: Path, prefect_server: str
) -> None:
    from flows.pump import pump
    from schemas.errors import RetriesSpent

    spec = api_spec("http://does-not-exist.invalid", batch_rows=100)
    (project / "pumps" / "api.yaml").write_text(spec)
    with pytest.raises(RetriesSpent) as caught:
        pump(spec_path="pumps/api.yaml")
    assert str(caught.value) == (
        "GET http://does-not-exist.invalid/v1/orders: the host "
        "does-not-exist.invalid (port 80) does not resolve (no such host); "
        "is source.url right?"
    )


def test_a_webhook_sink_host_that_refuses_is_named_at_once(
    project: Path, prefect_server: str
) -> None:
    from flows.pump import pump
    from schemas.errors import RetriesSpent

    base = closed_port_url()
    port = base.rsplit(":", 1)[1]
    write_orders(project / "in", files=1, rows=20)
    (project / "pumps" / "orders.yaml").write_text(hook_spec(base, batch_rows=100, hook_rows=10))
    with pytest.raises(RetriesSpent) as caught:
        pump(spec_path="pumps/orders.yaml")
    assert str(caught.value) == (
        f"POST {base}/hook: 127.0.0.1:{port} refused the connection (nothing listens "
        "there); is sink.url right, and is the server up?"
    )


# ---------------------------------------------------------------- the command (item 7)


def test_version_prints_the_installed_version(tmp_path: Path) -> None:
    from importlib.metadata import version

    done = run_binary("--version", cwd=tmp_path)  # the binary's start-up prints nothing else
    assert (done.returncode, done.stdout, done.stderr) == (
        0,
        f"pumphouse {version('pumphouse')}\n",
        "",
    )


def on_a_terminal(*args: str, cwd: Path, env: dict[str, str]) -> str:
    """`pumphouse ARGS` with a terminal 80 columns wide as stdin, stdout and stderr; what it showed."""
    import fcntl
    import pty
    import struct
    import subprocess
    import termios

    from tests.conftest import PUMPHOUSE

    main, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    proc = subprocess.Popen(
        [PUMPHOUSE, *args], cwd=cwd, env=env, stdin=child, stdout=child, stderr=child
    )
    os.close(child)
    shown = b""
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # EIO: the terminal's other end is closed
            break
        if not chunk:
            break
        shown += chunk
    os.close(main)
    assert proc.wait(timeout=120) == 0, shown
    return shown.decode().replace("\r\n", "\n")


def test_status_fits_an_80_column_terminal_and_prefect_shows_no_telemetry_notice(
    project: Path, prefect_server: str, tmp_path: Path
) -> None:
    """Prefect prints its telemetry notice on the first import on a terminal (a PREFECT_HOME
    it has not seen, no CI variables); pumphouse opts out as Prefect documents (DO_NOT_TRACK)."""
    from flows.pump import pump

    write_orders(project / "in", files=1, rows=30)
    (project / "pumps" / "orders.yaml").write_text(spec_text(name="narrow"))
    summary = pump(spec_path="pumps/orders.yaml")
    quiet = ("DO_NOT_TRACK", "CI", "GITHUB_ACTIONS", "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL")
    env = {k: v for k, v in os.environ.items() if k not in quiet}
    env.update(COLUMNS="80", LINES="24", TERM="xterm", PREFECT_HOME=str(tmp_path / "new-home"))
    shown = on_a_terminal("status", cwd=project, env=env)
    assert "telemetry" not in shown.lower() and "usage data" not in shown, shown
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line) for line in shown.splitlines()]
    assert lines == [
        "narrow",
        f"  last run         {summary['started_at']}  ok",
        f"  rows             {summary['rows_read']} read, {summary['rows_written']} written, "
        f"{summary['rows_rejected']} rejected",
        f"  high-water mark  {summary['hwm_after']}",
        "  recent runs      ok",
        f"runs from Prefect at {prefect_server}",
    ]
    assert max(len(line) for line in lines) <= 80


def test_status_json_is_one_object_per_pump(project: Path, prefect_server: str) -> None:
    from flows.pump import pump

    write_orders(project / "in", files=1, rows=30)
    (project / "pumps" / "a.yaml").write_text(spec_text(name="jsona"))
    (project / "pumps" / "b.yaml").write_text(spec_text(name="jsonb", out="./out/b"))
    summary = pump(spec_path="pumps/a.yaml")
    shown = json.loads(in_process("status", "--json"))
    assert shown == [
        {
            "spec": "pumps/a.yaml",
            "pump": "jsona",
            "last_run": summary["started_at"],
            "outcome": "ok",
            "rows_read": summary["rows_read"],
            "rows_written": summary["rows_written"],
            "rows_rejected": summary["rows_rejected"],
            "high_water_mark": summary["hwm_after"],
            "open_run": None,
            "recent_runs": ["ok"],
            "next_run": None,
            "problem": None,
        },
        {
            "spec": "pumps/b.yaml",
            "pump": "jsonb",
            "last_run": None,
            "outcome": None,
            "rows_read": None,
            "rows_written": None,
            "rows_rejected": None,
            "high_water_mark": None,
            "open_run": None,
            "recent_runs": [],
            "next_run": None,
            "problem": None,
        },
    ]


def test_status_and_deploy_use_the_local_server_run_started(
    project: Path, prefect_server: str
) -> None:
    """With no server configured, `run` records on the local server it started (its URL in
    PREFECT_HOME's record, flows/local_server.py): `status` shows the runs there and
    `deploy` deploys there, instead of "no Prefect server is configured". The session's
    server stands in for it: it runs from that PREFECT_HOME."""
    from flows.local_server import RECORD
    from flows.pump import pump
    from tests.conftest import PREFECT_HOME

    write_orders(project / "in", files=1, rows=30)
    (project / "pumps" / "orders.yaml").write_text(spec_text(name="onlocal"))
    pump(spec_path="pumps/orders.yaml")
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    record = Path(PREFECT_HOME) / RECORD
    record.write_text(json.dumps({"url": prefect_server, "pid": 0}))
    try:
        status = cli("status", cwd=project, env=env)
        deployed = cli("deploy", "--pool", "local-test", cwd=project, env=env)
    finally:
        record.unlink()
    assert status.returncode == 0, status.stderr
    assert status.stdout.splitlines()[-1] == f"runs from Prefect at {prefect_server}"
    assert deployed.returncode == 0, deployed.stderr
    assert deployed.stderr.strip() == (
        f"note: deploying to the local Prefect server at {prefect_server} that `pumphouse run` "
        "started; it stops after PUMPHOUSE_PREFECT_SERVER_IDLE seconds without a run, so for "
        "schedules start a lasting one (`prefect server start`) and set PREFECT_API_URL"
    )
    assert "deployed pump/onlocal on pool local-test, no schedule" in deployed.stdout


# ---------------------------------------------------------------- nothing silent (item 6)

NO_FOLDER = (
    "source.url ./in/: no such folder, so nothing was read; check the path (relative paths "
    "start at the working directory)"
)


def test_a_run_that_finds_no_file_says_why_until_one_is_read(
    project: Path, prefect_server: str
) -> None:
    """A missing folder, then a first run whose glob matches nothing: `ok`, nothing read, a
    warning each. Once files were read, a run with nothing new is quiet."""
    from flows.pump import pump

    (project / "pumps" / "orders.yaml").write_text(spec_text(name="quiet"))
    missing = pump(spec_path="pumps/orders.yaml")
    assert (missing["status"], missing["files"], missing["warnings"]) == ("ok", 0, [NO_FOLDER])

    (project / "in").mkdir()
    (project / "in" / "orders.csv").write_text("order_id\n1\n")  # not *.ndjson
    unmatched = pump(spec_path="pumps/orders.yaml")
    assert (unmatched["status"], unmatched["files"], unmatched["warnings"]) == (
        "ok",
        0,
        ["source.url ./in/: no file matches source.glob '*.ndjson', so nothing was read"],
    )

    write_orders(project / "in", files=1, rows=20)
    assert pump(spec_path="pumps/orders.yaml")["files"] == 1
    nothing_new = pump(spec_path="pumps/orders.yaml")
    assert (nothing_new["files"], nothing_new["warnings"]) == (0, [])


def test_a_missing_folder_is_a_warning_line_of_run_and_an_error_of_validate(
    project: Path, prefect_server: str
) -> None:
    spec = spec_text(name="nofolder")
    (project / "pumps" / "orders.yaml").write_text(spec)
    ran = run_in_process("run", "pumps/orders.yaml", cwd=project)
    assert ran.returncode == 0, ran.stderr
    assert f"warning: {NO_FOLDER}" in ran.stderr.splitlines()

    checked = run_in_process("validate", "pumps/orders.yaml", cwd=project)
    line = spec.splitlines().index("  url: ./in/") + 1
    assert (checked.returncode, checked.stdout) == (2, "")
    assert checked.stderr.splitlines() == [
        f"pumps/orders.yaml:{line} source.url: './in/': no folder '{project / 'in'}'; create "
        "it, or fix source.url (relative paths start at the folder pumphouse runs in, not the "
        "spec's)"
    ]
    (project / "in").mkdir()
    assert run_in_process("validate", "pumps/orders.yaml", cwd=project).returncode == 0


def test_a_failed_run_from_the_wrong_folder_leaves_no_state_folder(
    project: Path, prefect_server: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Run from another folder, a spec's relative paths name nothing there: the run fails,
    and the `.pumphouse/` it made for its lock and its line of history goes with it. So do
    a spec that is not there and one with an error (they fail before a run starts)."""
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    spec = project / "pumps" / "orders.yaml"
    spec.write_text(spec_text(name="wrongdir", src="./in/orders.ndjson", glob=""))
    write_orders(project / "in", files=1, rows=10)
    (project / "in" / "orders-00-000.ndjson").rename(project / "in" / "orders.ndjson")
    failed = run_in_process("run", str(spec), cwd=elsewhere)
    assert failed.returncode == 1, failed.stderr
    assert failed.stderr.splitlines()[-1] == (
        "error: source.url ./in/orders.ndjson: no such file or folder; check the path "
        "(relative paths start at the working directory) and storage_options"
    )
    assert list(elsewhere.iterdir()) == []

    (elsewhere / "pumps").mkdir()
    (elsewhere / "pumps" / "bad.yaml").write_text(spec_text(name="wrongdir") + "bogus: 1\n")
    for args in (["pumps/x.yaml"], ["pumps/x.yaml", "--json"], ["pumps/bad.yaml"]):
        assert run_in_process("run", *args, cwd=elsewhere).returncode == 2
    assert sorted(p.name for p in elsewhere.iterdir()) == ["pumps"]

    ran = run_in_process("run", "pumps/orders.yaml", "--json", cwd=project)  # from the right folder
    assert ran.returncode == 0, ran.stderr
    assert (project / ".pumphouse" / "wrongdir" / "state.json").exists()
