"""Verify ledger: recompute a tenant's chain, from genesis or incrementally from
a closing already verified, in bounded memory."""

from __future__ import annotations

import json
from uuid import UUID

from chalicelib.domain.errors import NotFound, Violation
from chalicelib.domain.ledger import GENESIS, ChainHead, Verification, verify_chain
from chalicelib.ports import UnitOfWorkFactory


def verify_ledger(tenant_id: UUID, snapshot: UnitOfWorkFactory,
                  since_closing: UUID | None = None) -> Verification:
    """Stream the entries and compare with the chain head.

    `snapshot` must give one consistent read (REPEATABLE READ): entries are
    read in pages, and appends running meanwhile must not show up half-way.

    `since_closing`: start after that closing's last entry, from the hash its
    signed text states (its signature checked first), instead of entry 1; the
    entries it covers are taken as verified before (the caller's checkpoint).

    A chain whose entries verify but end before the recorded head was cut
    short; that is reported as `truncated` at the first missing seq. (A head
    rewound too is caught only by the bucket's witness: `check_witness`.)
    """
    with snapshot(tenant_id) as uow:
        head = uow.ledger.head()
        if head is None:
            raise NotFound([Violation("tenant_id", "no such tenant")])
        start = GENESIS
        if since_closing is not None:
            closing = uow.closings.by_id(since_closing)
            if closing is None:
                raise NotFound([Violation("since_closing", "no such closing")])
            if not _signed(closing.text, closing.signature,
                           uow.closings.public_keys().get(closing.key_id)):
                return Verification(False, 0, GENESIS, closing.entry_seq, "closing_signature",
                                    f"the closing in entry {closing.entry_seq} does not verify "
                                    f"with its key {closing.key_id}")
            body = json.loads(closing.text)
            start = ChainHead(int(body["last_seq"]), bytes.fromhex(body["last_entry_hash"]))
        result = verify_chain(uow.ledger.entries(after_seq=start.seq), start)
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


def _signed(text: str, signature: bytes, public_key: bytes | None) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    if public_key is None:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, text.encode("utf-8"))
    except InvalidSignature:
        return False
    return True
