"""A steady, bounded load on the stack behind its load balancer, for scripts/scale-check.

    python scripts/scale_load.py run BASE_URL SECONDS EVENTS.jsonl
    python scripts/scale_load.py report BASE_URL EVENTS.jsonl MARKS.txt POSTGRES.log REPLACED_IN

`run` signs up one user per writer, then for SECONDS keeps READERS threads reading
(GET /users/{id} and GET /items/{id}) and WRITERS threads each creating items of its own user,
every thread at RATE requests a second. A write carries an Idempotency-Key and is sent again,
with the same key, until an answer comes (its first answer may be lost with a killed replica).
Each request is one line of EVENTS.jsonl: when it ended, how long it took, what, the status (or
the error), which replica answered (X-Served-By) and, for a write, its key and the item.

`report` splits the events by the phases in MARKS.txt ("NAME START END" in epoch seconds, as
the check writes them): requests, failures and latency percentiles in each, how requests spread
over the replicas while steady. It reads back every acknowledged write (none may be missing),
counts those without a `public_id`, and the keys that made more than one item (none may).
From the Postgres log (written with log_lock_waits, a low deadlock_timeout and log_line_prefix
'%m [%p] app=%a '), it takes every lock wait that ended, by application_name: `service` (the
api's sessions), `alembic` (the migration's), and `lock-probe` (the check's own, to show that
waits are seen). It prints the summary as JSON,
then the figures in words (REPLACED_IN: the seconds Swarm took to replace the killed replica),
and exits non-zero on a failed request, a lost write, a write made twice, or no lock wait seen
at all.

Not bench/'s wrk, which keeps only totals: this check needs every request's outcome, and its writes.
Standard library only (and scripts/http_api.py), for the tools' Python on the host.
"""

import http.client
import json
import random
import re
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from http_api import Client

READERS, WRITERS, RATE = 4, 2, 10.0
SENDS = 10  # of one write, at most, while no answer comes
PASSWORD = "scale check password"  # noqa: S105 - the test users', made by this script


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


def _timed(
    client: Client, recorder: Recorder, kind: str, *args: Any, key: str = "", **kwargs: Any
) -> Any:
    """The request's JSON if it succeeded, else None; its outcome recorded either way."""
    started = time.monotonic()
    headers = {"Idempotency-Key": key} if key else None
    try:
        response = client.request(*args, headers=headers, **kwargs)
    except (OSError, http.client.HTTPException) as exc:
        ms = round((time.monotonic() - started) * 1000, 2)
        recorder.write(kind=kind, ms=ms, status=None, error=type(exc).__name__, key=key)
        return None
    ms = round((time.monotonic() - started) * 1000, 2)
    # A failure may come from HAProxy, in HTML: only a success is read as JSON.
    data = response.json() if 200 <= response.status < 300 else None
    served_by = response.headers.get("X-Served-By", "")
    item = data.get("id") if data else None
    recorder.write(
        kind=kind, ms=ms, status=response.status, served_by=served_by, item=item, key=key
    )
    return data


def sign_up(base_url: str, n: int) -> tuple[int, str]:
    client = Client(base_url)
    email = f"scale-{time.time_ns()}-{n}@example.com"
    body = {"email": email, "name": f"Scale {n}", "password": PASSWORD}
    created = client.request("POST", "/users", json_body=body)
    login = client.request("POST", "/auth/token", form={"username": email, "password": PASSWORD})
    if (created.status, login.status) != (201, 200):
        sys.exit(f"sign-up answered {created.status}, log-in {login.status}")
    return created.json()["id"], login.json()["access_token"]


def run(base_url: str, seconds: float, events: str) -> None:
    """Until SECONDS have passed or a SIGTERM comes."""
    accounts = [sign_up(base_url, n) for n in range(WRITERS)]
    recorder = Recorder(events)
    deadline = time.monotonic() + seconds
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda _signum, _frame: stop.set())

    def paced(work: Callable[[Client], None]) -> None:
        client = Client(base_url)
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

    def writer(n: int) -> Callable[[Client], None]:
        user_id, token = accounts[n]

        def write(client: Client) -> None:
            key = str(uuid.uuid4())
            body = {"title": f"scale check {key}"}
            path = f"/users/{user_id}/items"
            for send in range(1, SENDS + 1):
                created = _timed(
                    client, recorder, "write", "POST", path, json_body=body, token=token, key=key
                )
                if created is not None:
                    with recorder.lock:
                        recorder.items.append(created["id"])
                    return
                # The load balancer takes a dead replica out within a second or two.
                time.sleep(0.2 * send)

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


def summarize(
    base_url: str, events_path: str, marks_path: str, postgres_log: str
) -> dict[str, Any]:
    with open(events_path) as f:
        events = [json.loads(line) for line in f]
    phases: dict[str, tuple[float, float]] = {}
    with open(marks_path) as f:
        for line in f:
            name, started, ended = line.split()
            phases[name] = (float(started), float(ended))
    with open(events_path + ".accounts") as f:
        accounts = json.load(f)
    token = accounts[0][1]
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
    acknowledged = {e["key"]: e["item"] for e in events if e["kind"] == "write" and not failed(e)}
    sent = {e["key"] for e in events if e["kind"] == "write"}
    client = Client(base_url)
    read_back = [client.request("GET", f"/items/{i}", token=token) for i in acknowledged.values()]
    found = [response.json() for response in read_back if response.status == 200]
    summary["writes_acknowledged"] = len(acknowledged)
    summary["writes_unanswered"] = len(sent - acknowledged.keys())
    summary["writes_sent_again"] = sum(
        1 for e in events if e["kind"] == "write" and failed(e) and e["key"] in acknowledged
    )
    summary["writes_lost"] = len(acknowledged) - len(found)
    summary["writes_without_public_id"] = sum(1 for item in found if item.get("public_id") is None)
    summary["writes_made_twice"] = _made_twice(client, accounts)
    return summary


def _made_twice(client: Client, accounts: list[list[Any]]) -> int:
    """Keys that made more than one item: every writer's items, page by page."""
    made: dict[str, int] = {}
    for user_id, token in accounts:
        cursor = None
        while True:
            query = "?limit=100" + (f"&cursor={cursor}" if cursor else "")
            page = client.request("GET", f"/users/{user_id}/items{query}", token=token).json()
            for item in page["items"]:
                key = item["title"].removeprefix("scale check ")
                made[key] = made.get(key, 0) + 1
            cursor = page["next_cursor"]
            if cursor is None:
                break
    return sum(1 for count in made.values() if count > 1)


RELEASE = ("steady", "migration", "rolling_update", "steady_after")


def report(summary: dict[str, Any], replaced_in: str) -> list[str]:
    """Prints the figures; returns what went wrong."""
    phases = summary["phases"]
    spread = phases["steady"]["served_by"]
    print(f"  spread while steady: {spread}")
    for name in (*RELEASE[:3], "kill", "steady_after"):
        p = phases[name]
        print(
            f"  {name}: {p['requests']} requests in {p['seconds']} s, "
            f"{p['failed_reads']} failed reads, {p['failed_writes']} failed writes, "
            f"p50 {p['p50_ms']} ms, p99 {p['p99_ms']} ms, "
            f"longest lock wait of the service {p['longest_lock_wait_ms']} ms"
        )
    steady, migration = phases["steady"]["p99_ms"], phases["migration"]["p99_ms"]
    ratio = migration / steady
    print(
        f"  p99 steady {steady} ms, during the migration {migration} ms: {ratio:.2f}x "
        f"(goal at most 3x: {'met' if ratio <= 3 else 'MISSED'})"
    )
    probe = summary["probe_lock_waits"]
    print(f"  the check's own lock wait, as logged: {[w['ms'] for w in probe]} ms")
    longest = summary["longest_service_lock_wait"]
    print(
        f"  lock waits of the service of 10 ms or more: {summary['service_lock_waits']}"
        + (f", longest {longest['ms']} ms ({longest['lock']})" if longest else "")
    )
    for wait in summary["migration_lock_waits"]:
        print(f"  the migration waited {wait['ms']} ms for {wait['lock']}")
    print(f"  killed replica replaced by Swarm in {replaced_in} s")
    failed = sum(phases[n]["failed_reads"] + phases[n]["failed_writes"] for n in RELEASE)
    kill = phases["kill"]
    print(
        f"  requests {summary['requests']}; failed while steady, migrating and rolling out:"
        f" {failed}; failed when a replica was killed: {kill['failed_reads']} reads,"
        f" {kill['failed_writes']} writes (sent again with their key until answered)"
    )
    print(
        f"  writes acknowledged {summary['writes_acknowledged']}, lost {summary['writes_lost']},"
        f" created twice {summary['writes_made_twice']}; sent again with their Idempotency-Key"
        f" after an answer was lost {summary['writes_sent_again']}; never answered"
        f" {summary['writes_unanswered']}; without public_id (written by v1 after the backfill"
        f" passed them) {summary['writes_without_public_id']}"
    )

    problems = []
    if len(spread) != 3 or min(spread.values()) < sum(spread.values()) / 10:
        problems.append(f"requests did not spread over three replicas: {spread}")
    problems += [
        f"requests failed during {name}"
        for name in RELEASE
        if phases[name]["failed_reads"] or phases[name]["failed_writes"]
    ]
    if kill["failed_reads"]:
        problems.append("reads failed when a replica was killed (the load balancer should retry)")
    if summary["writes_lost"]:
        problems.append("acknowledged writes were lost")
    if summary["writes_made_twice"]:
        problems.append("a write sent again with its Idempotency-Key made a second item")
    if summary["writes_unanswered"]:
        problems.append(f"writes never answered, though sent {SENDS} times")
    if not probe:
        problems.append("the Postgres log showed no lock wait, not even the check's own")
    return problems


# What log_lock_waits writes when a wait longer than deadlock_timeout ends with the lock.
_ACQUIRED = re.compile(
    r"^(?P<when>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+) (?P<zone>\S+) \[\d+\] app=(?P<app>\S*) "
    r"LOG:  process \d+ acquired (?P<mode>\w+) on (?P<what>.+?) after (?P<ms>[\d.]+) ms"
)


def _lock_waits(lines: Iterable[str]) -> list[dict[str, Any]]:
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


def _count(values: Iterable[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return dict(sorted(counts.items()))


if __name__ == "__main__":
    if sys.argv[1] == "run":
        run(sys.argv[2], float(sys.argv[3]), sys.argv[4])
    else:
        summary = summarize(*sys.argv[2:6])
        print(json.dumps(summary, indent=2))
        problems = report(summary, sys.argv[6])
        if problems:
            sys.exit("FAIL: " + "; ".join(problems))
