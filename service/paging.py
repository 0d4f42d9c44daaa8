"""Keyset pagination: a page of rows after an id, and the opaque cursor that says where the next
page starts (no OFFSET, no COUNT(*))."""

import base64
import binascii
import json
from typing import Annotated, Any, Generic, TypeVar

from pydantic import BaseModel, Field, PlainValidator, WithJsonSchema
from sqlalchemy import Executable, Row

from service.db import ReadSession
from service.schemas import MAX_ID

T = TypeVar("T")

MAX_CURSOR_LENGTH = 200


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


def encode_cursor(after_id: int) -> str:
    raw = json.dumps({"after": after_id}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _decode_cursor(value: Any) -> int:
    error = ValueError("invalid cursor; pass the next_cursor of a previous page")
    if not isinstance(value, str) or len(value) > MAX_CURSOR_LENGTH:
        raise error
    try:
        raw = base64.b64decode(value + "=" * (-len(value) % 4), altchars=b"-_", validate=True)
        data = json.loads(raw)
    except (binascii.Error, ValueError):
        raise error from None
    after = data.get("after") if isinstance(data, dict) else None
    if type(after) is not int or not 0 <= after <= MAX_ID:
        raise error
    return after


Cursor = Annotated[
    int,
    PlainValidator(_decode_cursor),
    WithJsonSchema({"type": "string", "maxLength": MAX_CURSOR_LENGTH}),
]
