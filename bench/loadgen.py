"""A small HTTP/1.1 keep-alive client and load generator, for seeding and for `--loadgen python`.

wrk is the load generator of record; this one mirrors bench/wrk/users.lua (same requests, same
JSON summary) so that the smoke test and machines without wrk still run the whole benchmark.
It is slower than wrk, so its figures are only comparable with each other.

    python -m bench.loadgen --port 8000 --connections 64 --duration 10 \
        MODE MIN_ID MAX_ID TAG TOKENS_FILE
"""

import argparse
import asyncio
import json
import random
import time
from dataclasses import dataclass, field
from typing import Any

MODES = ("get", "list", "patch", "item")
PASSWORD = "bench-password"  # noqa: S105 - every seeded user's, known to the benchmark


class HttpError(Exception):
    """The server broke the HTTP exchange (closed the socket, sent something unreadable)."""


class Connection:
    """One keep-alive HTTP/1.1 connection; enough of the protocol for this API."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        assert self._reader is not None
        self._writer.write(raw)
        try:
            return await _read_response(self._reader)
        except (asyncio.IncompleteReadError, ValueError, IndexError) as exc:
            await self.close()
            raise HttpError(type(exc).__name__) from exc

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._reader = self._writer = None


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    body = await reader.readexactly(length) if length else b""
    return status, body


@dataclass(frozen=True)
class Request:
    """One request of a workload, before it is written as HTTP (or as an ASGI scope)."""

    method: str
    path: str  # with its query string
    body: dict[str, Any] | None = None
    token: str | None = None
    form: str | None = None

    def payload(self) -> tuple[str | None, bytes]:
        """The content type and bytes of the body."""
        if self.body is not None:
            return "application/json", json.dumps(self.body, separators=(",", ":")).encode()
        if self.form is not None:
            return "application/x-www-form-urlencoded", self.form.encode()
        return None, b""


def format_request(request: Request) -> bytes:
    lines = [f"{request.method} {request.path} HTTP/1.1", "Host: 127.0.0.1"]
    if request.token is not None:
        lines.append(f"Authorization: Bearer {request.token}")
    content_type, payload = request.payload()
    if content_type is not None:
        lines += [f"Content-Type: {content_type}", f"Content-Length: {len(payload)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


def read_accounts(path: str) -> list[tuple[int, str]]:
    """The TOKENS_FILE: one "USER_ID TOKEN" per line."""
    with open(path) as lines:
        return [(int(user_id), token) for user_id, token in (line.split() for line in lines)]


@dataclass
class Workload:
    """The requests of one run, as bench/wrk/users.lua builds them."""

    mode: str
    min_id: int
    max_id: int
    tag: str
    accounts: list[tuple[int, str]]
    worker: int = 0
    counter: int = 0
    rng: random.Random = field(default_factory=random.Random)

    def next(self) -> Request:
        self.counter += 1
        kind = MODES[self.counter % 4] if self.mode == "mixed" else self.mode
        user_id, token = self.rng.choice(self.accounts)
        if kind == "get":
            some_id = self.rng.randint(self.min_id, self.max_id)
            return Request("GET", f"/users/{some_id}", token=token)
        if kind == "list":
            return Request("GET", "/users?limit=20", token=token)
        if kind == "patch":
            body = {"name": f"Renamed {self.counter}"}
            return Request("PATCH", f"/users/{user_id}", body, token=token)
        if kind == "item":
            body = {"title": f"Bench {self.tag} {self.counter}"}
            return Request("POST", f"/users/{user_id}/items", body, token=token)
        email = f"seed-{self.rng.randint(self.min_id, self.max_id)}%40example.com"
        return Request("POST", "/auth/token", form=f"username={email}&password={PASSWORD}")


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    status: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(("2xx", "3xx", "4xx", "5xx"), 0)
    )
    socket_errors: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(("connect", "read", "write", "timeout"), 0)
    )


async def _drive(
    host: str, port: int, workload: Workload, deadline: float, tally: Tally, wait: float
) -> None:
    conn = Connection(host, port)
    try:
        while time.perf_counter() < deadline:
            raw = format_request(workload.next())
            start = time.perf_counter()
            try:
                status, _ = await asyncio.wait_for(conn.request(raw), wait)
            except TimeoutError:
                tally.socket_errors["timeout"] += 1
                await conn.close()
                continue
            except (HttpError, ConnectionError):
                tally.socket_errors["read"] += 1
                continue
            except OSError:
                tally.socket_errors["connect"] += 1
                await asyncio.sleep(0.01)
                continue
            tally.latencies.append(time.perf_counter() - start)
            tally.status[f"{min(max(status // 100, 2), 5)}xx"] += 1
    finally:
        await conn.close()


async def run_load(
    *,
    host: str,
    port: int,
    connections: int,
    duration: float,
    mode: str,
    min_id: int,
    max_id: int,
    tag: str,
    accounts: list[tuple[int, str]],
    wait: float = 10.0,
) -> dict[str, Any]:
    """Drive the server for `duration` seconds; a summary shaped like users.lua's."""
    tally = Tally()
    start = time.perf_counter()
    deadline = start + duration
    await asyncio.gather(
        *(
            _drive(
                host,
                port,
                Workload(mode, min_id, max_id, tag, accounts, worker=i),
                deadline,
                tally,
                wait,
            )
            for i in range(connections)
        )
    )
    elapsed = time.perf_counter() - start
    ms = sorted(x * 1000 for x in tally.latencies) or [0.0]
    return {
        "requests": len(tally.latencies),
        "duration_s": elapsed,
        "latency_ms": {
            "p50": _percentile(ms, 50),
            "p90": _percentile(ms, 90),
            "p99": _percentile(ms, 99),
            "max": ms[-1],
            "mean": sum(ms) / len(ms),
        },
        "status": tally.status,
        "socket_errors": tally.socket_errors,
    }


def _percentile(ordered: list[float], pct: float) -> float:
    return ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("mode", choices=(*MODES, "login", "mixed"))
    parser.add_argument("min_id", type=int)
    parser.add_argument("max_id", type=int)
    parser.add_argument("tag")
    parser.add_argument("tokens_file")
    args = parser.parse_args()
    try:
        import uvloop  # optional: a faster client loop when it is there

        runner: Any = uvloop.run
    except ImportError:
        runner = asyncio.run
    summary = runner(
        run_load(
            host=args.host,
            port=args.port,
            connections=args.connections,
            duration=args.duration,
            mode=args.mode,
            min_id=args.min_id,
            max_id=args.max_id,
            tag=args.tag,
            accounts=read_accounts(args.tokens_file),
        )
    )
    print("BENCH_JSON " + json.dumps(summary))


if __name__ == "__main__":
    main()
