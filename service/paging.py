"""Keyset pagination: a page of rows after an id, and the opaque cursor that says where the next
page starts (no OFFSET, no COUNT(*))."""

import base64
import re
from typing import Annotated, Any, Generic, TypeVar

from pydantic import BaseModel, Field, PlainValidator, WithJsonSchema
from sqlalchemy import Executable, Row

from service.db import ReadSession
from service.schemas import MAX_ID

T = TypeVar("T")


async def keyset_page(
    session: ReadSession,
    statement: Executable,
    params: dict[str, Any],
    *,
    after: int | None,
    limit: int,
) -> tuple[list[Row[Any]], int | None]:
    """One page of `statement`, and the id to continue after (None on the last page).

    The statement filters `id > :after`, orders by id and takes `:limit` rows. One row more
    than the page tells whether another page follows.
    """
    # Ids start at 1: "after 0" is the first page.
    params = params | {"after": after or 0, "limit": limit + 1}
    rows = list((await session.execute(statement, params)).all())
    if len(rows) > limit:
        return rows[:limit], rows[limit - 1].id
    return rows, None


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(
        description="Pass as `cursor` to get the next page; null on the last page."
    )

    @classmethod
    def of(cls, rows: list[Any], after: int | None) -> "Page[T]":
        """The page of these rows (ORM objects or rows), whose next one starts after `after`."""
        next_cursor = None if after is None else encode_cursor(after)
        return cls.model_validate({"items": rows, "next_cursor": next_cursor}, from_attributes=True)


# A cursor is the id to continue after, as 8 bytes in URL-safe base64: 11 characters, the last
# of which holds 4 bits. Every string of this shape is a cursor (past the last id: an empty page),
# so the schema's pattern is the whole rule.
CURSOR_PATTERN = "^[A-Za-z0-9_-]{10}[AEIMQUYcgkosw048]$"
_CURSOR = re.compile(CURSOR_PATTERN)


def encode_cursor(after_id: int) -> str:
    return base64.urlsafe_b64encode(after_id.to_bytes(8, "big")).rstrip(b"=").decode()


def _decode_cursor(value: Any) -> int:
    if not isinstance(value, str) or not _CURSOR.fullmatch(value):
        raise ValueError("invalid cursor; pass the next_cursor of a previous page")
    after = int.from_bytes(base64.urlsafe_b64decode(value + "="), "big")
    return min(after, MAX_ID)


Cursor = Annotated[
    int,
    PlainValidator(_decode_cursor),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": CURSOR_PATTERN,
            "description": "The `next_cursor` of the previous page.",
        }
    ),
]
