"""schemathesis from outside, as the service's clients meet it: every phase (the schema's
examples, its rules at their edges, random cases, and sequences of calls) against
`python -m service`, on each database, with the checks that hold the schema to what the server
does: a valid request is accepted, an invalid one refused, every status and header documented."""

import asyncio
import os
import sys
from collections.abc import Callable
from pathlib import Path

from sqlalchemy.engine import URL

from tests.support import ROOT
from tests.support.processes import uvicorn

CHECKS = (
    "not_a_server_error,status_code_conformance,content_type_conformance,"
    "response_schema_conformance,response_headers_conformance,negative_data_rejection,"
    "positive_data_acceptance,missing_required_header"
)
# One worker: on Python 3.11, hypothesis's ast.parse from two threads can fail inside CPython
# ("AST constructor recursion depth mismatch", python/cpython#106905).
# 412 answers a valid If-Match of a version the resource is no longer at, as 404 answers an id
# that names nothing: state the schema cannot know (schemathesis expects the others already).
CONFIG = """
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "412", "429"]
"""


async def test_schemathesis_finds_nothing_in_any_phase(
    migrated_url: URL, tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    database = migrated_url.render_as_string(hide_password=False)
    # Warnings only: the access lines of ~1,000 requests would fill the pipe nobody reads.
    async with uvicorn(database, LOG_LEVEL="warning") as server:
        process = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).with_name("schemathesis")), "--config-file", str(config),
            "run", f"{server.base_url}/openapi.json",
            "--phases", "examples,coverage,fuzzing,stateful", "--checks", CHECKS,
            "--max-examples", "5", "--seed", "1", "--workers", "1",
            cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            env=os.environ | {
                "SCHEMATHESIS_HOOKS": "tests.support.schemathesis_hooks",
                "SCHEMATHESIS_BASE_URL": server.base_url,
                "PYTHONPATH": str(ROOT),
            },
        )  # fmt: skip
        out, _ = await asyncio.wait_for(process.communicate(), timeout=240)
    report = out.decode()

    assert process.returncode == 0, report[-6000:]
    (cases,) = [line.strip() for line in report.splitlines() if " generated, " in line]
    record_property(
        "figure", f"schemathesis, all phases ({migrated_url.get_backend_name()}): {cases}"
    )
