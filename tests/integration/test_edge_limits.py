"""Bounded work before and after the rate limit: every route has a body bound,
an oversized body is a 413 counted like any other attempt, and a 422 lists at
most 50 violations with their total."""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from chalicelib.config import settings
from chalicelib.domain.errors import MAX_LISTED_VIOLATIONS
from chalicelib.entrypoints.access import BODY_LIMITS, SMALL_BODY
from devstack.stack import LocalStack
from tests.fakes import FrozenClock
from tests.integration.web import ScalewayClient, owner_with_key, within_one_minute_window

JSON = {"Content-Type": "application/json"}


def test_every_route_has_a_body_bound() -> None:
    """A new route cannot be born unbounded: app.py's routes are the table's."""
    import app as app_module

    routes = {f"{method} {path}" for path, methods in app_module.app.routes.items()
              for method in methods}
    assert routes == set(BODY_LIMITS)
    assert BODY_LIMITS["POST /login"] == SMALL_BODY
    assert BODY_LIMITS["POST /invoice-batches"] > BODY_LIMITS["POST /invoices"] > SMALL_BODY


def many_keys(count: int) -> str:
    return "{" + ",".join(f'"k{i}":1' for i in range(count)) + "}"


@pytest.fixture
def strict(stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> Iterator[ScalewayClient]:
    """The API (as Scaleway's front serves it, so the caller's address is one
    of this test's own) with 3 logins a minute per address and 2 writes per user."""
    monkeypatch.setenv("EINVOICE_LOGIN_PER_IP_PER_MINUTE", "3")
    monkeypatch.setenv("EINVOICE_WRITES_PER_USER_PER_MINUTE", "2")
    settings.cache_clear()
    groups = ":".join(f"{random.randrange(1, 0xFFFF):x}" for _ in range(2))
    try:
        yield ScalewayClient(f"2001:db8:{groups}::7")
    finally:
        monkeypatch.undo()
        settings.cache_clear()


def test_a_flood_of_huge_login_bodies_is_refused_at_once_and_counted(
        strict: ScalewayClient, database: Any) -> None:
    """200,000 keys (2.4 MB) on the public login: a 413 naming the bound in
    milliseconds, never parsed, and each one an attempt the limiter counts."""
    huge = many_keys(200_000)
    within_one_minute_window(database)
    started = time.monotonic()
    answers = [strict.post("/login", headers=JSON, body=huge) for _ in range(3)]
    assert time.monotonic() - started < 3
    assert [a.status_code for a in answers] == [413] * 3
    assert answers[0].json_body["violations"] == [
        {"field": "body", "rule": f"must be at most {SMALL_BODY} bytes on POST /login"}]
    assert len(answers[0].body) < 1000
    # The next attempt, however small and well-formed, is over the limit.
    fine = json.dumps({"email": f"x.{uuid.uuid4().hex[:8]}@example.fr", "password": "guess"})
    refused = strict.post("/login", headers=JSON, body=fine)
    assert refused.status_code == 429, refused.json_body
    assert {v["field"] for v in refused.json_body["violations"]} == {"login-ip"}


def test_an_oversized_invoice_is_counted_as_a_write_before_it_is_refused(
        strict: ScalewayClient, frozen: FrozenClock, client: Any, database: Any) -> None:
    _, key = owner_with_key(client, frozen, ["invoices:write"])
    headers = {**JSON, "Authorization": f"Bearer {key['secret']}", "Idempotency-Key": "big"}
    over = '{"lines": "' + "x" * BODY_LIMITS["POST /invoices"] + '"}'
    within_one_minute_window(database)
    codes = [strict.post("/invoices", headers=headers, body=over).status_code
             for _ in range(3)]
    assert codes == [413, 413, 429]


BOUNDED = ["POST /signup", "POST /signup/confirm", "POST /login", "POST /invoices",
           "POST /invoice-batches", "POST /invoices/{invoice_id}/credit-notes", "POST /quotes",
           "POST /quotes/{quote_id}/invoice", "POST /closings", "GET /invoices",
           "GET /closings", "GET /health"]


@pytest.mark.parametrize("route", BOUNDED)
def test_a_body_one_byte_over_its_routes_bound_is_413(
        route: str, client: Any, frozen: FrozenClock) -> None:
    """One byte over (a route that reads no body is bounded too); exactly at
    the bound, the body is read (and refused for what it says, not its size)."""
    _, key = owner_with_key(client, frozen, ["invoices:write", "invoices:read",
                                             "closings:write", "ledger:read"])
    method, template = route.split(" ")
    path = template.replace("{invoice_id}", str(uuid.uuid4())).replace(
        "{quote_id}", str(uuid.uuid4()))
    headers = {**JSON, "Authorization": f"Bearer {key['secret']}", "Idempotency-Key": "k"}
    limit = BODY_LIMITS[route]
    at_bound = '{"x": "' + "y" * (limit - 9) + '"}'
    assert len(at_bound) == limit
    send = getattr(client, method.lower())
    over = send(path, headers=headers, body=at_bound + " ")
    assert over.status_code == 413, over.json_body
    assert over.json_body["violations"] == [
        {"field": "body", "rule": f"must be at most {limit} bytes on {route}"}]
    assert send(path, headers=headers, body=at_bound).status_code != 413


def test_a_422_lists_fifty_violations_and_says_how_many_there_are(
        client: Any, frozen: FrozenClock) -> None:
    """A batch of 100 drafts with 30 unknown fields each: thousands of
    violations, a short answer."""
    _, key = owner_with_key(client, frozen, ["invoices:write"])
    drafts = [{"idempotency_key": f"draft-{i}", "invoice": {f"k{j}": 1 for j in range(30)}}
              for i in range(100)]
    answer = client.post("/invoice-batches", body=json.dumps({"invoices": drafts}),
                         headers={**JSON, "Authorization": f"Bearer {key['secret']}"})
    assert answer.status_code == 422
    body = answer.json_body
    assert len(body["violations"]) == MAX_LISTED_VIOLATIONS
    assert body["violation_count"] >= 3000
    assert body["violations"][0]["field"].startswith("invoices.0.invoice.")
    assert len(answer.body) < 10_000


def test_an_object_of_too_many_keys_is_refused_as_it_is_read(client: Any) -> None:
    """Within the login bound, 1,500 keys: refused by the reader, not listed one by one."""
    body = many_keys(1500)
    assert len(body) < SMALL_BODY
    answer = client.post("/login", headers=JSON, body=body)
    assert answer.status_code == 422
    assert answer.json_body["violations"] == [
        {"field": "body", "rule": "an object holds more than 1000 keys"}]
