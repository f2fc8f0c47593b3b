"""Quotes (devis): make one, read it, turn it into an invoice.

A quote is a validated invoice draft offered until `valid_until`. It is not
an invoice: its reference (D-000001...) comes from the tenant's own quote
counter, never from an invoice series, and making it touches no archive.
Its dates are not the invoice's: the quote's draft has no issue or due date;
they are given when the customer accepts and the quote becomes an invoice.

Ledger (the audit trail, in the tenant's chain): `quote.created` is appended
in the transaction that takes the quote's number and inserts its row, and
`quote.converted` in the transaction that records the conversion, only when
that transaction is the one that wrote it (the UPDATE from NULL succeeds
once): a crash leaves both or neither, and neither a retry nor a racing
conversion appends a second entry. The ledger is immutable forever, so no
personal data goes in it (no buyer or seller name, address, IBAN, contact):
the SHA-256 of the kept document proves which quote was made.

POST /quotes body: {"valid_until": "YYYY-MM-DD", "invoice": <the same JSON as
POST /invoices, without issue_date and due_date>}.

Conversion issues the invoice as `issue_invoice` does (same numbering,
ledger, Factur-X and archive) under the idempotency key `quote:<quote id>`,
a namespace no caller's key may use (idempotency.INTERNAL_NAMESPACES).
That key, unique per tenant in the engine, is what makes one quote give one
invoice at most, even when two conversions race with different keys. Then
the quote records the invoice, the caller's key and its request's
fingerprint, once. A crash between the two steps leaves an invoice and an
unconverted quote: the retry finds the invoice (`issue_invoice` answers a
known key with the invoice it made) and records the link.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import date
from typing import Any
from uuid import UUID, uuid4

import rfc8785

from chalicelib.domain.document_types import DocumentType
from chalicelib.domain.errors import Conflict, InvalidInput, NotFound, Violation
from chalicelib.domain.inputs import violations_from
from chalicelib.domain.invoice import InvoiceDraft, compute_totals, validate_invoice
from chalicelib.domain.kinds import QUOTE_CONVERTED, QUOTE_CREATED
from chalicelib.domain.ledger import canonical_payload
from chalicelib.ports import Clock, InvoiceDocuments, LedgerStore, StoredQuote, UnitOfWorkFactory
from chalicelib.usecases.idempotency import (
    QUOTE_KEYS,
    KeyedRequest,
    checked_key,
    request_fingerprint,
)
from chalicelib.usecases.invoicing import (
    PARIS,
    Checkpoint,
    InvoicePorts,
    Issued,
    no_checkpoint,
    totals_data,
)
from chalicelib.usecases.issue_invoice import issue_under_own_key

# The draft's own dates: the invoice's, given at conversion, never the quote's.
INVOICE_DATES = ("issue_date", "due_date")
_PLACEHOLDER = date(2000, 1, 1)  # stands in for the draft's dates in the fingerprint


@dataclass(frozen=True)
class QuotePorts:
    """What making a quote needs: no archive (a quote is not an invoice); its
    ledger entry goes through the unit of work."""

    unit_of_work: UnitOfWorkFactory
    documents: InvoiceDocuments  # only to refuse now a text no invoice could print
    clock: Clock


@dataclass(frozen=True)
class Made:
    quote: StoredQuote
    created: bool  # False: the answer to a retry of an earlier request


def quote_reference(number: int) -> str:
    return f"D-{number:06d}"


def invoice_key(quote_id: UUID) -> str:
    """The idempotency key of the invoice a quote becomes: one per quote."""
    return f"{QUOTE_KEYS}{quote_id}"


def _today(clock: Clock) -> date:
    return clock.now().astimezone(PARIS).date()


def _date(raw: object, field: str) -> tuple[date | None, list[Violation]]:
    """A YYYY-MM-DD date, read by the invoice model's own rules."""
    from pydantic import TypeAdapter, ValidationError

    from chalicelib.domain.invoice import IsoDate

    try:
        return TypeAdapter(IsoDate).validate_python(raw), []
    except ValidationError as error:
        return None, violations_from(error, field=field)


def _prefixed(violations: list[Violation], prefix: str) -> list[Violation]:
    return [Violation(f"{prefix}.{v.field}" if v.field != "body" else prefix, v.rule)
            for v in violations]


def _quote_request(raw: object, today: date,
                   documents: InvoiceDocuments) -> tuple[InvoiceDraft, date]:
    """The draft and its validity date, or every violation at once."""
    if not isinstance(raw, dict):
        raise InvalidInput([Violation("body", "must be a JSON object {valid_until, invoice}")])
    found = [Violation(k, "is not a known field: the body is {valid_until, invoice}")
             for k in raw if k not in ("valid_until", "invoice")]
    found += [Violation(k, "is required") for k in ("valid_until", "invoice") if k not in raw]
    valid_until: date | None = None
    if "valid_until" in raw:
        valid_until, problems = _date(raw["valid_until"], "valid_until")
        found += problems
        if valid_until is not None and valid_until < today:
            found.append(Violation("valid_until", "must not be in the past (today in Paris is "
                                   f"{today.isoformat()})"))
    draft_raw = raw.get("invoice")
    draft: InvoiceDraft | None = None
    if "invoice" in raw and not isinstance(draft_raw, dict):
        found.append(Violation("invoice", "must be a JSON object: the invoice draft"))
    elif isinstance(draft_raw, dict):
        found += [Violation(f"invoice.{k}", "is given when the quote becomes an invoice "
                            "(POST /quotes/{id}/invoice): leave it out")
                  for k in INVOICE_DATES if k in draft_raw]
        # The dates only let the model validate the rest; they are not kept.
        dated = {**draft_raw, **{k: today.isoformat() for k in INVOICE_DATES}}
        if DocumentType.CREDIT_NOTE.named_by(draft_raw.get("type_code")):
            found.append(Violation("invoice.type_code", "a quote becomes an invoice (380): "
                                   "credit notes are issued from the invoice they credit"))
            del dated["type_code"]  # said once, not again as a credit note's own rules
        if "preceding_invoice" in draft_raw:
            found.append(Violation("invoice.preceding_invoice", "a quote becomes a new "
                                   "invoice: it references no earlier invoice"))
            del dated["preceding_invoice"]
        try:
            draft = validate_invoice(dated)
        except InvalidInput as refused:
            found += _prefixed(refused.violations, "invoice")
        else:
            found += _prefixed(documents.unprintable(draft), "invoice")
    if found:
        raise InvalidInput(list(dict.fromkeys(found)))
    assert draft is not None and valid_until is not None
    return draft, valid_until


def _kept_document(draft: InvoiceDraft) -> str:
    """Canonical JSON of the validated draft without its placeholder dates:
    what the invoice is later issued from (validated again then)."""
    body = {k: v for k, v in draft.model_dump(mode="json").items() if k not in INVOICE_DATES}
    return rfc8785.dumps(body).decode()


def _quote_fingerprint(draft: InvoiceDraft, valid_until: date) -> bytes:
    """The same request is the same validated draft (decimals by value) and
    the same validity date, whatever day it is retried."""
    undated = draft.model_copy(update={k: _PLACEHOLDER for k in INVOICE_DATES})
    return request_fingerprint(f"quote valid until {valid_until.isoformat()}", undated)


def _append(ledger: LedgerStore, kind: str, data: dict[str, Any], clock: Clock) -> None:
    """One entry in the caller's open transaction: committed with it or not at all."""
    if ledger.append(kind, canonical_payload(data, clock.now()), None) is None:
        raise NotFound([Violation("tenant_id", "no such tenant")])


def created_data(quote: StoredQuote, draft: InvoiceDraft,
                 totals: dict[str, Any]) -> dict[str, Any]:
    """The `quote.created` entry: business values and the document's SHA-256,
    never the document itself (names, addresses, IBAN are personal data, and
    the ledger is never erased)."""
    return {
        "quote_id": str(quote.quote_id), "reference": quote.reference,
        "valid_until": quote.valid_until.isoformat(), "currency": draft.currency,
        "seller_siren": draft.seller.siren, "totals": totals,
        "document_sha256": hashlib.sha256(quote.document.encode("utf-8")).hexdigest(),
    }


def create_quote(tenant_id: UUID, key: str | None, raw: object, ports: QuotePorts,
                 checkpoint: Checkpoint = no_checkpoint) -> Made:
    """POST /quotes: a validated draft, numbered in the tenant's quote counter.

    One transaction: the number, the `quote.created` entry, the row. A
    failure anywhere in it (a crash, a refused insert, a concurrent retry
    that took the key first) rolls back all three: no gap, no orphan entry.
    """
    key = checked_key(key)
    draft, valid_until = _quote_request(raw, _today(ports.clock), ports.documents)
    fingerprint = _quote_fingerprint(draft, valid_until)

    def known() -> StoredQuote | None:
        with ports.unit_of_work(tenant_id) as uow:
            return uow.quotes.by_idempotency_key(key)

    request = KeyedRequest(fingerprint, known, "quote")
    found = request.earlier()
    if found is not None:
        return Made(found, created=False)
    checkpoint("quote_looked_up")
    totals = totals_data(compute_totals(draft))

    def first() -> Made:
        with ports.unit_of_work(tenant_id) as uow:
            number = uow.quotes.next_number()
            checkpoint("quote_numbered")
            quote = StoredQuote(
                quote_id=uuid4(), number=number, reference=quote_reference(number),
                idempotency_key=key, request_sha256=fingerprint,
                document=_kept_document(draft), totals=rfc8785.dumps(totals).decode(),
                valid_until=valid_until)
            _append(uow.ledger, QUOTE_CREATED, created_data(quote, draft, totals),
                    ports.clock)
            checkpoint("quote_ledger_appended")
            stored = uow.quotes.add(quote)
            checkpoint("quote_stored")
        return Made(stored, created=True)

    # A concurrent retry that committed the key first made the quote.
    return request.made_once(first, lambda found: Made(found, created=False))


def get_quote(tenant_id: UUID, quote_id: UUID, unit_of_work: UnitOfWorkFactory) -> StoredQuote:
    with unit_of_work(tenant_id) as uow:
        quote = uow.quotes.get(quote_id)
    if quote is None:
        raise NotFound([Violation("quote_id", "no such quote")])
    return quote


@dataclass(frozen=True)
class _Dates:
    issue_date: date | None  # None: today in Paris (or the date of the invoice made already)
    due_date: date


def _conversion_request(raw: object) -> _Dates:
    if not isinstance(raw, dict):
        raise InvalidInput([Violation("body", "must be a JSON object {issue_date, due_date}")])
    found = [Violation(k, "is not a known field: the body is {issue_date, due_date}; the rest "
                       "of the invoice is the quote's") for k in raw if k not in INVOICE_DATES]
    issue_date: date | None = None
    if "issue_date" in raw:
        issue_date, problems = _date(raw["issue_date"], "issue_date")
        found += problems
    due_date: date | None = None
    if "due_date" not in raw:
        found.append(Violation("due_date", "is required: the invoice's payment due date"))
    else:
        due_date, problems = _date(raw["due_date"], "due_date")
        found += problems
    if found:
        raise InvalidInput(found)
    assert due_date is not None
    return _Dates(issue_date, due_date)


def _conversion_fingerprint(quote_id: UUID, dates: _Dates) -> bytes:
    """What the caller asked, as given: a retry without issue_date on the next
    day is still the same request."""
    return hashlib.sha256(rfc8785.dumps({
        "purpose": "quote-invoice", "quote_id": str(quote_id),
        "issue_date": dates.issue_date.isoformat() if dates.issue_date else None,
        "due_date": dates.due_date.isoformat()})).digest()


def _converted_already(quote: StoredQuote) -> Conflict:
    return Conflict([Violation("quote_id", f"already converted into invoice "
                               f"{quote.converted_invoice_id} (GET /invoices/"
                               f"{quote.converted_invoice_id}): a quote becomes one invoice")])


def convert_quote(tenant_id: UUID, quote_id: UUID, key: str | None, raw: object,
                  ports: InvoicePorts, checkpoint: Checkpoint = no_checkpoint) -> Issued:
    """POST /quotes/{id}/invoice: the invoice the accepted quote becomes.

    Same key and body as the conversion recorded: the same invoice (created
    False). Another key: 409 naming the invoice. Not converted yet and past
    its validity date: 409 (unless a crashed attempt already issued the
    invoice, which is then only linked).
    """
    key = checked_key(key)
    dates = _conversion_request(raw)
    asked = _conversion_fingerprint(quote_id, dates)
    with ports.unit_of_work(tenant_id) as uow:
        quote = uow.quotes.get(quote_id)
        made = uow.invoices.by_idempotency_key(invoice_key(quote_id))
    if quote is None:
        raise NotFound([Violation("quote_id", "no such quote")])
    if quote.converted_invoice_id is not None:
        if quote.conversion_key != key:
            raise _converted_already(quote)
        if quote.conversion_sha256 != asked:
            raise Conflict([Violation("Idempotency-Key", "already used for another request: "
                                      "this key converted the quote with other dates")])
        if made is None or made.invoice_id != quote.converted_invoice_id:
            raise _converted_already(quote)  # linked by other means: never issue a second
    today = _today(ports.clock)
    if made is None and today > quote.valid_until:
        raise Conflict([Violation("valid_until", f"the quote expired on "
                                  f"{quote.valid_until.isoformat()} (today in Paris is "
                                  f"{today.isoformat()}): an expired quote is not converted; "
                                  "make a new quote")])
    # A crashed attempt's invoice keeps its own issue date when none is given.
    issue_date = dates.issue_date or (made.issue_date if made else today)
    draft = {**json.loads(quote.document), "issue_date": issue_date.isoformat(),
             "due_date": dates.due_date.isoformat()}
    try:
        issued = issue_under_own_key(tenant_id, invoice_key(quote_id), draft, ports,
                                     checkpoint)
    except Conflict:
        # The quote's invoice exists with other dates (a racing conversion):
        # name it rather than the internal key.
        with ports.unit_of_work(tenant_id) as uow:
            made = uow.invoices.by_idempotency_key(invoice_key(quote_id))
        if made is None:
            raise
        raise Conflict([Violation("quote_id", f"already converted into invoice "
                                  f"{made.invoice_id} with other dates: a quote becomes one "
                                  "invoice")]) from None
    checkpoint("invoice_issued")
    with ports.unit_of_work(tenant_id) as uow:
        # Under the quote's row lock, only the transaction that finds it
        # unconverted links it: a retry or a racing conversion appends nothing.
        # The chain's head is taken before the row's new version is written (as
        # every writer does), so a writer holding the head never waits on us.
        locked = uow.quotes.get(quote_id, for_update=True)
        if locked is not None and locked.converted_invoice_id is None:
            _append(uow.ledger, QUOTE_CONVERTED, {
                "quote_id": str(quote_id), "reference": quote.reference,
                "invoice_id": str(issued.invoice.invoice_id),
                "invoice_number": issued.invoice.invoice_number}, ports.clock)
            checkpoint("conversion_ledger_appended")
            if not uow.quotes.record_conversion(quote_id, issued.invoice.invoice_id, key,
                                                asked):
                raise RuntimeError(f"quote {quote_id}: linked by another transaction "
                                   "despite the row lock")
            checkpoint("conversion_recorded")
        linked = uow.quotes.get(quote_id)
    assert linked is not None
    if linked.conversion_key != key or linked.conversion_sha256 != asked:
        raise _converted_already(linked)  # a racing request with another key recorded first
    return issued
