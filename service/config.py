"""Settings read from the environment and ./.env, and the one place DATABASE_URL is normalised."""

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, PrivateAttr, ValidationError, model_validator
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

# Far above what one process needs, and what a Postgres server allows; a value above it is a
# typo or a misunderstanding, refused at start.
MAX_CONNECTIONS_PER_PROCESS = 500
_POSTGRES_SCHEMES = {"postgres", "postgresql", "postgresql+psycopg2", "postgresql+asyncpg"}
_SQLITE_SCHEMES = {"sqlite", "sqlite+aiosqlite"}
# docker compose reads the same .env for the variables of docker-compose.yml (.env.example):
# they are not settings of ours, but not mistakes either.
DOCKER_COMPOSE_KEYS = frozenset(
    {"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB", "API_HOST", "API_PORT"}
)


class ConfigError(Exception):
    """A setting is unusable; the message is one line, safe to print (no password)."""


def _lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


def _comma_separated(value: object) -> object:
    # "https://a.example,https://b.example", as full-stack-fastapi-template reads its origins.
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class Settings(BaseSettings):
    # The environment wins over .env. Only .env can bring keys that are not settings (of the
    # environment, just the settings' own names are read): "allow" lets
    # _no_unknown_keys name them, where "forbid" would refuse docker compose's too.
    model_config = SettingsConfigDict(env_file=".env", extra="allow", frozen=True)

    DATABASE_URL: str = "sqlite+aiosqlite:///./app.db"
    # A file holding the URL (a Docker or Kubernetes secret); it wins over DATABASE_URL.
    DATABASE_URL_FILE: Path | None = None
    DB_POOL_SIZE: int = Field(default=5, ge=1)
    DB_MAX_OVERFLOW: int = Field(default=10, ge=0)
    DB_POOL_TIMEOUT: float = Field(default=10, gt=0)
    DB_CONNECT_TIMEOUT: float = Field(default=5, gt=0)
    DB_STATEMENT_TIMEOUT: float = Field(default=30, ge=0)
    DB_ECHO: bool = False
    LOG_FORMAT: Annotated[Literal["console", "json"], BeforeValidator(_lower)] = "console"
    OTEL_EXPORTER_OTLP_ENDPOINT: str | None = None
    ACCESS_TOKEN_TTL: int = Field(default=86400, gt=0)
    LOGIN_MAX_FAILURES: int = Field(default=5, ge=1)
    LOGIN_WINDOW: int = Field(default=900, gt=0)
    LOG_LEVEL: Annotated[
        Literal["critical", "error", "warning", "info", "debug"], BeforeValidator(_lower)
    ] = "info"
    MIGRATION_LOCK_TIMEOUT: float = Field(default=5, gt=0)
    # Origins a browser may call the API from (CORS); none by default.
    CORS_ORIGINS: Annotated[list[str], NoDecode, BeforeValidator(_comma_separated)] = []
    # When true, PATCH and DELETE of a resource without If-Match get 428.
    REQUIRE_IF_MATCH: bool = False
    # Seconds an Idempotency-Key and the response it got are kept.
    IDEMPOTENCY_TTL: int = Field(default=86400, gt=0)
    # The largest request body any route reads, in bytes: a larger one is refused with 413
    # while it streams in, before it is all read.
    MAX_BODY_BYTES: int = Field(default=1024 * 1024, ge=0)
    # Worker processes of `python -m service` (uvicorn reads the same variable).
    WEB_CONCURRENCY: int = Field(default=1, ge=1)
    # Where the workers' metrics files go (prometheus_client's multiprocess mode);
    # `python -m service` sets it when it starts more than one worker.
    PROMETHEUS_MULTIPROC_DIR: Path | None = None
    # The Alembic configuration whose migrations /health compares the database with (Alembic's
    # own variable, for `alembic -c`).
    ALEMBIC_CONFIG: Path = Path("alembic.ini")

    # DATABASE_URL, or the file's, normalised: read once, when the settings are.
    _database_url: URL = PrivateAttr()

    @model_validator(mode="after")
    def _no_unknown_keys(self) -> "Settings":
        unknown = sorted({key.upper() for key in self.model_extra or {}} - DOCKER_COMPOSE_KEYS)
        if unknown:
            raise ValueError(f"unknown key in .env: {', '.join(unknown)}")
        return self

    @model_validator(mode="after")
    def _connections_fit_a_server(self) -> "Settings":
        connections = self.DB_POOL_SIZE + self.DB_MAX_OVERFLOW
        if connections > MAX_CONNECTIONS_PER_PROCESS:
            raise ValueError(
                f"DB_POOL_SIZE + DB_MAX_OVERFLOW = {connections} connections at once per worker;"
                f" more than {MAX_CONNECTIONS_PER_PROCESS} is more than a database server serves"
                " (Postgres' max_connections is 100 by default): lower them, or put PgBouncer"
                " in front"
            )
        return self

    @model_validator(mode="after")
    def _read_database_url(self) -> "Settings":
        # A ConfigError passes through pydantic as it is: its one line, not a ValidationError.
        raw = self.DATABASE_URL
        if self.DATABASE_URL_FILE is not None:
            try:
                raw = self.DATABASE_URL_FILE.read_text().strip()
            except OSError as exc:
                raise ConfigError(
                    f"DATABASE_URL_FILE: cannot read {self.DATABASE_URL_FILE} ({exc.strerror})"
                ) from None
        self._database_url = normalize_database_url(raw)
        return self

    @property
    def database_url(self) -> URL:
        return self._database_url

    def database_description(self) -> str:
        """The database URL as logs may show it, and where it came from."""
        url = masked(self.database_url)
        if self.DATABASE_URL_FILE is not None:
            return f"{url} (from DATABASE_URL_FILE {self.DATABASE_URL_FILE})"
        if "DATABASE_URL" not in self.model_fields_set:
            return f"{url} (DATABASE_URL is not set: the default)"
        return url


def masked(url: URL) -> str:
    """The URL without its password, and without its query, which may hold one too."""
    return url.set(query={}).render_as_string(hide_password=True)


def normalize_database_url(raw: str) -> URL:
    """Map the accepted URL schemes onto the async drivers; refuse anything else."""
    try:
        url = make_url(raw)
    except (ArgumentError, ValueError):  # ValueError: e.g. a port that is not a number
        raise ConfigError(
            "DATABASE_URL is not a database URL (expected postgresql://... or sqlite:///...)"
        ) from None
    if url.drivername in _POSTGRES_SCHEMES:
        url = url.set(drivername="postgresql+asyncpg")
        # libpq's sslmode, which hosted databases put in their URLs, is asyncpg's ssl.
        if "sslmode" in url.query:
            sslmode = url.query["sslmode"]
            url = url.difference_update_query(["sslmode"]).update_query_dict({"ssl": sslmode})
        return url
    if url.drivername in _SQLITE_SCHEMES:
        return url.set(drivername="sqlite+aiosqlite")
    raise ConfigError(
        f"DATABASE_URL has unsupported scheme {url.drivername!r} in {masked(url)};"
        " use postgresql+asyncpg:// or sqlite+aiosqlite://"
    )


def load_settings() -> Settings:
    """Read and check the settings; every problem becomes one ConfigError line."""
    try:
        settings = Settings()
    except ValidationError as exc:
        # pydantic's own message echoes the input, which may hold a password.
        problems = "; ".join(_problem(e) for e in exc.errors())
        raise ConfigError(f"invalid settings: {problems}") from None
    return settings


def _problem(error: ErrorDetails) -> str:
    if not error["loc"]:  # a model validator's ValueError: its message says it all
        return str(error.get("ctx", {}).get("error", error["msg"]))
    return f"{'.'.join(map(str, error['loc']))}: {error['msg']}"
