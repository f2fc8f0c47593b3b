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
4. archive (`archive_invoice`): put PDF and XML under COMPLIANCE lock, then one
   transaction writes the receipt once, appends `invoice.archived` and drops
   the staged copies. A crash before the receipt leaves the invoice issued and
   its documents staged: the retry (or the scheduled sweep) puts again, and the
   archive reuses the version already holding those exact bytes: no duplicate
   object, no orphan.

The steps call `checkpoint(name)` so tests can inject a crash after each one.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from concurrent.futures import wait
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4
from zoneinfo import ZoneInfo

import rfc8785

from chalicelib.domain.errors import (
    ArchiveTampered,
    Conflict,
    DuplicateIdempotencyKey,
    InvalidInput,
    NotFound,
    Violation,
)
from chalicelib.domain.invoice import (
    CREDIT_NOTE,
    InvoiceDraft,
    Totals,
    compute_totals,
    validate_invoice,
)
from chalicelib.domain.ledger import canonical_payload
from chalicelib.domain.retention import LEGAL_YEARS, retain_until_for
from chalicelib.ports import (
    ArchivedObject,
    Clock,
    InvoiceArchive,
    InvoiceDocuments,
    InvoiceQueue,
    IssuedInvoice,
    UnitOfWork,
    UnitOfWorkFactory,
)
from chalicelib.usecases.background import pool

PARIS = ZoneInfo("Europe/Paris")
ISSUED = "invoice.issued"
DOCUMENT_TYPES = (("pdf", "application/pdf"), ("xml", "application/xml"))
CREDIT_NOTE_ISSUED = "credit_note.issued"
ARCHIVED = "invoice.archived"
IDEMPOTENCY_KEY_RULE = "1 to 200 visible ASCII characters"

Checkpoint = Callable[[str], None]


def no_checkpoint(_step: str) -> None:
    return None


@dataclass(frozen=True)
class Issued:
    invoice: IssuedInvoice
    created: bool  # False: the answer to a retry of an earlier request
    archived: bool


def invoice_number(series: str, number: int) -> str:
    """BT-1: the series, a dash, the number on at least 6 digits (≤ 35 characters)."""
    return f"{series}-{number:06d}"


def archive_key(tenant_id: UUID, invoice: IssuedInvoice, kind: str) -> str:
    return f"tenants/{tenant_id}/invoices/{invoice.issue_date.year}/{invoice.invoice_number}.{kind}"


def retain_until(issue_date: date) -> datetime:
    return retain_until_for(issue_date, LEGAL_YEARS)


def checked_key(key: str | None) -> str:
    if key is None or key == "":
        raise InvalidInput([Violation("Idempotency-Key", "header required: a key of your "
                                      "choice per invoice, reused when you retry")])
    if not (1 <= len(key) <= 200 and all("!" <= c <= "~" for c in key)):
        raise InvalidInput([Violation("Idempotency-Key", f"must be {IDEMPOTENCY_KEY_RULE}")])
    return key


def request_fingerprint(purpose: str, draft: InvoiceDraft) -> bytes:
    """SHA-256 of what was asked, once validated: the same key must come with
    the same invoice. Hashing the validated draft, not the raw text, makes
    "50.5" and "50.50", key order or spacing the same request."""
    body = rfc8785.dumps({"purpose": purpose,
                          "draft": _same_numbers(draft.model_dump(mode="python"))})
    return hashlib.sha256(body).digest()


def _same_numbers(value: Any) -> Any:
    """Decimals by value ("50.5" and "50.50" alike), dates as ISO text."""
    from decimal import Decimal

    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _same_numbers(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_same_numbers(v) for v in value]
    if isinstance(value, str | int | bool) or value is None:
        return value
    return str(value)  # enums


def _jsonable(value: Any) -> Any:
    from decimal import Decimal

    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def _canonical(value: Any) -> str:
    return rfc8785.dumps(_jsonable(value)).decode()


def totals_data(totals: Totals) -> dict[str, Any]:
    """The totals as the ledger and the API show them (decimal strings, BT numbers)."""
    return {
        "line_total": str(totals.line_total),
        "allowance_total": str(totals.allowance_total),
        "charge_total": str(totals.charge_total),
        "tax_exclusive_amount": str(totals.tax_exclusive_amount),
        "tax_total": str(totals.tax_total),
        "tax_inclusive_amount": str(totals.tax_inclusive_amount),
        "amount_due": str(totals.amount_due),
        "vat_breakdown": [{"category": g.category.value, "rate": str(g.rate),
                           "taxable_amount": str(g.taxable_amount),
                           "tax_amount": str(g.tax_amount)}
                          for g in totals.vat_breakdown],
    }


BACKDATING_DAYS = 31


def _check_issue_date(draft: InvoiceDraft, clock: Clock) -> None:
    """An invoice is issued when it is made: not in the future, and not more
    than a month back (its 11-year lock, counted from the issue date, must
    lie well ahead; older invoices belong to an import, not to issuing)."""
    today = clock.now().astimezone(PARIS).date()
    if draft.issue_date > today:
        raise InvalidInput([Violation("issue_date", "must not be in the future (today in "
                                      "Paris is " + today.isoformat() + ")")])
    if draft.issue_date < today - timedelta(days=BACKDATING_DAYS):
        raise InvalidInput([Violation("issue_date", f"must be within the last "
                                      f"{BACKDATING_DAYS} days (today in Paris is "
                                      f"{today.isoformat()})")])


def _answer_retry(found: IssuedInvoice, fingerprint: bytes) -> IssuedInvoice:
    if found.request_sha256 != fingerprint:
        raise Conflict([Violation("Idempotency-Key", "already used for another request: "
                                  "use a new key for a new invoice")])
    return found


def _known(unit_of_work: UnitOfWorkFactory, tenant_id: UUID, key: str) -> IssuedInvoice | None:
    with unit_of_work(tenant_id) as uow:
        return uow.invoices.by_idempotency_key(key)


@dataclass(frozen=True)
class InvoicePorts:
    """What issuing needs from the outside world."""

    unit_of_work: UnitOfWorkFactory
    documents: InvoiceDocuments
    archive: InvoiceArchive
    clock: Clock


def issue_invoice(tenant_id: UUID, key: str | None, raw: object, ports: InvoicePorts,
                  checkpoint: Checkpoint = no_checkpoint) -> Issued:
    """POST /invoices: the draft as posted (a JSON object parsed with exact decimals)."""
    key = checked_key(key)
    if isinstance(raw, dict) and raw.get("type_code") in (CREDIT_NOTE, str(CREDIT_NOTE)):
        raise InvalidInput([Violation("type_code", "a credit note is issued with POST "
                                      "/invoices/{id}/credit-notes, which references the "
                                      "credited invoice")])
    draft = validate_invoice(raw)
    fingerprint = request_fingerprint("invoice", draft)
    found = _known(ports.unit_of_work, tenant_id, key)
    if found is not None:
        return _finish_retry(tenant_id, _answer_retry(found, fingerprint), ports, checkpoint)
    return _issue(tenant_id, key, fingerprint, draft, None, ports, checkpoint)


def issue_credit_note(tenant_id: UUID, credited_id: UUID, key: str | None, raw: object,
                      ports: InvoicePorts, checkpoint: Checkpoint = no_checkpoint) -> Issued:
    """POST /invoices/{id}/credit-notes: type 381, referencing the credited
    invoice (BG-3) from our own records, never from the caller's text."""
    key = checked_key(key)
    with ports.unit_of_work(tenant_id) as uow:
        credited = uow.invoices.get(credited_id)
    if credited is None:
        raise NotFound([Violation("invoice_id", "no such invoice")])
    if credited.type_code != "380":
        raise Conflict([Violation("invoice_id", "is a credit note: only an invoice (380) "
                                  "is credited")])
    if not isinstance(raw, dict):
        raise InvalidInput([Violation("body", "must be a JSON object")])
    given = [Violation(field, "is taken from the credited invoice: leave it out")
             for field in ("type_code", "preceding_invoice") if field in raw]
    if given:
        raise InvalidInput(given)
    draft = validate_invoice({**raw, "type_code": CREDIT_NOTE, "preceding_invoice": {
        "number": credited.invoice_number, "issue_date": credited.issue_date.isoformat()}})
    fingerprint = request_fingerprint(f"credit-note:{credited_id}", draft)
    found = _known(ports.unit_of_work, tenant_id, key)
    if found is not None:
        return _finish_retry(tenant_id, _answer_retry(found, fingerprint), ports, checkpoint)
    original = json.loads(credited.document)
    if draft.seller.siren != original["seller"]["siren"]:
        raise InvalidInput([Violation("seller.siren", "must be the credited invoice's seller")])
    if draft.buyer.name != original["buyer"]["name"] or \
            draft.buyer.siren != original["buyer"].get("siren"):
        raise InvalidInput([Violation("buyer", "must be the credited invoice's buyer "
                                      "(same name and SIREN)")])
    return _issue(tenant_id, key, fingerprint, draft, credited.invoice_id, ports, checkpoint)


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

        logger.error("archiving deferred to the sweep", extra={
            "invoice_id": str(invoice.invoice_id), "reason": type(exc).__name__})
        return invoice


def _finish_retry(tenant_id: UUID, found: IssuedInvoice, ports: InvoicePorts,
                  checkpoint: Checkpoint) -> Issued:
    """A retry: the invoice exists; finish its archiving if a crash interrupted it."""
    found = _archive_after_issue(tenant_id, found, ports, checkpoint)
    return Issued(found, created=False, archived=found.archive is not None)


def _issue(tenant_id: UUID, key: str, fingerprint: bytes, draft: InvoiceDraft,
           credited_id: UUID | None, ports: InvoicePorts, checkpoint: Checkpoint) -> Issued:
    _check_issue_date(draft, ports.clock)
    unprintable = ports.documents.unprintable(draft)
    if unprintable:
        raise InvalidInput(unprintable)
    checkpoint("validated")
    ports.archive.check_ready()  # fail closed: no number for an invoice we cannot keep
    checkpoint("archive_checked")
    totals = compute_totals(draft)
    try:
        with ports.unit_of_work(tenant_id) as uow:
            invoice, documents = _number_and_record(uow, key, fingerprint, draft, totals,
                                                    credited_id, ports, checkpoint)
    except DuplicateIdempotencyKey:
        found = _known(ports.unit_of_work, tenant_id, key)
        if found is None:
            raise
        return _finish_retry(tenant_id, _answer_retry(found, fingerprint), ports, checkpoint)
    checkpoint("committed")
    # This call committed the number: nothing can have been put under its keys yet,
    # and the staged documents are the bytes in hand.
    archived = _archive_after_issue(tenant_id, invoice, ports, checkpoint, staged=documents)
    return Issued(archived, created=True, archived=archived.archive is not None)


def _number_and_record(uow: UnitOfWork, key: str, fingerprint: bytes, draft: InvoiceDraft,
                       totals: Totals, credited_id: UUID | None, ports: InvoicePorts,
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
    finally:  # whatever happens, the check ends inside this transaction
        checked.cancel()
        wait([checked])
    problems = checked.result()
    if problems:
        raise InvalidInput(problems)
    checkpoint("checked")
    invoice_id = uuid4()
    pdf_sha256, xml_sha256 = hashlib.sha256(pdf).digest(), hashlib.sha256(xml).digest()
    kind = CREDIT_NOTE_ISSUED if credited_id else ISSUED
    data: dict[str, Any] = {
        "invoice_id": str(invoice_id), "invoice_number": label, "series": draft.series,
        "number": number, "type_code": str(draft.type_code),
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
        type_code=str(draft.type_code), preceding_id=credited_id, issue_date=draft.issue_date,
        idempotency_key=key, request_sha256=fingerprint,
        document=_canonical(draft.model_dump(mode="json")),
        totals=_canonical(totals_data(totals)), pdf_sha256=pdf_sha256, xml_sha256=xml_sha256,
        ledger_seq=appended[0].seq)
    uow.invoices.add(invoice)
    uow.invoices.add_document(invoice_id, "pdf", pdf)
    uow.invoices.add_document(invoice_id, "xml", xml)
    checkpoint("stored")
    return invoice, {"pdf": pdf, "xml": xml}


class StagedDocumentMismatch(RuntimeError):
    """The staged bytes are not those whose hashes the ledger holds."""


def archive_invoice(tenant_id: UUID, invoice_id: UUID, ports: InvoicePorts,
                    checkpoint: Checkpoint = no_checkpoint, *,
                    staged: dict[str, bytes] | None = None) -> IssuedInvoice:
    """Put the staged PDF and XML under Object Lock and record the receipt once.

    One transaction holds the invoice's row lock from before the puts to the
    receipt: a second archiver (a retry racing the sweep) waits, then finds
    the receipt written, so no second version is ever put. A crash after a put
    leaves the object; the next run reuses the version holding those bytes.

    `staged`: only from the call that has just committed the invoice, with the
    bytes it staged: nothing can be under its keys yet (no lookup before the
    put) and the staged copies need not be read back from the database.
    """
    first_attempt = staged is not None
    with ports.unit_of_work(tenant_id) as uow:
        invoice = uow.invoices.get(invoice_id, for_update=True)
        if invoice is None:
            raise NotFound([Violation("invoice_id", "no such invoice")])
        if invoice.archive is not None:
            return invoice
        if staged is None:
            staged = uow.invoices.documents(invoice_id)
        expected = {"pdf": invoice.pdf_sha256, "xml": invoice.xml_sha256}
        for kind, digest in expected.items():
            if kind not in staged or hashlib.sha256(staged[kind]).digest() != digest:
                raise StagedDocumentMismatch(f"invoice {invoice_id}: staged {kind} does not "
                                             "match its ledger hash")
        until = retain_until(invoice.issue_date)
        # The two puts are independent: made at once, they cost one round of S3 calls.
        puts = [pool().submit(ports.archive.put, archive_key(tenant_id, invoice, kind),
                              staged[kind], until, content_type, first_attempt=first_attempt)
                for kind, content_type in DOCUMENT_TYPES]
        wait(puts)  # both ended, whatever happens next: no put outlives this transaction
        stored: list[ArchivedObject] = [put.result() for put in puts]
        for kind, _ in DOCUMENT_TYPES:
            checkpoint(f"archived_{kind}")
        receipt = {"objects": [{"kind": kind, "key": o.key, "version_id": o.version_id,
                                "sha256": o.sha256.hex(), "mode": o.mode,
                                "retain_until": o.retain_until.isoformat()}
                               for kind, o in zip(("pdf", "xml"), stored, strict=True)]}
        # The chain's head first, the row's new version after: every writer takes
        # the head before touching the invoices' unique keys, so an issuer
        # holding the head never waits on this transaction's uncommitted row.
        appended = uow.ledger.append(ARCHIVED, canonical_payload(
            {"invoice_id": str(invoice_id), "invoice_number": invoice.invoice_number,
             **receipt}, ports.clock.now()), None)
        if appended is None:
            raise NotFound([Violation("tenant_id", "no such tenant")])
        receipt_text = _canonical(receipt)
        if not uow.invoices.record_archive(invoice_id, receipt_text):
            raise RuntimeError(f"invoice {invoice_id}: the receipt was written by another "
                               "archiver despite the row lock")
        checkpoint("recorded")
    return replace(invoice, archive=receipt_text)


def _ledger_hashes(uow: UnitOfWork, invoice: IssuedInvoice) -> dict[str, bytes]:
    """The SHA-256s the `invoice.issued` entry holds: the chain, not the
    invoice row (which a superuser could edit), is what reads are checked against."""
    entry = next(iter(uow.ledger.entries(invoice.ledger_seq - 1)), None)
    if entry is None or entry.seq != invoice.ledger_seq:
        return {}
    data = json.loads(entry.payload).get("data", {})
    if data.get("invoice_id") != str(invoice.invoice_id):
        return {}
    return {kind: bytes.fromhex(data.get(f"{kind}_sha256", "")) for kind in ("pdf", "xml")}


def archived_document(tenant_id: UUID, invoice_id: UUID, kind: str,
                      ports: InvoicePorts) -> tuple[IssuedInvoice, bytes]:
    """The PDF or XML, from the archive once archived, from the staged copy
    before; either way checked against the SHA-256 in the ledger entry."""
    with ports.unit_of_work(tenant_id) as uow:
        invoice = uow.invoices.get(invoice_id)
        if invoice is None:
            raise NotFound([Violation("invoice_id", "no such invoice")])
        chained = _ledger_hashes(uow, invoice).get(kind)
        staged = uow.invoices.documents(invoice_id) if invoice.archive is None else {}
    row = invoice.pdf_sha256 if kind == "pdf" else invoice.xml_sha256
    if chained != row:
        raise ArchiveTampered(f"invoice {invoice_id}: the invoice row and its ledger entry "
                              f"disagree on the {kind}")
    if invoice.archive is None:
        content = staged.get(kind)
        if content is None or hashlib.sha256(content).digest() != chained:
            raise ArchiveTampered(f"invoice {invoice_id}: staged {kind} does not match its "
                                  "ledger hash")
        return invoice, content
    receipt = json.loads(invoice.archive)
    [stored] = [o for o in receipt["objects"] if o["kind"] == kind]
    if bytes.fromhex(stored["sha256"]) != chained:
        raise ArchiveTampered(f"invoice {invoice_id}: archive receipt and ledger disagree on "
                              f"the {kind}")
    return invoice, ports.archive.get(stored["key"], stored["version_id"], chained)


def archive_pending(pending: list[tuple[UUID, UUID]], ports: InvoicePorts) -> dict[str, int]:
    """The scheduled sweep: archive invoices a crash left unarchived. An
    unsafe bucket stops the sweep before any put; after that, one invoice
    failing (even on its own object) does not stop the others."""
    from chalicelib.logs import logger

    ports.archive.check_ready()
    done = failed = 0
    for tenant_id, invoice_id in pending:
        try:
            archive_invoice(tenant_id, invoice_id, ports)
        except Exception as exc:  # noqa: BLE001 - counted and logged by type, next one
            logger.error("archive sweep: one invoice failed",
                         extra={"invoice_id": str(invoice_id), "reason": type(exc).__name__})
            failed += 1
        else:
            done += 1
    return {"archived": done, "failed": failed}


MAX_BATCH = 100
MAX_MESSAGE_BYTES = 250_000  # SQS takes 256 KiB a message


def queue_invoices(tenant_id: UUID, raw: object, queue: InvoiceQueue,
                   clock: Clock) -> list[str]:
    """POST /invoice-batches: check every draft now (all violations of all
    items, nothing queued if any), then one message per invoice. The tenant
    is the caller's, written by us into each message."""
    items = raw.get("invoices") if isinstance(raw, dict) and set(raw) == {"invoices"} else None
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_BATCH:
        raise InvalidInput([Violation("invoices", f"must be the only field: a list of 1 to "
                                      f"{MAX_BATCH} items {{idempotency_key, invoice}}")])
    found: list[Violation] = []
    messages: list[str] = []
    seen: set[str] = set()
    for i, item in enumerate(items):
        where = f"invoices.{i}"
        if not isinstance(item, dict) or set(item) != {"idempotency_key", "invoice"}:
            found.append(Violation(where, "must hold exactly idempotency_key and invoice"))
            continue
        key = item["idempotency_key"]
        try:
            key = checked_key(key if isinstance(key, str) else None)
        except InvalidInput:
            found.append(Violation(f"{where}.idempotency_key", f"must be {IDEMPOTENCY_KEY_RULE}"))
            continue
        if key in seen:
            found.append(Violation(f"{where}.idempotency_key", "appears twice in the batch"))
        seen.add(key)
        draft_raw = item["invoice"]
        if isinstance(draft_raw, dict) and draft_raw.get("type_code") in (CREDIT_NOTE,
                                                                          str(CREDIT_NOTE)):
            found.append(Violation(f"{where}.invoice.type_code", "credit notes are issued one "
                                   "by one with POST /invoices/{id}/credit-notes"))
            continue
        try:
            _check_issue_date(validate_invoice(draft_raw), clock)
        except InvalidInput as refused:
            found += [Violation(f"{where}.invoice.{v.field}", v.rule) for v in refused.violations]
            continue
        message = _canonical({"tenant_id": str(tenant_id), "idempotency_key": key,
                              "invoice": draft_raw})
        if len(message.encode()) > MAX_MESSAGE_BYTES:
            found.append(Violation(f"{where}.invoice", "too large for a batch: issue it with "
                                   "POST /invoices"))
        messages.append(message)
    if found:
        raise InvalidInput(found)
    queue.send(messages)
    return [str(item["idempotency_key"]) for item in items]
