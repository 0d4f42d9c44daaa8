"""The schema states every rule the server enforces on a field: its pattern accepts exactly the
strings the server accepts, so a client (or schemathesis) that follows it is never refused."""

import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from service.paging import Cursor, encode_cursor
from service.schemas import MAX_EMAIL, Description, Email, Name, Password, Title

# What lengths, spaces and NUL trip on: each of str.strip()'s spaces, NUL, letters, symbols.
_SPACES = "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u200a\u2028\u2029\u202f\u205f\u3000"
_CHARACTERS = st.sampled_from(_SPACES + "\x00aZ09.@-_+é\u200b\ufeff") | st.characters(codec="utf-8")


def _strings(max_size: int) -> st.SearchStrategy[str]:
    around = st.text(st.sampled_from(_SPACES), max_size=3)
    core = st.text(_CHARACTERS, max_size=max_size) | st.builds(
        lambda c, n: c * n, st.sampled_from("ax\x00 "), st.integers(0, max_size)
    )
    return st.builds(lambda a, c, b: a + c + b, around, core, around)


def _accepted(adapter: TypeAdapter[Any], value: str) -> bool:
    try:
        adapter.validate_python(value)
    except ValidationError:
        return False
    return True


def _schema_accepts(schema: dict[str, Any], value: str) -> bool:
    return re.search(schema["pattern"], value) is not None and len(value) <= schema.get(
        "maxLength", len(value)
    )


@pytest.mark.parametrize(
    ("field", "longest"),
    [(Name, 100), (Title, 200), (Description, 10_000), (Password, 128)],
    ids=["name", "title", "description", "password"],
)
@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(data=st.data())
def test_string_field_pattern_accepts_what_the_server_accepts(
    field: Any, longest: int, data: st.DataObject
) -> None:
    adapter: TypeAdapter[Any] = TypeAdapter(field)
    value = data.draw(_strings(longest + 2) if longest < 1000 else _strings(50), label="value")

    assert _schema_accepts(adapter.json_schema(), value) == _accepted(adapter, value)


_EMAILS = st.emails() | st.builds(
    lambda local, domain: f"{local}@{domain}",
    st.text(st.sampled_from("aZ0.+_-<> \x00é"), max_size=8),
    st.text(st.sampled_from("a0.-é "), max_size=12),
)


@settings(max_examples=500, deadline=None, derandomize=True, database=None)
@given(value=_EMAILS | st.just("a@" + "b" * 63 + "." + "c" * (MAX_EMAIL - 67)))
def test_email_pattern_accepts_what_the_server_accepts(value: str) -> None:
    adapter: TypeAdapter[Any] = TypeAdapter(Email)

    assert _schema_accepts(adapter.json_schema(), value) == _accepted(adapter, value)


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(
    value=st.text(st.sampled_from("AEIMQUYcgkoswz048_-=+/ \n"), min_size=9, max_size=13)
    | st.integers(0, 2**64 - 1).map(lambda n: encode_cursor(min(n, 2**63 - 1)))
)
def test_cursor_pattern_accepts_what_the_server_accepts(value: str) -> None:
    adapter: TypeAdapter[Any] = TypeAdapter(Cursor)

    assert _schema_accepts(adapter.json_schema(), value) == _accepted(adapter, value)
