"""Request and response models (pydantic v2)."""

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)
from pydantic_core import core_schema

MAX_ID = 2**63 - 1
MAX_EMAIL = 320


# What str.strip() removes (str.isspace), as a character class JSON Schema's patterns share.
_SPACE = r"\t-\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"


@dataclass(frozen=True)
class Text:
    """A string field's rule: `min_length` to `max_length` characters (1 to `max_length` once
    the spaces around them are trimmed, with `trimmed`), no NUL (Postgres cannot store it).
    The schema states the same rule as a pattern: a client, schemathesis, knows every string
    the server accepts. Used as `Annotated[str, Text(...)]` (pydantic's custom types)."""

    max_length: int
    min_length: int = 0
    trimmed: bool = False

    @property
    def rule(self) -> str:
        least = 1 if self.trimmed else self.min_length
        return f"{least} to {self.max_length} characters{' once trimmed' if self.trimmed else ''}"

    @property
    def pattern(self) -> str:
        if not self.trimmed:
            return f"^[^\\x00]{{{self.min_length},{self.max_length}}}$"
        edge = f"[^{_SPACE}\\x00]"
        return f"^[{_SPACE}]*{edge}(?:[^\\x00]{{0,{self.max_length - 2}}}{edge})?[{_SPACE}]*$"

    def check(self, value: str) -> str:
        text = value.strip() if self.trimmed else value
        if "\x00" in text:
            raise ValueError("must not contain NUL characters")
        if not text.isascii():
            try:
                text.encode()
            except UnicodeEncodeError:  # "\ud800" is valid JSON, but not a character
                raise ValueError("must be valid Unicode, without lone surrogates") from None
        if not (1 if self.trimmed else self.min_length) <= len(text) <= self.max_length:
            raise ValueError(f"must be {self.rule}")
        return text

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(self.check, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> dict[str, Any]:
        described = f"{self.rule[0].upper()}{self.rule[1:]}, no NUL."
        return {"type": "string", "pattern": self.pattern, "description": described}


Name = Annotated[str, Text(max_length=100, trimmed=True)]
Title = Annotated[str, Text(max_length=200, trimmed=True)]
Description = Annotated[str, Text(max_length=10_000)]
# Not trimmed: spaces are part of a password.
Password = Annotated[
    str,
    Text(min_length=8, max_length=128),
    WithJsonSchema(
        {
            "type": "string",
            "format": "password",
            "pattern": "^[^\\x00]{8,128}$",
            "description": "8 to 128 characters, spaces kept, no NUL.",
        }
    ),
]

# A bare address of ASCII letters, digits and RFC 5322's atom characters, at a domain of
# letter-digit-hyphen labels under a TLD of letters; any case (stored in lower case).
EMAIL_PATTERN = (
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$"
)
_EMAIL = re.compile(EMAIL_PATTERN)


def _email(value: str) -> str:
    if len(value) > MAX_EMAIL or not _EMAIL.fullmatch(value):
        raise ValueError(
            f"must be a bare email address such as ada@example.com, at most {MAX_EMAIL} characters"
        )
    return value.lower()


Email = Annotated[
    str,
    AfterValidator(_email),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": EMAIL_PATTERN,
            "maxLength": MAX_EMAIL,
            "description": "A bare address such as ada@example.com (ASCII), any case.",
        }
    ),
]


class RequestModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _null_only_where_allowed(schema: dict[str, Any], model: type[Any]) -> None:
    """The JSON schema of a PatchModel: `null` is shown only for its nullable_fields."""
    for name, prop in schema.get("properties", {}).items():
        options = [o for o in prop.get("anyOf", ()) if o != {"type": "null"}]
        if name not in model.nullable_fields and len(options) == 1:
            del prop["anyOf"]
            prop.pop("default", None)
            prop.update(options[0])


class PatchModel(RequestModel):
    """Partial update: omitted fields stay as they are; `null` only where a field allows it.

    Fields are `X | None = None` even where null is refused (by `_refuse_null`): pydantic
    checks `X | None` as a nullable X, so a bad value gets one error located at the field. A
    union with a schema-hidden None reported one error per member, under locations such as
    `["body", "email", "function-after[...]"]`.
    """

    model_config = ConfigDict(json_schema_extra=_null_only_where_allowed)

    nullable_fields: ClassVar[frozenset[str]] = frozenset()

    @field_validator("*", mode="before")
    @classmethod
    def _refuse_null(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None and info.field_name not in cls.nullable_fields:
            raise ValueError("may not be null")
        return value


class UserCreate(RequestModel):
    email: Email
    name: Name
    password: Password


class UserUpdate(PatchModel):
    email: Email | None = None
    name: Name | None = None
    password: Password | None = Field(
        default=None, description="A new password; it signs out the user's other tokens."
    )


class UserRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    email: str
    name: str
    created_at: datetime
    updated_at: datetime


class ItemCreate(RequestModel):
    title: Title
    description: Description | None = None


class ItemUpdate(PatchModel):
    nullable_fields = frozenset({"description"})

    title: Title | None = None
    description: Description | None = None


class ItemRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    owner_id: int
    title: str
    description: str | None
    created_at: datetime
    updated_at: datetime


class LoginForm(BaseModel):
    """OAuth2's password grant, as /docs' Authorize button sends it (its other fields are
    ignored). Empty values count as missing: the schema says so."""

    username: str = Field(min_length=1, description="Your email, in any case.")
    password: str = Field(min_length=1, json_schema_extra={"format": "password"})


class Token(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the scheme's name, not a secret
    expires_in: int = Field(description="Seconds the token stays valid.")
