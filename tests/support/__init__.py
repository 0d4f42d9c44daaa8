"""What the tests share, beside the fixtures in tests/conftest.py, one module a job:

databases     empty databases of each backend, settings, the app's sessions in a test's transaction
migrations    Alembic in-process and as its command line, and revisions a test adds on top
app           the app on a database, and in-process clients of it
accounts      sign-up and login through the API
processes     the service as a process, and a copy of the project
bad_input     a world to send bad input to, and what a clear 4xx is
"""

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def unavailable(reason: str) -> None:
    """Skip: something the test needs is missing. In CI that fails the run instead."""
    if IN_CI:
        pytest.fail(f"CI=true but {reason}", pytrace=False)
    pytest.skip(reason)
