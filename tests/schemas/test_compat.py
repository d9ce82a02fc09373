"""Backward-compatibility rules between two versions of a JSON Schema, on schemas pydantic generates."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, Field

from schemas.compat import compatibility_problems


class Kind(StrEnum):
    A = "a"
    B = "b"


class Narrow(StrEnum):
    A = "a"


class Wide(StrEnum):
    A = "a"
    B = "b"
    C = "c"


class Inner(BaseModel):
    x: int


class Base(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    count: int = 0
    ratio: float = 1.0
    note: str | None = None
    kind: Kind = Kind.A
    tags: list[str] = Field(default_factory=list)
    inner: Inner | None = None
    code: str = Field("x", max_length=10)


def schema(**fields: Any) -> dict[str, Any]:
    """The schema of ``Base`` with some fields redefined (annotation, default) or removed (None)."""
    annotations = dict(Base.__annotations__)
    defaults = {name: f for name, f in Base.model_fields.items()}
    namespace: dict[str, Any] = {"model_config": ConfigDict(extra="forbid"), "__annotations__": {}}
    for name in annotations:
        if name in fields and fields[name] is None:
            continue
        if name in fields:
            annotation, default = fields[name]
            namespace["__annotations__"][name] = annotation
            if default is not ...:
                namespace[name] = default
        else:
            namespace["__annotations__"][name] = defaults[name].annotation
            namespace[name] = defaults[name]
    for name, spec in fields.items():
        if name not in annotations and spec is not None:
            namespace["__annotations__"][name], default = spec
            if default is not ...:
                namespace[name] = default
    return type("Base", (BaseModel,), namespace).model_json_schema()


OLD = Base.model_json_schema()


def test_identical_schemas_are_compatible() -> None:
    assert compatibility_problems(OLD, schema()) == []


@pytest.mark.parametrize(
    "change",
    [
        {"extra": (str | None, None)},
        {"count": (float, 0.0)},
        {"note": (str | int | None, None)},
        {"kind": (Wide, Wide.A)},
        {"code": (str, Field("x", max_length=20))},
        {"name": (str, "anonymous")},
    ],
    ids=["optional-property-added", "integer-widened-to-number", "union-widened", "enum-value-added",
         "bound-relaxed", "required-became-optional"],
)
def test_widening_changes_pass(change: dict[str, Any]) -> None:
    assert compatibility_problems(OLD, schema(**change)) == []


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"note": None}, "note: property removed"),
        ({"extra": (str, ...)}, "extra: new required property"),
        ({"count": (int, ...)}, "count: new required property"),
        ({"ratio": (int, 1)}, "type narrowed"),
        ({"note": (str, "")}, "['null'] values no longer accepted"),
        ({"kind": (Narrow, Narrow.A)}, "values no longer accepted: ['b']"),
        ({"code": (str, Field("x", max_length=5))}, "maxLength lowered to 5"),
        ({"count": (int, Field(0, ge=1))}, "minimum raised to 1"),
        ({"name": (str, Field(pattern="^[a-z]+$"))}, "pattern changed"),
        ({"tags": (list[int], [])}, "tags[]: type narrowed"),
        ({"inner": (str | None, None)}, "no longer accepted"),
    ],
    ids=["property-removed", "new-required", "optional-became-required", "number-narrowed-to-integer",
         "null-no-longer-accepted", "enum-value-dropped", "max-length-lowered", "minimum-added", "pattern-added",
         "item-type-narrowed", "object-became-string"],
)
def test_breaking_changes_are_named(change: dict[str, Any], words: str) -> None:
    problems = compatibility_problems(OLD, schema(**change))
    assert any(words in p for p in problems), problems


def test_nested_object_changes_are_found_through_refs() -> None:
    class InnerV2(BaseModel):
        x: int
        y: int

    problems = compatibility_problems(OLD, schema(inner=(InnerV2 | None, None)))
    assert problems == ["$.inner.y: new required property"]


def test_closing_an_open_object_is_breaking() -> None:
    open_schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    closed = {**open_schema, "additionalProperties": False}
    assert compatibility_problems(open_schema, closed) == ["$: additional properties no longer accepted"]
    assert compatibility_problems(closed, open_schema) == []
