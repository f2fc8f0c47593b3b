"""One tenant's quotes (devis)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import pg8000.native
from pg8000.exceptions import DatabaseError

from chalicelib.adapters.postgres.sealed import SealedColumns
from chalicelib.adapters.postgres.sql import sqlstate
from chalicelib.domain.errors import DuplicateIdempotencyKey
from chalicelib.ports import StoredQuote

_QUOTE_COLUMNS = ("id, number, reference, idempotency_key, request_sha256, document, totals, "
                  "valid_until, created_at, converted_invoice_id, conversion_key, "
                  "conversion_sha256, document_sealed")


class PostgresQuotes:
    """Quotes: their own per-tenant counter (quote_number_next), never an
    invoice series; the engine freezes each quote but its conversion, set once."""

    def __init__(self, conn: pg8000.native.Connection, tenant_id: UUID,
                 sealed: SealedColumns) -> None:
        self._conn = conn
        self._tenant = str(tenant_id)
        self._sealed = sealed

    def _quote(self, row: list[Any]) -> StoredQuote:
        document = self._sealed.open_text("quotes", str(row[0]), row[5], row[12])
        return StoredQuote(row[0], row[1], row[2], row[3], bytes(row[4]), document, row[6],
                           row[7], row[8], row[9], row[10],
                           bytes(row[11]) if row[11] is not None else None)

    def next_number(self) -> int:
        [[number]] = self._conn.run("SELECT quote_number_next()")
        return int(number)

    def add(self, quote: StoredQuote) -> StoredQuote:
        try:
            [row] = self._conn.run(
                "INSERT INTO quotes (tenant_id, id, number, reference, idempotency_key, "
                "request_sha256, document_sealed, totals, valid_until) VALUES (:t, :id, "
                f":number, :reference, :key, :sha, :sealed, :totals, :valid_until) "
                f"RETURNING {_QUOTE_COLUMNS}", t=self._tenant, id=str(quote.quote_id),
                number=quote.number, reference=quote.reference, key=quote.idempotency_key,
                sha=quote.request_sha256, totals=quote.totals, valid_until=quote.valid_until,
                sealed=self._sealed.seal("quotes", "document", str(quote.quote_id),
                                         quote.document.encode("utf-8")))
        except DatabaseError as exc:
            if sqlstate(exc) == "23505" and exc.args[0].get("n") == \
                    "quotes_tenant_id_idempotency_key_key":
                raise DuplicateIdempotencyKey() from None
            raise
        return self._quote(row)

    def _one(self, where: str, **params: Any) -> StoredQuote | None:
        rows = self._conn.run(f"SELECT {_QUOTE_COLUMNS} FROM quotes "
                              f"WHERE tenant_id = :t AND {where}", t=self._tenant, **params)
        return self._quote(rows[0]) if rows else None

    def get(self, quote_id: UUID, *, for_update: bool = False) -> StoredQuote | None:
        return self._one("id = :id" + (" FOR NO KEY UPDATE" if for_update else ""),
                         id=str(quote_id))

    def by_idempotency_key(self, key: str) -> StoredQuote | None:
        return self._one("idempotency_key = :k", k=key)

    def record_conversion(self, quote_id: UUID, invoice_id: UUID, key: str,
                          request_sha256: bytes) -> bool:
        done = self._conn.run(
            "UPDATE quotes SET converted_invoice_id = :i, conversion_key = :k, "
            "conversion_sha256 = :s WHERE tenant_id = :t AND id = :id "
            "AND converted_invoice_id IS NULL RETURNING 1", i=str(invoice_id), k=key,
            s=request_sha256, t=self._tenant, id=str(quote_id))
        return bool(done)
