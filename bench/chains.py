"""Bulk-loading a valid chain for the benchmarks, as the superuser: multi-row
INSERTs (the engine's insert check still verifies every row), then the head set
to the end, since only ledger_append() moves a head.

Money entries loaded here are backed by no invoice row: for its own load only,
the superuser disables the check that refuses that (0021), as nobody else can."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

import pg8000.native

from chalicelib.domain.kinds import FISCAL_KINDS, INVOICE_ISSUED
from chalicelib.domain.ledger import GENESIS, ChainHead, next_entry

BATCH = 1000


def bulk_load_chain(root: pg8000.native.Connection, tenant: uuid.UUID,
                    payloads: Iterable[str], kind: str = INVOICE_ISSUED) -> ChainHead:
    """Append each canonical payload, in order, to the tenant's empty chain."""
    head = GENESIS
    values: list[str] = []
    params: dict[str, object] = {}

    def flush() -> None:
        if values:
            root.run("INSERT INTO ledger_entries (tenant_id, seq, kind, payload, prev_hash, "
                     f"hash) VALUES {', '.join(values)}", t=str(tenant), k=kind, **params)
            values.clear()
            params.clear()

    root.run("BEGIN")
    fiscal = kind in FISCAL_KINDS
    if fiscal:
        root.run("ALTER TABLE ledger_entries DISABLE TRIGGER ledger_entries_fiscal_backed")
    for payload in payloads:
        entry = next_entry(head, kind, payload)
        head = ChainHead(entry.seq, entry.hash)
        j = len(values)
        values.append(f"(:t, :s{j}, :k, :p{j}, :ph{j}, :h{j})")
        params.update({f"s{j}": entry.seq, f"p{j}": entry.payload,
                       f"ph{j}": entry.prev_hash, f"h{j}": entry.hash})
        if len(values) == BATCH:
            flush()
    flush()
    root.run("UPDATE ledger_heads SET seq = :s, hash = :h WHERE tenant_id = :t",
             s=head.seq, h=head.hash, t=str(tenant))
    if fiscal:
        root.run("ALTER TABLE ledger_entries ENABLE TRIGGER ledger_entries_fiscal_backed")
    root.run("COMMIT")
    return head
