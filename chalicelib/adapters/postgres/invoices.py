"""One tenant's invoices and their staged documents; the archive sweep's
list of invoices still unarchived."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any
from uuid import UUID

import pg8000.native
import rfc8785
from pg8000.exceptions import DatabaseError

from chalicelib.adapters.postgres.sealed import SEALED_FORMAT, SealedColumns
from chalicelib.adapters.postgres.sql import Transactions, sqlstate
from chalicelib.domain.document_types import DocumentType
from chalicelib.domain.errors import DuplicateIdempotencyKey, InvalidInput, Violation
from chalicelib.ports import ArchiveReceipt, IssuedInvoice


def invoices_awaiting_archive(database: Transactions, older_than: timedelta,
                              limit: int = 1000) -> list[tuple[UUID, UUID]]:
    """(tenant, invoice) of issued invoices still unarchived after `older_than`."""
    with database.transaction(None, read_only=True) as conn:
        rows = conn.run("SELECT tenant_id, invoice_id FROM invoices_awaiting_archive("
                        "make_interval(secs => :s), :n)", s=older_than.total_seconds(), n=limit)
    return [(UUID(str(t)), UUID(str(i))) for t, i in rows]


# preceding_id: the credited invoice (IssuedInvoice.credited_invoice_id).
_INVOICE_COLUMNS = ("id, series, number, invoice_number, type_code, preceding_id, issue_date, "
                    "idempotency_key, request_sha256, document, totals, pdf_sha256, "
                    "xml_sha256, ledger_seq, archive")
_INVOICE_READ = _INVOICE_COLUMNS + ", document_sealed"


def receipt_text(receipt: ArchiveReceipt) -> str:
    """The receipt as the `archive` column holds it: its canonical (RFC 8785) JSON."""
    return rfc8785.dumps(receipt.as_dict()).decode()


def receipt_of(text: str | None) -> ArchiveReceipt | None:
    """The receipt `receipt_text` wrote, or None before archiving."""
    return ArchiveReceipt.from_dict(json.loads(text)) if text is not None else None


class PostgresInvoices:
    def __init__(self, conn: pg8000.native.Connection, tenant_id: UUID,
                 sealed: SealedColumns) -> None:
        self._conn = conn
        self._tenant = str(tenant_id)
        self._sealed = sealed

    def _invoice(self, row: list[Any]) -> IssuedInvoice:
        document = self._sealed.open_text("invoices", str(row[0]), row[9], row[15])
        return IssuedInvoice(row[0], row[1], row[2], row[3], DocumentType(row[4]), row[5],
                             row[6], row[7], bytes(row[8]), document, row[10],
                             bytes(row[11]), bytes(row[12]), row[13], receipt_of(row[14]))

    def next_number(self, series: str) -> int:
        [[number]] = self._conn.run("SELECT invoice_number_next(:s)", s=series)
        return int(number)

    def add(self, invoice: IssuedInvoice) -> None:
        try:
            self._insert(invoice)
        except DatabaseError as exc:
            if sqlstate(exc) == "23505" and exc.args[0].get("n") == \
                    "invoices_tenant_id_idempotency_key_key":
                raise DuplicateIdempotencyKey() from None
            if sqlstate(exc) == "EI005":
                raise InvalidInput([Violation("issue_date", "must not be before the issue date "
                                              "of the previous number in the series "
                                              "(chronological numbering, CGI ann. II art. 242 "
                                              "nonies A)")]) from None
            raise

    def _insert(self, invoice: IssuedInvoice) -> None:
        invoice_id = str(invoice.invoice_id)
        sealed = self._sealed.seal("invoices", "document", invoice_id,
                                   invoice.document.encode("utf-8"))
        self._conn.run(
            f"INSERT INTO invoices (tenant_id, {_INVOICE_READ}) VALUES (:t, :id, :series, "
            ":number, :invoice_number, :type_code, :preceding_id, :issue_date, :key, "
            ":request_sha256, NULL, :totals, :pdf, :xml, :seq, NULL, :sealed)",
            t=self._tenant, id=invoice_id, series=invoice.series,
            number=invoice.number, invoice_number=invoice.invoice_number,
            type_code=invoice.type_code.value,
            preceding_id=(str(invoice.credited_invoice_id) if invoice.credited_invoice_id
                          else None),
            issue_date=invoice.issue_date, key=invoice.idempotency_key,
            request_sha256=invoice.request_sha256, sealed=sealed,
            totals=invoice.totals, pdf=invoice.pdf_sha256, xml=invoice.xml_sha256,
            seq=invoice.ledger_seq)
        # Its deposit outbox row, in the same transaction: no invoice without it.
        self._conn.run("INSERT INTO pa_deposits (tenant_id, invoice_id, tracking_id, sha256) "
                       "VALUES (:t, :id, :tracking, :pdf)", t=self._tenant, id=invoice_id,
                       tracking=invoice_id,
                       pdf=invoice.pdf_sha256)

    def _one(self, where: str, **params: Any) -> IssuedInvoice | None:
        rows = self._conn.run(f"SELECT {_INVOICE_READ} FROM invoices "
                              f"WHERE tenant_id = :t AND {where}", t=self._tenant, **params)
        if not rows:
            return None
        return self._invoice(rows[0])

    def by_idempotency_key(self, key: str) -> IssuedInvoice | None:
        return self._one("idempotency_key = :k", k=key)

    def get(self, invoice_id: UUID, *, for_update: bool = False) -> IssuedInvoice | None:
        # NO KEY UPDATE: archivers of one invoice wait for each other, while a credit
        # note or a quote referencing it (a foreign key's KEY SHARE) never waits.
        return self._one("id = :id" + (" FOR NO KEY UPDATE" if for_update else ""),
                         id=str(invoice_id))

    def latest(self, limit: int) -> list[IssuedInvoice]:
        rows = self._conn.run(f"SELECT {_INVOICE_READ} FROM invoices WHERE tenant_id = :t "
                              "ORDER BY issued_at DESC, number DESC LIMIT :n",
                              t=self._tenant, n=limit)
        return [self._invoice(row) for row in rows]

    def add_document(self, invoice_id: UUID, kind: str, content: bytes) -> None:
        sealed = self._sealed.seal("invoice_documents", "content", f"{invoice_id}/{kind}",
                                   content)
        self._conn.run("INSERT INTO invoice_documents (tenant_id, invoice_id, kind, content) "
                       "VALUES (:t, :id, :kind, :content)", t=self._tenant,
                       id=str(invoice_id), kind=kind, content=sealed)

    def documents(self, invoice_id: UUID) -> dict[str, bytes]:
        """The staged documents, opened (a PDF or XML staged in clear before 0019
        starts with '%' or '<', never with the sealed format's first byte)."""
        rows = self._conn.run("SELECT kind, content FROM invoice_documents WHERE tenant_id = :t "
                              "AND invoice_id = :id", t=self._tenant, id=str(invoice_id))
        opened: dict[str, bytes] = {}
        for kind, content in rows:
            stored = bytes(content)
            opened[kind] = (self._sealed.open("invoice_documents", "content",
                                              f"{invoice_id}/{kind}", stored)
                            if stored[:1] == bytes([SEALED_FORMAT]) else stored)
        return opened

    def record_archive(self, invoice_id: UUID, receipt: ArchiveReceipt) -> bool:
        done = self._conn.run("UPDATE invoices SET archive = :r WHERE tenant_id = :t AND id = :id "
                              "AND archive IS NULL RETURNING 1", r=receipt_text(receipt),
                              t=self._tenant, id=str(invoice_id))
        if done:
            self._conn.run("DELETE FROM invoice_documents WHERE tenant_id = :t "
                           "AND invoice_id = :id", t=self._tenant, id=str(invoice_id))
        return bool(done)
