"""Instructions per request of each app, counted by callgrind.

    python -m bench.instructions [--db postgres|sqlite] [--endpoints get,list,patch,item]
                                 [--requests 400]

Unlike req/s on a shared machine, an instruction count comes out the same run after run. Each
count serves one endpoint's requests (the ones wrk sends, from bench/workload.py) in one process
with no HTTP server: the ASGI app is called directly, as uvicorn calls it, under
`valgrind --tool=callgrind --instr-atstart=no`. The process switches instrumentation on
(`callgrind_control -i on`) after the warm-up requests and off after the measured ones, so the
count holds those requests and nothing else. Counts leave out the kernel (system calls) and the
database's own work.
"""

import argparse
import asyncio
import importlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import uvloop
from sqlalchemy.engine import URL

from bench.workload import (
    APPS,
    ENDPOINTS,
    ROOT,
    Request,
    app_env,
    databases,
    make_tokens,
    postgres_server,
    read_requests,
    write_requests,
)


def _scope(request: Request) -> tuple[dict[str, Any], bytes]:
    """A request as uvicorn hands it to the app: an ASGI scope and a body."""
    path, _, query = request.path.partition("?")
    body = request.body.encode()
    headers = [
        (b"host", b"bench"),
        (b"content-length", str(len(body)).encode()),
        (b"authorization", f"Bearer {request.token}".encode()),
    ]
    if body:
        headers.append((b"content-type", b"application/json"))
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


async def serve(app: Any, requests: list[Request], warmup: int, measured: int) -> None:
    """Replay the requests in turn through the app: `warmup` of them, then `measured` with
    callgrind's instrumentation on. Exits on any answer that is not a 2xx."""

    async def one(n: int, state: dict[str, Any]) -> None:
        scope, body = _scope(requests[n % len(requests)])
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
        if not 200 <= statuses[0] < 300:
            raise SystemExit(f"{scope['method']} {scope['path']}: {statuses[0]}")

    async with app.router.lifespan_context(app) as state:
        for n in range(warmup):
            await one(n, state or {})
        _instrument("on")
        for n in range(warmup, warmup + measured):
            await one(n, state or {})
        _instrument("off")


def _instrument(switch: str) -> None:
    if not os.environ.get("BENCH_UNDER_CALLGRIND"):  # a plain run, as tests/test_bench.py does
        return
    command = ["callgrind_control", "--instr", switch, str(os.getpid())]
    subprocess.run(command, check=True, capture_output=True)


def count(app: str, url: URL, requests_file: Path, args: argparse.Namespace) -> int:
    """Instructions per request for one app and one requests file."""
    env = app_env(url) | {"BENCH_APP": app, "BENCH_UNDER_CALLGRIND": "1", "PYTHONHASHSEED": "0"}
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "callgrind.log"
        cmd = [
            *("valgrind", "--tool=callgrind", "--instr-atstart=no", f"--log-file={log}"),
            *("--callgrind-out-file=/dev/null", sys.executable, "-m", "bench.instructions"),
            *("--serve", str(requests_file)),
            *("--requests", str(args.requests), "--warmup", str(args.warmup)),
        ]
        done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"{app} {requests_file.name} failed:\n{done.stderr[-3000:]}")
        for line in log.read_text().splitlines():
            if "Collected :" in line:
                return int(line.split(":")[-1]) // int(args.requests)
    raise SystemExit(f"{app} {requests_file.name}: no count in callgrind's log")


async def count_all(args: argparse.Namespace) -> dict[str, dict[str, int]]:
    endpoints = args.endpoints.split(",")
    server = postgres_server() if args.db == "postgres" else None
    tokens = make_tokens(args.users)
    counts: dict[str, dict[str, int]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        files = write_requests(Path(tmp), endpoints, tokens, args.users)
        async with databases(server, args.users, tokens) as urls:
            print(f"| {args.db} | " + " | ".join(ENDPOINTS[e] for e in endpoints) + " |")
            print("|---|" + "--:|" * len(endpoints))
            for app in APPS:
                counts[app] = {}
                for e in endpoints:
                    # One at a time: callgrind runs many times slower, and counts are per process.
                    counts[app][e] = await asyncio.to_thread(count, app, urls[app], files[e], args)
                print(f"| {app} | " + " | ".join(f"{counts[app][e]:,}" for e in endpoints) + " |")
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.instructions", description=__doc__)
    parser.add_argument("--db", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument("--endpoints", default="get", help="comma-separated: get,list,patch,item")
    parser.add_argument("--requests", type=int, default=400, help="measured per count (400)")
    parser.add_argument("--warmup", type=int, default=200, help="unmeasured requests first (200)")
    parser.add_argument("--users", type=int, default=10_000, help="users seeded (10000)")
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)  # the process under callgrind
    args = parser.parse_args()
    if args.serve:
        name = os.environ["BENCH_APP"]
        app = importlib.import_module(APPS[name].split(":")[0]).app
        uvloop.run(serve(app, read_requests(args.serve), args.warmup, args.requests))
        return
    counts = asyncio.run(count_all(args))
    print("BENCH_JSON " + json.dumps(counts))


if __name__ == "__main__":
    main()
