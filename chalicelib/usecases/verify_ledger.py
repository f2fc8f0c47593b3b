"""Verify ledger: recompute a tenant's chain from genesis, in bounded memory."""

from __future__ import annotations

from uuid import UUID

from chalicelib.domain.errors import NotFound, Violation
from chalicelib.domain.ledger import Verification, verify_chain
from chalicelib.ports import UnitOfWorkFactory


def verify_ledger(tenant_id: UUID, snapshot: UnitOfWorkFactory) -> Verification:
    """Stream every entry and compare with the chain head.

    `snapshot` must give one consistent read (REPEATABLE READ): entries are
    read in pages, and appends running meanwhile must not show up half-way.

    A chain whose entries verify but end before the recorded head was cut
    short; that is reported as `truncated` at the first missing seq.
    """
    with snapshot(tenant_id) as uow:
        head = uow.ledger.head()
        if head is None:
            raise NotFound([Violation("tenant_id", "no such tenant")])
        result = verify_chain(uow.ledger.entries())
    if not result.ok:
        return result
    def broken(seq: int, reason: str, detail: str) -> Verification:
        return Verification(False, result.entries_checked, result.head, seq, reason, detail)

    if result.head.seq < head.seq:
        return broken(result.head.seq + 1, "truncated", f"the chain ends at entry "
                      f"{result.head.seq} but its head records entry {head.seq}")
    if result.head.seq > head.seq:
        return broken(head.seq + 1, "head_behind", f"entries {head.seq + 1}..{result.head.seq} "
                      f"lie beyond the recorded head (entry {head.seq})")
    if result.head.hash != head.hash:
        return broken(head.seq, "head_mismatch", f"the head's hash differs from entry {head.seq}")
    return result
