"""Issuing's branch logic on fakes (no PostgreSQL, no S3, no schematron
worker): idempotency keys, retries, the issue-date window, refused documents,
a failing archive, credit notes. The same paths on the real parts, crashes
included, are in tests/integration/test_issue_invoice.py."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import pytest

from chalicelib.domain.errors import (
    ArchiveNotSafe,
    ArchiveTampered,
    Conflict,
    InvalidInput,
    NotFound,
    Violation,
)
from chalicelib.usecases.archive_invoice import archive_pending, archived_document
from chalicelib.usecases.issue_invoice import issue_credit_note, issue_invoice
from tests.builders import line, recent
from tests.fakes import FakeInvoicing

Issuing = FakeInvoicing


@pytest.fixture
def issuing() -> Issuing:
    return FakeInvoicing.start()


def fields(error: pytest.ExceptionInfo[Any]) -> list[str]:
    return [v.field for v in error.value.violations]


def test_an_invoice_is_numbered_chained_and_archived(issuing: Issuing) -> None:
    issued = issue_invoice(issuing.tenant, "key-1", recent(), issuing.ports)

    assert issued.created and issued.archived
    assert issued.invoice.invoice_number == "F-000001" and issued.invoice.type_code == "380"
    assert issuing.kinds() == ["invoice.issued", "invoice.archived"]
    assert issued.invoice.ledger_seq == 1
    assert sorted(issuing.archive.objects) == [
        f"tenants/{issuing.tenant}/invoices/2026/F-000001.pdf",
        f"tenants/{issuing.tenant}/invoices/2026/F-000001.xml"]
    assert issuing.database.records(issuing.tenant).staged == {}  # dropped once archived
    assert issuing.invoices() == [issued.invoice]


@pytest.mark.parametrize("key", [None, "", "a b", "é", "x" * 201])
def test_a_missing_or_malformed_key_is_refused_before_anything(issuing: Issuing,
                                                               key: str | None) -> None:
    with pytest.raises(InvalidInput) as refused:
        issue_invoice(issuing.tenant, key, recent(), issuing.ports)
    assert fields(refused) == ["Idempotency-Key"]
    assert issuing.database.transactions == 0 and issuing.documents.calls == []


def test_a_key_of_200_visible_characters_is_taken(issuing: Issuing) -> None:
    assert issue_invoice(issuing.tenant, "~" * 200, recent(), issuing.ports).created


def test_a_retry_answers_with_the_invoice_already_made(issuing: Issuing) -> None:
    first = issue_invoice(issuing.tenant, "key-1", recent(), issuing.ports)
    # The same request written otherwise: decimals by value, not by text.
    again = issue_invoice(issuing.tenant, "key-1", recent(lines=[line(quantity="2.0",
                                                                      unit_price="50")]),
                          issuing.ports)

    assert not again.created and again.archived
    assert again.invoice == first.invoice
    assert issuing.kinds() == ["invoice.issued", "invoice.archived"]
    assert issuing.archive.puts == 2


def test_the_same_key_for_another_request_is_a_conflict(issuing: Issuing) -> None:
    issue_invoice(issuing.tenant, "key-1", recent(), issuing.ports)
    with pytest.raises(Conflict) as refused:
        issue_invoice(issuing.tenant, "key-1", recent(lines=[line(quantity="3")]), issuing.ports)
    assert fields(refused) == ["Idempotency-Key"]
    assert len(issuing.invoices()) == 1


def test_keys_are_per_tenant(issuing: Issuing) -> None:
    other = issuing.database.add_tenant()
    mine = issue_invoice(issuing.tenant, "key-1", recent(), issuing.ports)
    theirs = issue_invoice(other, "key-1", recent(lines=[line(quantity="5")]), issuing.ports)
    assert theirs.created and theirs.invoice.invoice_id != mine.invoice.invoice_id
    assert theirs.invoice.invoice_number == "F-000001"


def test_a_racing_retry_that_committed_first_is_the_answer(issuing: Issuing) -> None:
    """The key was free when looked up, taken when the invoice is inserted."""
    raced: list[Any] = []

    def race(step: str) -> None:
        if step == "archive_checked" and not raced:
            raced.append(issue_invoice(issuing.tenant, "key-1", recent(), issuing.ports))

    issued = issue_invoice(issuing.tenant, "key-1", recent(), issuing.ports, race)

    assert not issued.created and issued.invoice == raced[0].invoice
    assert [i.invoice_number for i in issuing.invoices()] == ["F-000001"]
    assert issuing.database.records(issuing.tenant).series == {"F": 1}  # no gap


def test_a_racing_request_with_the_same_key_and_other_content_is_a_conflict(
        issuing: Issuing) -> None:
    def race(step: str) -> None:
        if step == "archive_checked" and not issuing.invoices():
            issue_invoice(issuing.tenant, "key-1", recent(lines=[line(quantity="9")]),
                          issuing.ports)

    with pytest.raises(Conflict):
        issue_invoice(issuing.tenant, "key-1", recent(), issuing.ports, race)
    assert len(issuing.invoices()) == 1


@pytest.mark.parametrize(("moment", "issue_date", "accepted"), [
    (datetime(2026, 11, 23, 9, 30, tzinfo=UTC), "2026-11-23", True),
    (datetime(2026, 11, 23, 9, 30, tzinfo=UTC), "2026-11-24", False),  # the future
    (datetime(2026, 11, 22, 23, 30, tzinfo=UTC), "2026-11-23", True),  # already the 23rd in Paris
    (datetime(2026, 11, 23, 9, 30, tzinfo=UTC), "2026-10-23", True),  # 31 days back
    (datetime(2026, 11, 23, 9, 30, tzinfo=UTC), "2026-10-22", False),  # 32 days back
])
def test_the_issue_date_is_today_or_within_a_month_in_paris(
        issuing: Issuing, moment: datetime, issue_date: str, accepted: bool) -> None:
    issuing.clock.moment = moment
    raw = recent(issue_date=issue_date, due_date="2026-12-30")
    if accepted:
        assert issue_invoice(issuing.tenant, "key-1", raw, issuing.ports).created
        return
    with pytest.raises(InvalidInput) as refused:
        issue_invoice(issuing.tenant, "key-1", raw, issuing.ports)
    assert fields(refused) == ["issue_date"]
    assert issuing.invoices() == [] and "xml" not in issuing.documents.calls


def test_a_document_that_fails_its_checks_records_nothing(issuing: Issuing) -> None:
    problem = Violation("BR-FR-01", "the seller's SIREN is missing")
    issuing.documents.found_problems = [problem]
    with pytest.raises(InvalidInput) as refused:
        issue_invoice(issuing.tenant, "key-1", recent(), issuing.ports)

    assert refused.value.violations == [problem]
    assert issuing.invoices() == [] and issuing.kinds() == []
    assert issuing.archive.objects == {}
    # The number was rolled back with the rest: the next invoice takes it.
    issuing.documents.found_problems = []
    assert issue_invoice(issuing.tenant, "key-1", recent(),
                         issuing.ports).invoice.invoice_number == "F-000001"


def test_an_unprintable_text_is_refused_before_any_number(issuing: Issuing) -> None:
    issuing.documents.found_unprintable = [Violation("buyer.name", "cannot be printed")]
    with pytest.raises(InvalidInput) as refused:
        issue_invoice(issuing.tenant, "key-1", recent(), issuing.ports)
    assert fields(refused) == ["buyer.name"]
    assert issuing.database.records(issuing.tenant).series == {}
    assert "xml" not in issuing.documents.calls


def test_an_unsafe_archive_gives_no_number(issuing: Issuing) -> None:
    issuing.archive.unsafe = True
    with pytest.raises(ArchiveNotSafe):
        issue_invoice(issuing.tenant, "key-1", recent(), issuing.ports)
    assert issuing.database.records(issuing.tenant).series == {} and issuing.kinds() == []


def test_an_archive_failure_after_issuing_leaves_the_invoice_issued_and_pending(
        issuing: Issuing) -> None:
    issuing.archive.failing_puts = 2
    issued = issue_invoice(issuing.tenant, "key-1", recent(), issuing.ports)

    assert issued.created and not issued.archived
    assert issued.invoice.archive is None
    assert issuing.kinds() == ["invoice.issued"]
    assert set(issuing.database.records(issuing.tenant).staged[issued.invoice.invoice_id]) \
        == {"pdf", "xml"}
    # Served from the staged copy meanwhile, checked against the ledger's hash.
    _, pdf = archived_document(issuing.tenant, issued.invoice.invoice_id, "pdf",
                               issuing.ports)
    assert hashlib.sha256(pdf).digest() == issued.invoice.pdf_sha256

    retried = issue_invoice(issuing.tenant, "key-1", recent(), issuing.ports)
    assert not retried.created and retried.archived
    assert issuing.kinds() == ["invoice.issued", "invoice.archived"]


def test_the_sweep_archives_what_is_pending_and_goes_on_past_a_failure(
        issuing: Issuing) -> None:
    issuing.archive.failing_puts = 4
    pending = [issue_invoice(issuing.tenant, f"key-{i}", recent(lines=[line(quantity=str(i))]),
                             issuing.ports).invoice.invoice_id for i in (1, 2)]
    swept = archive_pending([(issuing.tenant, uuid4()), *[(issuing.tenant, p)
                                                          for p in pending]], issuing.ports)
    assert swept == {"archived": 2, "failed": 1}
    assert all(i.archive is not None for i in issuing.invoices())


def test_the_sweep_stops_before_any_put_on_an_unsafe_archive(issuing: Issuing) -> None:
    issuing.archive.failing_puts = 2
    invoice = issue_invoice(issuing.tenant, "key-1", recent(), issuing.ports).invoice
    issuing.archive.unsafe = True
    puts = issuing.archive.puts
    with pytest.raises(ArchiveNotSafe):
        archive_pending([(issuing.tenant, invoice.invoice_id)], issuing.ports)
    assert issuing.archive.puts == puts


def test_a_row_that_disagrees_with_its_ledger_entry_is_not_served(issuing: Issuing) -> None:
    invoice = issue_invoice(issuing.tenant, "key-1", recent(), issuing.ports).invoice
    records = issuing.database.records(issuing.tenant)
    records.invoices[invoice.invoice_id] = replace(invoice, pdf_sha256=bytes(32))
    with pytest.raises(ArchiveTampered):
        archived_document(issuing.tenant, invoice.invoice_id, "pdf", issuing.ports)
    with pytest.raises(NotFound):
        archived_document(issuing.tenant, uuid4(), "pdf", issuing.ports)


def test_a_credit_note_is_not_issued_as_an_invoice(issuing: Issuing) -> None:
    with pytest.raises(InvalidInput) as refused:
        issue_invoice(issuing.tenant, "key-1", recent(type_code=381), issuing.ports)
    assert fields(refused) == ["type_code"]


def test_a_credit_note_references_the_credited_invoice(issuing: Issuing) -> None:
    original = issue_invoice(issuing.tenant, "inv", recent(), issuing.ports).invoice
    credit = issue_credit_note(issuing.tenant, original.invoice_id, "cn", recent(),
                               issuing.ports)

    assert credit.created and credit.invoice.type_code == "381"
    assert credit.invoice.credited_invoice_id == original.invoice_id
    assert credit.invoice.invoice_number == "F-000002"
    assert issuing.kinds() == ["invoice.issued", "invoice.archived", "credit_note.issued",
                               "invoice.archived"]
    again = issue_credit_note(issuing.tenant, original.invoice_id, "cn", recent(),
                              issuing.ports)
    assert not again.created and again.invoice == credit.invoice


def test_a_credit_note_of_an_unknown_invoice_is_not_found(issuing: Issuing) -> None:
    with pytest.raises(NotFound):
        issue_credit_note(issuing.tenant, uuid4(), "cn", recent(), issuing.ports)
    other = issuing.database.add_tenant()
    theirs = issue_invoice(other, "inv", recent(), issuing.ports).invoice
    with pytest.raises(NotFound):
        issue_credit_note(issuing.tenant, theirs.invoice_id, "cn", recent(), issuing.ports)


def test_a_credit_note_is_refused_when_it_does_not_fit_the_credited_invoice(
        issuing: Issuing) -> None:
    original = issue_invoice(issuing.tenant, "inv", recent(), issuing.ports).invoice
    credit = issue_credit_note(issuing.tenant, original.invoice_id, "cn", recent(),
                               issuing.ports).invoice
    with pytest.raises(Conflict):  # only an invoice is credited
        issue_credit_note(issuing.tenant, credit.invoice_id, "cn2", recent(), issuing.ports)
    with pytest.raises(InvalidInput) as given:
        issue_credit_note(issuing.tenant, original.invoice_id, "cn3",
                          recent(type_code=381, preceding_invoice={"number": "X-1"}),
                          issuing.ports)
    assert fields(given) == ["type_code", "preceding_invoice"]
    with pytest.raises(InvalidInput) as other_buyer:
        issue_credit_note(issuing.tenant, original.invoice_id, "cn4",
                          recent(buyer={**recent()["buyer"], "name": "Someone Else"}),
                          issuing.ports)
    assert fields(other_buyer) == ["buyer"]
    with pytest.raises(InvalidInput) as not_an_object:
        issue_credit_note(issuing.tenant, original.invoice_id, "cn5", ["a list"],
                          issuing.ports)
    assert fields(not_an_object) == ["body"]
    with pytest.raises(InvalidInput) as no_key:
        issue_credit_note(issuing.tenant, original.invoice_id, None, recent(), issuing.ports)
    assert fields(no_key) == ["Idempotency-Key"]
    assert len(issuing.invoices()) == 2
