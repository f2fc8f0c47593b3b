"""One tenant's PA poll cursor and received status messages (0025_pa_lifecycle.sql).

Row security binds every statement to the transaction's tenant; the engine
refuses a `status.changed` entry naming no issued invoice of the tenant.
"""

from __future__ import annotations

import json
from datetime import datetime
from uuid import UUID

import pg8000.native

from chalicelib.adapters.postgres.sql import Transactions
from chalicelib.domain.kinds import STATUS_CHANGED
from chalicelib.ports import ReceivedStatus


class PostgresPaLifecycle:
    def __init__(self, conn: pg8000.native.Connection, tenant_id: UUID) -> None:
        self._conn = conn
        self._tenant = str(tenant_id)

    def cursor(self, *, for_update: bool = False) -> tuple[datetime | None, tuple[str, ...]]:
        rows = self._conn.run("SELECT updated_after, seen_at_cursor FROM pa_cursors "
                              "WHERE tenant_id = :t" + (" FOR UPDATE" if for_update else ""),
                              t=self._tenant)
        return (rows[0][0], tuple(rows[0][1] or ())) if rows else (None, ())

    def save_cursor(self, updated_after: datetime, seen: tuple[str, ...]) -> None:
        self._conn.run("INSERT INTO pa_cursors (tenant_id, updated_after, seen_at_cursor) "
                       "VALUES (:t, :u, :s) ON CONFLICT (tenant_id) DO UPDATE SET "
                       "updated_after = EXCLUDED.updated_after, "
                       "seen_at_cursor = EXCLUDED.seen_at_cursor, polled_at = now()",
                       t=self._tenant, u=updated_after, s=list(seen))

    def flow_seen(self, flow_id: str) -> bool:
        return bool(self._conn.run("SELECT 1 FROM pa_status_messages WHERE tenant_id = :t "
                                   "AND flow_id = :f LIMIT 1", t=self._tenant, f=flow_id))

    def record(self, message: ReceivedStatus) -> bool:
        """False when this (flow, position) is recorded already."""
        rows = self._conn.run(
            "INSERT INTO pa_status_messages (tenant_id, flow_id, position, flow_updated_at, "
            "message_sha256, message_id, invoice_id, code, verdict, rule, ledger_seq) VALUES "
            "(:t, :f, :p, :u, :h, :m, :i, :c, :v, :r, :s) ON CONFLICT DO NOTHING RETURNING 1",
            t=self._tenant, f=message.flow_id, p=message.position, u=message.flow_updated_at,
            h=message.message_sha256, m=message.message_id,
            i=str(message.invoice_id) if message.invoice_id else None, c=message.code,
            v=message.verdict, r=message.rule, s=message.ledger_seq)
        return bool(rows)

    def invoice_by_id(self, invoice_id: UUID) -> tuple[UUID, str] | None:
        rows = self._conn.run("SELECT id, invoice_number FROM invoices WHERE tenant_id = :t "
                              "AND id = :i", t=self._tenant, i=str(invoice_id))
        return (rows[0][0], rows[0][1]) if rows else None

    def invoice_by_number(self, number: str) -> tuple[UUID, str] | None:
        rows = self._conn.run("SELECT id, invoice_number FROM invoices WHERE tenant_id = :t "
                              "AND invoice_number = :n", t=self._tenant, n=number)
        return (rows[0][0], rows[0][1]) if rows else None

    def statuses(self, invoice_id: UUID) -> list[dict[str, object]]:
        """The data of the invoice's `status.changed` entries, oldest first."""
        rows = self._conn.run(
            "SELECT e.payload FROM pa_status_messages m JOIN ledger_entries e "
            "ON e.tenant_id = m.tenant_id AND e.seq = m.ledger_seq "
            "WHERE m.tenant_id = :t AND m.invoice_id = :i AND e.kind = :k ORDER BY e.seq",
            t=self._tenant, i=str(invoice_id), k=STATUS_CHANGED)
        return [json.loads(payload)["data"] for [payload] in rows]

    def messages(self, invoice_id: UUID) -> list[ReceivedStatus]:
        rows = self._conn.run(
            "SELECT flow_id, position, flow_updated_at, message_sha256, message_id, invoice_id, "
            "code, verdict, rule, ledger_seq FROM pa_status_messages WHERE tenant_id = :t "
            "AND invoice_id = :i ORDER BY received_at, flow_id, position",
            t=self._tenant, i=str(invoice_id))
        return [ReceivedStatus(r[0], r[1], r[2], bytes(r[3]) if r[3] else None, r[4], r[5],
                               r[6], r[7], r[8], r[9]) for r in rows]


def tenants_to_poll(database: Transactions, limit: int = 10000) -> list[UUID]:
    """Tenants that have issued an invoice (ids only, engine function)."""
    with database.transaction(None, read_only=True) as conn:
        rows = conn.run("SELECT tenant_id FROM pa_tenants_to_poll(:n)", n=limit)
    return [UUID(str(t)) for (t,) in rows]
