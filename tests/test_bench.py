"""The benchmark runs end to end: a quick SQLite run with the Python load generator.

Only a smoke test: figures come from `bench/run`, never from timed tests.
"""

import json
import subprocess
import sys
from pathlib import Path

from bench.runner import APPS, ENDPOINTS

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
