"""Issue invoice: validate, number, produce the Factur-X, chain it, archive it.

Steps, and what a crash between any two of them leaves behind:

1. validate the draft (every violation at once) and fingerprint the request;
   a known idempotency key answers from the database (same request) or 409;
2. check the archive can keep the invoice 11 years (fail closed, before any
   number is given);
3. one transaction: next number of the series (locked until commit), CII
   XML, visual PDF, Factur-X embedding, XSD + schematron (checked in the
   schematron worker while this process renders the PDF), ledger entry
   `invoice.issued` (number, totals, SHA-256 of PDF and XML), the invoice row
   and its staged documents. A crash inside rolls everything back: the number
   is given again, no gap (the engine refuses a gap anyway);
4. archive (`archive_invoice.archive_invoice`): PDF and XML under COMPLIANCE
   lock, then the receipt written once with `invoice.archived`. A crash before
   the receipt leaves the invoice issued and its documents staged, for the
   retry or the scheduled sweep; the archive reuses the version already
   holding those exact bytes: no duplicate object, no orphan.

The steps call `checkpoint(name)` so tests can inject a crash after each one.
"""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import wait
from typing import Any
from uuid import UUID, uuid4

from chalicelib import metrics
from chalicelib.domain.document_types import DocumentType
from chalicelib.domain.errors import Conflict, InvalidInput, NotFound, Violation
from chalicelib.domain.invoice import InvoiceDraft, Totals, compute_totals, validate_invoice
from chalicelib.domain.kinds import CREDIT_NOTE_ISSUED, INVOICE_ISSUED
from chalicelib.domain.ledger import canonical_payload
from chalicelib.ports import IssuedInvoice, UnitOfWork
from chalicelib.usecases.archive_invoice import archive_invoice
from chalicelib.usecases.background import pool
from chalicelib.usecases.idempotency import KeyedRequest, checked_key, request_fingerprint
from chalicelib.usecases.invoicing import (
    Checkpoint,
    InvoicePorts,
    Issued,
    canonical_json,
    check_issue_date,
    known_invoice,
    no_checkpoint,
    totals_data,
)


def invoice_number(series: str, number: int) -> str:
    """BT-1: the series, a dash, the number on at least 6 digits (≤ 35 characters)."""
    return f"{series}-{number:06d}"


def _keyed(tenant_id: UUID, key: str, fingerprint: bytes,
           ports: InvoicePorts) -> KeyedRequest[IssuedInvoice]:
    return KeyedRequest(fingerprint, lambda: known_invoice(ports.unit_of_work, tenant_id, key),
                        "invoice")


def issue_invoice(tenant_id: UUID, key: str | None, raw: object, ports: InvoicePorts,
                  checkpoint: Checkpoint = no_checkpoint) -> Issued:
    """POST /invoices: the draft as posted (a JSON object parsed with exact decimals),
    under the caller's key (never one of the service's own namespaces)."""
    return issue_under_own_key(tenant_id, checked_key(key), raw, ports, checkpoint)


def issue_under_own_key(tenant_id: UUID, key: str, raw: object, ports: InvoicePorts,
                        checkpoint: Checkpoint = no_checkpoint) -> Issued:
    """As issue_invoice, under a key the service made itself (the invoice a
    quote becomes): the one way to use a key no caller may send."""
    if isinstance(raw, dict) and DocumentType.CREDIT_NOTE.named_by(raw.get("type_code")):
        raise InvalidInput([Violation("type_code", "a credit note is issued with POST "
                                      "/invoices/{id}/credit-notes, which references the "
                                      "credited invoice")])
    draft = validate_invoice(raw)
    request = _keyed(tenant_id, key, request_fingerprint("invoice", draft), ports)
    found = request.earlier()
    if found is not None:
        return _finish_retry(tenant_id, found, ports, checkpoint)
    return _issue(tenant_id, key, request, draft, None, ports, checkpoint)


def issue_credit_note(tenant_id: UUID, credited_invoice_id: UUID, key: str | None, raw: object,
                      ports: InvoicePorts, checkpoint: Checkpoint = no_checkpoint) -> Issued:
    """POST /invoices/{id}/credit-notes: type 381, referencing the credited
    invoice (BG-3) from our own records, never from the caller's text."""
    key = checked_key(key)
    with ports.unit_of_work(tenant_id) as uow:
        credited = uow.invoices.get(credited_invoice_id)
    if credited is None:
        raise NotFound([Violation("invoice_id", "no such invoice")])
    if credited.type_code != DocumentType.INVOICE:
        raise Conflict([Violation("invoice_id", "is a credit note: only an invoice (380) "
                                  "is credited")])
    if not isinstance(raw, dict):
        raise InvalidInput([Violation("body", "must be a JSON object")])
    given = [Violation(field, "is taken from the credited invoice: leave it out")
             for field in ("type_code", "preceding_invoice") if field in raw]
    if given:
        raise InvalidInput(given)
    draft = validate_invoice({**raw, "type_code": DocumentType.CREDIT_NOTE.code,
                              "preceding_invoice": {
                                  "number": credited.invoice_number,
                                  "issue_date": credited.issue_date.isoformat()}})
    request = _keyed(tenant_id, key,
                     request_fingerprint(f"credit-note:{credited_invoice_id}", draft), ports)
    found = request.earlier()
    if found is not None:
        return _finish_retry(tenant_id, found, ports, checkpoint)
    original = json.loads(credited.document)
    if draft.seller.siren != original["seller"]["siren"]:
        raise InvalidInput([Violation("seller.siren", "must be the credited invoice's seller")])
    if draft.buyer.name != original["buyer"]["name"] or \
            draft.buyer.siren != original["buyer"].get("siren"):
        raise InvalidInput([Violation("buyer", "must be the credited invoice's buyer "
                                      "(same name and SIREN)")])
    return _issue(tenant_id, key, request, draft, credited.invoice_id, ports, checkpoint)


def _archive_after_issue(tenant_id: UUID, invoice: IssuedInvoice, ports: InvoicePorts,
                         checkpoint: Checkpoint, *, staged: dict[str, bytes] | None = None
                         ) -> IssuedInvoice:
    """The invoice is issued (committed) whatever happens here: an archive
    failure leaves it pending, for the caller's retry or the scheduled sweep,
    and is never reported as "nothing issued"."""
    if invoice.archive is not None:
        return invoice
    try:
        return archive_invoice(tenant_id, invoice.invoice_id, ports, checkpoint,
                               staged=staged)
    except Exception as exc:  # noqa: BLE001 - logged by type; the sweep retries
        from chalicelib.logs import logger

        metrics.count(metrics.ARCHIVE_FAILURES)
        logger.error("archiving deferred to the sweep", extra={
            "invoice_id": str(invoice.invoice_id), "reason": type(exc).__name__})
        return invoice


def _finish_retry(tenant_id: UUID, found: IssuedInvoice, ports: InvoicePorts,
                  checkpoint: Checkpoint) -> Issued:
    """A retry: the invoice exists; finish its archiving if a crash interrupted it."""
    found = _archive_after_issue(tenant_id, found, ports, checkpoint)
    return Issued(found, created=False, archived=found.archive is not None)


def _issue(tenant_id: UUID, key: str, request: KeyedRequest[IssuedInvoice],
           draft: InvoiceDraft, credited_invoice_id: UUID | None, ports: InvoicePorts,
           checkpoint: Checkpoint) -> Issued:
    check_issue_date(draft, ports.clock)
    unprintable = ports.documents.unprintable(draft)
    if unprintable:
        raise InvalidInput(unprintable)
    checkpoint("validated")
    try:
        ports.archive.check_ready()  # fail closed: no number for an invoice we cannot keep
    except Exception:
        metrics.count(metrics.ARCHIVE_FAILURES)
        raise
    checkpoint("archive_checked")
    totals = compute_totals(draft)

    def first() -> Issued:
        with ports.unit_of_work(tenant_id) as uow:
            invoice, documents = _number_and_record(uow, key, request.fingerprint, draft,
                                                    totals, credited_invoice_id, ports,
                                                    checkpoint)
        checkpoint("committed")
        metrics.count(metrics.INVOICES_ISSUED)
        # This call committed the number: nothing can have been put under its keys
        # yet, and the staged documents are the bytes in hand.
        archived = _archive_after_issue(tenant_id, invoice, ports, checkpoint,
                                        staged=documents)
        return Issued(archived, created=True, archived=archived.archive is not None)

    # A concurrent retry that committed the key first made the invoice: finish that one.
    return request.made_once(
        first, lambda found: _finish_retry(tenant_id, found, ports, checkpoint))


def _number_and_record(uow: UnitOfWork, key: str, fingerprint: bytes, draft: InvoiceDraft,
                       totals: Totals, credited_invoice_id: UUID | None, ports: InvoicePorts,
                       checkpoint: Checkpoint) -> tuple[IssuedInvoice, dict[str, bytes]]:
    """Inside the transaction that holds the series' number: everything or
    nothing. Returns the invoice and the documents staged with it."""
    number = uow.invoices.next_number(draft.series)
    label = invoice_number(draft.series, number)
    checkpoint("numbered")
    created = ports.clock.now()
    xml = ports.documents.xml(draft, label, totals)
    checkpoint("xml_built")
    # The checks mostly wait on the schematron worker (another process): they
    # run while this thread renders and embeds, and are awaited before anything
    # is recorded. A failure anywhere still rolls the whole transaction back.
    checked = pool().submit(ports.documents.problems, xml)
    try:
        visual = ports.documents.pdf(draft, label, totals, created)
        checkpoint("pdf_rendered")
        pdf = ports.documents.factur_x(visual, xml, draft, label, created)
        checkpoint("embedded")
    except BaseException:  # the check never outlives this transaction
        checked.cancel()
        wait([checked])
        raise
    # Only on failure is the check cancelled: one the pool has not started yet
    # when rendering ends must still run, not answer CancelledError.
    problems = checked.result()
    if problems:
        raise InvalidInput(problems)
    checkpoint("checked")
    invoice_id = uuid4()
    pdf_sha256, xml_sha256 = hashlib.sha256(pdf).digest(), hashlib.sha256(xml).digest()
    kind = CREDIT_NOTE_ISSUED if credited_invoice_id else INVOICE_ISSUED
    data: dict[str, Any] = {
        "invoice_id": str(invoice_id), "invoice_number": label, "series": draft.series,
        "number": number, "type_code": draft.document_type.value,
        "issue_date": draft.issue_date.isoformat(), "currency": draft.currency,
        "seller_siren": draft.seller.siren, "totals": totals_data(totals),
        "pdf_sha256": pdf_sha256.hex(), "xml_sha256": xml_sha256.hex(),
    }
    if draft.preceding_invoice is not None:
        data["credited_invoice_number"] = draft.preceding_invoice.number
    appended = uow.ledger.append(kind, canonical_payload(data, created), None)
    if appended is None:
        raise NotFound([Violation("tenant_id", "no such tenant")])
    checkpoint("ledger_appended")
    invoice = IssuedInvoice(
        invoice_id=invoice_id, series=draft.series, number=number, invoice_number=label,
        type_code=draft.document_type, credited_invoice_id=credited_invoice_id,
        issue_date=draft.issue_date, idempotency_key=key, request_sha256=fingerprint,
        document=canonical_json(draft.model_dump(mode="json")),
        totals=canonical_json(totals_data(totals)), pdf_sha256=pdf_sha256,
        xml_sha256=xml_sha256, ledger_seq=appended[0].seq)
    uow.invoices.add(invoice)
    uow.invoices.add_document(invoice_id, "pdf", pdf)
    uow.invoices.add_document(invoice_id, "xml", xml)
    checkpoint("stored")
    return invoice, {"pdf": pdf, "xml": xml}
