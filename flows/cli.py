"""`pumphouse`: init, validate, run, status, query, compact, reset (CONTRACT §4). Exit 0 ok, 1 run failed, 2 usage or spec."""

from __future__ import annotations

import contextlib
import csv
import gc
import json
import logging
import os
import shlex
import shutil
import signal
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from schemas.errors import BusyError, PumpError, SpecError, Stopped, TransientError, UsageError
from schemas.secrets import redact, redact_all

app = typer.Typer(
    name="pumphouse",
    help="A declarative data pump: a YAML spec in, validated and deduplicated rows out, run as a Prefect flow.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def _print_version(asked: bool) -> None:
    """`--version`: the installed package's version, from its metadata."""
    if asked:
        from importlib.metadata import version

        print(f"pumphouse {version('pumphouse')}")
        raise typer.Exit(0)


@app.callback()
def _options(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """A declarative data pump: a YAML spec in, validated and deduplicated rows out, run as a
    Prefect flow."""


def _quiet_prefect(argv: list[str]) -> None:
    """Before Prefect is imported: its console stays silent (-v shows it), the embedded
    server sends no telemetry (the network is often closed; it would print a traceback), and
    the client neither (DO_NOT_TRACK, as Prefect documents it), so a first use on a terminal
    prints no telemetry notice. A value the user set is kept.

    The command reports a failed run itself in one or two lines; Prefect's console would add
    the run's ERROR lines and a traceback. Only the console handler is quieted: the loggers
    keep their level, so the flow's logs still reach the Prefect API in full.
    """
    if "-v" not in argv and "--verbose" not in argv:
        os.environ["PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL"] = "CRITICAL"
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")


def entry() -> None:
    """The `pumphouse` command: main(), then Python's own exit, or after SIGTERM, the
    signal's: Prefect's queued records are shipped (see run) and steps still running are
    not waited for, as a stop should stop."""
    try:
        main()
    except SystemExit as e:
        if e.code != TERMINATED:
            raise
        with contextlib.suppress(Exception):  # stdout gone: nothing left to tell
            sys.stdout.flush()
            sys.stderr.flush()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.raise_signal(signal.SIGTERM)
        raise  # only where SIGTERM is blocked


def main() -> None:
    """Entry point: no bare tracebacks, exit codes as the contract says."""
    _quiet_prefect(sys.argv[1:])
    with _noting_stops():
        _main()


def _main() -> None:
    try:
        # Outside standalone mode typer returns a command's `raise typer.Exit(code)` as a value.
        code = app(standalone_mode=False)
    except (typer.Exit, SystemExit) as e:
        code = getattr(e, "exit_code", None)
        sys.exit(code if code is not None else getattr(e, "code", 0))
    except typer.Abort:
        err.print("aborted")
        sys.exit(1)
    except KeyboardInterrupt:
        code = 130
    except Terminated:
        code = TERMINATED
    except typer.TyperException as e:  # typer's (vendored click) usage errors
        _print_usage_error(e)
        sys.exit(e.exit_code)
    except Exception as e:
        stop = _stop_behind(e)
        if stop is not e:
            code = 130 if isinstance(stop, KeyboardInterrupt) else TERMINATED
        elif isinstance(e, PumpError):
            _print_error(e)
            sys.exit(e.exit_code)
        else:
            _unexpected(e)
    if code == 130:  # Ctrl-C: typer turns it into Exit(130) when it reaches typer first
        _say(f"interrupted; {RESUMED}")
    elif code == TERMINATED:
        _say(f"terminated; {RESUMED}")
    sys.exit(code if isinstance(code, int) else 0)


def _unexpected(e: Exception) -> None:
    """Anything unexpected: the machine's (disk, memory, a path), or a bug."""
    known = _resource_error(e)
    if known is not None:
        _print_error(known)
        sys.exit(known.exit_code)
    if os.environ.get("PUMPHOUSE_DEBUG"):
        traceback.print_exception(e)
    _say(f"error: {type(e).__name__}: {e}")
    _say("this looks like a bug in pumphouse; rerun with PUMPHOUSE_DEBUG=1 for details")
    sys.exit(1)


RESUMED = "run again to finish: an interrupted run is resumed with the same inputs"
TERMINATED = 128 + signal.SIGTERM  # the exit code of a process SIGTERM ended


class Terminated(BaseException):
    """SIGTERM, raised in the main thread as Ctrl-C raises KeyboardInterrupt: the command ends
    through its usual exit (Prefect's last log lines shipped, the progress bar stopped)."""


def _ship_prefects_records(timeout: float = 5) -> None:
    """Send what Prefect has queued (the crashed run's last log lines and events) now: a
    process ended by SIGTERM runs no exit hooks. Logs go through the logging configuration:
    shutting it down flushes each handler, Prefect's API handler included."""
    from prefect.events.worker import EventsWorker

    logging.shutdown()
    with contextlib.suppress(Exception):
        EventsWorker.drain_all(timeout=timeout)


def _terminated(signum: int, frame: Any) -> None:
    """During a flow Prefect's own handler comes first: it records the run as crashed, then
    hands the signal back here."""
    _STOPS.append(Terminated(signum))
    raise _STOPS[-1]


def _interrupted(signum: int, frame: Any) -> None:
    """Ctrl-C, raised as Python raises it, and noted (see _stop_behind)."""
    _STOPS.append(KeyboardInterrupt())
    raise _STOPS[-1]


_STOPS: list[BaseException] = []  # the stop signals this command received, as exceptions


@contextlib.contextmanager
def _noting_stops() -> Iterator[None]:
    """While open (in the main thread), Ctrl-C is noted as it is raised: see _stop_behind."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _STOPS.clear()
    before = signal.signal(signal.SIGINT, _interrupted)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)


def _stop_behind(e: BaseException) -> BaseException:
    """The stop signal that ended the command in `e`'s place, or `e`: a signal that comes
    while DuckDB runs a query becomes DuckDB's error ("Query interrupted"), and a run then
    fails with whatever error that leaves (Stopped, when the run knew it for a signal)."""
    if isinstance(e, KeyboardInterrupt | Terminated):
        return e
    if _STOPS:
        return _STOPS[-1]
    if isinstance(e, Stopped):  # SIGTERM: Prefect's handler takes it during a flow
        return Terminated(signal.SIGTERM)
    return e


def _print_usage_error(e: typer.TyperException) -> None:
    """A bad command line in two plain lines: what is wrong, where the help is."""
    ctx = getattr(e, "ctx", None)
    command = getattr(ctx, "command_path", None) or "pumphouse"
    if type(e).__name__ == "NoArgsIsHelpError":
        return  # the help has been printed already
    _say(f"error: {e.format_message()}")
    _say(f"see `{command} --help`")


def _print_error(e: PumpError) -> None:
    if isinstance(e, SpecError):  # as `validate` prints them: FILE:LINE key.path: message
        for p in e.problems:
            _say(p)
    else:
        _say(f"error: {e}")


def _say(text: str) -> None:
    """One plain line on stderr, secrets masked."""
    err.print(redact(text), markup=False, highlight=False)


def _load(spec: str, files: bool = False) -> Any:
    """The spec with every preflight check a run makes (imports Prefect and pandera: seconds);
    `files`: and validate's look at local CSV files."""
    from tasks.validate.preflight import load, validate

    return validate(spec) if files else load(spec)


def _load_or_say(path: Path, files: bool = False) -> Any | None:
    """The spec with the run's preflight, or None once its problems are printed."""
    try:
        return _load(str(path), files)
    except SpecError as e:
        for p in e.problems:
            _say(p)
        return None


def _use_running_server() -> str | None:
    """With no server configured, the local one `run` started, when it runs: `status` and
    `deploy` see the runs and deployments there. Its URL, or None."""
    from flows.local_server import use_running_server

    return use_running_server()


def _server_for_secrets(path: Path) -> None:
    """A spec that names a Prefect Secret block is checked against the server runs use:
    with none configured, the local one (started once, reused), not a temporary one."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return  # the loader says what is wrong with the file
    if "${secret:" in text:
        from flows.local_server import use_local_server

        use_local_server(_say)


def _name_taken(path: Path, name: str, other: Path) -> list[str]:
    """The problem of a second spec for pump `name`, at its `name` key (file:line name: ...)."""
    from schemas._problems import spec_error
    from schemas._yaml import read_yaml

    _, lines = read_yaml(path.read_text(encoding="utf-8-sig"), str(path))
    message = (
        f"pump {name!r} is also the name in {other}; give each pump its own name (it names "
        "the pump's state, output view and deployment)"
    )
    return list(spec_error(str(path), lines, [(("name",), message)]).problems)


def _missing_folder(path: Path, spec: Any) -> list[str]:
    """The problem of a source folder on this disk that is not there, at `source.url`: a run
    would read nothing (and warn), which is seldom what a spec is written for."""
    from schemas._problems import spec_error
    from schemas._yaml import read_yaml
    from tasks.sources.files.listing import missing_local_folder

    folder = missing_local_folder(spec.source)
    if folder is None:
        return []
    _, lines = read_yaml(path.read_text(encoding="utf-8-sig"), str(path))
    message = (
        f"{spec.source.url!r}: no folder {str(Path(folder).absolute())!r}; create it, or fix "
        "source.url (relative paths start at the folder pumphouse runs in, not the spec's)"
    )
    return list(spec_error(str(path), lines, [(("source", "url"), message)]).problems)


def _spec_paths(specs: list[Path] | None, command: str) -> list[Path]:
    """The spec files given, else pumps/*.yaml; none at all is a usage error."""
    paths = specs or sorted(Path("pumps").glob("*.yaml"))
    if not paths:
        raise UsageError(
            f"no specs given and none in pumps/; pass spec files: pumphouse {command} pumps/NAME.yaml"
        )
    return paths


def _read_spec(spec: str, *, reads_sink: bool = False) -> Any:
    """The spec, parsed and validated without the run's preflight: enough for status, query and
    reset, which need the pump's name and sink, and start in a second instead of several.
    Env variables of headers, params and storage_options (resolved at use) need not be set,
    but for the sink's storage_options when the command `reads_sink` (query, compact)."""
    from schemas.loader import RESOLVED_AT_USE, load_spec

    unused = RESOLVED_AT_USE - {("sink", "storage_options")} if reads_sink else RESOLVED_AT_USE
    return load_spec(spec, unset_ok=unused)


@app.command()
def validate(
    specs: Annotated[list[Path], typer.Argument(help="Spec files, e.g. pumps/*.yaml")],
) -> None:
    """Check specs; print each problem; exit 2 if any. Pump names must differ."""
    bad = 0
    named: dict[str, Path] = {}
    for path in specs:
        _server_for_secrets(path)
        spec = _load_or_say(path, files=True)
        if spec is None:
            bad += 1
        elif spec.name in named and named[spec.name].resolve() != path.resolve():
            bad += 1
            for problem in _name_taken(path, spec.name, named[spec.name]):
                _say(problem)
        elif problems := _missing_folder(path, spec):
            bad += 1
            for problem in problems:
                _say(problem)
        else:
            named[spec.name] = path
            out.print(f"ok: {path} (pump {spec.name})", markup=False, highlight=False)
            from schemas.notes import located_notes

            for note in located_notes(str(path), spec):
                _say(f"note: {note}")
    if bad:
        raise typer.Exit(2)


@app.command()
def run(
    spec: Annotated[Path, typer.Argument(help="The spec file, e.g. pumps/orders.yaml")],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the summary as one JSON object.")
    ] = False,
    full_refresh: Annotated[
        bool,
        typer.Option(
            "--full-refresh", help="Delete the output and state first, then read everything."
        ),
    ] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show Prefect's own log lines on the console.")
    ] = False,
    executor: Annotated[
        str | None,
        typer.Option(
            "--executor",
            help="Where files are staged: local (this process) or dask (the workers of "
            "--cluster). Default: PUMPHOUSE_EXECUTOR, else local.",
        ),
    ] = None,
    cluster: Annotated[
        str | None,
        typer.Option(
            "--cluster",
            help="The Dask scheduler's address, tcp://HOST:8786. Default: PUMPHOUSE_DASK_CLUSTER.",
        ),
    ] = None,
) -> None:
    """Run the pump once as a Prefect flow and print a summary."""
    signal.signal(signal.SIGTERM, _terminated)
    started_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    try:
        from schemas.loader import load_spec

        load_spec(str(spec))  # most spec errors exit 2 within a second
        with _imports_without_gc():
            from flows.executor import choose
            from flows.pump import pump
            from tasks.run import progress

        choose(executor, cluster)  # a wrong --executor or a missing --cluster exits 2 here
        _server_for_secrets(spec)
        loaded = _load(
            str(spec)
        )  # the rest of the preflight: spec errors exit 2 before the flow starts
    except PumpError as e:
        if as_json:  # --json promises one object, whatever went wrong
            _print_json(_failed_summary(spec, e, started_at))
        raise

    state_folder = _new_state_folder(spec, loaded.name)
    show_bar = not as_json and err.is_terminal
    stop = _progress_bar(progress) if show_bar else (lambda: None)
    try:
        from flows.local_server import use_local_server
        from flows.orchestration import heartbeat_only_if_configured

        use_local_server(_server_starting)  # no server configured: one, started once, reused
        progress.emit("prefect_up", 1)
        with heartbeat_only_if_configured():
            summary = pump(
                spec_path=str(spec), full_refresh=full_refresh, executor=executor, cluster=cluster
            )
    except (Exception, Terminated, KeyboardInterrupt) as caught:
        stop()
        ended = _stop_behind(caught)
        if isinstance(ended, Terminated):
            _ship_prefects_records()
        failure = _unreachable(ended) or _resource_error(ended) or ended
        failed = _failed_summary(spec, failure, started_at)
        if state_folder is not None and not isinstance(failure, BusyError):  # not another run's
            _drop_if_bare(state_folder, loaded.name)
        if as_json:
            _print_json(failed)
        elif isinstance(failure, PumpError) and failed.get("run_id"):
            _print_summary(failed)  # "a summary at the end": what the failed run did
        if ended is not caught:
            raise ended from None  # the stop signal behind the error: main() reports it
        if not isinstance(failure, PumpError):
            raise  # main() reports it
        _print_error(failure)
        raise typer.Exit(failure.exit_code) from None
    finally:
        stop()
    if as_json:
        _print_json(summary)
    else:
        _print_summary(summary)


def _new_state_folder(spec: Path, name: str) -> Path | None:
    """This machine's state folder (`.pumphouse`) when this run is about to make it in a
    folder the spec is not in (likely the wrong one: the spec's relative paths name nothing
    here), else None. In the spec's own project a failed first run keeps its history."""
    from tasks.state.store import StateStore

    folder = StateStore(name).root.parent
    if folder.exists() or spec.resolve().is_relative_to(Path.cwd().resolve()):
        return None
    return folder


BARE = {"lock", "runs.jsonl", "staging"}  # what a run that failed before it planned leaves


def _drop_if_bare(folder: Path, name: str) -> None:
    """Remove the state folder a failed run made when it holds nothing but the pump's lock
    and the failure's line of history: no state, no open run, no rejected rows. A folder
    other pumps' runs put things in stays."""
    pump = folder / name
    with contextlib.suppress(OSError):
        if set(os.listdir(pump)) <= BARE and not any((pump / "staging").glob("*")):
            shutil.rmtree(pump)
            folder.rmdir()  # only if empty


def _print_json(summary: dict[str, Any]) -> None:
    """The summary as `--json` promises it: one object on one line, secrets masked."""
    print(json.dumps(redact_all(summary), default=str))


@contextlib.contextmanager
def _imports_without_gc() -> Iterator[None]:
    """Python's cyclic garbage collector off while Prefect and the engines are imported: the
    objects they create are long-lived, and the full collections run as they pile up cost a
    command ~0.15-0.25 s. They are then frozen (left out of later collections), and the
    collector is as it was for the run."""
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was_on:
            gc.enable()


def _resource_error(e: BaseException) -> PumpError | None:
    from tasks.io.failures import resource_error

    return resource_error(e)


def _unreachable(e: BaseException) -> PumpError | None:
    """Prefect's own error for a configured server that does not answer, as ours."""
    text = str(e)
    if isinstance(e, RuntimeError) and text.startswith("Failed to reach API at "):
        url = text.removeprefix("Failed to reach API at ").strip()
        return TransientError(
            f"cannot reach the Prefect server at {url}; start it (`prefect server start`) or "
            "fix PREFECT_API_URL (unset, pumphouse starts a local one), then run again"
        )
    return None


def _failed_summary(spec: Path, e: BaseException, started_at: str) -> dict[str, Any]:
    """The failed run's own record when it left one, else zeros; `error` says what went wrong."""
    from tasks.state.store import StateStore

    name, last = spec.stem, []
    try:
        name = _read_spec(str(spec)).name
        last = StateStore(name).runs(1)
    except PumpError:
        pass
    if last and str(last[-1].get("started_at") or "") < started_at:
        last = []  # an earlier run's record, not this one's
    base = {
        "pump": name,
        "status": "failed",
        "rows_read": 0,
        "rows_written": 0,
        "rows_rejected": 0,
        "seconds": 0.0,
    }
    if last and last[-1].get("status") == "failed":
        base.update(last[-1])
    if isinstance(e, Terminated):
        base["error"] = f"terminated; {RESUMED}"
    elif isinstance(e, KeyboardInterrupt):
        base["error"] = f"interrupted; {RESUMED}"
    elif isinstance(e, SpecError) and e.problems:  # each problem, as validate prints them
        base["error"] = "; ".join(e.problems)
    else:
        base["error"] = str(e)
    return base


def _progress_bar(progress: Any) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("files · {task.fields[rows]:,} rows"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    )
    # Until the flow reports its plan, Prefect is starting (its temporary server can take seconds).
    task_id = bar.add_task("starting Prefect", total=None, rows=0)

    def on_event(what: str, amount: int) -> None:
        if what == "prefect_starting":  # a first run: Prefect's server makes its database
            bar.update(task_id, description="first run: starting Prefect's server")
        elif what == "prefect_up":
            bar.update(task_id, description="starting the flow run")
        elif what == "total_files":
            bar.update(task_id, total=amount, description="pumping")
        elif what == "files":
            bar.advance(task_id, amount)
        elif what == "rows":
            bar.update(task_id, rows=bar.tasks[0].fields["rows"] + amount)

    bar.start()
    unsubscribe = progress.listen(on_event)

    def stop() -> None:
        unsubscribe()
        bar.stop()

    return stop


def _server_starting(text: str) -> None:
    """Say that the local Prefect server starts; the progress bar names the wait."""
    from tasks.run import progress

    _say(text)
    progress.emit("prefect_starting", 1)


def _print_table(table: Table) -> None:
    """On a terminal, fit the screen; piped or redirected, never cut a value short."""
    if out.is_terminal:
        out.print(table)
    else:  # a Console caps every print at its own width, 80 columns when not on a terminal
        Console(file=out.file, width=100_000, soft_wrap=True).print(table)


def _print_summary(s: dict[str, Any]) -> None:
    table = Table(title=f"pump {s['pump']}: {s['status']}", show_header=False, title_justify="left")
    for key in (
        "run_id", "files", "bytes", "rows_read", "rows_rejected", "rows_filtered", "rows_old",
        "rows_duplicate", "rows_written", "hwm_before", "hwm_after", "output", "seconds",
    ):  # fmt: skip
        value = s.get(key)
        table.add_row(key.replace("_", " "), "-" if value is None else redact(str(value)))
        if key == "hwm_after" and s.get("inputs_left"):
            table.add_row("inputs left for the next run", str(s["inputs_left"]))
    _print_table(table)
    for problem in [] if s.get("error") else s.get("rejected_sample") or []:
        _say(f"rejected: {problem}")
    for warning in s.get("warnings") or []:
        _say(f"warning: {warning}")


@app.command()
def status(
    specs: Annotated[
        list[Path] | None, typer.Argument(help="Spec files; default pumps/*.yaml")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print a JSON list, one object per pump.")
    ] = False,
) -> None:
    """Per pump: last run, its outcome, rows, high-water mark; the open run (or the inputs a
    run stopped at limits.max_rows_per_run left for the next); recent runs and the next one.

    Runs come from the Prefect server configured or the local one `run` started, else local state.
    """
    from flows.history import read_histories
    from flows.status import PumpStatus, pump_status

    paths = _spec_paths(specs, "status")
    _use_running_server()
    read: list[tuple[Path, Any]] = []
    for path in paths:
        try:
            read.append((path, _read_spec(str(path))))
        except SpecError as e:
            read.append((path, e))
    names = [s.name for _, s in read if not isinstance(s, SpecError)]
    histories, source, warning = read_histories(names) if names else ({}, "", None)
    if warning:
        _say(f"warning: {warning}")
    shown = [
        PumpStatus(str(path), problem=redact(spec.problems[0]))
        if isinstance(spec, SpecError)
        else pump_status(str(path), spec, histories[spec.name])
        for path, spec in read
    ]
    if as_json:
        print(json.dumps([s.to_json() for s in shown]))
    else:
        lines = [line for s in shown for line in s.lines()]
        out.print("\n".join([*lines, source] if source else lines), markup=False, highlight=False)
    if any(s.problem is not None for s in shown):
        raise typer.Exit(2)  # the others are shown; `pumphouse validate` tells what is wrong


@app.command()
def query(
    spec: Annotated[Path, typer.Argument(help="The spec file")],
    sql: Annotated[str, typer.Argument(help="SQL over the views NAME (output) and NAME_rejected")],
    fmt: Annotated[str, typer.Option("--format", help="table | csv | json")] = "table",
) -> None:
    """Run SQL with the output as a view named after the pump and rejected rows as NAME_rejected.

    SQL that fails (a syntax error, an unknown view or column) exits 2 with DuckDB's message and the views there are.
    """
    if fmt not in ("table", "csv", "json"):
        raise UsageError(f"--format {fmt!r} is not a format; valid: table, csv, json")
    from tasks.sinks.query import run_query

    columns, rows = run_query(_read_spec(str(spec), reads_sink=True), sql)
    if fmt == "json":
        print(json.dumps([dict(zip(columns, r, strict=True)) for r in rows], default=str))
    elif fmt == "csv":
        w = csv.writer(sys.stdout)
        w.writerow(columns)
        w.writerows(rows)
    else:
        table = Table(*columns)
        for r in rows:
            table.add_row(*("NULL" if v is None else str(v) for v in r))
        _print_table(table)


@app.command()
def compact(
    spec: Annotated[Path, typer.Argument(help="The spec file (a delta sink)")],
    retention_hours: Annotated[
        int | None,
        typer.Option(
            "--retention-hours",
            min=0,
            help="Keep files older versions need for this long (default: the table's, 7 days).",
        ),
    ] = None,
) -> None:
    """Compact a delta sink: small files into large ones, then vacuum files no recent version needs.

    Takes the pump's lock, so it never runs during a load. Vacuum deletes only files the table's
    log removed; rejected rows under URL/rejected/ stay.
    """
    from tasks.sinks.delta import compact as compact_table
    from tasks.state.store import StateStore

    loaded = _read_spec(str(spec), reads_sink=True)
    if loaded.sink.type != "delta":
        raise UsageError(f"compact works on delta sinks; {spec} has sink.type {loaded.sink.type}")
    with StateStore(loaded.name).lock():
        done = compact_table(loaded, retention_hours)
    out.print(
        f"compacted: pump {loaded.name}, {done.files_before} -> {done.files_after} files, "
        f"{done.files_deleted} old files deleted, table version {done.version}",
        markup=False,
        highlight=False,
    )


@app.command()
def reset(
    spec: Annotated[Path, typer.Argument(help="The spec file")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
    run_only: Annotated[
        bool,
        typer.Option(
            "--run",
            help="Abandon only the open run: remove what it wrote to the sink, drop its "
            "manifest and staging; the mark and files read stay, so the next run reads its "
            "files again.",
        ),
    ] = False,
) -> None:
    """Forget the pump's state (high-water mark, files read, open run). The output, rejected
    rows and run history stay."""
    from tasks.state.store import StateStore

    loaded = _read_spec(str(spec), reads_sink=run_only)
    store = StateStore(loaded.name)
    if run_only:
        _abandon_run(loaded, store, yes)
        return
    if not yes:
        if not sys.stdin.isatty():
            raise UsageError("reset asks for confirmation; pass --yes to reset without asking")
        typer.confirm(f"Forget all state of pump {loaded.name!r} ({store.location})?", abort=True)
    with store.lock():
        store.reset()
    out.print(f"reset: pump {loaded.name} will read everything again on its next run", markup=False)


def _abandon_run(loaded: Any, store: Any, yes: bool) -> None:
    """`reset --run`: the open run's output, manifest and staging go; committed state stays."""
    from tasks.sinks import registry as sinks

    if store.manifest() is None:
        out.print(f"reset --run: pump {loaded.name} has no open run; nothing to do", markup=False)
        return
    if not yes:
        if not sys.stdin.isatty():
            raise UsageError(
                "reset --run asks for confirmation; pass --yes to reset without asking"
            )
        typer.confirm(f"Abandon the open run of pump {loaded.name!r}?", abort=True)
    with store.lock():
        manifest = store.manifest()  # the run may have finished while we asked
        if manifest is None:
            out.print(
                f"reset --run: pump {loaded.name} has no open run; nothing to do", markup=False
            )
            return
        sinks.abandon_run(loaded, manifest.run_id, store.location)
        store.drop_manifest()
    out.print(
        f"reset --run: run {manifest.run_id} of pump {loaded.name} abandoned and what it wrote "
        "removed; the next run reads its files again",
        markup=False,
    )


@app.command()
def serve(
    specs: Annotated[list[Path], typer.Argument(help="Webhook-source spec files")],
    host: Annotated[str, typer.Option("--host", help="The address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="The port.")] = 8080,
) -> None:
    """Receive partners' webhooks for webhook-source pumps: POST SOURCE.PATH (default
    /ingest/NAME) answers 202 once the body is in the pump's buffer; GET /healthz."""
    from flows.serve import serve as serve_specs

    loaded: list[tuple[str, Any]] = []
    for path in specs:
        _server_for_secrets(path)
        spec = _load_or_say(path)
        if spec is not None:
            loaded.append((str(path), spec))
    if len(loaded) < len(specs):
        raise typer.Exit(2)
    serve_specs(loaded, host, port, _say)


@app.command()
def init(
    source: Annotated[str, typer.Argument(help="A folder, file, glob, bucket URL or JSON API URL")],
    name: Annotated[str | None, typer.Option("--name", help="The pump's name")] = None,
    sample_rows: Annotated[
        int, typer.Option("--sample-rows", min=1, help="Rows (or records) to infer from")
    ] = 10_000,
    force: Annotated[bool, typer.Option("--force", help="Write over pumps/NAME.yaml")] = False,
    header: Annotated[
        list[str] | None,
        typer.Option("--header", help="An API's header, 'Name: value'; secrets become ${env:}"),
    ] = None,
) -> None:
    """Write pumps/NAME.yaml from the first rows of SOURCE: formats, types, NULLs, a key and
    a cursor, each proposal commented. Then: pumphouse validate pumps/NAME.yaml"""
    from flows.init import summary, write_spec

    path, found = write_spec(source, name, sample_rows, force, header or [])
    _print_table(summary(found, path, plain=not out.is_terminal))
    for var in found.env:
        _say(f"set {var} before validate and run: the spec names it, never its value")
    out.print(f"wrote {path}; next: pumphouse validate {path}", markup=False, highlight=False)


@app.command()
def deploy(
    specs: Annotated[
        list[Path] | None, typer.Argument(help="Spec files; default pumps/*.yaml")
    ] = None,
    pool: Annotated[
        str, typer.Option("--pool", help="Prefect work pool; created (type process) if missing")
    ] = "pumphouse",
    workdir: Annotated[
        str | None,
        typer.Option(
            "--workdir",
            help="The project folder as the worker sees it; default this folder. "
            "For Docker or Kubernetes pools: the project folder inside the image.",
        ),
    ] = None,
    image: Annotated[
        str | None, typer.Option("--image", help="Docker image (Docker and Kubernetes pools)")
    ] = None,
) -> None:
    """Create or update one Prefect deployment per spec, named after the pump, with the spec's
    schedule; a process worker started in the project folder runs it.

    Needs a Prefect server (PREFECT_API_URL, or the local one `pumphouse run` started, while
    it is up). Then: prefect worker start --pool pumphouse
    """
    from flows.deploy import deploy as deploy_specs
    from tasks.run.deployment import spec_parameter

    if not pool.strip():
        raise UsageError("--pool needs a work pool's name, e.g. --pool pumphouse")
    paths = _spec_paths(specs, "deploy")
    loaded: list[tuple[Any, str]] = []
    bad = 0
    for path in paths:
        spec = _load_or_say(path)
        if spec is None:
            bad += 1
        else:
            loaded.append((spec, spec_parameter(path, Path.cwd())))
    if bad:
        _say(f"nothing deployed: {bad} spec(s) have problems; fix them and deploy again")
        raise typer.Exit(2)
    named: dict[str, str] = {}
    for spec, spec_path in loaded:
        if spec.name in named:
            raise UsageError(
                f"{named[spec.name]} and {spec_path} both name pump {spec.name!r}; "
                "a pump name is unique (it names the deployment, state and output)"
            )
        named[spec.name] = spec_path
    local = _use_running_server()
    if local:
        _say(
            f"note: deploying to the local Prefect server at {local} that `pumphouse run` "
            "started; it stops after PUMPHOUSE_PREFECT_SERVER_IDLE seconds without a run, so "
            "for schedules start a lasting one (`prefect server start`) and set PREFECT_API_URL"
        )
    report = deploy_specs(loaded, pool, workdir, image)
    if report.pool_created:
        out.print(f"created work pool {report.pool} (type process)", markup=False)
    for d in report.deployments:
        when = f"schedule {d.schedule}" if d.schedule else "no schedule: runs when triggered"
        out.print(f"deployed {d.name} on pool {report.pool}, {when}", markup=False)
    out.print(
        f"runs in {report.workdir}; start a worker there: "
        f"prefect worker start --pool {shlex.quote(report.pool)}",
        markup=False,
        highlight=False,
    )


if __name__ == "__main__":
    main()
