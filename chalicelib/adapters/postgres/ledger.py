"""One tenant's hash chain: appends through the engine's ledger_append, reads
in bounded pages."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from uuid import UUID

import pg8000.native
from pg8000.exceptions import DatabaseError

from chalicelib.adapters.postgres.sql import data_refused
from chalicelib.domain.ledger import ChainHead, LedgerEntry

PAGE_SIZE = 5000  # rows per page at most...
PAGE_BYTES = 4 * 1024 * 1024  # ...and about this many payload bytes (plus one payload)


_ENTRY_COLUMNS = "seq, kind, payload, prev_hash, hash"


def _entry(row: list[Any]) -> LedgerEntry:
    return LedgerEntry(seq=row[0], kind=row[1], payload=row[2], prev_hash=bytes(row[3]),
                       hash=bytes(row[4]))


class PostgresLedger:
    def __init__(self, conn: pg8000.native.Connection, tenant_id: UUID) -> None:
        self._conn = conn
        self._tenant = str(tenant_id)

    def append(self, kind: str, payload: str,
               idempotency_key: str | None) -> tuple[LedgerEntry, bool] | None:
        try:
            rows = self._conn.run("SELECT seq, kind, payload, prev_hash, hash, created "
                                  "FROM ledger_append(:kind, :payload, :key)",
                                  kind=kind, payload=payload, key=idempotency_key)
        except DatabaseError as exc:
            refused = data_refused(exc, "payload")
            if refused:
                raise refused from None
            raise
        return (_entry(rows[0]), bool(rows[0][5])) if rows else None

    def head(self) -> ChainHead | None:
        rows = self._conn.run("SELECT seq, hash FROM ledger_heads WHERE tenant_id = :t",
                              t=self._tenant)
        return ChainHead(rows[0][0], bytes(rows[0][1])) if rows else None

    def entry(self, seq: int) -> LedgerEntry | None:
        rows = self._conn.run(f"SELECT {_ENTRY_COLUMNS} FROM ledger_entries "
                              "WHERE tenant_id = :t AND seq = :s", t=self._tenant, s=seq)
        return _entry(rows[0]) if rows else None

    def entries(self, after_seq: int = 0) -> Iterator[LedgerEntry]:
        # Keyset pages cut at PAGE_SIZE rows or PAGE_BYTES of payload, whichever
        # comes first (a page always holds at least one row): memory stays
        # bounded whatever the chain's length or its payloads' sizes.
        last = after_seq
        while True:
            rows = self._conn.run(
                f"SELECT {_ENTRY_COLUMNS} FROM ("
                f"  SELECT {_ENTRY_COLUMNS}, sum(octet_length(payload)) OVER (ORDER BY seq)"
                "     - octet_length(payload) AS before"
                "   FROM ledger_entries WHERE tenant_id = :t AND seq > :after"
                "   ORDER BY seq LIMIT :n) AS page "
                "WHERE before < :budget ORDER BY seq",
                t=self._tenant, after=last, n=PAGE_SIZE, budget=PAGE_BYTES)
            if not rows:
                return
            for row in rows:
                yield _entry(row)
            last = rows[-1][0]
