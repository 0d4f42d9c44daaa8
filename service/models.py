"""ORM tables."""

from datetime import UTC, datetime

from sqlalchemy import BigInteger, ForeignKey, Integer, String, Text, func
from sqlalchemy.engine.default import DefaultExecutionContext
from sqlalchemy.orm import Mapped, mapped_column, relationship

from service.db import Base

# BIGINT on Postgres; SQLite only auto-increments a column declared exactly INTEGER.
BigId = BigInteger().with_variant(Integer(), "sqlite")


def _now() -> datetime:
    return datetime.now(UTC)


def _created_at(context: DefaultExecutionContext) -> datetime:
    # A new row's updated_at equals its created_at, not a microsecond later.
    created: datetime | None = context.get_current_parameters().get("created_at")  # type: ignore[no-untyped-call]
    return created or _now()


class Timestamped:
    created_at: Mapped[datetime] = mapped_column(default=_now, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        default=_created_at, onupdate=_now, server_default=func.now()
    )


class User(Timestamped, Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(100))

    items: Mapped[list["Item"]] = relationship(
        back_populates="owner", lazy="raise", passive_deletes=True
    )


class Item(Timestamped, Base):
    __tablename__ = "items"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    owner_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)

    owner: Mapped[User] = relationship(back_populates="items", lazy="raise")


# The tables themselves, for Core statements (service/users.py says why).
users = Base.metadata.tables["users"]
items = Base.metadata.tables["items"]
