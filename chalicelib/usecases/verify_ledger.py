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
    if result.head != head:
        if result.head.seq < head.seq:
            return Verification(False, result.entries_checked, result.head, result.head.seq + 1,
                                "truncated", f"the chain ends at entry {result.head.seq} but its "
                                f"head records entry {head.seq}")
        return Verification(False, result.entries_checked, result.head, head.seq,
                            "head_mismatch", "the chain head does not match the last entry")
    return result
