"""The container check's checks of the running stack, as a client and an operator see it.

    python3 scripts/container_check.py write BASE_URL STATE.json HEAD_REVISION
    python3 scripts/container_check.py read BASE_URL STATE.json HEAD_REVISION
    docker compose logs --no-log-prefix api | python3 scripts/container_check.py logs

`write`: /health is at HEAD_REVISION; signs up a user, logs in, creates an item, reads both
back, and keeps them and the token in STATE.json. `read` (after a restart or a recreate):
/health again, both read back unchanged with the same token, and /metrics counts the read.
`logs`: the api's output is JSON lines from two workers, an access line per request with its
route template and request id. Exits non-zero, saying why, at the first thing that is not so.
"""

import json
import sys
import time
from typing import Any

from http_api import Client, Response

GET_ITEM = 'method="GET",route="/items/{item_id}",status="200"'


def call(client: Client, method: str, path: str, expect: int = 200, **kwargs: Any) -> Response:
    response = client.request(method, path, **kwargs)
    print(f"  {method} {path} -> {response.status}")
    if response.status != expect:
        sys.exit(
            f"{method} {path}: expected {expect}, got {response.status}: {response.body[:500]!r}"
        )
    return response


def same(label: str, got: object, want: object) -> None:
    if got != want:
        sys.exit(f"{label}: read back {got}, wrote {want}")


def health(client: Client, head: str) -> None:
    body = call(client, "GET", "/health").json()
    want = {"status": "ok", "database": "ok", "revision": head}
    same("/health", {key: body.get(key) for key in want}, want)


def requests_counted(client: Client, labels: str) -> float:
    """http_requests_total with these labels, summed. /metrics is public, and whichever worker
    answers, it counts every worker's requests."""
    text = client.request("GET", "/metrics").body.decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("http_requests_total{") and labels in line
    )


def write(client: Client, state_path: str, head: str) -> None:
    health(client, head)
    email = f"container-check-{time.time_ns()}@example.com"
    password = "container check password"  # noqa: S105 - the user this check makes
    new_user = {"email": email, "name": "Container Check", "password": password}
    created = call(client, "POST", "/users", 201, json_body=new_user)
    user = created.json()
    same("user email", user["email"], email)
    same("Location", created.headers.get("Location"), f"/users/{user['id']}")
    form = {"username": email, "password": password}
    token = call(client, "POST", "/auth/token", form=form).json()["access_token"]
    call(client, "GET", "/users/me", 401)
    new_item = {"title": "written by the container check", "description": None}
    path = f"/users/{user['id']}/items"
    item = call(client, "POST", path, 201, json_body=new_item, token=token).json()
    same("item owner", item["owner_id"], user["id"])
    same("user", call(client, "GET", f"/users/{user['id']}", token=token).json(), user)
    same("item", call(client, "GET", f"/items/{item['id']}", token=token).json(), item)
    with open(state_path, "w") as f:
        json.dump({"user": user, "item": item, "token": token}, f)
    print(f"  wrote user {user['id']} and item {item['id']}, read both back")


def read(client: Client, state_path: str, head: str) -> None:
    health(client, head)
    with open(state_path) as f:
        state = json.load(f)
    user, item, token = state["user"], state["item"], state["token"]
    before = requests_counted(client, GET_ITEM)
    same("user", call(client, "GET", f"/users/{user['id']}", token=token).json(), user)
    same("item", call(client, "GET", f"/items/{item['id']}", token=token).json(), item)
    after = requests_counted(client, GET_ITEM)
    if after != before + 1:
        sys.exit(f"/metrics: {GET_ITEM} went from {before} to {after}, expected one more")
    print(f"  user {user['id']} and item {item['id']} read back unchanged (token still valid)")
    print(f"  /metrics counted the read: http_requests_total{{{GET_ITEM}}} {before:g} -> {after:g}")


def logs(lines: list[str]) -> None:
    events = [json.loads(line) for line in lines if line.strip()]
    workers = {e["event"] for e in events if e["event"].startswith("Started server process")}
    access = [e for e in events if e.get("logger") == "service.access"]
    routes = {e["route"] for e in access}
    if len(workers) < 2:
        sys.exit(f"expected two workers, saw {workers}")
    if "/users/{user_id}" not in routes:
        sys.exit(f"no access line for /users/{{user_id}}: {routes}")
    if not all(e.get("request_id") for e in access):
        sys.exit("an access line without a request id")
    print(f"  {len(events)} JSON lines, {len(workers)} workers, {len(access)} access lines")


if __name__ == "__main__":
    if sys.argv[1] == "logs":
        logs(sys.stdin.readlines())
    else:
        action, base_url, state_path, head = sys.argv[1:]
        {"write": write, "read": read}[action](Client(base_url), state_path, head)
