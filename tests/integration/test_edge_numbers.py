"""Any number in any money or quantity field, however large, small or
spelled, is a 422 naming that field: never a 500 (decimal.Overflow), on every
route that takes an invoice draft."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.builders import quote_request, recent
from tests.fakes import FrozenClock
from tests.integration.web import WRITE, issue, owner_with_key

# What a client can type where a number goes: huge, tiny, NaN and Infinity spellings.
NUMBERS = ["1e1000000", "-1e999999", "1e-1000000", "1E+400", "9e99", "1e100", "-1e-99",
           "1e999999999999999999999999",
           "NaN", "Infinity", "-Infinity", "1" * 150, "0." + "0" * 150 + "1"]
FIELDS = {"lines.0.quantity": ("lines", 0, "quantity"),
          "lines.0.unit_price": ("lines", 0, "unit_price"),
          "lines.0.vat_rate": ("lines", 0, "vat_rate"),
          "seller.share_capital": ("seller", "share_capital"),
          "late_payment_penalty_rate": ("late_payment_penalty_rate",),
          "recovery_indemnity": ("recovery_indemnity",),
          "type_code": ("type_code",)}
MARK = "7319.73191"  # a number no valid draft holds, replaced by the raw text


def planted(draft: dict[str, Any], where: tuple[Any, ...]) -> dict[str, Any]:
    holder: Any = draft
    for step in where[:-1]:
        holder = holder[step]
    holder[where[-1]] = float(MARK)
    return draft


def body(route: str, where: tuple[Any, ...], number: str) -> str:
    if route == "/quotes":
        raw: Any = quote_request()
        planted(raw["invoice"], where)
    elif route == "/invoice-batches":
        raw = {"invoices": [{"idempotency_key": "b-1", "invoice": planted(recent(), where)}]}
    else:
        raw = planted(recent(), where)
    text = json.dumps(raw)
    assert text.count(MARK) == 1
    return text.replace(MARK, number)


@pytest.mark.parametrize("number", NUMBERS)
def test_every_number_in_every_field_is_a_422_naming_it(
        client: Any, frozen: FrozenClock, number: str) -> None:
    _, key = owner_with_key(client, frozen, WRITE)
    secret = key["secret"]
    original = issue(client, secret, recent(), key="original")
    assert original.status_code == 201, original.body
    routes = {"/invoices": "", "/quotes": "invoice.", "/invoice-batches": "invoices.0.invoice.",
              f"/invoices/{original.json_body['id']}/credit-notes": ""}
    for route, prefix in routes.items():
        for field, where in FIELDS.items():
            answer = issue(client, secret, body(route, where, number), key=f"k-{field}",
                           path=route)
            assert answer.status_code == 422, (route, field, number, answer.body)
            named = {v["field"] for v in answer.json_body["violations"]}
            assert prefix + field in named, (route, field, number, named)
