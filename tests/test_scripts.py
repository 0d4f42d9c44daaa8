"""The README's two commands share .venv: neither may undo the other."""

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.support import ROOT
from tests.support.processes import copy_of_project, free_port


def test_serve_after_check_keeps_the_dev_tools(tmp_path: Path) -> None:
    clone = copy_of_project(tmp_path)
    if (ROOT / ".tools").is_dir():  # the uv that scripts/uv installed, if not on PATH
        (clone / ".tools").symlink_to(ROOT / ".tools")
    # scripts/check's install, then scripts/serve in full: install, migrate, serve.
    subprocess.run(
        ["scripts/uv", "sync", "--locked", "--extra", "dev", "--quiet"],
        cwd=clone,
        check=True,
        timeout=300,
    )
    port = free_port()
    serve = subprocess.Popen(
        ["scripts/serve"],
        cwd=clone,
        env=os.environ | {"DATABASE_URL": "sqlite:///./app.db", "PORT": str(port)},
        start_new_session=True,  # its uvicorn goes down with it if the test fails
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            for _ in range(1200):  # up to two minutes on a loaded machine
                try:
                    health = client.get("/health")
                    break
                except httpx.TransportError:
                    assert serve.poll() is None, "scripts/serve exited"
                    time.sleep(0.1)
            else:
                pytest.fail("scripts/serve did not answer within two minutes")
        os.killpg(serve.pid, signal.SIGTERM)
        out, _ = serve.communicate(timeout=60)
    finally:
        if serve.poll() is None:
            os.killpg(serve.pid, signal.SIGKILL)
            serve.wait()

    assert health.status_code == 200, out.decode()
    assert health.json()["status"] == "ok"
    assert serve.returncode == 0
    for tool in ("ruff", "mypy", "pytest"):
        assert (clone / ".venv" / "bin" / tool).exists(), f"scripts/serve removed {tool}"
