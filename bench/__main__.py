"""`make bench`: the orders job five ways, alternating, medians; the same job on clean data (no
malformed line) next to its own floor; the 10M-row variant; the fixed
overhead of a small pump with no server configured; the webhook receiver under load. Prints
the table, writes bench/results.md and bench/results.png (bench/results-receiver.md for the
receiver).

    python -m bench [--rounds N] [--dlt-rounds N]
        [--skip dlt,pandas,clean,big,overhead,demo,receiver]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from bench import jobs, receiver, report
from bench.gen import generate
from bench.measure import Run
from bench.measure import run as measure
from tests._prefect_server import prefect_server

ROWS = 1_050_000


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench")
    ap.add_argument("--rounds", type=int, default=5, help="runs of each method (alternating)")
    ap.add_argument("--dlt-rounds", type=int, default=1, help="runs of dlt (~2 minutes each)")
    ap.add_argument(
        "--skip",
        default="",
        help="comma-separated: dlt, pandas, clean, big, overhead, demo, receiver",
    )
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    data = generate(jobs.REPO / "bench" / "data" / "orders-1m", ROWS, 4)
    results: dict[str, list[Run]] = {}
    with prefect_server(jobs.PROJECT) as api:
        env = {"PREFECT_API_URL": api}
        project = jobs.pump_project("pump-1m", data[0].parent)
        methods: list[tuple[str, Callable[[], Run]]] = [
            ("floor", lambda: jobs.floor(data[0].parent)),
            ("floor + checks", lambda: jobs.floor_checked(data[0].parent)),
            ("pumphouse", lambda: jobs.pumphouse(project, env)),
        ]
        if "pandas" not in skip:
            methods.append(("pandas+pandera", lambda: jobs.pandas(data[0].parent)))
        jobs.pumphouse(project, env)  # warm-up: page cache, .pyc files, the server's first flow
        for r in range(args.rounds):
            for name, fn in methods if r % 2 == 0 else list(reversed(methods)):
                _record(results, name, fn())
            if "dlt" not in skip and r < args.dlt_rounds:
                _record(results, "dlt", jobs.dlt(data[0].parent))
        clean = None if "clean" in skip else _clean(env, args.rounds)
        big = None if "big" in skip else _big(env)
    overhead = None if "overhead" in skip else _overhead()
    demo = None if "demo" in skip else first_demo()
    report.write(results, big, overhead, ROWS, clean, demo)
    if "receiver" not in skip:  # last: the Prefect server is down, the disk quiet
        receiver.write(receiver.run(), clients=16)


def _record(results: dict[str, list[Run]], name: str, run: Run) -> None:
    flow = f" (flow {run.extra['flow']:.2f}s)" if "flow" in run.extra else ""
    state = "ok" if run.ok else "FAILED"
    print(
        f"  {name}: {run.wall:.2f}s{flow}, cpu {run.cpu:.2f}s, {run.rss / 2**20:.0f} MiB, {state}",
        file=sys.stderr,
    )
    if not run.ok:
        print(run.stderr[-2000:], file=sys.stderr)
    results.setdefault(name, []).append(run)


def _clean(env: dict[str, str], rounds: int) -> dict[str, list[Run]]:
    """orders-1m-clean (no malformed line): its own floor and pumphouse, alternating."""
    data = generate(jobs.REPO / "bench" / "data" / "orders-1m-clean", ROWS, 4, clean=True)
    project = jobs.pump_project("pump-1m-clean", data[0].parent)
    methods: list[tuple[str, Callable[[], Run]]] = [
        ("clean floor", lambda: jobs.floor_clean(data[0].parent)),
        ("pumphouse", lambda: jobs.pumphouse(project, env)),
    ]
    results: dict[str, list[Run]] = {}
    for r in range(rounds):
        for name, fn in methods if r % 2 == 0 else list(reversed(methods)):
            run = fn()
            _record({}, f"clean {name}", run)
            results.setdefault(name, []).append(run)
    return results


def _big(env: dict[str, str]) -> dict[str, Run]:
    """orders-10m with limits.memory 1GiB: pumphouse once (and the floor for scale)."""
    files = generate(jobs.REPO / "bench" / "data" / "orders-10m", ROWS * 10, 4)
    project = jobs.pump_project("pump-10m", files[0].parent, "limits: {memory: 1GiB}\n")
    out = {"floor": jobs.floor(files[0].parent), "pumphouse": jobs.pumphouse(project, env)}
    for name, run in out.items():
        _record({}, f"10m {name}", run)
    return out


def _overhead() -> dict[str, list[Run]]:
    """A 1,000-row pump through the CLI with no Prefect server configured: the first run,
    then repeat runs (fresh state and output each time, so every run does the full job)."""
    files = generate(jobs.REPO / "bench" / "data" / "orders-1k", 1_000, 1)
    project = jobs.pump_project("pump-1k", files[0].parent)
    home = tempfile.mkdtemp(prefix="bench-prefect-home-")
    env = {"PREFECT_HOME": home}
    os.environ.pop("PREFECT_API_URL", None)
    runs: dict[str, list[Run]] = {"first": [], "repeat": []}
    try:
        runs["first"].append(jobs.pumphouse(project, env, "first run"))
        for _ in range(5):
            runs["repeat"].append(jobs.pumphouse(project, env, "repeat run"))
    finally:  # the local server the first run started
        prefect = str(jobs.PROJECT / "bin" / "prefect")
        subprocess.run([prefect, "server", "stop"], env={**os.environ, **env}, capture_output=True)
        shutil.rmtree(home, ignore_errors=True)
    for name, rs in runs.items():
        for run in rs:
            _record({}, f"1k {name}", run)
    print(
        f"  1k repeat median: {statistics.median(r.wall for r in runs['repeat']):.2f}s",
        file=sys.stderr,
    )
    return runs


def first_demo() -> list[Run]:
    """`make demo`'s three commands as on a fresh clone: a Prefect home no server ran from
    (the first run starts one and makes its database), an empty contract cache."""
    work = tempfile.mkdtemp(prefix="bench-demo-")
    shutil.copytree(jobs.REPO / "pumps", f"{work}/pumps")
    env = {"PREFECT_HOME": f"{work}/prefect-home", "PUMPHOUSE_CACHE_DIR": f"{work}/cache"}
    os.environ.pop("PREFECT_API_URL", None)
    pump = str(jobs.PROJECT / "bin" / "pumphouse")
    query = "SELECT status, count(*) FROM demo GROUP BY status"
    commands = [
        ("validate", [pump, "validate", "pumps/demo.yaml"]),
        ("run", [pump, "run", "pumps/demo.yaml"]),
        ("query", [pump, "query", "pumps/demo.yaml", query]),
    ]
    runs = []
    try:
        for name, argv in commands:
            runs.append(measure(name, argv, Path(work), env))
            _record({}, f"demo {name}", runs[-1])
    finally:
        prefect = str(jobs.PROJECT / "bin" / "prefect")
        subprocess.run([prefect, "server", "stop"], env={**os.environ, **env}, capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    return runs


if __name__ == "__main__":
    main()
