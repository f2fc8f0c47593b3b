"""Verify ledger: recompute a tenant's chain, from genesis or incrementally from
a closing already verified, in bounded memory."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from types import MappingProxyType
from uuid import UUID

from chalicelib.domain import merkle
from chalicelib.domain.closing import signature_problem
from chalicelib.domain.errors import NotFound, Violation
from chalicelib.domain.ledger import GENESIS, ChainHead, LedgerEntry, Verification, verify_chain
from chalicelib.ports import StoredClosing, UnitOfWorkFactory


def verify_ledger(tenant_id: UUID, snapshot: UnitOfWorkFactory,
                  since_closing: UUID | None = None,
                  pinned: Mapping[str, bytes] = MappingProxyType({})) -> Verification:
    """Stream the entries and compare with the chain head.

    `snapshot` must give one consistent read (REPEATABLE READ): entries are
    read in pages, and appends running meanwhile must not show up half-way.

    `since_closing`: start after that closing's last entry, from the hash its
    signed text states (its signature checked first), instead of entry 1; the
    entries it covers are taken as verified before (the caller's checkpoint).

    `pinned`: the public keys a closing may be signed with (runtime.pinned_keys:
    configuration and the signer, never the database); a closing signed with
    another key fails as `closing_key_unpinned` (none given: every closing does).

    Then every signed closing is checked against the recomputed chain (its
    signature, the hash it states for its last entry, and, from genesis, its
    Merkle root): `closing_mismatch` names the first that disagrees.

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
            problem = _signature_problem(closing, pinned, f"the closing in entry "
                                         f"{closing.entry_seq}")
            if problem is not None:
                return Verification(False, 0, GENESIS, closing.entry_seq, *problem)
            body = json.loads(closing.text)
            start = ChainHead(int(body["last_seq"]), bytes.fromhex(body["last_entry_hash"]))
        closings = uow.closings.recent(100_000)
        seen: dict[int, tuple[bytes, bytes | None]] = {}
        result = verify_chain(_observed(uow.ledger.entries(after_seq=start.seq), start,
                                        {c.last_seq for c in closings}, seen), start)
    if not result.ok:
        return result
    stated = _closings_problem(closings, pinned, seen)
    if stated is not None:
        seq, reason, detail = stated
        return Verification(False, result.entries_checked, result.head, seq, reason, detail)

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


def _observed(entries: Iterable[LedgerEntry], start: ChainHead, wanted: set[int],
              seen: dict[int, tuple[bytes, bytes | None]]) -> Iterator[LedgerEntry]:
    """The entries, unchanged, noting each wanted seq's hash and (from genesis
    only) the Merkle root of the chain up to it."""
    frontier = merkle.Frontier() if start.seq == 0 else None
    for entry in entries:
        if frontier is not None:
            frontier.append(entry.hash)
        if entry.seq in wanted:
            seen[entry.seq] = (entry.hash, frontier.root() if frontier is not None else None)
        yield entry


def _signature_problem(closing: StoredClosing, pinned: Mapping[str, bytes],
                       where: str) -> tuple[str, str] | None:
    """(reason, detail) unless the closing is signed by a pinned key."""
    problem = signature_problem(pinned, closing.key_id, closing.signature, closing.text)
    if problem == "key_unpinned":
        return "closing_key_unpinned", f"{where} is signed with {closing.key_id}, " \
                                       "a key that is not pinned"
    if problem is not None:
        return "closing_signature", f"{where} does not verify with its key {closing.key_id}"
    return None


def _closings_problem(closings: list[StoredClosing], pinned: Mapping[str, bytes],
                      seen: dict[int, tuple[bytes, bytes | None]]
                      ) -> tuple[int, str, str] | None:
    """Each signed closing against the recomputed chain: its signature, the hash
    it states for its last entry and its Merkle root. A chain rewritten by
    someone who re-hashed it (no key) verifies link by link but not this."""
    for closing in sorted(closings, key=lambda c: c.entry_seq):
        where = f"the closing of {closing.period_kind} {closing.period_start} " \
                f"(entry {closing.entry_seq})"
        signature = _signature_problem(closing, pinned, where)
        if signature is not None:
            return closing.entry_seq, *signature
        if closing.last_seq not in seen:
            continue  # before an incremental start, or an empty chain
        body = json.loads(closing.text)
        entry_hash, root = seen[closing.last_seq]
        if body["last_entry_hash"] != entry_hash.hex():
            return closing.last_seq, "closing_mismatch", (
                f"{where} states another hash for entry {closing.last_seq} than the chain's")
        if root is not None and body["merkle"]["root"] != root.hex():
            return closing.last_seq, "closing_mismatch", (
                f"{where} states another Merkle root for entries 1..{closing.last_seq} "
                "than the chain's")
    return None
