"""The webhook receiver under load: `pumphouse serve` on this machine, 16 clients each
posting 1 KB JSON bodies (with an Idempotency-Key) one after another over keep-alive
connections, for a fixed time. Sustained accepted bodies/s and p50/p99 latency, with the
buffer on disk (every body fsynced before 202) and on tmpfs (/dev/shm, where fsync costs
nothing: what the same work costs without fsync; no setting of the receiver is changed).
Writes bench/results-receiver.md.

    python -m bench.receiver [--seconds N] [--clients N]

The clients are a few lines of asyncio speaking HTTP/1.1 (not httpx), so that as little of
the 2 cores as possible goes to the load itself; they run in this process, the receiver in
its own.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from bench.jobs import PROJECT, REPO
from tests._prefect_server import free_port

TOKEN = "bench-token-0123456789abcdef"
BODY_BYTES = 1024
SPEC = """\
name: bench
source: {{type: webhook, token: "${{env:BENCH_TOKEN}}", buffer: {buffer}}}
sink: {{type: parquet, url: ./out}}
limits: {{requests_per_second: 100000}}
"""
LENGTH = re.compile(rb"content-length:\s*(\d+)", re.IGNORECASE)


@dataclass
class Load:
    where: str  # the buffer's kind: disk or tmpfs
    seconds: float
    accepted: int
    other: int  # answers that are not 202
    latencies: list[float]  # seconds, of the measured requests
    server_cpu: float  # the receiver's user + system seconds during the measured time
    stored: int  # records found in the buffer afterwards
    files: int  # files they were in (bodies that arrived together share one)
    fsync_ms: float  # median of a 1 KB file's fsync then its folder's, on this buffer's disk

    @property
    def rate(self) -> float:
        return self.accepted / self.seconds

    def quantile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def _body(client: int, n: int) -> bytes:
    head = f'{{"client":{client},"n":{n},"pad":"'.encode()
    return head + b"x" * (BODY_BYTES - len(head) - 2) + b'"}'


async def _client(
    i: int, port: int, warm_until: float, stop_at: float, load: list[tuple[int, float]]
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    n = 0
    while (began := time.perf_counter()) < stop_at:
        body = _body(i, n)
        writer.write(
            (
                "POST /ingest/bench HTTP/1.1\r\nHost: bench\r\n"
                f"Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n"
                f"Idempotency-Key: {i}-{n}\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode()
            + body
        )
        head = await reader.readuntil(b"\r\n\r\n")
        length = LENGTH.search(head)
        await reader.readexactly(int(length[1]) if length else 0)
        if began >= warm_until:
            load.append((int(head[9:12]), time.perf_counter() - began))
        n += 1
    writer.close()


async def _drive(port: int, clients: int, warmup: float, seconds: float) -> list[tuple[int, float]]:
    load: list[tuple[int, float]] = []
    now = time.perf_counter()
    await asyncio.gather(
        *(_client(i, port, now + warmup, now + warmup + seconds, load) for i in range(clients))
    )
    return load


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(where: str, root: Path, clients: int, seconds: float, warmup: float = 2.0) -> Load:
    """One receiver with its buffer under `root`, loaded for `warmup` + `seconds`."""
    project = Path(tempfile.mkdtemp(prefix="bench-receiver-"))
    buffer = Path(tempfile.mkdtemp(prefix="bench-inbox-", dir=root)).absolute()
    (project / "bench.yaml").write_text(SPEC.format(buffer=buffer))
    port = free_port()
    log = (project / "serve.log").open("wb")
    server = subprocess.Popen(
        [str(PROJECT / "bin" / "pumphouse"), "serve", "bench.yaml", "--port", str(port)],
        cwd=project,
        env={**os.environ, "BENCH_TOKEN": TOKEN, "PUMPHOUSE_MAX_REQUESTS_PER_SECOND": "100000"},
        stdout=log,
        stderr=log,
    )
    try:
        while True:
            if server.poll() is not None:
                raise SystemExit((project / "serve.log").read_text())
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5)
                break
            except OSError:
                time.sleep(0.2)
        cpu_at = [0.0]

        async def timed() -> list[tuple[int, float]]:
            task = asyncio.ensure_future(_drive(port, clients, warmup, seconds))
            await asyncio.sleep(warmup)
            cpu_at[0] = _cpu(server.pid)
            return await task

        load = asyncio.run(timed())
        cpu = _cpu(server.pid) - cpu_at[0]
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait()
        log.close()
    files = list(buffer.glob("**/*.ndjson"))
    stored = sum(f.read_bytes().count(b"\n") for f in files)
    fsync_ms = _fsync_ms(buffer)
    shutil.rmtree(buffer, ignore_errors=True)
    shutil.rmtree(project, ignore_errors=True)
    accepted = sum(1 for status, _ in load if status == 202)
    return Load(
        where,
        seconds,
        accepted,
        len(load) - accepted,
        [t for status, t in load if status == 202],
        cpu,
        stored,
        len(files),
        fsync_ms,
    )


def _fsync_ms(folder: Path, times: int = 20) -> float:
    """What the disk under `folder` takes for the two fsyncs every group waits for."""
    took = []
    for i in range(times):
        began = time.perf_counter()
        fd = os.open(folder / f"probe-{i}", os.O_WRONLY | os.O_CREAT, 0o644)
        os.write(fd, b"x" * BODY_BYTES)
        os.fsync(fd)
        os.close(fd)
        fd = os.open(folder, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
        took.append(time.perf_counter() - began)
    return sorted(took)[times // 2] * 1e3


def run(clients: int = 16, seconds: float = 10.0) -> list[Load]:
    """Disk, then tmpfs (fsync free), then disk again; printed as they finish."""
    disk = REPO / "bench" / "work"
    disk.mkdir(parents=True, exist_ok=True)
    loads = []
    for where, root in (("disk", disk), ("tmpfs", Path("/dev/shm")), ("disk", disk)):
        load = measure(where, root, clients, seconds)
        print(
            f"  receiver, {where}: {load.rate:,.0f} bodies/s, p50 {load.quantile(0.5) * 1e3:.1f} ms, "
            f"p99 {load.quantile(0.99) * 1e3:.1f} ms, {load.other} not 202, "
            f"receiver CPU {load.server_cpu / load.seconds:.0%} of a core",
            file=sys.stderr,
        )
        loads.append(load)
    return loads


def write(
    loads: list[Load], clients: int, path: Path = REPO / "bench" / "results-receiver.md"
) -> None:
    with open("/proc/loadavg") as f:
        load_avg = f.read().split()[0]
    lines = [
        "# Benchmark: the webhook receiver (`pumphouse serve`)",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {os.cpu_count()} cores "
        f"({platform.machine()}, Python {platform.python_version()}); load average "
        f"{load_avg} when it ended (the machine is shared: other work ran at the same time).",
        "",
        f"{clients} clients, each posting 1 KB JSON bodies with an Idempotency-Key one after "
        "another over a keep-alive connection, to one receiver (uvicorn, one process). "
        "`disk`: the buffer on ext4, each body in a file fsynced (file and folder) with its "
        "key committed before 202. `tmpfs`: the buffer on /dev/shm, where fsync costs "
        "nothing: the same work without the wait for the disk. Stored: records found in the "
        "buffer afterwards (warm-up included), and the files they were in. fsync: the median "
        "time of a 1 KB file's fsync then its folder's on that disk, measured after the load "
        "(a group waits for about two: its file's, beside its key commit, then its folder's).",
        "",
        "| buffer | seconds | accepted bodies/s | p50 ms | p99 ms | not 202 | receiver CPU "
        "| stored | bodies a file | fsync ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for load in loads:
        lines.append(
            f"| {load.where} | {load.seconds:.0f} | {load.rate:,.0f} | "
            f"{load.quantile(0.5) * 1e3:.1f} | {load.quantile(0.99) * 1e3:.1f} | {load.other} | "
            f"{load.server_cpu / load.seconds:.0%} | {load.stored:,} | "
            f"{load.stored / max(1, load.files):.1f} | {load.fsync_ms:.1f} |"
        )
    best = max((ld for ld in loads if ld.where == "disk"), key=lambda ld: ld.rate)
    met = best.rate >= 2000 and best.quantile(0.99) < 0.050
    lines += [
        "",
        f"- target >= 2,000 accepted bodies/s with p99 < 50 ms on disk: {best.rate:,.0f}/s, "
        f"p99 {best.quantile(0.99) * 1e3:.1f} ms - {'met' if met else 'NOT met'}",
        "",
    ]
    path.write_text("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.receiver")
    ap.add_argument("--seconds", type=float, default=10.0, help="measured seconds per load")
    ap.add_argument("--clients", type=int, default=16, help="concurrent clients")
    args = ap.parse_args()
    write(run(args.clients, args.seconds), args.clients)


if __name__ == "__main__":
    main()
