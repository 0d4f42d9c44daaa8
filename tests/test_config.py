import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from service.config import (
    DOCKER_COMPOSE_KEYS,
    ConfigError,
    Settings,
    load_settings,
    normalize_database_url,
)
from tests.support import ROOT


@pytest.fixture(autouse=True)
def _in_empty_directory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Each test in a working directory of its own: no .env but the one it writes."""
    monkeypatch.chdir(tmp_path)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgres://u:p@db:5432/app", "postgresql+asyncpg://u:p@db:5432/app"),
        ("postgresql://u:p@db/app", "postgresql+asyncpg://u:p@db/app"),
        ("postgresql+psycopg2://u:p@db/app", "postgresql+asyncpg://u:p@db/app"),
        ("postgresql+asyncpg://u:p@db/app", "postgresql+asyncpg://u:p@db/app"),
        ("postgresql://u:p@db/app?sslmode=require", "postgresql+asyncpg://u:p@db/app?ssl=require"),
        ("sqlite:///./app.db", "sqlite+aiosqlite:///./app.db"),
        ("sqlite+aiosqlite:////tmp/x.db", "sqlite+aiosqlite:////tmp/x.db"),
    ],
)
def test_normalize_database_url_maps_schemes_to_async_drivers(given: str, expected: str) -> None:
    assert normalize_database_url(given).render_as_string(hide_password=False) == expected


def test_normalize_database_url_decodes_special_characters_in_password() -> None:
    url = normalize_database_url("postgresql://user:p%25%40%3A%2Fw@db/app")

    assert url.password == "p%@:/w"


@pytest.mark.parametrize("given", ["mysql://u:s3cret@db/app", "not a url", "http://u:s3cret@x/"])
def test_normalize_database_url_rejects_other_schemes_without_password(given: str) -> None:
    with pytest.raises(ConfigError, match="DATABASE_URL") as caught:
        normalize_database_url(given)

    assert "s3cret" not in str(caught.value)
    assert "\n" not in str(caught.value)


def test_settings_default_to_sqlite_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)

    settings = Settings()

    assert settings.database_url.render_as_string() == "sqlite+aiosqlite:///./app.db"
    assert (settings.DB_POOL_SIZE, settings.DB_MAX_OVERFLOW, settings.DB_POOL_TIMEOUT) == (
        5,
        10,
        10,
    )


def test_normalize_database_url_rejects_non_numeric_port_without_password() -> None:
    with pytest.raises(ConfigError, match="DATABASE_URL") as caught:
        normalize_database_url("postgresql://bob:s3cret@db:notaport/x")

    assert "s3cret" not in str(caught.value)


def test_log_level_accepts_upper_case(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOG_LEVEL", "WARNING")

    assert load_settings().LOG_LEVEL == "warning"


def test_load_settings_reports_bad_values_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DB_POOL_SIZE", "many")

    with pytest.raises(ConfigError, match="DB_POOL_SIZE") as caught:
        load_settings()

    assert "\n" not in str(caught.value)


def test_server_start_with_bad_url_prints_one_line_without_traceback() -> None:
    env = os.environ | {"DATABASE_URL": "mysql://app:s3cret-pw@db/app"}

    result = subprocess.run(
        [sys.executable, "-m", "uvicorn", "service.main:app"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: DATABASE_URL")
    assert "s3cret-pw" not in result.stderr + result.stdout


def test_database_url_file_wins_over_database_url(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secret = tmp_path / "database_url"
    secret.write_text("postgresql://app:s3cret@db/app\n")
    monkeypatch.setenv("DATABASE_URL", "sqlite:///./other.db")
    monkeypatch.setenv("DATABASE_URL_FILE", str(secret))

    url = load_settings().database_url

    assert url.render_as_string(hide_password=False) == "postgresql+asyncpg://app:s3cret@db/app"


def test_unreadable_database_url_file_is_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DATABASE_URL_FILE", str(tmp_path / "missing"))

    with pytest.raises(ConfigError, match="DATABASE_URL_FILE: cannot read") as caught:
        load_settings()

    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(("pool", "overflow"), [("0", "0"), ("0", "10"), ("400", "200")])
def test_pool_of_no_or_absurdly_many_connections_is_refused(
    monkeypatch: pytest.MonkeyPatch, pool: str, overflow: str
) -> None:
    monkeypatch.setenv("DB_POOL_SIZE", pool)
    monkeypatch.setenv("DB_MAX_OVERFLOW", overflow)

    with pytest.raises(ConfigError, match="DB_POOL_SIZE") as caught:
        load_settings()

    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("workers", "problem"),
    [
        ("two", "Input should be a valid integer, unable to parse string as an integer"),
        ("0", "Input should be greater than or equal to 1"),
    ],
)
def test_bad_web_concurrency_is_one_line_without_traceback(
    tmp_path: Path, workers: str, problem: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "service"],
        cwd=tmp_path,
        env=os.environ | {"WEB_CONCURRENCY": workers},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 1
    assert result.stderr.splitlines() == [f"error: invalid settings: WEB_CONCURRENCY: {problem}"]


def test_dotenv_is_read_and_the_environment_wins(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / ".env").write_text("DB_POOL_SIZE=7\nLOG_LEVEL=debug\n")
    monkeypatch.setenv("LOG_LEVEL", "error")

    settings = load_settings()

    assert (settings.DB_POOL_SIZE, settings.LOG_LEVEL) == (7, "error")


def test_unknown_key_in_dotenv_is_one_line_naming_it(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("DATABASE_URI=postgresql://app:s3cret-pw@db/app\n")

    with pytest.raises(ConfigError) as caught:
        load_settings()

    assert str(caught.value) == "invalid settings: unknown key in .env: DATABASE_URI"


def test_unknown_variable_in_the_environment_is_no_error_but_the_default_says_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The environment holds many variables that are not ours: a typo cannot be told apart.
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("DATABASE_URI", "postgresql://app:s3cret-pw@db/app")

    described = load_settings().database_description()

    assert described == "sqlite+aiosqlite:///./app.db (DATABASE_URL is not set: the default)"


def test_database_description_hides_the_password_and_the_query(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = "postgresql://app:s3cret-pw@db:5432/app?sslpassword=s3cret-pw"
    monkeypatch.setenv("DATABASE_URL", url)

    assert load_settings().database_description() == "postgresql+asyncpg://app:***@db:5432/app"


def test_database_description_names_the_url_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secret = tmp_path / "database_url"
    secret.write_text("postgresql://app:s3cret-pw@db/app\n")
    monkeypatch.setenv("DATABASE_URL_FILE", str(secret))

    described = load_settings().database_description()

    assert described == f"postgresql+asyncpg://app:***@db/app (from DATABASE_URL_FILE {secret})"


def test_docker_compose_variables_in_dotenv_are_not_errors(tmp_path: Path) -> None:
    # `cp .env.example .env` is how the README's Docker section starts; docker compose reads
    # .env for docker-compose.yml's variables, and the service and Alembic read it too.
    shutil.copy(ROOT / ".env.example", tmp_path / ".env")
    compose_variables = set(re.findall(r"\$\{(\w+)", (ROOT / "docker-compose.yml").read_text()))

    settings = load_settings()

    assert settings.WEB_CONCURRENCY == 2
    assert compose_variables <= DOCKER_COMPOSE_KEYS | set(Settings.model_fields)
