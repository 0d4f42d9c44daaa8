"""Benchmark the service against bench/baseline.py and bench/core.py, side by side, in one run.

For each database: fresh databases, `alembic upgrade head` (timed), the three apps under uvicorn
on one core with the load generator on the other, 10,000 users seeded through each API, then
every endpoint at every connection count, the apps in turn for a few rounds (so that a machine
that slows down meanwhile slows them all). Prints a table and writes every figure to
bench/results/latest.json. Everything it starts is stopped, also on failure. See bench/README.md.
"""

import argparse
import asyncio
import contextlib
import importlib.metadata
import json
import os
import platform
import secrets
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

import asyncpg
from sqlalchemy.engine import URL

from bench.loadgen import PASSWORD, Connection, Request, format_request
from service import auth
from service.config import normalize_database_url

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
WRK_SCRIPT = ROOT / "bench" / "wrk" / "users.lua"
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"

ENDPOINTS = {
    "get": "GET /users/{id}",
    "list": "GET /users?limit=20",
    "patch": "PATCH /users/{id}",
    "item": "POST /users/{id}/items",
}
# The ladder: raw driver SQL, then SQLAlchemy Core on a connection, then the service.
APPS = {"baseline": "bench.baseline:app", "core": "bench.core:app", "service": "service.main:app"}
# The targets (Postgres): req/s ratio to the baseline at 64 connections at least this, and p99
# at most P99_TARGET times the baseline's at every connection count.
RPS_TARGETS = {"get": 0.65, "list": 0.65, "patch": 0.5, "item": 0.5}
TOKENS = 256  # signed-in users per app: each request is one of them
P99_TARGET = 1.5
SERVER_CPU, LOAD_CPU = 0, 1


@dataclass(frozen=True)
class Options:
    dbs: list[str]
    duration: float
    warmup: float
    connections: list[int]
    users: int
    pool_size: int
    memory_requests: int
    rounds: int
    loadgen: str
    profile: bool
    output: Path


@dataclass
class Server:
    name: str
    tokens_file: Path
    port: int
    process: subprocess.Popen[bytes]
    log: Path
    startup_s: float
    requests_served: int = 0
    rss_mb: list[tuple[int, float]] = field(default_factory=list)  # (requests so far, RSS)


class BenchError(Exception):
    """The benchmark cannot go on; the message says why."""


# -- processes -------------------------------------------------------------------------------


class Processes:
    """Every process the run starts, each in its own process group, stopped by `stop_all`."""

    def __init__(self) -> None:
        self._running: list[subprocess.Popen[bytes]] = []

    def start(self, cmd: list[str], *, env: dict[str, str], log: TextIO) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self._running.append(process)
        return process

    def stop(self, process: subprocess.Popen[bytes]) -> None:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        if process in self._running:
            self._running.remove(process)

    def stop_all(self) -> None:
        for process in list(reversed(self._running)):
            self.stop(process)


def _raise_on_sigterm(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through every `finally`, so cleanup runs


def _pinned(cpu: int, cmd: list[str]) -> list[str]:
    # On a machine with one usable core there is nothing to separate; run unpinned.
    if len(os.sched_getaffinity(0)) < 2 or shutil.which("taskset") is None:
        return cmd
    return ["taskset", "-c", str(cpu), *cmd]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise BenchError(f"no VmRSS for pid {pid}")


# -- databases -------------------------------------------------------------------------------


async def _postgres_admin(server: URL, *statements: str) -> str:
    conn = await asyncpg.connect(**server.translate_connect_args(username="user"), timeout=5)
    try:
        for statement in statements:
            await conn.execute(statement)
        version: str = await conn.fetchval("SHOW server_version")
        return version
    finally:
        await conn.close()


@contextlib.contextmanager
def postgres_server(raw: str) -> Iterator[tuple[URL, str]]:
    """The local Postgres server, started with pg_ctlcluster if it is not up (and then stopped)."""
    server = normalize_database_url(raw)
    started: list[str] = []
    try:
        version = asyncio.run(_postgres_admin(server))
    except (OSError, asyncpg.PostgresError) as exc:
        cluster = _local_cluster() if server.host in {None, "localhost", "127.0.0.1"} else None
        if cluster is None:
            raise BenchError(
                f"no Postgres at {server.render_as_string(hide_password=True)} ({exc}); "
                "start one or set BENCH_POSTGRES_URL"
            ) from None
        print(f"starting Postgres cluster {' '.join(cluster)}", flush=True)
        subprocess.run(["pg_ctlcluster", *cluster, "start"], check=True)
        started = cluster
        version = asyncio.run(_postgres_admin(server))
    try:
        yield server, version
    finally:
        if started:
            subprocess.run(["pg_ctlcluster", *started, "stop"], check=False)


def _local_cluster() -> list[str] | None:
    if shutil.which("pg_lsclusters") is None:
        return None
    out = subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True, check=False)
    fields = out.stdout.split()
    return fields[:2] if len(fields) >= 2 else None


@contextlib.contextmanager
def fresh_databases(db: str, server: URL | None) -> Iterator[dict[str, URL]]:
    """One new, empty database per app, removed afterwards."""
    if server is None:
        with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
            yield {name: normalize_database_url(f"sqlite:///{tmp}/{name}.db") for name in APPS}
        return
    tag = uuid.uuid4().hex[:8]
    names = {app: f"bench_{tag}_{app}" for app in APPS}
    try:
        asyncio.run(_postgres_admin(server, *(f'CREATE DATABASE "{n}"' for n in names.values())))
        yield {app: server.set(database=name) for app, name in names.items()}
    finally:
        drops = (f'DROP DATABASE IF EXISTS "{n}" WITH (FORCE)' for n in names.values())
        asyncio.run(_postgres_admin(server, *drops))


async def seed(url: URL, users: int, password_hash: str) -> dict[int, str]:
    """Users 1..N straight into the database (sign-up hashes each password for ~100 ms), with
    PASSWORD as every one's password, and a bearer token for each of the first TOKENS."""
    now = datetime.now(UTC)
    tokens = {user_id: secrets.token_urlsafe(32) for user_id in range(1, min(users, TOKENS) + 1)}
    user_rows = [
        (f"seed-{n}@example.com", f"User {n}", password_hash, now, now) for n in range(1, users + 1)
    ]
    token_rows = [
        (auth.token_hash(token), user_id, now, now + timedelta(days=1))
        for user_id, token in tokens.items()
    ]
    user_sql = "INSERT INTO users (email, name, password_hash, created_at, updated_at)"
    access_sql = "INSERT INTO access_tokens (token_hash, user_id, created_at, expires_at)"
    if url.get_backend_name() == "sqlite":
        assert url.database is not None
        with sqlite3.connect(url.database) as conn:
            # The layout SQLAlchemy writes for SQLite: naive UTC "YYYY-MM-DD HH:MM:SS.ffffff".
            def naive(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
                return [
                    tuple(
                        v.replace(tzinfo=None).isoformat(sep=" ") if isinstance(v, datetime) else v
                        for v in row
                    )
                    for row in rows
                ]

            conn.executemany(f"{user_sql} VALUES (?, ?, ?, ?, ?)", naive(user_rows))
            conn.executemany(f"{access_sql} VALUES (?, ?, ?, ?)", naive(token_rows))
        return tokens
    conn = await asyncpg.connect(**url.translate_connect_args(username="user"))
    try:
        await conn.executemany(f"{user_sql} VALUES ($1, $2, $3, $4, $5)", user_rows)
        await conn.executemany(f"{access_sql} VALUES ($1, $2, $3, $4)", token_rows)
    finally:
        await conn.close()
    return tokens


def _env(url: URL, pool_size: int) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": url.render_as_string(hide_password=False),
        # The same fixed pool for both apps: no overflow connections opened and closed under load.
        "DB_POOL_SIZE": str(pool_size),
        "DB_MAX_OVERFLOW": "0",
        # The service as it runs in production: an access line per request, in JSON.
        "LOG_LEVEL": "info",
        "LOG_FORMAT": "json",
        "ALEMBIC_CONFIG": str(ROOT / "alembic.ini"),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }


def _timed(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise BenchError(f"{' '.join(cmd)} failed:\n{done.stdout}{done.stderr}")
    return elapsed


def measure_costs(urls: dict[str, URL], pool_size: int, runs: int) -> dict[str, Any]:
    """Migration wall times (fresh, then at head), and the service's import time."""
    alembic = [sys.executable, "-m", "alembic", "upgrade", "head"]
    env = _env(urls["service"], pool_size)
    costs: dict[str, Any] = {
        "alembic_upgrade_fresh_s": _timed(alembic, env),
        "alembic_upgrade_at_head_s": _timed(alembic, env),
    }
    for app in APPS:
        if app != "service":
            _timed(alembic, _env(urls[app], pool_size))
    costs["python_startup_s"] = statistics.median(
        _timed([sys.executable, "-c", "pass"], env) for _ in range(runs)
    )
    costs["service_import_s"] = statistics.median(
        _timed([sys.executable, "-c", "import service.main"], env) for _ in range(runs)
    )
    return costs


# -- servers and load ------------------------------------------------------------------------


async def _live(port: int) -> bool:
    conn = Connection("127.0.0.1", port)
    try:
        status, _ = await conn.request(format_request(Request("GET", "/health/live")))
        return status == 200
    except OSError:
        return False
    finally:
        await conn.close()


def start_server(name: str, url: URL, opts: Options, processes: Processes, log_dir: Path) -> Server:
    port = _free_port()
    cmd = _pinned(
        SERVER_CPU,
        [
            *(sys.executable, "-m", "uvicorn", APPS[name]),
            *("--host", "127.0.0.1", "--port", str(port)),
            *("--workers", "1", "--loop", "uvloop", "--http", "httptools", "--no-access-log"),
        ],
    )
    log = log_dir / f"{name}.log"
    with log.open("w") as log_file:
        start = time.perf_counter()
        process = processes.start(cmd, env=_env(url, opts.pool_size), log=log_file)
    deadline = start + 30
    while not asyncio.run(_live(port)):
        if process.poll() is not None or time.perf_counter() > deadline:
            raise BenchError(f"{name} did not start; its log:\n{log.read_text()[-3000:]}")
        time.sleep(0.01)
    return Server(
        name, log_dir / f"{name}-tokens.txt", port, process, log, time.perf_counter() - start
    )


def _load_command(
    server: Server, opts: Options, mode: str, ids: tuple[int, int], connections: int, seconds: float
) -> list[str]:
    tag = uuid.uuid4().hex[:10]
    args = [mode, str(ids[0]), str(ids[1]), tag, str(server.tokens_file)]
    if opts.loadgen == "wrk":
        # wrk takes whole seconds.
        cmd = [
            *("wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s"),
            *("-s", str(WRK_SCRIPT), f"http://127.0.0.1:{server.port}", "--", *args),
        ]
    else:
        cmd = [
            *(sys.executable, "-m", "bench.loadgen", "--port", str(server.port)),
            *("--connections", str(connections), "--duration", str(seconds), *args),
        ]
    return _pinned(LOAD_CPU, cmd)


def _summary(server: Server, stdout: str, stderr: str) -> dict[str, Any]:
    for line in stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            summary: dict[str, Any] = json.loads(line.removeprefix("BENCH_JSON "))
            server.requests_served += summary["requests"]
            return summary
    raise BenchError(f"the load generator gave no summary:\n{stderr[-2000:]}")


def run_load(
    server: Server, opts: Options, mode: str, ids: tuple[int, int], connections: int, seconds: float
) -> dict[str, Any]:
    """One load run against one server; the load generator's summary."""
    cmd = _load_command(server, opts, mode, ids, connections, seconds)
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    return _summary(server, done.stdout, done.stderr)


def logins(server: Server, opts: Options, ids: tuple[int, int]) -> dict[str, Any]:
    """Login throughput (hashing is meant to be slow), and GET's latency beside a login burst:
    hashing runs in worker threads, so the event loop must keep serving."""
    seconds = opts.duration
    alone = run_load(server, opts, "get", ids, 64, seconds)
    burst_cmd = _load_command(server, opts, "login", ids, 8, seconds)
    burst = subprocess.Popen(
        burst_cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    during = run_load(server, opts, "get", ids, 64, seconds)
    out, err = burst.communicate()
    return {
        "login": _figures([_summary(server, out, err)]),
        "get_alone": _figures([alone]),
        "get_during_logins": _figures([during]),
    }


def _figures(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """One app's figures over its rounds: req/s over all of them, the median round's latencies."""
    requests = sum(r["requests"] for r in rounds)
    statuses = [r["status"] for r in rounds]
    return {
        "rps": requests / sum(r["duration_s"] for r in rounds),
        "p50_ms": statistics.median(r["latency_ms"]["p50"] for r in rounds),
        "p99_ms": statistics.median(r["latency_ms"]["p99"] for r in rounds),
        "requests": requests,
        "rounds": len(rounds),
        "non_2xx": sum(s["3xx"] + s["4xx"] + s["5xx"] for s in statuses),
        "status_5xx": sum(s["5xx"] for s in statuses),
        "socket_errors": sum(sum(r["socket_errors"].values()) for r in rounds),
    }


@contextlib.contextmanager
def _profiled(server: Server, name: str, seconds: float) -> Iterator[None]:
    """py-spy samples the server while the block runs; its stacks go to bench/results/."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    # Collapsed stacks: greppable, and speedscope or flamegraph.pl draw them.
    out = RESULTS / f"profile-{name}.txt"
    cmd = [
        *(py_spy, "record", "--pid", str(server.process.pid), "--nonblocking"),
        *("--duration", str(max(1, round(seconds))), "--format", "raw", "-o", str(out)),
    ]
    with open(os.devnull, "w") as devnull:
        spy = subprocess.Popen(_pinned(LOAD_CPU, cmd), stdout=devnull, stderr=devnull)
    try:
        yield
    finally:
        spy.wait()


def bench_database(
    db: str, server_url: URL | None, opts: Options, *, memory: bool
) -> dict[str, Any]:
    processes = Processes()
    log_dir = RESULTS / f"logs-{db}"
    log_dir.mkdir(parents=True, exist_ok=True)
    try:
        with fresh_databases(db, server_url) as urls:
            print(f"[{db}] migrating and timing imports", flush=True)
            costs = measure_costs(urls, opts.pool_size, runs=1 if opts.duration < 3 else 3)
            password_hash = asyncio.run(auth.hash_password(PASSWORD))
            servers = {
                name: start_server(name, urls[name], opts, processes, log_dir) for name in APPS
            }
            costs["startup_s"] = {name: s.startup_s for name, s in servers.items()}

            print(f"[{db}] seeding {opts.users} users and {TOKENS} tokens into each", flush=True)
            ids = (1, opts.users)
            for s in servers.values():
                start = time.perf_counter()
                tokens = asyncio.run(seed(urls[s.name], opts.users, password_hash))
                s.tokens_file.write_text("".join(f"{i} {t}\n" for i, t in tokens.items()))
                costs.setdefault("seed_s", {})[s.name] = time.perf_counter() - start

            results: list[dict[str, Any]] = []
            seconds = opts.duration / opts.rounds
            for connections in opts.connections:
                for endpoint in ENDPOINTS:
                    rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in servers}
                    for round_no in range(opts.rounds):
                        for s in servers.values():
                            warmup = opts.warmup if round_no == 0 else min(opts.warmup, 1)
                            run_load(s, opts, endpoint, ids, connections, warmup)
                            profile = opts.profile and s.name == "service"
                            with (
                                _profiled(s, f"{db}-{endpoint}-{connections}", seconds)
                                if profile
                                else contextlib.nullcontext()
                            ):
                                summary = run_load(s, opts, endpoint, ids, connections, seconds)
                            rounds[s.name].append(summary)
                    for s in servers.values():
                        s.rss_mb.append((s.requests_served, _rss_mb(s.process.pid)))
                        row = {"endpoint": endpoint, "connections": connections, "app": s.name}
                        results.append(row | _figures(rounds[s.name]))
                        print(_progress(db, results[-1]), flush=True)

            print(f"[{db}] logins, and GET beside a burst of them (the service)", flush=True)
            login_figures = logins(servers["service"], opts, ids)
            if memory:
                print(f"[{db}] memory: {opts.memory_requests:,} mixed requests", flush=True)
            costs["rss_mb"] = {
                name: memory_phase(s, opts, ids) if memory and name == "service" else _rss_along(s)
                for name, s in servers.items()
            }
            for s in servers.values():
                processes.stop(s.process)
    finally:
        processes.stop_all()
    return {
        "costs": costs,
        "results": results,
        "ratios": _ratios(results),
        "logins": login_figures,
    }


def _rss_along(server: Server) -> dict[str, Any]:
    """RSS after each measurement (the first one follows the first warm-up)."""
    (first, warm), (last, end) = server.rss_mb[0], server.rss_mb[-1]
    return {
        "after_warmup": warm,
        "at_end": end,
        "requests_after_warmup": last - first,
        "mixed": False,
        "samples": [{"requests": n - first, "rss_mb": mb} for n, mb in server.rss_mb],
    }


def memory_phase(server: Server, opts: Options, ids: tuple[int, int]) -> dict[str, Any]:
    """RSS after a warm-up of the mixed load at the most connections, then along N more requests."""
    connections = max(opts.connections)
    run_load(server, opts, "mixed", ids, connections, opts.warmup)
    samples = [(0, _rss_mb(server.process.pid))]
    start = server.requests_served
    while server.requests_served - start < opts.memory_requests:
        run_load(server, opts, "mixed", ids, connections, min(opts.duration, 5))
        samples.append((server.requests_served - start, _rss_mb(server.process.pid)))
    return {
        "after_warmup": samples[0][1],
        "at_end": samples[-1][1],
        "requests_after_warmup": samples[-1][0],
        "mixed": True,
        "samples": [{"requests": n, "rss_mb": mb} for n, mb in samples],
        # Along the measurements before this phase: (requests served so far, RSS).
        "during_measurements": [{"requests": n, "rss_mb": mb} for n, mb in server.rss_mb],
    }


def _progress(db: str, row: dict[str, Any]) -> str:
    return (
        f"[{db}] {row['connections']:>4} conns {ENDPOINTS[row['endpoint']]:<20} "
        f"{row['app']:<8} {row['rps']:>8.0f} req/s  p50 {row['p50_ms']:6.1f} ms  "
        f"p99 {row['p99_ms']:6.1f} ms  non-2xx {row['non_2xx']}  socket errors "
        f"{row['socket_errors']}"
    )


def _ratios(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each app's req/s and p99 as ratios to the baseline's at the same point."""
    by_key = {(r["endpoint"], r["connections"], r["app"]): r for r in results}
    ratios = []
    for (endpoint, connections, app), ours in by_key.items():
        if app == "baseline":
            continue
        base = by_key[(endpoint, connections, "baseline")]
        ratios.append(
            {
                "endpoint": endpoint,
                "connections": connections,
                "app": app,
                "rps_ratio": ours["rps"] / base["rps"] if base["rps"] else 0.0,
                "p99_ratio": ours["p99_ms"] / base["p99_ms"] if base["p99_ms"] else 0.0,
            }
        )
    return ratios


def check_targets(run: dict[str, Any]) -> list[str]:
    """The issue's targets (Postgres, 64 connections, zero errors everywhere); what is missed."""
    missed = []
    if not any(r["connections"] == 64 for r in run["ratios"]):
        missed.append("not checked: the targets are set at 64 connections")
    for ratio in run["ratios"]:
        if ratio["app"] != "service":
            continue
        name = f"{ENDPOINTS[ratio['endpoint']]} at {ratio['connections']}"
        if ratio["connections"] == 64 and ratio["rps_ratio"] < RPS_TARGETS[ratio["endpoint"]]:
            missed.append(f"{name}: req/s ratio {ratio['rps_ratio']:.2f}")
        if ratio["p99_ratio"] > P99_TARGET:
            missed.append(f"{name}: p99 ratio {ratio['p99_ratio']:.2f}")
    for row in run["results"]:
        if row["app"] == "service" and (row["non_2xx"] or row["socket_errors"]):
            missed.append(
                f"{ENDPOINTS[row['endpoint']]} at {row['connections']}: "
                f"{row['non_2xx']} non-2xx, {row['socket_errors']} socket errors"
            )
    return missed


# -- report ----------------------------------------------------------------------------------


def table(db: str, run: dict[str, Any]) -> str:
    by_key = {(r["endpoint"], r["connections"], r["app"]): r for r in run["results"]}
    ratios = {(r["endpoint"], r["connections"], r["app"]): r for r in run["ratios"]}
    points = sorted({(r["connections"], r["endpoint"]) for r in run["results"]})
    points.sort(key=lambda p: (p[0], list(ENDPOINTS).index(p[1])))
    lines = [
        f"### {db}",
        "",
        "b: baseline (raw driver), c: SQLAlchemy Core on a connection, s: the service; "
        "ratios are to the baseline.",
        "",
        "| endpoint | conns | req/s b / c / s | ratio c | ratio s | p50 ms b / c / s "
        "| p99 ms b / c / s | p99 ratio c / s | non-2xx | socket errors |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for connections, endpoint in points:
        b, c, s = (by_key[(endpoint, connections, app)] for app in APPS)
        rc, rs = (ratios[(endpoint, connections, app)] for app in ("core", "service"))
        lines.append(
            f"| {ENDPOINTS[endpoint]} | {connections} "
            f"| {b['rps']:.0f} / {c['rps']:.0f} / {s['rps']:.0f} "
            f"| {rc['rps_ratio']:.2f} | **{rs['rps_ratio']:.2f}** "
            f"| {b['p50_ms']:.0f} / {c['p50_ms']:.0f} / {s['p50_ms']:.0f} "
            f"| {b['p99_ms']:.0f} / {c['p99_ms']:.0f} / {s['p99_ms']:.0f} "
            f"| {rc['p99_ratio']:.2f} / **{rs['p99_ratio']:.2f}** "
            f"| {b['non_2xx'] + c['non_2xx'] + s['non_2xx']} "
            f"| {b['socket_errors'] + c['socket_errors'] + s['socket_errors']} |"
        )
    costs = run["costs"]
    rss = costs["rss_mb"]["service"]
    login, alone, during = (run["logins"][k] for k in ("login", "get_alone", "get_during_logins"))
    lines += [
        "",
        f"- logins (`POST /auth/token`, 8 connections, Argon2id): {login['rps']:.1f} req/s, "
        f"p50 {login['p50_ms']:.0f} ms, p99 {login['p99_ms']:.0f} ms; `GET /users/{{id}}` at 64 "
        f"connections: {alone['rps']:.0f} req/s, p99 {alone['p99_ms']:.0f} ms alone, "
        f"{during['rps']:.0f} req/s, p99 {during['p99_ms']:.0f} ms during the logins "
        f"(non-2xx: {login['non_2xx'] + alone['non_2xx'] + during['non_2xx']})",
        f"- `alembic upgrade head`: {costs['alembic_upgrade_fresh_s']:.2f} s on a fresh database, "
        f"{costs['alembic_upgrade_at_head_s']:.2f} s at head",
        f"- `import service.main`: {costs['service_import_s']:.2f} s "
        f"(bare interpreter {costs['python_startup_s']:.2f} s); start-up to first answer: "
        + ", ".join(f"{app} {costs['startup_s'][app]:.2f} s" for app in APPS),
        f"- service RSS: {rss['after_warmup']:.1f} MB after warm-up, {rss['at_end']:.1f} MB after "
        f"{rss['requests_after_warmup']:,} more requests "
        + (
            f"(mixed, {max(settings_connections(run))} connections)"
            if rss["mixed"]
            else "(the measurements)"
        )
        + f"; baseline {costs['rss_mb']['baseline']['at_end']:.1f} MB, "
        f"core {costs['rss_mb']['core']['at_end']:.1f} MB after their measurements",
    ]
    return "\n".join(lines)


def settings_connections(run: dict[str, Any]) -> list[int]:
    return sorted({r["connections"] for r in run["results"]})


def machine(versions_of: dict[str, str]) -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory_gb = 0.0
    with contextlib.suppress(OSError, ValueError):
        memory_gb = int(Path("/proc/meminfo").read_text().split()[1]) / 1024**2
    packages = ("fastapi", "starlette", "pydantic", "sqlalchemy", "asyncpg", "aiosqlite", "uvicorn")
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(memory_gb, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        **versions_of,
        "packages": {p: importlib.metadata.version(p) for p in packages},
    }


def _wrk_available(install: bool) -> bool:
    if shutil.which("wrk"):
        return True
    if install and os.geteuid() == 0 and shutil.which("apt-get"):
        print("installing wrk (apt-get install -y wrk)", flush=True)
        for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "wrk"]):
            subprocess.run(cmd, stdout=subprocess.DEVNULL, check=False)
    return shutil.which("wrk") is not None


def parse_args(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(prog="bench/run", description=__doc__.splitlines()[0])
    parser.add_argument("--db", default="postgres,sqlite", help="postgres, sqlite or both")
    parser.add_argument("--duration", type=float, help="seconds measured per app and point (10)")
    parser.add_argument("--rounds", type=int, help="split into this many rounds, apps in turn (3)")
    parser.add_argument("--warmup", type=float, help="seconds of warm-up before the first (3)")
    parser.add_argument("--connections", help="comma-separated (64,256)")
    parser.add_argument("--users", type=int, help="users seeded through the API (10000)")
    parser.add_argument("--pool-size", type=int, default=10, help="each app's pool (10)")
    parser.add_argument(
        "--memory-requests", type=int, help="mixed requests for the RSS check, first --db (100000)"
    )
    parser.add_argument("--loadgen", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument("--profile", action="store_true", help="py-spy the service while measured")
    parser.add_argument("--quick", action="store_true", help="seconds, tiny load: a smoke test")
    parser.add_argument("--output", type=Path, default=RESULTS / "latest.json")
    args = parser.parse_args(argv)
    quick = args.quick
    dbs = [db.strip() for db in args.db.replace("both", "postgres,sqlite").split(",")]
    if unknown := set(dbs) - {"postgres", "sqlite"}:
        parser.error(f"--db: unknown {', '.join(sorted(unknown))}")
    loadgen = args.loadgen
    if loadgen == "auto":
        # A full run installs wrk if it must; a quick one makes do with the Python generator.
        loadgen = "wrk" if _wrk_available(install=not quick) else "python"
    elif loadgen == "wrk" and not _wrk_available(install=True):
        parser.error("--loadgen wrk: wrk is not installed and could not be installed")
    connections = args.connections or ("8" if quick else "64,256")
    return Options(
        dbs=dbs,
        duration=args.duration or (0.5 if quick else 10),
        warmup=args.warmup or (0.2 if quick else 3),
        connections=[int(c) for c in connections.split(",")],
        users=args.users or (100 if quick else 10_000),
        pool_size=args.pool_size,
        memory_requests=args.memory_requests or (500 if quick else 100_000),
        rounds=args.rounds or (1 if quick else 3),
        loadgen=loadgen,
        profile=args.profile,
        output=args.output,
    )


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_on_sigterm)
    RESULTS.mkdir(parents=True, exist_ok=True)
    # This process (seeding, bookkeeping) and the load generator share one core; the apps the other.
    if len(os.sched_getaffinity(0)) >= 2:
        os.sched_setaffinity(0, {LOAD_CPU})
    versions: dict[str, str] = {}
    if opts.loadgen == "wrk":
        out = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
        versions["wrk"] = (out.stdout + out.stderr).split()[1]
    runs: dict[str, Any] = {}
    started = time.perf_counter()
    try:
        for db in opts.dbs:
            if db == "postgres":
                raw = os.environ.get("BENCH_POSTGRES_URL", DEFAULT_POSTGRES)
                with postgres_server(raw) as (server, version):
                    versions["postgres"] = version
                    runs[db] = bench_database(db, server, opts, memory=db == opts.dbs[0])
            else:
                runs[db] = bench_database(db, None, opts, memory=db == opts.dbs[0])
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    m = machine(versions)
    targets_missed = {db: check_targets(run) for db, run in runs.items() if db == "postgres"}
    report = {
        "machine": m,
        "settings": {
            "duration_s": opts.duration,
            "warmup_s": opts.warmup,
            "connections": opts.connections,
            "users": opts.users,
            "rounds": opts.rounds,
            "pool_size": opts.pool_size,
            "loadgen": opts.loadgen,
            "profiled": opts.profile,
        },
        "wall_time_s": time.perf_counter() - started,
        "runs": runs,
        "targets_missed": targets_missed,
    }
    opts.output.parent.mkdir(parents=True, exist_ok=True)
    opts.output.write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"\n## Results ({m['cpu']}, {m['cores']} cores, Python {m['python']}, "
        f"loadgen {opts.loadgen}, {opts.duration:g} s per run after {opts.warmup:g} s warm-up)\n"
    )
    for db, run in runs.items():
        print(table(db, run) + "\n")
    for db, missed in targets_missed.items():
        print(f"{db} targets: " + ("all met" if not missed else "missed: " + "; ".join(missed)))
    print(f"\nfigures in {opts.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
