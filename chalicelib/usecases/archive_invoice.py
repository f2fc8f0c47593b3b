"""Archive an issued invoice: its PDF and XML under Object Lock, the receipt once.

The last step of issuing (`issue_invoice`), also run by the caller's retry
and the scheduled sweep (`archive_pending`). Put PDF and XML under COMPLIANCE
lock, then one transaction writes the receipt once, appends
`invoice.archived` and drops the staged copies. A crash before the receipt
leaves the invoice issued and its documents staged: the retry (or the
sweep) puts again, and the archive reuses the version already holding those
exact bytes: no duplicate object, no orphan.

Reads (`archived_document`) are checked against the SHA-256s the
`invoice.issued` entry holds, whether the bytes come from the archive or,
before archiving, from the staged copy.
"""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import wait
from dataclasses import replace
from datetime import date, datetime
from uuid import UUID

from chalicelib import metrics
from chalicelib.domain.errors import (
    ArchiveMissing,
    ArchiveTampered,
    NotArchived,
    NotFound,
    Violation,
)
from chalicelib.domain.kinds import INVOICE_ARCHIVED
from chalicelib.domain.ledger import canonical_payload
from chalicelib.domain.retention import LEGAL_YEARS, retain_until_for
from chalicelib.ports import ArchivedObject, ArchiveReceipt, IssuedInvoice, UnitOfWork
from chalicelib.usecases.background import pool
from chalicelib.usecases.invoicing import Checkpoint, InvoicePorts, no_checkpoint

DOCUMENT_TYPES = (("pdf", "application/pdf"), ("xml", "application/xml"))


class StagedDocumentMismatch(RuntimeError):
    """The staged bytes are not those whose hashes the ledger holds."""


def archive_key(tenant_id: UUID, invoice: IssuedInvoice, kind: str) -> str:
    return f"tenants/{tenant_id}/invoices/{invoice.issue_date.year}/{invoice.invoice_number}.{kind}"


def retain_until(issue_date: date) -> datetime:
    return retain_until_for(issue_date, LEGAL_YEARS)


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
        receipt = ArchiveReceipt(tuple(zip(("pdf", "xml"), stored, strict=True)))
        # The chain's head first, the row's new version after: every writer takes
        # the head before touching the invoices' unique keys, so an issuer
        # holding the head never waits on this transaction's uncommitted row.
        appended = uow.ledger.append(INVOICE_ARCHIVED, canonical_payload(
            {"invoice_id": str(invoice_id), "invoice_number": invoice.invoice_number,
             **receipt.as_dict()}, ports.clock.now()), None)
        if appended is None:
            raise NotFound([Violation("tenant_id", "no such tenant")])
        if not uow.invoices.record_archive(invoice_id, receipt):
            raise RuntimeError(f"invoice {invoice_id}: the receipt was written by another "
                               "archiver despite the row lock")
        checkpoint("recorded")
    return replace(invoice, archive=receipt)


def _ledger_hashes(uow: UnitOfWork, invoice: IssuedInvoice) -> dict[str, bytes]:
    """The SHA-256s the `invoice.issued` entry holds: the chain, not the
    invoice row (which a superuser could edit), is what reads are checked against."""
    entry = uow.ledger.entry(invoice.ledger_seq)
    if entry is None:
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
    [stored] = [o for k, o in invoice.archive.objects if k == kind]
    if stored.sha256 != chained:
        raise ArchiveTampered(f"invoice {invoice_id}: archive receipt and ledger disagree on "
                              f"the {kind}")
    try:
        return invoice, ports.archive.get(stored.key, stored.version_id, chained)
    except NotArchived:  # the receipt names a version the archive no longer holds: an alarm
        metrics.count(metrics.ARCHIVE_MISSING)
        raise ArchiveMissing(f"invoice {invoice_id}: the archive has no {kind} version "
                             f"{stored.version_id}", {"invoice_id": str(invoice_id),
                                                      "kind": kind,
                                                      "version_id": stored.version_id}
                             ) from None


def archive_pending(pending: list[tuple[UUID, UUID]], ports: InvoicePorts) -> dict[str, int]:
    """The scheduled sweep: archive invoices a crash left unarchived. An
    unsafe bucket stops the sweep before any put; after that, one invoice
    failing (even on its own object) does not stop the others."""
    from chalicelib.logs import logger

    try:
        ports.archive.check_ready()
    except Exception:
        metrics.count(metrics.ARCHIVE_FAILURES)
        raise
    done = failed = 0
    for tenant_id, invoice_id in pending:
        try:
            archive_invoice(tenant_id, invoice_id, ports)
        except Exception as exc:  # noqa: BLE001 - counted and logged by type, next one
            metrics.count(metrics.ARCHIVE_FAILURES)
            logger.error("archive sweep: one invoice failed",
                         extra={"invoice_id": str(invoice_id), "reason": type(exc).__name__})
            failed += 1
        else:
            done += 1
    return {"archived": done, "failed": failed}
