"""The one JSON reader and the one pydantic-error conversion every edge uses."""

from __future__ import annotations

from decimal import Decimal

import pytest
from pydantic import BaseModel, ConfigDict, ValidationError

from chalicelib.domain.errors import InvalidInput
from chalicelib.domain.inputs import read_json, violations_from


def refusal(body: str | bytes | None, **options: object) -> str:
    with pytest.raises(InvalidInput) as caught:
        read_json(body, **options)  # type: ignore[arg-type]
    [violation] = caught.value.violations
    assert violation.field == "body"
    return violation.rule


def test_numbers_are_exact_decimals_and_integers_stay_integers() -> None:
    assert read_json('{"a": 0.1, "b": 3}') == {"a": Decimal("0.1"), "b": 3}
    assert isinstance(read_json('{"b": 3}')["b"], int)


@pytest.mark.parametrize(("body", "rule"), [
    ('{"a": 1, "a": 2}', "an object repeats the key 'a'"),
    ('{"a": NaN}', "NaN is not a number"),
    ('{"a": -Infinity}', "-Infinity is not a number"),
    ("{not json", "must be a JSON object"),
    (b"\xff\xfe\xfd", "must be a JSON object"),
    ("[" * 100_000 + "]" * 100_000, "must be a JSON object"),
    ("", "must be a JSON object"),
    (None, "must be a JSON object"),
])
def test_what_is_refused_is_named(body: str | bytes | None, rule: str) -> None:
    assert refusal(body) == rule


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
