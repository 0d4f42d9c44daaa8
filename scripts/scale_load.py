"""A steady, bounded load on the stack behind its load balancer, for scripts/scale-check.

    python scripts/scale_load.py run BASE_URL SECONDS EVENTS.jsonl
    python scripts/scale_load.py report BASE_URL EVENTS.jsonl MARKS.txt POSTGRES.log

`run` signs up one user per writer, then for SECONDS keeps READERS threads reading
(GET /users/{id} and GET /items/{id}) and WRITERS threads each creating items of its own user,
every thread at RATE requests a second. Each request is one line of EVENTS.jsonl: when it ended,
how long it took, what, the status (or the error), which replica answered (X-Served-By) and,
for an acknowledged write, the item and the writer.

`report` splits the events by the phases in MARKS.txt ("NAME START END" in epoch seconds, as
the check writes them): requests, failures and latency percentiles in each, how requests spread
over the replicas while steady. It reads back every acknowledged write (none may be missing)
and counts those without a `public_id`. From the Postgres log (written with log_lock_waits,
a low deadlock_timeout and log_line_prefix '%m [%p] app=%a '), it takes every lock wait that
ended, by application_name: `service` (the api's sessions), `alembic` (the migration's), and
`lock-probe` (the check's own, to show that waits are seen). Standard library only.
"""

import http.client
import json
import random
import re
import signal
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

READERS, WRITERS, RATE = 4, 2, 10.0
PASSWORD = "scale check password"  # noqa: S105 - the test users', made by this script


@dataclass
class Client:
    """One keep-alive connection to the load balancer; reconnects after an error."""

    base: urllib.parse.SplitResult
    connection: http.client.HTTPConnection | None = None

    def request(
        self, method: str, path: str, body: dict[str, Any] | None = None, token: str = ""
    ) -> tuple[int, dict[str, Any], str]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        payload = None
        if body is not None:
            payload = json.dumps(body)
            headers["Content-Type"] = "application/json"
        if self.connection is None:
            self.connection = http.client.HTTPConnection(
                self.base.hostname or "127.0.0.1", self.base.port or 80, timeout=10
            )
        try:
            self.connection.request(method, path, payload, headers)
            response = self.connection.getresponse()
            raw = response.read()
        except (OSError, http.client.HTTPException):
            self.connection.close()
            self.connection = None
            raise
        data = json.loads(raw) if raw and raw.startswith(b"{") else {}
        return response.status, data, response.headers.get("X-Served-By", "")


@dataclass
class Recorder:
    path: str
    lock: threading.Lock = field(default_factory=threading.Lock)
    items: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.file = open(self.path, "w")  # noqa: SIM115 - closed by close()

    def write(self, **event: Any) -> None:
        with self.lock:
            self.file.write(json.dumps({"t": time.time(), **event}) + "\n")

    def close(self) -> None:
        self.file.close()


def _timed(client: Client, recorder: Recorder, kind: str, *args: Any, **kwargs: Any) -> Any:
    started = time.monotonic()
    try:
        status, data, served_by = client.request(*args, **kwargs)
    except (OSError, http.client.HTTPException) as exc:
        ms = round((time.monotonic() - started) * 1000, 2)
        recorder.write(kind=kind, ms=ms, status=None, error=type(exc).__name__)
        return None
    ms = round((time.monotonic() - started) * 1000, 2)
    recorder.write(kind=kind, ms=ms, status=status, served_by=served_by, item=data.get("id"))
    return data if 200 <= status < 300 else None


def sign_up(base: urllib.parse.SplitResult, n: int) -> tuple[int, str]:
    client = Client(base)
    email = f"scale-{time.time_ns()}-{n}@example.com"
    body = {"email": email, "name": f"Scale {n}", "password": PASSWORD}
    status, user, _ = client.request("POST", "/users", body)
    if status != 201:
        sys.exit(f"sign-up answered {status}")
    form = urllib.parse.urlencode({"username": email, "password": PASSWORD})
    assert client.connection is not None
    client.connection.request(
        "POST", "/auth/token", form, {"Content-Type": "application/x-www-form-urlencoded"}
    )
    login = json.loads(client.connection.getresponse().read())
    return user["id"], login["access_token"]


def run(base_url: str, seconds: float, events: str) -> None:
    """Until SECONDS have passed or a SIGTERM comes."""
    base = urllib.parse.urlsplit(base_url)
    accounts = [sign_up(base, n) for n in range(WRITERS)]
    recorder = Recorder(events)
    deadline = time.monotonic() + seconds
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda _signum, _frame: stop.set())

    def paced(work: Any) -> None:
        client = Client(base)
        while time.monotonic() < deadline and not stop.is_set():
            started = time.monotonic()
            work(client)
            time.sleep(max(0.0, 1 / RATE - (time.monotonic() - started)))

    def read(client: Client) -> None:
        user_id, token = random.choice(accounts)
        with recorder.lock:
            item = random.choice(recorder.items) if recorder.items else None
        path = f"/items/{item}" if item is not None and random.random() < 0.5 else None
        _timed(client, recorder, "read", "GET", path or f"/users/{user_id}", token=token)

    def writer(n: int) -> Any:
        user_id, token = accounts[n]

        def write(client: Client) -> None:
            body = {"title": f"scale check {time.time_ns()}"}
            created = _timed(
                client, recorder, "write", "POST", f"/users/{user_id}/items", body, token=token
            )
            if created is not None:
                with recorder.lock:
                    recorder.items.append(created["id"])

        return write

    threads = [threading.Thread(target=paced, args=(read,)) for _ in range(READERS)]
    threads += [threading.Thread(target=paced, args=(writer(n),)) for n in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    recorder.close()
    with open(events + ".accounts", "w") as f:
        json.dump(accounts, f)


def report(base_url: str, events_path: str, marks_path: str, postgres_log: str) -> None:
    with open(events_path) as f:
        events = [json.loads(line) for line in f]
    phases = {}
    with open(marks_path) as f:
        for line in f:
            name, start, end = line.split()
            phases[name] = (float(start), float(end))
    with open(events_path + ".accounts") as f:
        token = json.load(f)[0][1]
    with open(postgres_log, errors="replace") as f:
        waits = _lock_waits(f)

    def failed(event: dict[str, Any]) -> bool:
        return event["status"] is None or not 200 <= event["status"] < 300

    def service_waits(start: float, end: float) -> list[dict[str, Any]]:
        return [w for w in waits if start <= w["t"] <= end and w["app"] == "service"]

    summary: dict[str, Any] = {"requests": len(events), "phases": {}}
    for name, (start, end) in phases.items():
        during = [e for e in events if start <= e["t"] <= end]
        summary["phases"][name] = {
            "seconds": round(end - start, 1),
            "requests": len(during),
            "failed_reads": sum(1 for e in during if e["kind"] == "read" and failed(e)),
            "failed_writes": sum(1 for e in during if e["kind"] == "write" and failed(e)),
            "p50_ms": _percentile([e["ms"] for e in during], 50),
            "p99_ms": _percentile([e["ms"] for e in during], 99),
            "served_by": _count(e["served_by"] for e in during if not failed(e)),
            "longest_lock_wait_ms": max((w["ms"] for w in service_waits(start, end)), default=0),
        }
    summary["failed_reads"] = sum(1 for e in events if e["kind"] == "read" and failed(e))
    summary["failed_writes"] = sum(1 for e in events if e["kind"] == "write" and failed(e))
    everything = service_waits(0, float("inf"))
    summary["service_lock_waits"] = len(everything)
    summary["longest_service_lock_wait"] = max(everything, key=lambda w: w["ms"], default=None)
    summary["migration_lock_waits"] = [w for w in waits if w["app"] == "alembic"]
    summary["probe_lock_waits"] = [w for w in waits if w["app"] == "lock-probe"]
    acknowledged = [e["item"] for e in events if e["kind"] == "write" and not failed(e)]
    client = Client(urllib.parse.urlsplit(base_url))
    read_back = [client.request("GET", f"/items/{i}", token=token) for i in acknowledged]
    summary["writes_acknowledged"] = len(acknowledged)
    summary["writes_lost"] = sum(1 for status, _, _ in read_back if status != 200)
    summary["writes_without_public_id"] = sum(
        1 for status, item, _ in read_back if status == 200 and item.get("public_id") is None
    )
    print(json.dumps(summary, indent=2))


# What log_lock_waits writes when a wait longer than deadlock_timeout ends with the lock.
_ACQUIRED = re.compile(
    r"^(?P<when>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+) (?P<zone>\S+) \[\d+\] app=(?P<app>\S*) "
    r"LOG:  process \d+ acquired (?P<mode>\w+) on (?P<what>.+?) after (?P<ms>[\d.]+) ms"
)


def _lock_waits(lines: Any) -> list[dict[str, Any]]:
    waits = []
    for line in lines:
        match = _ACQUIRED.match(line)
        if match is None:
            continue
        when = datetime.fromisoformat(f"{match['when']}+00:00")  # the server logs in UTC
        assert match["zone"] in ("UTC", "GMT"), line
        waits.append(
            {
                "t": when.timestamp(),
                "app": match["app"],
                "lock": f"{match['mode']} on {match['what']}",
                "ms": float(match["ms"]),
            }
        )
    return waits


def _percentile(values: list[float], percent: int) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * percent / 100))]


def _count(values: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return dict(sorted(counts.items()))


if __name__ == "__main__":
    if sys.argv[1] == "run":
        run(sys.argv[2], float(sys.argv[3]), sys.argv[4])
    else:
        report(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5])
