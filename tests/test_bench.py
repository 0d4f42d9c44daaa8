"""The benchmark runs end to end: a quick SQLite run with the Python load generator.

Only a smoke test: figures come from `bench/run`, never from timed tests.
"""

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.loadgen import PASSWORD
from bench.runner import APPS, ENDPOINTS, seed
from service import auth
from service.config import normalize_database_url
from tests.conftest import migrate

ROOT = Path(__file__).resolve().parents[1]


def test_quick_bench_reports_every_endpoint_without_server_errors(tmp_path: Path) -> None:
    output = tmp_path / "bench.json"
    cmd = [sys.executable, "-m", "bench", "--quick", "--db", "sqlite", "--loadgen", "python"]

    done = subprocess.run(
        [*cmd, "--output", str(output)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert "| GET /users/{id} |" in done.stdout
    run = json.loads(output.read_text())["runs"]["sqlite"]
    measured = {(row["endpoint"], row["app"]) for row in run["results"]}
    assert measured == {(endpoint, app) for endpoint in ENDPOINTS for app in APPS}
    for row in run["results"]:
        assert row["requests"] > 0, row
        assert row["status_5xx"] == 0, row
        assert row["socket_errors"] == 0, row
    assert {r["endpoint"] for r in run["ratios"]} == set(ENDPOINTS)
    for figures in run["logins"].values():
        assert figures["requests"] > 0, figures
        assert figures["non_2xx"] == 0, figures
    costs = run["costs"]
    assert costs["alembic_upgrade_fresh_s"] > 0
    assert costs["alembic_upgrade_at_head_s"] > 0
    assert costs["rss_mb"]["service"]["after_warmup"] > 0


@pytest.mark.parametrize("app", APPS)
async def test_instruction_driver_gets_2xx_on_every_endpoint(app: str, tmp_path: Path) -> None:
    # The in-process driver behind bench/instructions.py, without callgrind: every request it
    # would count gets a 2xx, or the driver exits non-zero.
    url = normalize_database_url(f"sqlite:///{tmp_path}/bench.db")
    await migrate(url)
    tokens = await seed(url, 20, await auth.hash_password(PASSWORD))
    tokens_file = tmp_path / "tokens.txt"
    tokens_file.write_text("".join(f"{i} {t}\n" for i, t in tokens.items()))
    env = os.environ | {
        "BENCH_APP": app,
        "DATABASE_URL": url.render_as_string(hide_password=False),
        "LOG_LEVEL": "warning",
    }
    cmd = [
        *(sys.executable, "-m", "bench.instructions", "--serve", "mixed"),
        *("--warmup", "4", "--requests", "8", "--users", "20", "--tokens", str(tokens_file)),
    ]
    process = await asyncio.create_subprocess_exec(
        *cmd, cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, out.decode()
