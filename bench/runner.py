"""Benchmark the service against bench/baseline.py and bench/core.py, side by side, in one run.

For each database: one migrated, seeded database per app; the three apps under uvicorn on one
core and wrk on the other; every endpoint at 64 connections, the apps in turn for a few rounds
(so that a machine that slows down meanwhile slows them all). Then, on Postgres, the apps again
behind a proxy that counts the round trips to the database and adds 1 ms to each, at one
connection. Prints a table and writes every figure to bench/results/latest.json.
"""

import argparse
import asyncio
import contextlib
import importlib.metadata
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.engine import URL

from bench.workload import (
    APPS,
    ENDPOINTS,
    ROOT,
    BenchError,
    admin,
    app_env,
    databases,
    make_tokens,
    postgres_server,
    write_requests,
)
from tests.proxy import Proxy

RESULTS = ROOT / "bench" / "results"
WRK_SCRIPT = ROOT / "bench" / "wrk" / "users.lua"
ADDED_RTT = 0.001  # seconds added to each round trip to Postgres in the latency phase
SERVER_CPU, LOAD_CPU = 0, 1
QUICK = {"connections": 8, "seconds": 1, "rounds": 1, "warmup": 0, "users": 100}


@dataclass(frozen=True)
class Options:
    db: str
    endpoints: list[str]
    connections: int
    seconds: int  # measured per app, endpoint and round
    rounds: int
    warmup: int  # seconds of load before each measured run
    users: int
    quick: bool
    output: Path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _accepts(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    writer.close()
    return True


@contextlib.asynccontextmanager
async def serving(urls: dict[str, URL], logs: Path, phase: str) -> AsyncIterator[dict[str, int]]:
    """Each app under uvicorn on SERVER_CPU, as deployed, its output in `logs`; their ports
    once all are up."""
    ports = {app: _free_port() for app in urls}
    # On a machine with one usable core there is nothing to separate; run unpinned.
    pin = ["taskset", "-c", str(SERVER_CPU)] if len(os.sched_getaffinity(0)) > 1 else []
    processes: dict[str, asyncio.subprocess.Process] = {}
    try:
        for app, url in urls.items():
            cmd = [
                *(*pin, sys.executable, "-m", "uvicorn", APPS[app], "--port", str(ports[app])),
                *("--workers", "1", "--loop", "uvloop", "--http", "httptools", "--no-access-log"),
            ]
            with (logs / f"{app}-{phase}.log").open("w") as log:
                processes[app] = await asyncio.create_subprocess_exec(
                    *cmd, cwd=ROOT, env=app_env(url), stdout=log, stderr=log
                )
        deadline = asyncio.get_running_loop().time() + 60
        for app, process in processes.items():
            # uvicorn listens once the app's start-up (its pool, for the baseline) is done.
            while not await _accepts(ports[app]):
                if process.returncode is not None or asyncio.get_running_loop().time() > deadline:
                    log_text = (logs / f"{app}-{phase}.log").read_text()[-3000:]
                    raise BenchError(f"{app} did not start; its log:\n{log_text}")
                await asyncio.sleep(0.05)
        yield ports
    finally:
        for process in processes.values():
            if process.returncode is None:
                process.terminate()
            await process.wait()


async def wrk(port: int, requests_file: Path, connections: int, seconds: int) -> dict[str, Any]:
    """One wrk run replaying a requests file; the summary bench/wrk/users.lua prints."""
    cmd = [
        *("wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s"),
        *("-s", str(WRK_SCRIPT), f"http://127.0.0.1:{port}", "--", str(requests_file)),
    ]
    # Cancelled, it runs out its seconds on its own.
    process = await asyncio.create_subprocess_exec(*cmd, stdout=subprocess.PIPE)
    out, _ = await process.communicate()
    for line in out.decode().splitlines():
        if line.startswith("BENCH_JSON "):
            summary: dict[str, Any] = json.loads(line.removeprefix("BENCH_JSON "))
            return summary
    raise BenchError(f"wrk gave no summary:\n{out.decode()[-2000:]}")


async def measure(
    ports: dict[str, int],
    files: dict[str, Path],
    opts: Options,
    connections: int,
    proxies: dict[str, Proxy] | None = None,
) -> list[dict[str, Any]]:
    """Every endpoint, the apps in turn in each round; a row per endpoint and app, with the
    round trips per request when the apps are behind `proxies`."""
    rows = []
    for endpoint in opts.endpoints:
        runs: dict[str, list[dict[str, Any]]] = {app: [] for app in ports}
        trips = dict.fromkeys(ports, 0)
        for _ in range(opts.rounds):
            for app, port in ports.items():
                if opts.warmup:
                    await wrk(port, files[endpoint], connections, opts.warmup)
                before = proxies[app].round_trips if proxies else 0
                runs[app].append(await wrk(port, files[endpoint], connections, opts.seconds))
                trips[app] += proxies[app].round_trips - before if proxies else 0
        for app, summaries in runs.items():
            row: dict[str, Any] = {"endpoint": endpoint, "app": app, "connections": connections}
            row |= _figures(summaries)
            if proxies:
                row["round_trips"] = trips[app] / max(row["requests"], 1)
            rows.append(row)
            print(
                f"  {ENDPOINTS[endpoint]:<22} {app:<8} {row['rps']:6.0f} req/s  p50 "
                f"{row['p50_ms']:.2f} ms  p99 {row['p99_ms']:.1f} ms  non-2xx {row['non_2xx']}"
                + (f"  {row['round_trips']:.2f} round trips" if proxies else ""),
                flush=True,
            )
    return rows


def _figures(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One app's figures over its rounds: the medians, and every round's req/s."""
    rps = [r["requests"] / r["duration_s"] for r in runs]
    return {
        "rps": statistics.median(rps),
        "rps_rounds": rps,
        "p50_ms": statistics.median(r["latency_ms"]["p50"] for r in runs),
        "p99_ms": statistics.median(r["latency_ms"]["p99"] for r in runs),
        "requests": sum(r["requests"] for r in runs),
        "non_2xx": sum(r["status"]["3xx"] + r["status"]["4xx"] + r["status"]["5xx"] for r in runs),
        "socket_errors": sum(sum(r["socket_errors"].values()) for r in runs),
    }


async def bench_database(db: str, server: URL | None, opts: Options) -> dict[str, Any]:
    tokens = make_tokens(opts.users)
    out = RESULTS / db  # each app's logs and the requests files
    out.mkdir(parents=True, exist_ok=True)
    files = write_requests(out, opts.endpoints, tokens, opts.users)
    run: dict[str, Any] = {"latency": []}
    async with databases(server, opts.users, tokens) as urls:
        print(f"[{db}] req/s and latency at {opts.connections} connections", flush=True)
        async with serving(urls, out, "load") as ports:
            run["load"] = await measure(ports, files, opts, opts.connections)
        if server is None:
            return run
        print(f"[{db}] round trips, and latency at 1 connection with +1 ms on each", flush=True)
        assert server.host is not None
        proxies = {app: Proxy(server.host, server.port or 5432) for app in APPS}
        try:
            for proxy in proxies.values():
                await proxy.start()
                proxy.delay = ADDED_RTT
            urls = {
                app: url.set(host="127.0.0.1", port=proxies[app].port) for app, url in urls.items()
            }
            async with serving(urls, out, "latency") as ports:
                run["latency"] = await measure(ports, files, opts, 1, proxies)
        finally:
            for proxy in proxies.values():
                await proxy.close()
    return run


def table(run: dict[str, Any]) -> str:
    """A Markdown row per endpoint and app; the ratio is the median round's to the baseline."""
    slow = {(r["endpoint"], r["app"]): r for r in run["latency"]}
    base = {r["endpoint"]: r["rps_rounds"] for r in run["load"] if r["app"] == "baseline"}
    lines = [
        f"| endpoint | app | req/s at {run['load'][0]['connections']} conns | ratio | p50 ms "
        "| p99 ms | round trips | p50 ms at +1 ms RTT | non-2xx, socket errors |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in run["load"]:
        ratio = statistics.median(
            x / y for x, y in zip(r["rps_rounds"], base[r["endpoint"]], strict=True)
        )
        s = slow.get((r["endpoint"], r["app"]))
        lines.append(
            f"| {ENDPOINTS[r['endpoint']]} | {r['app']} | {r['rps']:.0f} | {ratio:.2f} "
            f"| {r['p50_ms']:.1f} | {r['p99_ms']:.0f} "
            + (f"| {s['round_trips']:.2f} | {s['p50_ms']:.2f} " if s else "| - | - ")
            + f"| {sum(x['non_2xx'] + x['socket_errors'] for x in (r, s) if x)} |"
        )
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    cpus = Path("/proc/cpuinfo").read_text().splitlines()
    wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False).stdout
    packages = ("fastapi", "starlette", "pydantic", "sqlalchemy", "asyncpg", "aiosqlite", "uvicorn")
    return {
        "cpu": next((c.split(":")[1].strip() for c in cpus if c.startswith("model name")), "?"),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "wrk": wrk.split()[1],
        **{p: importlib.metadata.version(p) for p in packages},
    }


def ensure_wrk() -> bool:
    """Whether wrk is on PATH; installed with apt-get first if it is missing and we are root."""
    if shutil.which("wrk") is None and os.geteuid() == 0 and shutil.which("apt-get"):
        print("installing wrk (apt-get install -y wrk)", flush=True)
        for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "wrk"]):
            subprocess.run(cmd, stdout=subprocess.DEVNULL, check=False)
    return shutil.which("wrk") is not None


async def bench(opts: Options) -> dict[str, Any]:
    # SIGTERM cancels the run, so that every `finally` stops what it started.
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    report: dict[str, Any] = {"machine": machine(), "settings": asdict(opts)}
    server = postgres_server() if opts.db == "postgres" else None
    if server is not None:
        report["machine"]["postgres"] = await admin(server)
    report["run"] = await bench_database(opts.db, server, opts)
    return report


def parse_args(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(prog="bench/run", description=__doc__.splitlines()[0])
    arg = parser.add_argument
    arg("--db", choices=("postgres", "sqlite"), default="postgres")
    arg("--endpoints", default=",".join(ENDPOINTS), help="comma-separated (%(default)s)")
    arg("--connections", type=int, default=64, help="for req/s, p50 and p99 (%(default)s)")
    arg("--seconds", type=int, default=3, help="measured per app, endpoint, round (%(default)s)")
    arg("--rounds", type=int, default=3, help="the apps in turn in each (%(default)s)")
    arg("--warmup", type=int, default=1, help="seconds of load before each (%(default)s)")
    arg("--users", type=int, default=10_000, help="users seeded (%(default)s)")
    arg("--quick", action="store_true", help=f"a smoke test: {QUICK} unless given")
    arg("--output", type=Path, default=RESULTS / "latest.json")
    if "--quick" in (sys.argv[1:] if argv is None else argv):
        parser.set_defaults(**QUICK)
    args = parser.parse_args(argv)
    args.endpoints = args.endpoints.split(",")
    if unknown := set(args.endpoints) - set(ENDPOINTS):
        parser.error(f"--endpoints: unknown {', '.join(sorted(unknown))}")
    return Options(**vars(args))


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    if not ensure_wrk():
        print("error: wrk is not installed (apt-get install wrk, as root)", file=sys.stderr)
        return 1
    # This process (wrk, the proxies) on one core; the apps on the other.
    if len(os.sched_getaffinity(0)) > 1:
        os.sched_setaffinity(0, {LOAD_CPU})
    try:
        report = asyncio.run(bench(opts))
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except asyncio.CancelledError:
        return 128 + signal.SIGTERM
    opts.output.parent.mkdir(parents=True, exist_ok=True)
    opts.output.write_text(json.dumps(report, indent=2, default=str) + "\n")
    m = report["machine"]
    print(f"\n## {opts.db} ({m['cpu']}, {m['cores']} cores, Python {m['python']})\n")
    print(table(report["run"]) + f"\n\nfigures in {opts.output}")
    return 0
