"""The ORM tables and their declarative base: one naming convention, one type per annotation."""

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.engine.default import DefaultExecutionContext
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, declared_attr, mapped_column
from sqlalchemy.types import TypeDecorator

# Named constraints let Alembic drop and alter them by name, on SQLite (batch mode) too.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them without an offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use an aware UTC datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    # What a plain annotation maps to, so that a model written as SQLAlchemy's docs teach is
    # right as written: `id: Mapped[int] = mapped_column(primary_key=True)` is BIGINT on Postgres,
    # and INTEGER on SQLite, which auto-increments only a column declared exactly so (and stores
    # 64 bits in it).
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        int: BigInteger().with_variant(Integer(), "sqlite"),
        datetime: UTCDateTime(),
    }
    # Without AUTOINCREMENT, SQLite gives a new row the id of a deleted last one; Postgres
    # never reuses an id. A model with __table_args__ of its own adds them to these.
    __table_args__: Any = ({"sqlite_autoincrement": True},)


def now() -> datetime:
    return datetime.now(UTC)


def _created_at(context: DefaultExecutionContext) -> datetime:
    # A new row's updated_at equals its created_at, not a microsecond later.
    created: datetime | None = context.get_current_parameters().get("created_at")  # type: ignore[no-untyped-call]
    return created or now()


class Timestamped:
    created_at: Mapped[datetime] = mapped_column(default=now, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        default=_created_at, onupdate=now, server_default=func.now()
    )

    def apply(self, changes: dict[str, Any]) -> None:
        """A partial update: set the fields given. updated_at moves even when the values given
        are the ones stored: the client asked for a change."""
        for field, value in changes.items():
            setattr(self, field, value)
        if changes:
            self.updated_at = now()


class Versioned:
    """SQLAlchemy's version counter: every change moves `version`, and the UPDATE or DELETE
    that makes it names the version it read (`WHERE version = :v`), so that of two writes
    made from one version only the first finds its row (the second: StaleDataError). A
    resource's ETag is its version (service/preconditions.py)."""

    # No server_default here: with one, SQLAlchemy reads each new version back with RETURNING
    # after every UPDATE, 150,000 instructions a PATCH (docs/benchmark.md). A migration that
    # adds the column gives it DEFAULT 1 (service/autogenerate.py), for rows already there and
    # for the rows a previous release inserts.
    version: Mapped[int]

    @declared_attr.directive
    def __mapper_args__(cls) -> dict[str, Any]:
        return {"version_id_col": cls.__table__.c.version}  # type: ignore[attr-defined]


class User(Versioned, Timestamped, Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    # An Argon2id PHC string; NULL for accounts made before passwords, which cannot log in.
    password_hash: Mapped[str | None] = mapped_column(String(255))


class Item(Versioned, Timestamped, Base):
    __tablename__ = "items"

    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)


class AccessToken(Base):
    """A bearer token, stored only as its SHA-256; deleted with its user."""

    __tablename__ = "access_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=now, server_default=func.now())
    expires_at: Mapped[datetime] = mapped_column(index=True)


class LoginFailure(Base):
    """One failed login for an email (known or not), kept while it can count towards a lock."""

    __tablename__ = "login_failures"
    __table_args__ = (
        Index("ix_login_failures_email_failed_at", "email", "failed_at"),
        *Base.__table_args__,
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320))
    failed_at: Mapped[datetime] = mapped_column(index=True)


class IdempotencyKey(Base):
    """A create that came with an Idempotency-Key, and its response, to give a repeat of it.

    Written in the same transaction as what the request created: both, or neither.
    """

    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("caller_id", "key"), *Base.__table_args__)

    id: Mapped[int] = mapped_column(primary_key=True)
    caller_id: Mapped[int]  # the user who sent it; 0 for a sign-up, which has no caller
    key: Mapped[str] = mapped_column(String(255))
    fingerprint: Mapped[str] = mapped_column(String(64))  # of the request: method, path, body
    # A password is left out of the fingerprint, a fast hash: a repeat must send one that this
    # Argon2 hash (the account's own) accepts.
    password_hash: Mapped[str | None] = mapped_column(String(255))
    status_code: Mapped[int]
    headers: Mapped[dict[str, str]] = mapped_column(JSON)
    body: Mapped[str] = mapped_column(Text)
    expires_at: Mapped[datetime] = mapped_column(index=True)


def violated(exc: IntegrityError, constraint: str, *, sqlite: str) -> bool:
    """Whether a write failed on `constraint`, a name from NAMING_CONVENTION. Postgres names it;
    SQLite names a unique constraint by its column (`sqlite="users.email"`) and a foreign key
    not at all (`sqlite="FOREIGN KEY constraint failed"`)."""
    message = str(exc.orig)
    return constraint in message or sqlite in message
