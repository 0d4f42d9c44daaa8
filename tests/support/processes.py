"""The service as a user runs it, a process of its own, and a copy of the project to change."""

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path

import httpx
import pytest

from tests.support import ROOT


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def copy_of_project(into: Path) -> Path:
    """The project's files, as a fresh clone has them plus the ones not yet added to git (a
    user's new resource), without what .gitignore leaves out, in a directory of their own."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
        text=True,
    )
    for name in filter(None, listed.stdout.split("\0")):
        if (ROOT / name).is_file():
            (into / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, into / name)
    return into


SERVICE = ("-m", "service")
UVICORN = ("-m", "uvicorn", "service.main:app")


class Server:
    def __init__(self, process: asyncio.subprocess.Process, port: int) -> None:
        self.process = process
        self.base_url = f"http://127.0.0.1:{port}"
        self.output = ""

    async def stop(self, *, signalled: bool = False) -> int:
        """SIGTERM (unless already sent), then the exit code once the process ends."""
        if not signalled:
            self.process.send_signal(signal.SIGTERM)
        out, _ = await asyncio.wait_for(self.process.communicate(), timeout=30)
        self.output = out.decode()
        return self.process.returncode or 0


def _env(database_url: str | None, **extra: str) -> dict[str, str]:
    """The environment, with DATABASE_URL set to `database_url`, or unset for None."""
    env = {name: value for name, value in os.environ.items() if name != "DATABASE_URL"}
    if database_url is not None:
        env["DATABASE_URL"] = database_url
    return env | extra


@asynccontextmanager
async def uvicorn(
    database_url: str | None,
    *args: str,
    cwd: Path = ROOT,
    command: tuple[str, ...] = SERVICE,
    **env: str,
) -> AsyncIterator[Server]:
    """`python -m service` in `cwd` (the repo root, or an older release's source): uvicorn on
    service.main:app, exiting 0 after a graceful stop. Or another `command`, such as UVICORN."""
    port = free_port()
    # A session of its own: if the test fails, its worker processes go down with it too
    # (killed alone, the supervisor would leave them holding our output pipe).
    process = await asyncio.create_subprocess_exec(
        sys.executable, *command, "--port", str(port), *args,
        cwd=cwd, env=_env(database_url, **env), start_new_session=True,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    server = Server(process, port)
    try:
        async with httpx.AsyncClient(base_url=server.base_url) as client:
            for _ in range(600):  # up to a minute on a loaded machine
                try:
                    await client.get("/health/live")
                    break
                except httpx.TransportError:
                    assert process.returncode is None, "uvicorn exited"
                    await asyncio.sleep(0.1)
            else:
                pytest.fail("uvicorn did not answer /health/live within a minute")
        yield server
    finally:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()
