"""shared.validation: NUL (U+0000), which PostgreSQL cannot store, is refused at any depth of a request model."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, TypeAdapter, ValidationError

from shared.validation import NUL_MESSAGE, NulFreeModel, NulFreeStr, has_nul


class Label(NulFreeModel):
    name: str


class Body(NulFreeModel):
    title: str = ""
    tags: list[str] = []
    labels: list[Label] = []
    settings: dict[str, Any] = {}
    count: int = 0


class Plain(BaseModel):
    text: str


@pytest.mark.parametrize("value, expected", [
    ("plain text", False), ("a\x00b", True), (["x", ["y", "\x00"]], True), ({"k\x00": 1}, True),
    ({"k": {"deeper": ("\x00",)}}, True), (Plain(text="\x00"), True), (Plain(text="ok"), False), (42, False),
    (None, False),
])
def test_has_nul_looks_at_every_depth(value: Any, expected: bool) -> None:
    assert has_nul(value) is expected


@pytest.mark.parametrize("body, pointer", [
    ({"title": "a\x00"}, ("title",)),
    ({"tags": ["ok", "\x00"]}, ("tags",)),
    ({"labels": [{"name": "ok"}, {"name": "b\x00"}]}, ("labels", 1, "name")),
    ({"settings": {"nested": ["\x00"]}}, ("settings",)),
])
def test_a_model_names_the_field_carrying_nul(body: dict[str, Any], pointer: tuple) -> None:
    with pytest.raises(ValidationError) as raised:
        Body.model_validate(body)
    [error] = raised.value.errors()
    assert error["loc"] == pointer and NUL_MESSAGE in error["msg"]


def test_text_without_nul_passes_unchanged() -> None:
    body = Body.model_validate({"title": "Ünïcode ✓ \t\n", "tags": ["a"], "labels": [{"name": "x"}], "count": 3})
    assert body.title == "Ünïcode ✓ \t\n" and body.labels[0].name == "x"


def test_nul_free_str_for_query_parameters() -> None:
    adapter = TypeAdapter(NulFreeStr | None)
    assert adapter.validate_python("abc") == "abc" and adapter.validate_python(None) is None
    with pytest.raises(ValidationError, match="NUL"):
        adapter.validate_python("a\x00")
