"""The benchmark runs end to end: a quick run of bench/run, and the instruction driver.

Only smoke tests: figures come from `bench/run` and `bench.instructions`, never from timed tests.
"""

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy.engine import URL

from bench.runner import ensure_wrk
from bench.workload import APPS, ENDPOINTS, make_tokens, seed, write_requests
from service.config import normalize_database_url
from tests.support.migrations import migrate

ROOT = Path(__file__).resolve().parents[1]


def test_quick_bench_reports_figures_and_round_trips(postgres_server: URL, tmp_path: Path) -> None:
    if not ensure_wrk():  # installed as bench/run does, when we may
        pytest.skip("wrk is not installed, and only root can install it (apt-get install wrk)")
    output = tmp_path / "bench.json"
    env = os.environ | {"BENCH_POSTGRES_URL": postgres_server.render_as_string(False)}
    # A read and a write: the instruction driver's test below covers every endpoint.
    cmd = [sys.executable, "-m", "bench", "--quick", "--endpoints", "get,item"]

    done = subprocess.run(
        [*cmd, "--output", str(output)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert "| GET /users/{id} |" in done.stdout
    run = json.loads(output.read_text())["run"]
    for phase in ("load", "latency"):
        measured = {(row["endpoint"], row["app"]) for row in run[phase]}
        assert measured == {(endpoint, app) for endpoint in ("get", "item") for app in APPS}
        for row in run[phase]:
            assert row["requests"] > 0, row
            assert row["non_2xx"] == 0, row
            assert row["socket_errors"] == 0, row
    for row in run["latency"]:
        assert row["round_trips"] >= 1.5, row  # at least the token, then the statement


@pytest.mark.parametrize("app", APPS)
async def test_instruction_driver_gets_2xx_on_every_endpoint(app: str, tmp_path: Path) -> None:
    # The in-process driver behind bench/instructions.py, without callgrind: every request it
    # would count gets a 2xx, or the driver exits non-zero.
    url = normalize_database_url(f"sqlite:///{tmp_path}/bench.db")
    await migrate(url)
    tokens = make_tokens(20)
    await seed(url, 20, tokens)
    # Three requests to each endpoint, one after another; the driver replays them in order.
    files = write_requests(tmp_path, list(ENDPOINTS), tokens, 20)
    requests_file = tmp_path / "requests.txt"
    requests_file.write_text(
        "\n".join(r for f in files.values() for r in f.read_text().splitlines()[:3])
    )
    env = os.environ | {
        "BENCH_APP": app,
        "DATABASE_URL": url.render_as_string(hide_password=False),
        "LOG_LEVEL": "warning",
    }
    cmd = [
        *(sys.executable, "-m", "bench.instructions", "--serve", str(requests_file)),
        *("--warmup", "4", "--requests", "8"),
    ]
    process = await asyncio.create_subprocess_exec(
        *cmd, cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, out.decode()
