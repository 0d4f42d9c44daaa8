"""Instructions per request, counted by callgrind: what each app and each layer costs.

    python -m bench.instructions [--db postgres|sqlite] [--endpoints get,list,patch,item]
                                 [--requests 400]

Unlike req/s on a shared machine, an instruction count comes out the same run after run. Each
row serves one endpoint in one process with no HTTP server (the ASGI app is called directly, as
uvicorn calls it), under `valgrind --tool=callgrind --instr-atstart=no`; the process switches
instrumentation on (`callgrind_control -i on`) after 200 warm-up requests and off after the
measured ones, so the count holds those requests and nothing else. Rows: the baseline, the Core
rung, the service as deployed (JSON access log), then the service without its access-log line
(LOG_LEVEL=warning) and without its RequestContext middleware (no request id, access log or
metrics). Counts leave out the kernel (system calls, the database's own work): see README.md.
"""

import argparse
import asyncio
import importlib
import json
import os
import random
import subprocess
import sys
import tempfile
from contextlib import nullcontext
from pathlib import Path
from typing import Any, cast

import uvloop
from sqlalchemy.engine import URL

from bench.loadgen import PASSWORD, Request, Workload, read_accounts
from bench.runner import (
    DEFAULT_POSTGRES,
    ENDPOINTS,
    RESULTS,
    ROOT,
    fresh_databases,
    postgres_server,
    seed,
)
from service import auth

ROWS = {
    "baseline": ("baseline", {}),
    "core": ("core", {}),
    "service": ("service", {}),
    "service without access log": ("service", {"LOG_LEVEL": "warning"}),
    "service without RequestContext": ("service", {"BENCH_WITHOUT_CONTEXT": "1"}),
}


def _app(name: str) -> Any:
    if name != "service":
        return importlib.import_module(f"bench.{name}").app
    from service import observability
    from service.main import app

    if os.environ.get("BENCH_WITHOUT_CONTEXT"):
        # Before the first request, when Starlette builds its middleware stack from this list.
        app.user_middleware = [
            m for m in app.user_middleware if m.cls is not cast(Any, observability.RequestContext)
        ]
    return app


def _scope(request: Request) -> tuple[dict[str, Any], bytes]:
    """A load generator's request as uvicorn hands it to the app: an ASGI scope and a body."""
    path, _, query = request.path.partition("?")
    content_type, body = request.payload()
    headers = [(b"host", b"bench"), (b"content-length", str(len(body)).encode())]
    if request.token is not None:
        headers.append((b"authorization", f"Bearer {request.token}".encode()))
    if content_type is not None:
        headers.append((b"content-type", content_type.encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": request.method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": query.encode(),
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
    }
    return scope, body


async def _serve(args: argparse.Namespace) -> None:
    app = _app(os.environ["BENCH_APP"])
    # The requests bench/loadgen.py sends (and bench/wrk/users.lua): "mixed" takes each in turn.
    accounts = read_accounts(args.tokens)
    workload = Workload(args.serve, 1, args.users, "instructions", accounts, rng=random.Random(1))

    async def one(state: dict[str, Any]) -> None:
        scope, body = _scope(workload.next())
        scope["state"] = dict(state)
        messages = [{"type": "http.request", "body": body, "more_body": False}]
        statuses = []

        async def receive() -> dict[str, Any]:
            if messages:
                return messages.pop()
            await asyncio.Event().wait()  # the client never disconnects
            raise AssertionError

        async def send(message: Any) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        await app(scope, receive, send)
        if statuses[0] >= 300:
            raise SystemExit(f"{scope['method']} {scope['path']}: {statuses[0]}")

    async with app.router.lifespan_context(app) as state:
        for _ in range(args.warmup):
            await one(state or {})
        _instrument("on")
        for _ in range(args.requests):
            await one(state or {})
        _instrument("off")


def _instrument(switch: str) -> None:
    if not os.environ.get("BENCH_UNDER_CALLGRIND"):  # a plain run, as tests/test_bench.py does
        return
    command = ["callgrind_control", "--instr", switch, str(os.getpid())]
    subprocess.run(command, check=True, capture_output=True)


def count(row: str, endpoint: str, url: URL, tokens: Path, args: argparse.Namespace) -> int:
    """Instructions per request for one row and endpoint."""
    app, extra = ROWS[row]
    env = os.environ | {
        "BENCH_APP": app,
        "BENCH_UNDER_CALLGRIND": "1",
        "DATABASE_URL": url.render_as_string(hide_password=False),
        "DB_POOL_SIZE": "10",
        "DB_MAX_OVERFLOW": "0",
        "LOG_LEVEL": "info",
        "LOG_FORMAT": "json",
        "PYTHONHASHSEED": "0",
    }
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "callgrind.log"
        cmd = [
            *("valgrind", "--tool=callgrind", "--instr-atstart=no", f"--log-file={log}"),
            *("--callgrind-out-file=/dev/null", sys.executable, "-m", "bench.instructions"),
            *("--serve", endpoint, "--tokens", str(tokens), "--users", str(args.users)),
            *("--requests", str(args.requests), "--warmup", str(args.warmup)),
        ]
        done = subprocess.run(
            cmd, cwd=ROOT, env=env | extra, capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise SystemExit(f"{row} {endpoint} failed:\n{done.stderr[-3000:]}")
        for line in log.read_text().splitlines():
            if "Collected :" in line:
                total = int(line.split(":")[-1])
                return total // int(args.requests)
    raise SystemExit(f"{row} {endpoint}: no count in callgrind's log")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.instructions", description=__doc__)
    parser.add_argument("--db", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument("--endpoints", default="get", help="comma-separated: get,list,patch,item")
    parser.add_argument("--rows", default=",".join(ROWS), help="comma-separated rows to count")
    parser.add_argument("--requests", type=int, default=400, help="measured per row (400)")
    parser.add_argument("--warmup", type=int, default=200, help="unmeasured requests first (200)")
    parser.add_argument("--users", type=int, default=10_000, help="users seeded (10000)")
    parser.add_argument("--serve", help=argparse.SUPPRESS)  # the process under callgrind
    parser.add_argument("--tokens", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        uvloop.run(_serve(args))
        return
    endpoints = args.endpoints.split(",")
    server = os.environ.get("BENCH_POSTGRES_URL", DEFAULT_POSTGRES)
    postgres = postgres_server(server) if args.db == "postgres" else nullcontext((None, ""))
    with postgres as (server_url, _), fresh_databases(args.db, server_url) as urls:
        password_hash = asyncio.run(auth.hash_password(PASSWORD))
        tokens_of = {}
        RESULTS.mkdir(parents=True, exist_ok=True)
        for app, url in urls.items():
            env = os.environ | {"DATABASE_URL": url.render_as_string(hide_password=False)}
            alembic = [sys.executable, "-m", "alembic", "upgrade", "head"]
            subprocess.run(alembic, cwd=ROOT, env=env, check=True, capture_output=True)
            tokens = asyncio.run(seed(url, args.users, password_hash))
            tokens_of[app] = RESULTS / f"instructions-{app}-tokens.txt"
            tokens_of[app].write_text("".join(f"{i} {t}\n" for i, t in tokens.items()))
        counts: dict[str, dict[str, int]] = {}
        print(f"| {args.db} | " + " | ".join(ENDPOINTS[e] for e in endpoints) + " |")
        print("|---|" + "--:|" * len(endpoints))
        for row in args.rows.split(","):
            app, _ = ROWS[row]
            counts[row] = {e: count(row, e, urls[app], tokens_of[app], args) for e in endpoints}
            print(f"| {row} | " + " | ".join(f"{counts[row][e]:,}" for e in endpoints) + " |")
    print("BENCH_JSON " + json.dumps(counts))


if __name__ == "__main__":
    main()
