"""The `pumphouse` command as users type it (CONTRACT §3, §4).

Help, usage errors, signals, and the runs whose whole console output is asserted (a quiet
success, a failure's one error line, secrets) are the command in a process of its own
(`cli`): forked from a pre-imported forkserver, or the installed binary where the binary is
the point (help, a whole run and its exit, imports, Prefect's embedded server). Where a
test asserts only what a command prints, exits with and lands, it runs through the command's
own main() in this process (`command`): the same exit codes, stdout and stderr, without a
subprocess's seconds of imports; a few exit-0 checks of output content use typer's
CliRunner. No call may ever print a traceback.
"""

from __future__ import annotations

import contextlib
import csv
import gc
import io
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import duckdb
import pytest
from typer.testing import CliRunner

from tests import _forked as forked
from tests._moto import free_port
from tests._prefect_server import DATABASE, seed, stop_local
from tests.conftest import PUMPHOUSE, REPO, run_in_process
from tests.data import expected, is_valid, landed, spec_text, write_orders

COMMANDS = ("validate", "run", "status", "query", "deploy", "reset")
SECRET = "hunter2-Zq8v-not-for-print"


def cli(
    *args: str,
    cwd: Path,
    env: dict[str, str] | None = None,
    timeout: float = 300,
    python: tuple[str, ...] = (),
    binary: bool = False,
) -> subprocess.CompletedProcess[str]:
    """`pumphouse ARGS` in a process of its own, stdin not a terminal; `env` replaces the
    environment when given. Forked from the pre-imported forkserver (tests/_forked.py: the
    same entry point, exit, stdout and stderr); the installed binary when `binary`, when
    `python` gives its interpreter options (e.g. -X importtime), or when the call changes
    what the libraries read at import."""
    whole = os.environ.copy() if env is None else env
    if not (binary or python) and forked.forkable(args, whole):
        done = forked.completed(args, cwd, whole, timeout)
    else:
        done = subprocess.run(
            [sys.executable, *python, PUMPHOUSE, *args] if python else [PUMPHOUSE, *args],
            cwd=cwd,
            env=whole,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    assert "Traceback" not in done.stderr + done.stdout, done.stderr
    return done


def command(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`pumphouse ARGS` through main() in this process, as `cli` gives it: where only what the
    command prints, exits with and lands is asserted."""
    done = run_in_process(*args, cwd=cwd, env=env)
    assert "Traceback" not in done.stderr + done.stdout, done.stderr
    return done


def in_process(*args: str) -> str:
    """`pumphouse ARGS` in this process (cwd is the caller's); returns stdout of a run that exits 0."""
    from flows.cli import app

    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0 and result.exception is None, (result.exception, result.output)
    assert "Traceback" not in result.output
    return result.stdout


def one_json_object(stdout: str) -> dict[str, Any]:
    lines = stdout.strip().splitlines()
    assert len(lines) == 1, stdout
    data = json.loads(lines[0])
    assert isinstance(data, dict)
    return data


def plain_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


def flat(help_text: str) -> str:
    """Help text with rich's wrapping and panel borders folded away."""
    return re.sub(r"[\s│╭╮╰╯─]+", " ", help_text)


# ---------------------------------------------------------------- help and usage


@pytest.mark.subprocess
def test_help_explains_every_command(tmp_path: Path) -> None:
    top = cli("--help", cwd=tmp_path, binary=True)
    assert top.returncode == 0
    for command in COMMANDS:
        assert command in top.stdout
    words = {
        "validate": "problem",
        "run": "Prefect flow",
        "status": "high-water mark",
        "query": "NAME_rejected",
        "deploy": "deployment",
        "reset": "state",
    }
    helps = {}
    for command, word in words.items():
        sub = cli(command, "--help", cwd=tmp_path, binary=True)
        assert sub.returncode == 0, sub.stderr
        helps[command] = flat(sub.stdout)
        assert f"pumphouse {command}" in helps[command] and word in helps[command]
    assert "--json" in helps["run"] and "--full-refresh" in helps["run"]
    assert "--format" in helps["query"] and "exits 2" in helps["query"]
    assert "--yes" in helps["reset"] and "--pool" in helps["deploy"]
    # a wrong command line is a usage error: exit 2, two plain lines
    bare = cli(cwd=tmp_path, binary=True)
    assert bare.returncode == 2 and "Commands" in bare.stdout
    for bad in (("frobnicate",), ("run",), ("run", "pumps/x.yaml", "--no-such-flag")):
        done = cli(*bad, cwd=tmp_path, binary=True)
        assert done.returncode == 2, (bad, done.stderr)
        lines = plain_lines(done.stderr)
        assert 1 <= len(lines) <= 2 and lines[0].startswith("error: "), done.stderr
        assert "bug" not in done.stderr


# ---------------------------------------------------------------- validate


BAD_SPEC_EDITS = {
    "on_invalid: quarantine\n": "on_invalid: explode\n",
    "  batch_rows: 1000\n": "  batch_rows: 1000\n  batch_rowz: 10\n",
}


def _bad_spec() -> str:
    text = spec_text(name="bad")
    for old, new in BAD_SPEC_EDITS.items():
        assert old in text
        text = text.replace(old, new)
    return text + 'schedule:\n  cron: "every tuesday"\n'


def _line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def test_validate_refuses_two_pumps_of_one_name(project: Path) -> None:
    pumps = project / "pumps"
    (project / "in").mkdir()  # the source folder (validate refuses one that is not there)
    (pumps / "orders.yaml").write_text(spec_text())
    (pumps / "orders2.yaml").write_text("# the same pump again\n" + spec_text())
    done = command("validate", "pumps/orders.yaml", "pumps/orders2.yaml", cwd=project)
    assert done.returncode == 2
    assert done.stdout.strip() == "ok: pumps/orders.yaml (pump orders)"
    assert [line for line in plain_lines(done.stderr) if not line.startswith("note: ")] == [
        "pumps/orders2.yaml:2 name: pump 'orders' is also the name in pumps/orders.yaml; give "
        "each pump its own name (it names the pump's state, output view and deployment)"
    ]
    # the same file twice is one pump
    again = command("validate", "pumps/orders.yaml", "pumps/orders.yaml", cwd=project)
    assert again.returncode == 0, again.stderr


def test_validate_reports_every_problem_with_file_line_and_key(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pumps = project / "pumps"
    (project / "in").mkdir()
    (pumps / "orders.yaml").write_text(spec_text())
    bad = _bad_spec()
    (pumps / "bad.yaml").write_text(bad)
    hostile = spec_text(name="hostile").replace(
        "filter: \"status <> 'void'\"", "filter: \"read_csv('/etc/passwd') IS NOT NULL\""
    )
    assert "read_csv" in hostile
    (pumps / "hostile.yaml").write_text(hostile)

    assert in_process("validate", "pumps/orders.yaml").strip() == (
        "ok: pumps/orders.yaml (pump orders)"
    )

    done = command(
        "validate",
        "pumps/orders.yaml",
        "pumps/bad.yaml",
        "pumps/missing.yaml",
        "pumps/hostile.yaml",
        cwd=project,
    )
    assert done.returncode == 2
    assert done.stdout.strip() == "ok: pumps/orders.yaml (pump orders)"
    lines = plain_lines(done.stderr)
    notes = [line for line in lines if line.startswith("note: ")]  # tests/test_notes.py
    assert [n.split(":")[1] for n in notes] == [" pumps/orders.yaml"]
    by_file: dict[str, list[str]] = {}
    for line in lines:
        if line not in notes:
            by_file.setdefault(line.split(":", 1)[0], []).append(line)
    assert set(by_file) == {"pumps/bad.yaml", "pumps/missing.yaml", "pumps/hostile.yaml"}

    # FILE:LINE key.path: message, one problem a line, in the order of the file
    found = []
    for line in by_file["pumps/bad.yaml"]:
        m = re.fullmatch(r"pumps/bad\.yaml:(\d+) ([a-z_][a-z0-9_.\[\]]*): (.+)", line)
        assert m, line
        found.append((int(m[1]), m[2], m[3]))
    assert [(n, key) for n, key, _ in found] == [
        (_line_of(bad, "on_invalid:"), "on_invalid"),
        (_line_of(bad, "batch_rowz"), "limits.batch_rowz"),
        (_line_of(bad, "cron:"), "schedule.cron"),
    ]
    messages = [msg for _, _, msg in found]
    assert "'explode'" in messages[0] and "quarantine" in messages[0]
    assert "batch_rows" in messages[1]
    assert "5" in messages[2] and "*/15 * * * *" in messages[2]

    (missing,) = by_file["pumps/missing.yaml"]
    assert "no such spec file" in missing

    (guard,) = by_file["pumps/hostile.yaml"]
    assert guard.startswith(f"pumps/hostile.yaml:{_line_of(hostile, 'filter:')} transform.filter: ")
    assert "read_csv is not allowed" in guard


# ---------------------------------------------------------------- one pump through its life


@pytest.fixture(scope="module")
def pumped(tmp_path_factory: pytest.TempPathFactory, prefect_server: str) -> dict[str, Any]:
    """A project whose pump `orders` has run once through `pumphouse run --json`."""
    project = tmp_path_factory.mktemp("cli-project")
    (project / "pumps").mkdir()
    records = write_orders(project / "in", files=3, rows=100, seed=21)
    (project / "pumps" / "orders.yaml").write_text(spec_text(batch_rows=80))
    done = cli("run", "pumps/orders.yaml", "--json", cwd=project, binary=True)
    return {"project": project, "records": records, "run": done}


def test_run_json_prints_one_object_with_exact_counts(pumped: dict[str, Any]) -> None:
    done, records = pumped["run"], pumped["records"]
    assert done.returncode == 0, done.stderr
    summary = one_json_object(done.stdout)
    want = expected(records)
    assert summary["status"] == "ok"
    assert summary["rows_read"] == len(records) == 300
    assert summary["rows_rejected"] == sum(1 for r in records if not is_valid(r))
    assert summary["rows_written"] == len(want)
    assert isinstance(summary["seconds"], int | float) and summary["seconds"] >= 0
    assert isinstance(summary["cpu_seconds"], int | float) and summary["cpu_seconds"] > 0
    assert summary["error"] is None
    assert landed(str(pumped["project"] / "out" / "orders")) == want
    assert plain_lines(done.stderr) == []  # a quiet success: the summary is the output


def test_run_publishes_its_summary_as_a_prefect_artifact(pumped: dict[str, Any]) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    summary = one_json_object(pumped["run"].stdout)
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["pump-orders"]))
        )
    # other tests run pumps named orders on the same server: this run's artifact names its run id
    (mine,) = [a for a in artifacts if summary["run_id"] in str(a.data)]
    assert mine.type == "markdown"
    markdown = str(mine.data)
    assert f"| rows read | {summary['rows_read']} |" in markdown
    assert f"| rows rejected (invalid) | {summary['rows_rejected']} |" in markdown
    assert f"| rows written | {summary['rows_written']} |" in markdown
    assert f"| high-water mark after | {summary['hwm_after']} |" in markdown


@pytest.mark.usefixtures("prefect_server")
def test_a_run_s_warnings_are_in_its_summary_and_on_the_terminal(project: Path) -> None:
    """An http source stopped at max_pages leaves pages unread: the user who ran the command
    hears it, not just Prefect's log."""
    from tests._http_servers import PagedAPI, api_orders, api_spec, serve

    records = api_orders(30, seed=5)
    with serve(PagedAPI(records, "cursor", page_size=7)) as base:
        # A name of its own: `status` tests read the server's runs of pump `orders`.
        text = api_spec(base, 10, "  max_pages: 2\n").replace("name: orders", "name: warned")
        (project / "pumps" / "orders.yaml").write_text(text)
        as_json = cli("run", "pumps/orders.yaml", "--json", cwd=project)
        shutil.rmtree(project / ".pumphouse")
        shutil.rmtree(project / "out")
        as_table = cli("run", "pumps/orders.yaml", cwd=project)
    warning = (
        f"{base}/v1/orders: stopped after source.max_pages (2) pages; the pages after those "
        "are not read (raise source.max_pages to read them)"
    )
    summary = one_json_object(as_json.stdout)
    assert (as_json.returncode, summary["rows_read"]) == (0, 14)
    assert summary["warnings"] == [warning]
    assert as_table.returncode == 0, as_table.stderr
    assert plain_lines(as_table.stderr) == [f"warning: {warning}"]
    assert "rows read      │ 14 " in as_table.stdout
    assert _run_log("warned", summary["run_id"]).count(warning) == 1  # and in Prefect's log


def _run_log(pump: str, run_id: str) -> list[str]:
    """The messages of the Prefect flow run that published `pump`'s run `run_id`'s summary."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterKey,
        LogFilter,
        LogFilterFlowRunId,
    )

    with get_client(sync_client=True) as client:
        key = ArtifactFilterKey(any_=[f"pump-{pump}"])
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(key=key))
        (flow_run_id,) = {a.flow_run_id for a in artifacts if run_id in str(a.data)}
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
    return [log.message for log in logs]


@pytest.mark.usefixtures("prefect_server")
def test_sigterm_says_so_and_the_next_run_finishes_the_work(project: Path) -> None:
    """A run stopped by SIGTERM (a scheduler's stop, a container's end) says what happened,
    as Ctrl-C does, and ends as a process killed by it would; the next run finishes it."""
    from tests._http_servers import PagedAPI, Scripted, api_orders, api_spec, serve

    records = api_orders(30, seed=6)
    app = Scripted([None, ("slow", 4)], PagedAPI(records, "cursor", page_size=7))
    with serve(app) as base:
        text = api_spec(base, 10).replace("name: orders", "name: stopped")  # see above
        (project / "pumps" / "orders.yaml").write_text(text)
        out, errors = _terminated_on_its_second_page(project, app)
        assert "Traceback" not in out + errors
        stopped = one_json_object(out)  # --json: one object, whatever went wrong
        assert (stopped["status"], stopped["error"]) == ("failed", plain_lines(errors)[-1])
        assert plain_lines(errors)[-1] == (
            "terminated; run again to finish: an interrupted run is resumed with the same inputs"
        )
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.sorting import FlowRunSort

        with get_client(sync_client=True) as client:
            (last,) = client.read_flow_runs(sort=FlowRunSort.START_TIME_DESC, limit=1)
        assert last.state is not None and last.state.type.value == "CRASHED", last.state
        again = cli("run", "pumps/orders.yaml", "--json", cwd=project)
    summary = one_json_object(again.stdout)
    assert (again.returncode, summary["resumed"], summary["rows_read"]) == (0, True, 30)
    assert landed(str(project / "out" / "orders")) == expected(records)


def _terminated_on_its_second_page(project: Path, app: Any) -> tuple[str, str]:
    """`pumphouse run --json` sent SIGTERM while it waits on `app`'s second page; its output
    and errors, once it has ended as a process killed by SIGTERM (143 in a shell)."""
    proc = subprocess.Popen(
        [PUMPHOUSE, "run", "pumps/orders.yaml", "--json"],
        cwd=project,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while len(app.seen) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, errors = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGTERM, errors
    return out, errors


@pytest.mark.usefixtures("prefect_server")
@pytest.mark.reliability(
    "crash",
    "SIGTERM while a step is blocked reading a trickling server (timeout: 1h)",
    "the run ends at once, killed by SIGTERM (143 in a shell); the next run lands every row once",
)
def test_sigterm_ends_a_run_blocked_on_a_trickling_server(project: Path) -> None:
    """`docker stop` and Prefect's cancellation send SIGTERM: a step blocked in a read that
    the timeout would end only in an hour is stopped too, or the process would not exit."""
    from tests._http_servers import PagedAPI, Scripted, api_orders, api_spec, serve

    records = api_orders(30, seed=7)
    app = Scripted([None, ("trickle", 0.3)], PagedAPI(records, "cursor", page_size=7))
    with serve(app) as base:
        text = api_spec(base, 10, "  timeout: 1h\n").replace("name: orders", "name: trickled")
        (project / "pumps" / "orders.yaml").write_text(text)
        out, _ = _terminated_on_its_second_page(project, app)
        assert one_json_object(out)["status"] == "failed"
        again = cli("run", "pumps/orders.yaml", "--json", cwd=project)
    summary = one_json_object(again.stdout)
    assert (again.returncode, summary["rows_read"]) == (0, 30), again.stderr
    assert landed(str(project / "out" / "orders")) == expected(records)


def test_the_command_exits_after_prefect_has_its_last_log_line_and_state(
    pumped: dict[str, Any],
) -> None:
    # The summary, logged last, and the Completed state are on the server when it exits.
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterKey,
        LogFilter,
        LogFilterFlowRunId,
    )

    summary = one_json_object(pumped["run"].stdout)
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["pump-orders"]))
        )
        (artifact,) = [a for a in artifacts if summary["run_id"] in str(a.data)]
        run = client.read_flow_run(artifact.flow_run_id)
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id])))
    assert run.state is not None and run.state.is_completed(), run.state
    last = f"pump orders: ok in {summary['seconds']}s: {summary['rows_read']} read"
    assert any(log.message.startswith(last) for log in logs), [log.message for log in logs]


def test_status_reads_the_pumps_folder(prefect_server: str, tmp_path: Path) -> None:
    # Its own pump name: every xdist worker shares one Prefect server, where other tests'
    # pumps named `orders` record runs too, and status shows a pump's runs by its name.
    project = tmp_path / "status"
    (project / "pumps").mkdir(parents=True)
    write_orders(project / "in", files=3, rows=100, seed=21)
    text = spec_text(name="status_probe", out="./out/status_probe", batch_rows=80)
    (project / "pumps" / "probe.yaml").write_text(text)
    run = command("run", "pumps/probe.yaml", "--json", cwd=project)
    assert run.returncode == 0, run.stderr[-2000:]
    summary = one_json_object(run.stdout)
    done = command("status", cwd=project)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    block = lines[lines.index("status_probe") : lines.index("status_probe") + 5]
    assert block == [  # piped: plain lines, every value whole (the mark never cut short)
        "status_probe",
        f"  last run         {summary['started_at']}  ok",
        f"  rows             {summary['rows_read']} read, {summary['rows_written']} written, "
        f"{summary['rows_rejected']} rejected",
        f"  high-water mark  {summary['hwm_after']}",
        "  recent runs      ok",
    ]
    assert "open run" not in done.stdout  # none is open

    (tmp_path / "pumps").mkdir()
    nothing = command("status", cwd=tmp_path)
    assert nothing.returncode == 2
    (line,) = plain_lines(nothing.stderr)
    assert "no specs" in line and "pumphouse status pumps/NAME.yaml" in line


@pytest.mark.usefixtures("prefect_server")
def test_status_and_query_need_no_variable_only_a_source_or_sink_would_use(
    project: Path,
) -> None:
    """A token in headers or storage_options is for the run that talks to the store: an
    operator reads history and output without it. `query` reads the sink, so it needs the
    sink's, and says where it stands; `run` needs them all."""
    records = write_orders(project / "in", files=1, rows=40, seed=8)
    text = spec_text().replace(
        '  glob: "*.ndjson"\n',
        '  glob: "*.ndjson"\n  storage_options: {password: "${env:PUMP_SECRET}"}\n',
    )
    text = text.replace("  url: ./out/orders\n", "  url: ./out/orders\n"
                        '  storage_options: {password: "${env:SINK_SECRET}"}\n')  # fmt: skip
    text = text.replace("name: orders", "name: lazy")  # see test_a_run_s_warnings_...
    (project / "pumps" / "orders.yaml").write_text(text)
    line = text[: text.index("${env:SINK_SECRET}")].count("\n") + 1
    env = {k: v for k, v in os.environ.items() if k not in ("PUMP_SECRET", "SINK_SECRET")}
    both = {**env, "PUMP_SECRET": SECRET, "SINK_SECRET": SECRET}
    ran = cli("run", "pumps/orders.yaml", "--json", cwd=project, env=both)
    assert ran.returncode == 0, ran.stderr
    status = command("status", cwd=project, env=env)
    assert status.returncode == 0, status.stderr
    assert "invalid spec" not in status.stdout and "Z  ok\n" in status.stdout
    count = ("query", "pumps/orders.yaml", "SELECT count(*) FROM lazy", "--format", "csv")
    query = command(*count, cwd=project, env={**env, "SINK_SECRET": SECRET})
    assert query.returncode == 0, query.stderr
    assert query.stdout.splitlines()[1:] == [str(len(expected(records)))]
    no_sink = command(*count, cwd=project, env=env)
    assert no_sink.returncode == 2
    assert plain_lines(no_sink.stderr) == [
        f"pumps/orders.yaml:{line} sink.storage_options.password: environment variable "
        "SINK_SECRET is not set; export it, or remove ${env:SINK_SECRET}"
    ]
    refused = cli("run", "pumps/orders.yaml", cwd=project, env={**env, "SINK_SECRET": SECRET})
    assert refused.returncode == 2
    assert "environment variable PUMP_SECRET is not set" in refused.stderr
    assert SECRET not in "".join(d.stdout + d.stderr for d in (ran, status, query, refused))


def test_query_formats_views_and_errors(
    pumped: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    project, records = pumped["project"], pumped["records"]
    monkeypatch.chdir(project)
    want = Counter(row[2] for row in expected(records).values())
    invalid = sum(1 for r in records if not is_valid(r))
    by_status = "SELECT status, count(*) AS n FROM orders GROUP BY status ORDER BY status"

    as_json = json.loads(in_process("query", "pumps/orders.yaml", by_status, "--format", "json"))
    assert as_json == [{"status": s, "n": n} for s, n in sorted(want.items())]

    as_csv = list(csv.reader(io.StringIO(in_process("query", "pumps/orders.yaml", by_status, "--format", "csv"))))  # fmt: skip
    assert as_csv == [["status", "n"], *([s, str(n)] for s, n in sorted(want.items()))]

    table = in_process("query", "pumps/orders.yaml", by_status)
    for status, n in want.items():
        assert re.search(rf"\b{status}\b\W+{n}\b", table), table

    rejected = json.loads(
        in_process(
            "query",
            "pumps/orders.yaml",
            "SELECT count(*) AS n, count(_errors) AS e FROM orders_rejected",
            "--format",
            "json",
        )
    )
    assert rejected == [{"n": invalid, "e": invalid}]

    # a failing query is a usage error, said in one line naming the views
    bad_sql = command("query", "pumps/orders.yaml", "SELECT nope FROM orderz", cwd=project)
    assert bad_sql.returncode == 2 and bad_sql.stdout == ""
    (line,) = plain_lines(bad_sql.stderr)
    assert line.startswith("error: query failed: ") and "orderz" in line
    assert "orders, orders_rejected" in line

    bad_format = command("query", "pumps/orders.yaml", "SELECT 1", "--format", "xml", cwd=project)
    assert bad_format.returncode == 2 and bad_format.stdout == ""
    (line,) = plain_lines(bad_format.stderr)
    assert "'xml'" in line and "table, csv, json" in line


def test_ctrl_c_during_a_query_says_interrupted_not_a_bug(project: Path) -> None:
    """DuckDB turns a Ctrl-C that comes while it runs a query (a long `query`, a run's load
    step) into an error of its own ("Query interrupted"), the KeyboardInterrupt lost: the
    command still ends as Ctrl-C ends it (130, one plain line), not as a bug, and prints
    nothing on stdout (DuckDB's progress bar is off)."""
    (project / "pumps" / "orders.yaml").write_text(spec_text())
    endless = "SELECT sum(hash(i)) FROM range(1000000000000) t(i)"
    # DuckDB (2.0.1) misses a signal that comes during a query in 2 to 5 tries of 8, and
    # every later one too: such a try is ended and another one started.
    for _ in range(8):
        proc = subprocess.Popen(
            [PUMPHOUSE, "query", "pumps/orders.yaml", endless],
            cwd=project,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            time.sleep(3)
            proc.send_signal(signal.SIGINT)
            out, errors = proc.communicate(timeout=5)
            break
        except subprocess.TimeoutExpired:
            continue
        finally:
            proc.kill()  # never an endless query left running
            proc.communicate()
    assert (proc.returncode, out) == (130, ""), errors
    assert plain_lines(errors) == [
        "interrupted; run again to finish: an interrupted run is resumed with the same inputs"
    ]


def test_query_views_are_there_before_anything_landed_or_was_rejected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No run yet, nothing rejected, or an http sink: the views are there (empty where
    nothing landed), with the columns the spec gives them."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pumps").mkdir()
    demo = (REPO / "pumps" / "demo.yaml").read_text()
    (tmp_path / "pumps" / "demo.yaml").write_text(demo)
    empty = "SELECT count(*) AS n FROM demo UNION ALL SELECT count(*) FROM demo_rejected"
    assert json.loads(in_process("query", "pumps/demo.yaml", empty, "--format", "json")) == [
        {"n": 0},
        {"n": 0},
    ]
    described = "SELECT column_name, column_type FROM (DESCRIBE demo)"
    got = json.loads(in_process("query", "pumps/demo.yaml", described, "--format", "json"))
    assert [(c["column_name"], c["column_type"]) for c in got] == [
        ("order_id", "BIGINT"),
        ("customer_id", "VARCHAR"),
        ("amount", "DOUBLE"),
        ("status", "VARCHAR"),
        ("updated_at", "TIMESTAMP WITH TIME ZONE"),
    ]
    described = "SELECT list(column_name) AS c FROM (DESCRIBE demo_rejected)"
    got = json.loads(in_process("query", "pumps/demo.yaml", described, "--format", "json"))
    assert got == [
        {
            "c": [
                *("order_id", "customer", "amount", "status", "updated_at", "email"),
                *("_errors", "_source", "_row", "_raw"),
            ]
        }
    ]
    # A selected column the schema does not list (strict: false) is text.
    extra = demo.replace("select: [order_id, customer,", "select: [order_id, coupon, customer,")
    assert extra != demo
    (tmp_path / "pumps" / "demo.yaml").write_text(extra)
    described = "SELECT column_name, column_type FROM (DESCRIBE demo) LIMIT 2"
    got = json.loads(in_process("query", "pumps/demo.yaml", described, "--format", "json"))
    assert got == [
        {"column_name": "order_id", "column_type": "BIGINT"},
        {"column_name": "coupon", "column_type": "VARCHAR"},
    ]
    # An http sink: its rejected rows (under the pump's state folder) are there to query.
    hook = demo.replace("  type: parquet\n  url: ./warehouse/demo\n  mode: append\n", "")
    hook = hook.replace(
        "  partition_by: [status]\n", "  type: http\n  url: http://127.0.0.1:9/hook\n"
    )
    (tmp_path / "pumps" / "demo.yaml").write_text(hook)
    rejected = tmp_path / ".pumphouse" / "demo" / "rejected"
    rejected.mkdir(parents=True)
    duckdb.sql(
        "COPY (SELECT '-1' AS order_id, ['order_id: ge(0)'] AS _errors) "
        f"TO '{rejected}/part-r1-00001.parquet' (FORMAT parquet)"
    )
    asked = "SELECT order_id, _errors FROM demo_rejected"
    got = json.loads(in_process("query", "pumps/demo.yaml", asked, "--format", "json"))
    assert got == [{"order_id": "-1", "_errors": ["order_id: ge(0)"]}]


def test_reset_asks_then_forgets_and_full_refresh_rebuilds(
    pumped: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Last of the `pumped` tests: it changes the shared project."""
    project, records = pumped["project"], pumped["records"]
    first = one_json_object(pumped["run"].stdout)
    state = project / ".pumphouse" / "orders" / "state.json"
    assert state.exists()

    refused = command("reset", "pumps/orders.yaml", cwd=project)
    assert refused.returncode == 2
    (line,) = plain_lines(refused.stderr)
    assert "--yes" in line
    assert state.exists()

    monkeypatch.chdir(project)
    assert "reset: pump orders" in in_process("reset", "pumps/orders.yaml", "--yes")
    assert not state.exists()

    again = command("run", "pumps/orders.yaml", cwd=project)  # the summary for people
    assert again.returncode == 0, again.stderr
    assert re.search(rf"rows read\W+{first['rows_read']}\b", again.stdout), again.stdout
    assert re.search(rf"rows written\W+{first['rows_written']}\b", again.stdout), again.stdout
    assert "pump orders: ok" in again.stdout
    out = str(project / "out" / "orders")
    count = (
        f"SELECT count(*) FROM read_parquet('{out}/data/**/*.parquet', hive_partitioning = true)"
    )
    doubled = duckdb.sql(count).fetchall()[0][0]
    assert doubled == 2 * first["rows_written"]  # reset keeps the output: append adds again

    rebuilt = command("run", "pumps/orders.yaml", "--json", "--full-refresh", cwd=project)
    assert rebuilt.returncode == 0, rebuilt.stderr
    summary = one_json_object(rebuilt.stdout)
    assert summary["rows_read"] == first["rows_read"]
    assert summary["rows_written"] == first["rows_written"]
    assert landed(out) == expected(records)


def _heartbeats(api: str, spec_path: str) -> list[dict[str, Any]]:
    """The heartbeat events the server has for the flow run named `spec_path`."""
    import httpx

    runs = httpx.post(
        f"{api}/flow_runs/filter",
        json={"flow_runs": {"name": {"any_": [spec_path]}}},
        timeout=30,
    ).json()
    (run,) = runs
    events = httpx.post(
        f"{api}/events/filter",
        json={
            "filter": {
                "event": {"name": ["prefect.flow-run.heartbeat"]},
                "resource": {"id": [f"prefect.flow-run.{run['id']}"]},
            }
        },
        timeout=30,
    ).json()
    return list(events["events"])


def test_a_run_sends_flow_run_heartbeats_only_when_configured(
    project: Path, prefect_server_events: str
) -> None:
    # Prefect's default heartbeat would make every run wait for its thread's next second;
    # a frequency the user sets (here in the environment) is Prefect's as ever.
    write_orders(project / "in", files=1, rows=20, seed=25)
    for name in ("quiet", "beating"):
        (project / "pumps" / f"{name}.yaml").write_text(spec_text(name=name, out=f"./out/{name}"))
    quiet = cli("run", "pumps/quiet.yaml", "--json", cwd=project, binary=True)
    env = {**os.environ, "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "30"}
    beating = cli("run", "pumps/beating.yaml", "--json", cwd=project, env=env, binary=True)
    assert (quiet.returncode, beating.returncode) == (0, 0), quiet.stderr + beating.stderr
    deadline = time.monotonic() + 60  # the server stores events a moment after they arrive
    while (
        not _heartbeats(prefect_server_events, "pumps/beating.yaml") and time.monotonic() < deadline
    ):
        time.sleep(0.5)
    assert len(_heartbeats(prefect_server_events, "pumps/beating.yaml")) == 1  # at its start
    assert _heartbeats(prefect_server_events, "pumps/quiet.yaml") == []


def test_a_run_does_not_ask_prefect_for_its_default_result_storage(
    project: Path, prefect_server: str
) -> None:
    """Prefect keeps no result of a pump's run, so the flow names Prefect's local storage
    (where only a failed run's exception goes) rather than ask the server for its default
    one (three requests a run otherwise). Through a proxy that records each request;
    Prefect's events (a websocket) do not pass it, which a run survives."""
    from tests._moto import FaultProxy

    write_orders(project / "in", files=1, rows=20, seed=26)
    (project / "pumps" / "orders.yaml").write_text(spec_text(name="unstored"))
    with FaultProxy(prefect_server.removesuffix("/api")) as proxy:
        env = {**os.environ, "PREFECT_API_URL": f"{proxy.url}/api"}
        done = cli("run", "pumps/orders.yaml", "--json", cwd=project, env=env, binary=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert one_json_object(done.stdout)["rows_read"] == 20
    asked = [line.split()[1] for line in proxy.traffic.lines]
    assert any(path.endswith("/set_state") for path in asked)  # the run went through it
    assert [path for path in asked if "/admin/storage" in path] == []


def test_a_heartbeat_frequency_set_anywhere_is_kept_and_none_is_sent_otherwise() -> None:
    """The command's settings for a run: Prefect's default heartbeat (180 s) off, a
    frequency from any of Prefect's sources (environment, profile, prefect.toml) as set."""
    from prefect.context import SettingsContext, get_settings_context
    from prefect.settings import (
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
        Settings,
        get_current_settings,
        temporary_settings,
    )

    from flows.orchestration import heartbeat_only_if_configured

    fresh = Settings()  # as a command's process reads them: nothing sets a frequency here
    with SettingsContext(profile=get_settings_context().profile, settings=fresh):
        assert get_current_settings().flows.heartbeat_frequency == 180
        with heartbeat_only_if_configured():
            now = get_current_settings()
            assert now.flows.heartbeat_frequency is None
            assert now.api.url == fresh.api.url and now.home == fresh.home  # the rest as read
        assert get_current_settings().flows.heartbeat_frequency == 180
    with (
        temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: 45}),
        heartbeat_only_if_configured(),
    ):
        assert get_current_settings().flows.heartbeat_frequency == 45


def test_prefect_records_a_runs_parameters_as_given(pumped: dict[str, Any]) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    assert pumped["run"].returncode == 0, pumped["run"].stderr[-2000:]
    run_id = one_json_object(pumped["run"].stdout)["run_id"]
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(  # the newest first: other pumps are named orders too
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["pump-orders"])),
            sort=ArtifactSort.CREATED_DESC,
        )
        (artifact,) = [a for a in artifacts if run_id in str(a.data)]
        run = client.read_flow_run(artifact.flow_run_id)
    assert run.parameters == {
        "spec_path": "pumps/orders.yaml",
        "full_refresh": False,
        "executor": None,
        "cluster": None,
    }


@pytest.mark.subprocess
@pytest.mark.usefixtures("prefect_server")
def test_an_ndjson_to_parquet_run_imports_no_more_than_it_uses(project: Path) -> None:
    """What a repeat small run's seconds go to is mostly imports: a parquet run loads no
    Delta library, Prefect records the flow's plain parameters without FastAPI's encoder,
    reading ndjson needs no pyarrow.compute, and the contract comes from the cache (no
    pandera, ibis or pandas)."""
    write_orders(project / "in", files=1, rows=50, seed=24)
    (project / "pumps" / "orders.yaml").write_text(spec_text())
    env = {**os.environ, "PUMPHOUSE_CACHE_DIR": str(project / "cache")}
    assert cli("run", "pumps/orders.yaml", cwd=project, env=env).returncode == 0  # fills it
    for made in (".pumphouse", "out"):  # as the bench's repeat run: the same file read again
        shutil.rmtree(project / made)
    done = cli(
        "run", "pumps/orders.yaml", "--json", cwd=project, env=env, python=("-X", "importtime")
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert one_json_object(done.stdout)["status"] == "ok"
    modules = {
        line.rsplit("|", 1)[1].strip()
        for line in done.stderr.splitlines()
        if line.startswith("import time:")
    }
    packages = {m.split(".")[0] for m in modules}
    assert {"prefect", "duckdb", "pyarrow.parquet"} <= packages | modules  # read right
    assert not {"deltalake", "fastapi", "pandera", "ibis", "pandas"} & packages
    assert "pyarrow.compute" not in modules


def test_the_run_command_imports_without_the_cyclic_gc_and_turns_it_back_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.cli import _imports_without_gc, app
    from schemas.errors import UsageError

    (tmp_path / "pumps").mkdir()
    (tmp_path / "pumps" / "orders.yaml").write_text(spec_text())
    monkeypatch.chdir(tmp_path)
    before = gc.get_freeze_count()
    try:
        # the run command's imports, then a usage error (exit 2 in main()) before any flow
        result = CliRunner().invoke(app, ["run", "pumps/orders.yaml", "--executor", "nope"])
        assert isinstance(result.exception, UsageError), result.output
        assert gc.isenabled() and gc.get_freeze_count() > before
        gc.unfreeze()
        with _imports_without_gc():
            assert not gc.isenabled()
        assert gc.isenabled()
        with pytest.raises(ImportError), _imports_without_gc():
            raise ImportError("a failed import")
        assert gc.isenabled()
        gc.disable()
        with _imports_without_gc():
            pass
        assert not gc.isenabled()  # left as it was
    finally:
        gc.enable()
        gc.unfreeze()


# ---------------------------------------------------------------- failures


@pytest.mark.usefixtures("prefect_server")
@pytest.mark.reliability(
    "bad data",
    "a run that fails",
    "exit 1, one JSON object, a short error, no traceback",
)
def test_a_failed_run_exits_1_with_one_json_object_and_a_short_error(project: Path) -> None:
    write_orders(project / "in", files=1, rows=100, seed=22)
    (project / "in" / "orders-zz.ndjson").write_text("not json\n" * 50)
    text = spec_text(max_invalid_ratio=0.05).replace(
        '  glob: "*.ndjson"\n',
        '  glob: "*.ndjson"\n  storage_options: {password: "${env:PUMP_SECRET}"}\n',
    )
    (project / "pumps" / "orders.yaml").write_text(text)
    done = cli(
        "run",
        "pumps/orders.yaml",
        "--json",
        cwd=project,
        env={**os.environ, "PUMP_SECRET": SECRET},
    )
    assert done.returncode == 1
    summary = one_json_object(done.stdout)
    assert summary["status"] == "failed"
    assert "max_invalid_ratio" in summary["error"] and "nothing was loaded" in summary["error"]
    for key in ("rows_read", "rows_written", "rows_rejected", "seconds"):
        assert isinstance(summary[key], int | float)
    assert summary["rows_written"] == 0
    lines = plain_lines(done.stderr)
    assert 1 <= len(lines) <= 2 and lines[0].startswith("error: "), done.stderr
    assert "max_invalid_ratio" in lines[0]
    assert SECRET not in done.stdout + done.stderr
    assert not (project / "out" / "orders" / "data").exists()  # nothing loaded
    assert (project / "out" / "orders" / "rejected").exists()  # shown by query: orders_rejected


def test_a_failed_run_shows_what_it_did_and_json_is_one_object_even_for_a_spec_error(
    project: Path, prefect_server: str
) -> None:
    """`run` prints "a summary at the end" when its run fails too (then the error), and
    `--json` is one object on stdout whatever went wrong: a bad spec, a server down."""
    write_orders(project / "in", files=1, rows=50, seed=23)
    (project / "in" / "orders-zz.ndjson").write_text("not json\n" * 40)
    (project / "pumps" / "failing.yaml").write_text(
        spec_text(max_invalid_ratio=0.05).replace("name: orders", "name: failing")
    )
    plain = cli("run", "pumps/failing.yaml", cwd=project)
    assert plain.returncode == 1
    assert plain.stdout.startswith("pump failing: failed\n") and "rows read" in plain.stdout
    assert "│ 90 " in plain.stdout  # rows read: 50 orders and 40 lines that are no JSON
    (line,) = plain_lines(plain.stderr)
    assert line.startswith("error: 41 of 90 rows (45.6%) are invalid")  # one order is too

    (project / "pumps" / "bad.yaml").write_text("name: Bad\n")
    bad = command("run", "pumps/bad.yaml", "--json", cwd=project)
    assert bad.returncode == 2
    summary = one_json_object(bad.stdout)
    assert (summary["status"], summary["rows_read"], summary["pump"]) == ("failed", 0, "bad")
    assert "pumps/bad.yaml:1 name:" in summary["error"]

    down = {**os.environ, "PREFECT_API_URL": f"http://127.0.0.1:{free_port()}/api"}
    outputs = []
    for args in (("--json",), ()):
        done = cli("run", "pumps/failing.yaml", *args, cwd=project, env=down)
        assert done.returncode == 1
        (line,) = plain_lines(done.stderr)
        assert line.startswith("error: cannot reach the Prefect server at http://127.0.0.1:")
        assert "start it (`prefect server start`) or fix PREFECT_API_URL" in line
        outputs.append(done.stdout)
    assert one_json_object(outputs[0])["error"] == line.removeprefix("error: ")


@pytest.mark.reliability(
    "secrets",
    "a secret in the spec through ${env:}, on validate and failing runs",
    "zero hits in stdout, stderr and --json output",
)
def test_secrets_never_reach_the_output(project: Path, prefect_server: str) -> None:
    env = {**os.environ, "PUMP_SECRET": SECRET}
    # a spec error that involves the secret: exit 2 before any run, the reference shown as written
    broken = spec_text().replace("  batch_rows: 1000\n", '  batch_rows: "${env:PUMP_SECRET}"\n')
    (project / "pumps" / "broken.yaml").write_text(broken)
    refused = cli("run", "pumps/broken.yaml", "--json", cwd=project, env=env)
    assert refused.returncode == 2 and SECRET not in refused.stdout
    assert one_json_object(refused.stdout)["status"] == "failed"  # --json: one object, always
    (line,) = plain_lines(refused.stderr)
    assert line.startswith(f"pumps/broken.yaml:{_line_of(broken, 'batch_rows')} limits.batch_rows")
    assert "${env:PUMP_SECRET}" in line
    assert not (project / ".pumphouse").exists()  # no run started

    # a source that cannot be reached, with the secret in its storage options and URL
    s3 = spec_text(name="s3", src="s3://bucket/orders/", out="./out/s3").replace(
        '  glob: "*.ndjson"\n',
        '  glob: "*.ndjson"\n'
        "  storage_options:\n"
        '    key: "AKIA${env:PUMP_SECRET}"\n'
        '    secret: "${env:PUMP_SECRET}"\n'
        '    client_kwargs: {endpoint_url: "http://127.0.0.1:9/${env:PUMP_SECRET}", region_name: us-east-1}\n'
        "    config_kwargs: {retries: {max_attempts: 1}, connect_timeout: 2}\n",
    )
    (project / "pumps" / "s3.yaml").write_text(s3)
    failed = cli("run", "pumps/s3.yaml", "--json", cwd=project, env=env)
    assert failed.returncode == 1
    assert one_json_object(failed.stdout)["status"] == "failed"
    assert 1 <= len(plain_lines(failed.stderr)) <= 2, failed.stderr
    status = command("status", "pumps/s3.yaml", cwd=project, env=env)
    assert status.returncode == 0 and "failed" in status.stdout
    for done in (refused, failed, status):
        assert SECRET not in done.stdout + done.stderr


OVERLAPS = [  # (name, source.url, source.glob, sink.url, the start of the problem or "")
    (
        "inside",
        "lake/",
        "**/*.parquet",
        "./lake/out",
        "sink.url ./lake/out is inside source.url lake/",
    ),
    (
        "dotdot",
        "./lake",
        "*.ndjson",
        "lake/../lake/./out/",
        "sink.url lake/../lake/./out/ is inside",
    ),
    (
        "url_glob",
        "./lake/*.ndjson",
        "",
        "lake/out",
        "sink.url lake/out is inside source.url ./lake/*",
    ),
    (
        "symlink",
        "./link/",
        "**/*.ndjson",
        "./lake/out",
        "sink.url ./lake/out is inside source.url ./link/",
    ),
    (
        "source_in_sink",
        "./wh/orders/data",
        "*.ndjson",
        "./wh/orders",
        "source.url ./wh/orders/data (glob *.ndjson) is inside sink.url ./wh/orders",
    ),
    ("hidden", "./lake", "**/*.ndjson", "./lake/_out", ""),
    ("sibling", "./lake", "**/*.ndjson", "./lakehouse/out", ""),
    ("glob_subfolder", "./lake", "raw/*.ndjson", "./lake/out", ""),
]


@pytest.mark.subprocess  # PUMPHOUSE_STATE_DIR is read once a process
@pytest.mark.reliability(
    "hostile spec",
    "a sink inside the source folder (source lake/, glob **/*.parquet, sink lake/out), spelt with ./, .., a glob in the URL or through a symlink; a source inside the sink; the state folder inside the source",
    "validate (and run) refuses it, exit 2, naming both keys and the fix; a sink in a folder the listing skips ('_' or '.') or beside the source passes",
)
def test_validate_refuses_a_sink_or_state_inside_the_source(project: Path) -> None:
    for folder in ("lake", "wh/orders/data"):
        (project / folder).mkdir(parents=True)
    (project / "link").symlink_to(project / "lake")
    for name, src, glob, out, _ in OVERLAPS:
        text = spec_text(name=name, src=src, glob=glob, out=out)
        (project / "pumps" / f"{name}.yaml").write_text(text.replace('  glob: ""\n', ""))
    done = command("validate", *(f"pumps/{name}.yaml" for name, *_ in OVERLAPS), cwd=project)
    assert done.returncode == 2
    problems = plain_lines(done.stderr)
    for name, *_, want in OVERLAPS:
        mine = [p for p in problems if p.startswith(f"pumps/{name}.yaml:")]
        if not want:
            assert f"ok: pumps/{name}.yaml" in done.stdout and not mine, mine
            continue
        assert len(mine) == 1 and mine[0].split(" sink.url: ", 1)[1].startswith(want), mine
        assert "every run would read" in mine[0]
        assert ("Put the sink outside" in mine[0]) != ("Point source.url at" in mine[0])

    # the state folder (rejected rows of an http sink, staging) inside what the source reads
    state = cli(
        "validate",
        "pumps/sibling.yaml",
        cwd=project,
        env={**os.environ, "PUMPHOUSE_STATE_DIR": "lake/state"},
    )
    assert state.returncode == 2
    assert (
        plain_lines(state.stderr)[0]
        .split(" source.url: ", 1)[1]
        .startswith(
            "the pump's state folder lake/state/sibling (staging, rejected rows) is inside source.url ./lake"
        )
    )
    hidden = cli(
        "validate",
        "pumps/sibling.yaml",
        cwd=project,
        env={**os.environ, "PUMPHOUSE_STATE_DIR": "lake/.state"},
    )
    assert hidden.returncode == 0, hidden.stderr


def test_validate_finds_a_secret_block_that_is_missing(project: Path, prefect_server: str) -> None:
    from prefect.blocks.system import Secret

    Secret(value="block-s3cr3t-271828").save("pump-cli-token", overwrite=True)
    (project / "in").mkdir()
    spec = spec_text().replace(
        '  glob: "*.ndjson"\n',
        '  glob: "*.ndjson"\n  storage_options: {token: "${secret:pump-cli-tokn}"}\n',
    )
    (project / "pumps" / "orders.yaml").write_text(spec)
    done = command("validate", "pumps/orders.yaml", cwd=project)
    assert done.returncode == 2 and done.stdout == ""
    assert plain_lines(done.stderr) == [
        f"pumps/orders.yaml:{_line_of(spec, 'storage_options')} source.storage_options.token: "
        "Prefect Secret block 'pump-cli-tokn' could not be loaded; create it with `prefect "
        "block create secret` or in the UI, then run again"
    ]
    (project / "pumps" / "orders.yaml").write_text(spec.replace("-tokn}", "-token}"))
    done = command("validate", "pumps/orders.yaml", cwd=project)
    assert done.returncode == 0, done.stderr
    assert "block-s3cr3t-271828" not in done.stdout + done.stderr


# ---------------------------------------------------------------- Prefect's embedded default


@pytest.mark.slow
@pytest.mark.xdist_group("first_local_server")  # see tests/test_local_server.py
def test_run_works_on_prefects_embedded_default(
    project: Path, tmp_path_factory: Any, migrated_database: Path
) -> None:
    records = write_orders(project / "in", files=2, rows=60, seed=23)
    (project / "pumps" / "orders.yaml").write_text(spec_text())
    home = tmp_path_factory.mktemp("prefect-home-embedded")
    seed(home, migrated_database)  # a first start from an empty home: test_local_server
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["PREFECT_HOME"] = str(home)
    try:
        done = cli("run", "pumps/orders.yaml", "--json", cwd=project, env=env, binary=True)
    finally:  # the local server the run started outlives it (to be reused): stop it here
        stop_local(home)
    assert done.returncode == 0, done.stderr
    summary = one_json_object(done.stdout)
    assert summary["status"] == "ok"
    assert summary["rows_read"] == len(records)
    assert summary["rows_written"] == len(expected(records)) > 0
    assert landed(str(project / "out" / "orders")) == expected(records)
    with contextlib.closing(sqlite3.connect(home / DATABASE)) as db:  # recorded in this home
        assert db.execute("SELECT state_type FROM flow_run").fetchall() == [("COMPLETED",)]
