"""A caller's Idempotency-Key may never take a key the service makes for
itself: `quote:<id>` is the key of the invoice a quote becomes. Squatting it
would make the quote impossible to convert, with a false 409."""

from __future__ import annotations

import json
from typing import Any

from tests.builders import quote_request, recent
from tests.fakes import FrozenClock
from tests.integration.web import WRITE, get, issue, owner_with_key

RULE = ("must not start with quote: or sqs:: the service keeps these namespaces for keys "
        "of its own")


def test_a_squatted_quote_key_is_refused_and_the_quote_still_converts(
        client: Any, frozen: FrozenClock) -> None:
    _, key = owner_with_key(client, frozen, WRITE)
    secret = key["secret"]
    quote = issue(client, secret, quote_request(), key="q-1", path="/quotes").json_body
    original = issue(client, secret, recent(), key="original").json_body
    squat = f"quote:{quote['id']}"

    for path in ("/invoices", f"/invoices/{original['id']}/credit-notes", "/quotes",
                 f"/quotes/{quote['id']}/invoice"):
        body = quote_request() if path == "/quotes" else recent()
        if path.endswith("/invoice"):
            body = {"due_date": "2026-12-23"}
        for taken in (squat, "sqs:0f8fad5b-d9cb-469f-a165-70867728950e"):
            refused = issue(client, secret, body, key=taken, path=path)
            assert refused.status_code == 422, (path, refused.body)
            assert refused.json_body["violations"] == [
                {"field": "Idempotency-Key", "rule": RULE}], path
    batch = client.post("/invoice-batches", body=json.dumps(
        {"invoices": [{"idempotency_key": squat, "invoice": recent()}]}),
        headers={"Authorization": f"Bearer {secret}", "Content-Type": "application/json"})
    assert batch.status_code == 422
    assert batch.json_body["violations"] == [
        {"field": "invoices.0.idempotency_key", "rule": RULE}]
    listed = get(client, secret, f"/invoices?idempotency_key={squat}")
    assert listed.json_body["invoices"] == []  # nothing was issued under the quote's key

    converted = issue(client, secret, {"due_date": "2026-12-23"}, key="c-1",
                      path=f"/quotes/{quote['id']}/invoice")
    assert converted.status_code == 201, converted.body
    assert get(client, secret, f"/quotes/{quote['id']}").json_body["converted_invoice_id"] == \
        converted.json_body["id"]


def test_keys_that_merely_look_alike_are_the_callers_own(
        client: Any, frozen: FrozenClock) -> None:
    _, key = owner_with_key(client, frozen, WRITE)
    for own in ("Quote:1", "my-quote:1", "sqs-1"):
        assert issue(client, key["secret"], recent(), key=own).status_code == 201, own
