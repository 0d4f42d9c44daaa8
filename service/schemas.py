"""Request and response models (pydantic v2)."""

from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)

MAX_ID = 2**63 - 1
MAX_EMAIL = 320


def _no_nul(value: str) -> str:
    # Postgres cannot store NUL in text; refuse it on every backend alike.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


Name = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=100),
    AfterValidator(_no_nul),
]
Title = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
    AfterValidator(_no_nul),
]
Description = Annotated[str, StringConstraints(max_length=10_000), AfterValidator(_no_nul)]
# Not stripped: spaces are part of a password.
Password = Annotated[
    str,
    StringConstraints(min_length=8, max_length=128),
    AfterValidator(_no_nul),
    WithJsonSchema({"type": "string", "format": "password", "minLength": 8, "maxLength": 128}),
]


def _bare_address(value: Any) -> Any:
    # EmailStr would accept "Ada <ada@example.com>" and silently keep only the address.
    if isinstance(value, str) and ("<" in value or ">" in value):
        raise ValueError("must be a bare address such as ada@example.com, without a name")
    return value


Email = Annotated[
    EmailStr,
    StringConstraints(max_length=MAX_EMAIL),
    AfterValidator(lambda v: _no_nul(v.lower())),
    BeforeValidator(_bare_address),
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
