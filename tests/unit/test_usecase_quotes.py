"""Quotes' branch logic on fakes: making one (retry, conflicting retry,
refused bodies), converting it (once, retried, expired, with another key or
other dates). The same on PostgreSQL, races and crashes included, is in
tests/integration/test_quotes.py."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import pytest

from chalicelib.domain.errors import Conflict, InvalidInput, NotFound, Violation
from chalicelib.usecases.issue_invoice import issue_under_own_key
from chalicelib.usecases.quotes import (
    convert_quote,
    create_quote,
    get_quote,
    invoice_key,
)
from tests.builders import Crash, crash_at, quote_draft, quote_request
from tests.fakes import FakeInvoicing

DUE = {"due_date": "2026-12-23"}


Quoting = FakeInvoicing


@pytest.fixture
def quoting() -> Quoting:
    return FakeInvoicing.start()


def fields(error: pytest.ExceptionInfo[Any]) -> list[str]:
    return [v.field for v in error.value.violations]


def test_a_quote_is_numbered_apart_from_invoices_and_chained(quoting: Quoting) -> None:
    made = create_quote(quoting.tenant, "q-1", quote_request(), quoting.quote_ports)

    assert made.created and made.quote.reference == "D-000001"
    assert made.quote.created_at == quoting.clock.now()  # as stored
    assert "issue_date" not in json.loads(made.quote.document)
    assert quoting.kinds() == ["quote.created"]
    assert quoting.database.records(quoting.tenant).series == {}
    assert get_quote(quoting.tenant, made.quote.quote_id,
                     quoting.database.unit_of_work) == made.quote
    second = create_quote(quoting.tenant, "q-2", quote_request(payment_terms="Comptant"),
                          quoting.quote_ports)
    assert second.quote.reference == "D-000002"


def test_a_retry_answers_with_the_quote_already_made(quoting: Quoting) -> None:
    first = create_quote(quoting.tenant, "q", quote_request(), quoting.quote_ports)
    quoting.clock.moment = datetime(2026, 11, 25, 9, tzinfo=UTC)  # another day, same request
    again = create_quote(quoting.tenant, "q", quote_request(), quoting.quote_ports)
    assert not again.created and again.quote == first.quote
    assert quoting.kinds() == ["quote.created"]


@pytest.mark.parametrize("other", [quote_request(payment_terms="Comptant"),
                                   quote_request("2026-12-30")])
def test_the_same_key_for_another_quote_is_a_conflict(quoting: Quoting,
                                                      other: dict[str, Any]) -> None:
    create_quote(quoting.tenant, "q", quote_request(), quoting.quote_ports)
    with pytest.raises(Conflict) as refused:
        create_quote(quoting.tenant, "q", other, quoting.quote_ports)
    assert fields(refused) == ["Idempotency-Key"]
    assert len(quoting.quotes()) == 1


def test_a_racing_retry_that_committed_first_is_the_answer(quoting: Quoting) -> None:
    raced: list[Any] = []

    def race(step: str) -> None:
        if step == "quote_looked_up" and not raced:
            raced.append(create_quote(quoting.tenant, "q", quote_request(),
                                      quoting.quote_ports))

    made = create_quote(quoting.tenant, "q", quote_request(), quoting.quote_ports, race)
    assert not made.created and made.quote == raced[0].quote
    assert quoting.kinds() == ["quote.created"]
    assert quoting.database.records(quoting.tenant).quote_number == 1  # no gap


def test_a_crash_while_making_a_quote_leaves_nothing(quoting: Quoting) -> None:
    with pytest.raises(Crash):
        create_quote(quoting.tenant, "q", quote_request(), quoting.quote_ports,
                     crash_at("quote_stored"))
    assert quoting.quotes() == [] and quoting.kinds() == []
    assert create_quote(quoting.tenant, "q", quote_request(),
                        quoting.quote_ports).quote.reference == "D-000001"


@pytest.mark.parametrize(("body", "expected"), [
    ([], ["body"]),
    ({}, ["valid_until", "invoice"]),
    ({**quote_request(), "extra": 1}, ["extra"]),
    (quote_request("2026-11-22"), ["valid_until"]),  # in the past
    (quote_request("2026-02-30"), ["valid_until"]),
    ({"valid_until": "2026-12-31", "invoice": "text"}, ["invoice"]),
    ({"valid_until": "2026-12-31", "invoice": {**quote_draft(), "issue_date": "2026-11-23"}},
     ["invoice.issue_date"]),
    ({"valid_until": "2026-12-31", "invoice": quote_draft(type_code=381)},
     ["invoice.type_code"]),
    ({"valid_until": "2026-12-31",
      "invoice": quote_draft(preceding_invoice={"number": "F-1", "issue_date": "2026-11-01"})},
     ["invoice.preceding_invoice"]),
])
def test_a_refused_quote_names_every_problem_and_records_nothing(
        quoting: Quoting, body: Any, expected: list[str]) -> None:
    with pytest.raises(InvalidInput) as refused:
        create_quote(quoting.tenant, "q", body, quoting.quote_ports)
    assert fields(refused) == expected
    assert quoting.database.transactions == 0


def test_an_unprintable_text_is_refused_in_the_invoice(quoting: Quoting) -> None:
    quoting.documents.found_unprintable = [Violation("buyer.name", "cannot be printed")]
    with pytest.raises(InvalidInput) as refused:
        create_quote(quoting.tenant, "q", quote_request(), quoting.quote_ports)
    assert fields(refused) == ["invoice.buyer.name"]


def test_a_quote_becomes_one_invoice(quoting: Quoting) -> None:
    made = create_quote(quoting.tenant, "q", quote_request(), quoting.quote_ports).quote
    issued = convert_quote(quoting.tenant, made.quote_id, "c", DUE, quoting.ports)

    assert issued.created and issued.invoice.invoice_number == "F-000001"
    assert issued.invoice.issue_date.isoformat() == "2026-11-23"  # today in Paris
    assert issued.invoice.idempotency_key == invoice_key(made.quote_id)
    linked = get_quote(quoting.tenant, made.quote_id, quoting.database.unit_of_work)
    assert linked.converted_invoice_id == issued.invoice.invoice_id
    assert linked.conversion_key == "c"
    assert quoting.kinds() == ["quote.created", "invoice.issued", "invoice.archived",
                               "quote.converted"]

    again = convert_quote(quoting.tenant, made.quote_id, "c", DUE, quoting.ports)
    assert not again.created and again.invoice == issued.invoice
    assert quoting.kinds().count("quote.converted") == 1


def test_converted_with_another_key_or_other_dates_is_a_conflict(quoting: Quoting) -> None:
    made = create_quote(quoting.tenant, "q", quote_request(), quoting.quote_ports).quote
    issued = convert_quote(quoting.tenant, made.quote_id, "c", DUE, quoting.ports)
    with pytest.raises(Conflict) as other_key:
        convert_quote(quoting.tenant, made.quote_id, "c2", DUE, quoting.ports)
    assert fields(other_key) == ["quote_id"]
    assert str(issued.invoice.invoice_id) in other_key.value.violations[0].rule
    with pytest.raises(Conflict) as other_dates:
        convert_quote(quoting.tenant, made.quote_id, "c", {"due_date": "2026-12-24"},
                      quoting.ports)
    assert fields(other_dates) == ["Idempotency-Key"]
    assert len(quoting.invoices()) == 1


def test_an_expired_quote_is_not_converted(quoting: Quoting) -> None:
    made = create_quote(quoting.tenant, "q", quote_request("2026-11-30"),
                        quoting.quote_ports).quote
    quoting.clock.moment = datetime(2026, 11, 30, 22, 59, tzinfo=UTC)  # still the 30th in Paris
    convert_quote(quoting.tenant, made.quote_id, "c", DUE, quoting.ports)

    late = create_quote(quoting.tenant, "q2", quote_request("2026-11-30"),
                        quoting.quote_ports).quote
    quoting.clock.moment = datetime(2026, 11, 30, 23, 1, tzinfo=UTC)  # the 1st in Paris
    with pytest.raises(Conflict) as refused:
        convert_quote(quoting.tenant, late.quote_id, "c2", DUE, quoting.ports)
    assert fields(refused) == ["valid_until"]
    assert len(quoting.invoices()) == 1


def test_an_expired_quote_whose_invoice_was_issued_before_a_crash_is_linked(
        quoting: Quoting) -> None:
    made = create_quote(quoting.tenant, "q", quote_request("2026-11-30"),
                        quoting.quote_ports).quote
    with pytest.raises(Crash):
        convert_quote(quoting.tenant, made.quote_id, "c", DUE, quoting.ports,
                      crash_at("invoice_issued"))
    assert get_quote(quoting.tenant, made.quote_id,
                     quoting.database.unit_of_work).converted_invoice_id is None
    quoting.clock.moment = datetime(2026, 12, 2, 9, tzinfo=UTC)  # expired since

    issued = convert_quote(quoting.tenant, made.quote_id, "c", DUE, quoting.ports)
    assert not issued.created
    assert issued.invoice.issue_date.isoformat() == "2026-11-23"  # its own date, kept
    assert quoting.kinds().count("quote.converted") == 1


def test_converting_an_unknown_quote_is_not_found(quoting: Quoting) -> None:
    with pytest.raises(NotFound):
        convert_quote(quoting.tenant, uuid4(), "c", DUE, quoting.ports)
    with pytest.raises(NotFound):
        get_quote(quoting.tenant, uuid4(), quoting.database.unit_of_work)


@pytest.mark.parametrize(("body", "expected"), [
    ([], ["body"]),
    ({}, ["due_date"]),
    ({"due_date": "2026-13-01"}, ["due_date"]),
    ({"issue_date": "x", **DUE}, ["issue_date"]),
    ({"lines": [], **DUE}, ["lines"]),
])
def test_a_refused_conversion_names_every_problem(quoting: Quoting, body: Any,
                                                  expected: list[str]) -> None:
    made = create_quote(quoting.tenant, "q", quote_request(), quoting.quote_ports).quote
    with pytest.raises(InvalidInput) as refused:
        convert_quote(quoting.tenant, made.quote_id, "c", body, quoting.ports)
    assert fields(refused) == expected
    with pytest.raises(InvalidInput) as no_key:
        convert_quote(quoting.tenant, made.quote_id, None, DUE, quoting.ports)
    assert fields(no_key) == ["Idempotency-Key"]
    assert quoting.invoices() == []


def test_the_quote_invoice_made_with_other_dates_is_named(quoting: Quoting) -> None:
    """A racing conversion issued the quote's invoice with other dates."""
    made = create_quote(quoting.tenant, "q", quote_request(), quoting.quote_ports).quote
    theirs = issue_under_own_key(quoting.tenant, invoice_key(made.quote_id),
                                 {**json.loads(made.document), "issue_date": "2026-11-23",
                                  "due_date": "2026-12-31"}, quoting.ports).invoice
    with pytest.raises(Conflict) as refused:
        convert_quote(quoting.tenant, made.quote_id, "c", DUE, quoting.ports)
    assert fields(refused) == ["quote_id"]
    assert str(theirs.invoice_id) in refused.value.violations[0].rule
