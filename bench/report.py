"""The bench's table (printed and in bench/results.md) and its chart (bench/results.png)."""

from __future__ import annotations

import os
import platform
import statistics
import time
from pathlib import Path

from bench.measure import Run

HERE = Path(__file__).resolve().parent
ORDER = [
    "floor",
    "floor + checks",
    "pumphouse (flow)",
    "pumphouse (command)",
    "pandas+pandera",
    "dlt",
]


def _rows(
    results: dict[str, list[Run]], n: int
) -> list[tuple[str, int, float, float, float, float]]:
    """(method, runs, median seconds, rows/s, peak RSS MiB, median CPU seconds) per method, in
    ORDER (rows/s: rows read per second). The flow's are its own seconds and CPU seconds."""
    out = []
    for name in ORDER:
        base = "pumphouse" if name.startswith("pumphouse") else name
        runs = [r for r in results.get(base, []) if r.ok]
        if not runs:
            continue
        flow = name == "pumphouse (flow)"
        t = statistics.median(r.extra["flow"] if flow else r.wall for r in runs)
        cpu = statistics.median(r.extra["flow_cpu"] if flow else r.cpu for r in runs)
        out.append((name, len(runs), t, n / t, max(r.rss for r in runs) / 2**20, cpu))
    return out


def write(
    results: dict[str, list[Run]],
    big: dict[str, Run] | None,
    overhead: dict[str, list[Run]] | None,
    n: int,
    clean: dict[str, list[Run]] | None = None,
    demo: list[Run] | None = None,
) -> None:
    rows = _rows(results, n)
    t = {name: sec for name, _, sec, _, _, _ in rows}
    c = {name: cpu for name, _, _, _, _, cpu in rows}
    lines = [
        "# Benchmark: orders-1m",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {os.cpu_count()} cores "
        f"({platform.machine()}, Python {platform.python_version()}); runs alternate between "
        "methods, times are medians. The machine is shared, so expect noise; rerun `make bench` "
        "on a quiet machine for the real numbers.",
        "",
        f"Job: {n:,} NDJSON order rows in 4 files (5% later versions of earlier orders, 0.1% "
        "invalid) -> validate (5 columns, 4 checks) -> filter -> dedup latest per order_id -> "
        "Parquet (zstd). `pumphouse (flow)` is the flow's own run time with a Prefect server "
        "already up; `pumphouse (command)` is the whole `pumphouse run` command. CPU s: user + "
        "system seconds of the whole process (median), for the flow the flow's own (its "
        "`cpu_seconds`); the floor and dlt do not validate, so they write rows that the others "
        "reject. `floor + checks` is hand-written DuckDB doing the contract's checks too "
        "(bench/floor_checked.py): the least the validated job costs. `x checks` and `x checks "
        "CPU`: median seconds and CPU seconds over those of `floor + checks`.",
        "",
        "| method | runs | median s | rows/s | peak RSS MiB | CPU s | rows written | x floor "
        "| x checks | x checks CPU |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    floor, checks, checks_cpu = t.get("floor"), t.get("floor + checks"), c.get("floor + checks")
    for name, k, sec, rate, rss, cpu in rows:
        runs = results["pumphouse" if name.startswith("pumphouse") else name]
        written = runs[0].extra.get("rows_written")
        out = f"{written:,.0f}" if written is not None else "-"
        lines.append(
            f"| {name} | {k} | {sec:.2f} | {rate:,.0f} | {rss:,.0f} | {cpu:.2f} | {out} "
            f"| {_ratio(sec, floor)} | {_ratio(sec, checks)} | {_ratio(cpu, checks_cpu)} |"
        )
    flow = t.get("pumphouse (flow)")
    lines += ["", "Targets:", ""]
    if flow and checks and checks_cpu:
        r, rc = flow / checks, c["pumphouse (flow)"] / checks_cpu
        lines.append(_target("pumphouse flow <= 1.25x floor + checks", r, r <= 1.25, "x"))
        lines.append(_target("pumphouse flow CPU <= 1.5x floor + checks CPU", rc, rc <= 1.5, "x"))
    if flow and floor:
        lines.append(
            _target("pumphouse flow <= 1.5x floor", flow / floor, flow / floor <= 1.5, "x")
        )
    if flow and "pandas+pandera" in t:
        r = t["pandas+pandera"] / flow
        lines.append(_target("pumphouse >= 5x faster than pandas+pandera", r, r >= 5, "x faster"))
    if flow and "dlt" in t:
        r = t["dlt"] / flow
        lines.append(_target("pumphouse >= 100x faster than dlt", r, r >= 100, "x faster"))
    pump_rss = next((rss for name, _, _, _, rss, _ in rows if name == "pumphouse (command)"), None)
    if pump_rss:
        lines.append(_target("peak RSS <= 1 GiB", pump_rss, pump_rss <= 1024, " MiB"))
    if clean:
        lines += _clean(clean)
    if big:
        lines += _big(big, flow)
    if overhead:
        lines += _overhead(overhead)
    if demo:
        lines += _demo(demo)
    text = "\n".join(lines) + "\n\n![bench](results.png)\n"
    (HERE / "results.md").write_text(text)
    print(text)
    _chart(rows)


def _ratio(value: float, base: float | None) -> str:
    return f"{value / base:.2f}" if base else "-"


def _target(what: str, value: float, ok: bool, unit: str) -> str:
    return f"- {what}: {value:,.2f}{unit} - {'met' if ok else 'NOT met'}"


def _clean(clean: dict[str, list[Run]]) -> list[str]:
    """The clean-data job: the flow next to DuckDB's own typed read with the checks."""
    out = ["", "## orders-1m-clean: the same job, no malformed line", ""]
    out.append(
        "The same orders with no truncated line and no order_id that is not a number (the "
        "checks still reject negative amounts and unknown statuses). `clean floor` "
        "(bench/floor_clean.py): DuckDB's typed `read_ndjson`, the checks as SQL, the rejected "
        "rows written beside without their line text, filter, dedup, zstd Parquet."
    )
    out += ["", "| method | runs | median s | CPU s | rows written | rows rejected |"]
    out.append("|---|---:|---:|---:|---:|---:|")
    med: dict[str, tuple[float, float]] = {}
    for name, runs in clean.items():
        ok = [r for r in runs if r.ok]
        if not ok:
            out.append(f"| {name} | 0 | FAILED | | | |")
            continue
        flow = name == "pumphouse"
        sec = statistics.median(r.extra["flow"] if flow else r.wall for r in ok)
        cpu = statistics.median(r.extra["flow_cpu"] if flow else r.cpu for r in ok)
        med[name] = (sec, cpu)
        label = "pumphouse (flow)" if flow else name
        x = ok[0].extra
        out.append(
            f"| {label} | {len(ok)} | {sec:.2f} | {cpu:.2f} | {x.get('rows_written', 0):,.0f} "
            f"| {x.get('rows_rejected', 0):,.0f} |"
        )
    if "pumphouse" in med and "clean floor" in med:
        (fs, fc), (bs, bc) = med["pumphouse"], med["clean floor"]
        out.append("")
        out.append(_target("pumphouse flow <= 1.5x clean floor", fs / bs, fs / bs <= 1.5, "x"))
        out.append(f"- pumphouse flow CPU / clean floor CPU: {fc / bc:.2f}x")
    return out


def _big(big: dict[str, Run], flow_1m: float | None) -> list[str]:
    pump = big["pumphouse"]
    out = ["", "## orders-10m (10.5M rows, `limits.memory: 1GiB`), one run", ""]
    out.append("| method | s | peak RSS MiB |")
    out.append("|---|---:|---:|")
    for name, run in big.items():
        sec = run.extra.get("flow", run.wall)
        label = f"{name} (flow)" if "flow" in run.extra else name
        out.append(
            f"| {label} | {sec:.2f} | {run.rss / 2**20:,.0f} |" + ("" if run.ok else " FAILED")
        )
    if pump.ok and flow_1m:
        ratio = pump.extra["flow"] / flow_1m
        out.append("")
        out.append(
            _target(
                "10M completes with peak RSS <= 2 GiB",
                pump.rss / 2**20,
                pump.rss <= 2 * 2**30,
                " MiB",
            )
        )
        out.append(_target("10M time <= 12x the 1M time", ratio, ratio <= 12, "x"))
    return out


def _overhead(overhead: dict[str, list[Run]]) -> list[str]:
    out = ["", "## Fixed overhead: a 1,000-row pump, no Prefect server configured", ""]
    out.append("| run | runs | median command s | median flow s |")
    out.append("|---|---:|---:|---:|")
    for name, runs in overhead.items():
        ok = [r for r in runs if r.ok]
        if ok:
            wall = statistics.median(r.wall for r in ok)
            flow = statistics.median(r.extra["flow"] for r in ok)
            out.append(f"| {name} | {len(ok)} | {wall:.2f} | {flow:.2f} |")
    repeat = [r.wall for r in overhead.get("repeat", []) if r.ok]
    if repeat:
        med = statistics.median(repeat)
        out.append("")
        out.append(_target("a repeat run under 3 s", med, med < 3, " s"))
    return out


def _demo(demo: list[Run]) -> list[str]:
    out = ["", "## The first `make demo`: a fresh Prefect home, an empty contract cache", ""]
    out.append(
        "Its three commands, once. The first `run` starts the local Prefect server, which "
        "makes its database; on a terminal its progress bar says `first run: starting "
        "Prefect's server` with the seconds spent."
    )
    out += ["", "| command | s | CPU s |", "|---|---:|---:|"]
    for r in demo:
        out.append(f"| {r.method} | {r.wall:.2f} | {r.cpu:.2f} |" + ("" if r.ok else " FAILED"))
    out.append(f"| all three | {sum(r.wall for r in demo):.2f} | {sum(r.cpu for r in demo):.2f} |")
    return out


def _chart(rows: list[tuple[str, int, float, float, float, float]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r[0] for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    a.barh(names, [r[2] for r in rows], color="#4c72b0")
    a.set_xscale("log")
    a.set_xlim(right=max(r[2] for r in rows) * 6)  # room for the last label
    a.set_xlabel("median seconds (log scale)")
    a.invert_yaxis()
    for i, r in enumerate(rows):
        a.text(r[2], i, f" {r[2]:.2f}s", va="center")
    b.barh(names, [r[4] for r in rows], color="#dd8452")
    b.set_xlabel("peak RSS (MiB)")
    b.invert_yaxis()
    b.set_yticklabels([])
    fig.suptitle("orders-1m: 1.05M NDJSON rows -> validate, filter, dedup -> Parquet")
    fig.tight_layout()
    fig.savefig(HERE / "results.png", dpi=110)
