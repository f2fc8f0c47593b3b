"""Every route reads its body with one strict reader, and names what is wrong one way."""

from __future__ import annotations

import json
from typing import Any

import pytest

from chalicelib.domain.inputs import BEYOND_BOUNDS
from tests.builders import recent
from tests.fakes import FrozenClock
from tests.integration.web import issue, owner_with_key, post, seal


def violations(response: Any) -> set[tuple[str, str]]:
    assert response.status_code == 422, response.body
    return {(v["field"], v["rule"]) for v in response.json_body["violations"]}


@pytest.mark.parametrize("path", ["/login", "/signup", "/signup/confirm"])
def test_a_repeated_key_is_refused_before_anything_is_read(client: Any, path: str) -> None:
    """Two parsers could disagree on which of two values counts: neither does."""
    body = '{"email": "a@example.fr", "email": "b@example.fr", "password": "x"}'
    assert violations(post(client, path, body)) == {
        ("body", "an object repeats the key 'email'")}


def test_body_models_name_missing_and_unknown_fields_in_words(client: Any) -> None:
    found = violations(post(client, "/login", {"email": "a@example.fr", "pasword": "x"}))
    assert found == {("password", "is required"), ("pasword", "is not a known field")}
    assert violations(post(client, "/login", "{not json")) == {
        ("body", "is not valid JSON (or nested too deeply)")}
    assert violations(post(client, "/login", '{"email": NaN, "password": "x"}')) == {
        ("email", "NaN is not a number")}


def test_invoice_and_closing_bodies_go_through_the_same_reader(
        client: Any, frozen: FrozenClock) -> None:
    _, key = owner_with_key(client, frozen, ["invoices:write", "closings:write"])
    secret = key["secret"]
    repeated = '{"kind": "day", "kind": "month", "period": "2026-11-22"}'
    assert violations(seal(client, secret, repeated)) == {
        ("body", "an object repeats the key 'kind'")}
    assert violations(seal(client, secret, "[1]")) == {("body", "must be a JSON object")}
    assert violations(seal(client, secret, "")) == {("body", "must be a JSON object")}
    twice = json.dumps(recent())[:-1] + ', "issue_date": "2026-11-20"}'
    assert violations(issue(client, secret, twice, key="twice")) == {
        ("body", "an object repeats the key 'issue_date'")}


def test_a_number_no_field_could_hold_is_refused_at_once(client: Any) -> None:
    """A login body with an exponent of a hundred million: a 422 in
    milliseconds, not a validator turning it into an integer for minutes."""
    import time

    started = time.monotonic()
    found = violations(post(client, "/login", '{"email": 1e100000000, "password": "x"}'))
    assert time.monotonic() - started < 5
    assert found == {("email", BEYOND_BOUNDS)}
