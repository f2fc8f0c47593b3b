"""The one JSON reader and the one pydantic-error conversion every edge uses."""

from __future__ import annotations

from decimal import Decimal

import pytest
from pydantic import BaseModel, ConfigDict, ValidationError

from chalicelib.domain.errors import InvalidInput
from chalicelib.domain.inputs import BEYOND_BOUNDS, read_json, violations_from


def refusal(body: str | bytes | None, field: str = "body", **options: object) -> str:
    with pytest.raises(InvalidInput) as caught:
        read_json(body, **options)  # type: ignore[arg-type]
    [violation] = caught.value.violations
    assert violation.field == field
    return violation.rule


def test_numbers_are_exact_decimals_and_integers_stay_integers() -> None:
    assert read_json('{"a": 0.1, "b": 3}') == {"a": Decimal("0.1"), "b": 3}
    assert isinstance(read_json('{"b": 3}')["b"], int)


@pytest.mark.parametrize(("body", "rule"), [
    ('{"a": 1, "a": 2}', "an object repeats the key 'a'"),
    ("{not json", "must be a JSON object"),
    (b"\xff\xfe\xfd", "must be a JSON object"),
    ("[" * 100_000 + "]" * 100_000, "must be a JSON object"),
    ("", "must be a JSON object"),
    (None, "must be a JSON object"),
])
def test_what_is_refused_is_named(body: str | bytes | None, rule: str) -> None:
    assert refusal(body) == rule


@pytest.mark.parametrize(("body", "field", "rule"), [
    ('{"a": NaN}', "a", "NaN is not a number"),
    ('{"a": [1, {"b": -Infinity}]}', "a.1.b", "-Infinity is not a number"),
    ("Infinity", "body", "Infinity is not a number"),
])
def test_nan_and_infinity_are_refused_in_the_field_they_were_sent_in(
        body: str, field: str, rule: str) -> None:
    assert refusal(body, field) == rule


def test_an_empty_body_may_stand_for_an_empty_object() -> None:
    assert read_json(b"", empty={}) == {}
    assert read_json(None, empty={}) == {}
    assert refusal("{", empty={}, not_json="is not valid JSON") == "is not valid JSON"


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    count: int


def test_pydantic_errors_become_violations_without_the_input() -> None:
    secret = "hunter2-secret-value"
    with pytest.raises(ValidationError) as caught:
        _Body.model_validate({"count": secret, "extra": secret})
    found = violations_from(caught.value, required_because={"name": "is required: a name"})
    assert {(v.field, v.rule) for v in found} >= {("name", "is required: a name"),
                                                  ("extra", "is not a known field")}
    assert any(v.field == "count" for v in found)
    assert all(secret not in v.rule for v in found)


@pytest.mark.parametrize("body", [
    '{"n": 1e100000000}', '{"n": 1E-100000000}', '{"n": 1e101}',
    '{"n": ' + "1" * 101 + "}", '{"n": 0.' + "1" * 100 + "}",
    '{"n": 1e999999999999999999999999}',  # beyond Decimal's own exponent: unreadable
    '{"n": -1E-999999999999999999999999}',
])
def test_numbers_no_field_could_hold_are_refused_at_once(body: str) -> None:
    """A short text such as 1e100000000 would cost an integer field's validator
    minutes; it is refused by the reader, before any model sees it, in the
    field it was sent in."""
    assert refusal(body, "n") == BEYOND_BOUNDS


def test_every_unreadable_number_is_named_even_deep_down() -> None:
    with pytest.raises(InvalidInput) as caught:
        read_json('{"a": [NaN, {"b": 1e1000}], "c": 2, "d": {"e": 1e-1000}}')
    assert [(v.field, v.rule) for v in caught.value.violations] == [
        ("a.0", "NaN is not a number"), ("a.1.b", BEYOND_BOUNDS), ("d.e", BEYOND_BOUNDS)]
    deep = "[" * 900 + "1e999" + "]" * 900  # as deep as json.loads goes: no recursion of ours
    assert refusal(deep, ".".join(["0"] * 900)) == BEYOND_BOUNDS


def test_numbers_within_the_bounds_are_read_exactly() -> None:
    assert read_json('{"n": 1e100, "m": ' + "9" * 100 + "}") == {
        "n": Decimal("1e100"), "m": int("9" * 100)}
