"""Verify ledger: recompute a tenant's chain, from genesis or incrementally from
a closing already verified, in bounded memory."""

from __future__ import annotations

import json
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any
from uuid import UUID

from chalicelib.domain import closing_totals, merkle
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

    Then every signed closing is checked against the recomputed chain, as the
    offline verifier checks it (`_closings_problem`): the first that disagrees
    is named.

    A chain whose entries verify but end before the recorded head was cut
    short; that is reported as `truncated` at the first missing seq. (A head
    rewound too is caught only by the bucket's witness: `check_witness`.)
    """
    with snapshot(tenant_id) as uow:
        head = uow.ledger.head()
        if head is None:
            raise NotFound([Violation("tenant_id", "no such tenant")])
        start, base = GENESIS, None
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
            base = {k: closing_totals.Money.stated(body["grand_totals"][k])
                    for k in closing_totals.MONEY_KINDS}
        closings = sorted(uow.closings.recent(100_000), key=lambda c: c.entry_seq)
        walk = _Walk(start, closings, base)
        result = verify_chain(uow.ledger.entries(after_seq=start.seq), start, walk.observe)
    if not result.ok:
        return result
    stated = _closings_problem(closings, pinned, walk)
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


class _Walk:
    """What the closings are checked against, gathered as the entries stream by
    (one entry at a time): at each closing's last entry, its hash and (from
    genesis only) the Merkle root of the chain up to it; where a closing begins
    or ends, the tally of kinds and money (closing_totals, as the offline
    verifier keeps it)."""

    def __init__(self, start: ChainHead, closings: list[StoredClosing],
                 base: dict[str, closing_totals.Money] | None) -> None:
        self.start = start
        self.frontier = merkle.Frontier() if start.seq == 0 else None
        self.wanted = {c.last_seq for c in closings}
        self.boundaries = self.wanted | {c.first_seq - 1 for c in closings}
        self.seen: dict[int, tuple[bytes, bytes | None]] = {}
        self.running = closing_totals.Running(base)
        self.tallies = {start.seq: self.running.snapshot()}

    def observe(self, entry: LedgerEntry, envelope: dict[str, Any]) -> None:
        if self.frontier is not None:
            self.frontier.append(entry.hash)
        self.running.add(entry.kind, envelope["data"])
        if entry.seq in self.boundaries:
            self.tallies[entry.seq] = self.running.snapshot()
            if entry.seq in self.wanted:
                self.seen[entry.seq] = (entry.hash, self.frontier.root()
                                        if self.frontier is not None else None)


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
                      walk: _Walk) -> tuple[int, str, str] | None:
    """Each signed closing (in chain order) against the recomputed chain: its
    signature, the hash it states for its last entry and its Merkle root (a chain
    rewritten by someone who re-hashed it, without the key, verifies link by link
    but not this); then what the offline verifier checks too (closing_totals): its
    range follows the previous closing of its kind (every entry in exactly one,
    `closing_gap` / `closing_overlap`), and its totals and perpetual grand totals
    are the entries' (`closing_totals_mismatch` / `grand_total_mismatch`), where
    the entries were read (an incremental run starts from its checkpoint's grand
    totals). A problem is located at the closing's own entry."""
    sequence = closing_totals.Sequence()
    for closing in closings:
        where = f"the closing of {closing.period_kind} {closing.period_start} " \
                f"(entry {closing.entry_seq})"
        signature = _signature_problem(closing, pinned, where)
        if signature is not None:
            return closing.entry_seq, *signature
        body = json.loads(closing.text)
        period = closing_totals.period(body.get("period")) if isinstance(body, dict) else None
        if period is None:
            return closing.entry_seq, "closing_malformed", f"{where}: its period is not a " \
                "calendar day, month or year"
        if closing.last_seq in walk.seen:
            entry_hash, root = walk.seen[closing.last_seq]
            if body.get("last_entry_hash") != entry_hash.hex():
                return closing.last_seq, "closing_mismatch", (
                    f"{where} states another hash for entry {closing.last_seq} than the "
                    "chain's")
            tree = body.get("merkle")
            if root is not None and (not isinstance(tree, dict)
                                     or tree.get("root") != root.hex()):
                return closing.last_seq, "closing_mismatch", (
                    f"{where} states another Merkle root for entries 1..{closing.last_seq} "
                    "than the chain's")
        found = sequence.problem(body, *period, closing.entry_seq)
        if found is not None:
            return closing.entry_seq, found.reason, f"{where}: {found.message}"
        if (body["first_seq"], body["last_seq"]) != (closing.first_seq, closing.last_seq):
            return closing.entry_seq, "closing_mismatch", (
                f"{where}: its row records entries {closing.first_seq}..{closing.last_seq}, "
                f"its signed text {body['first_seq']}..{body['last_seq']}")
        sequence.sealed(closing.text, *period, body["last_seq"])
        end = walk.tallies.get(body["last_seq"])
        if end is None or body["last_seq"] < walk.start.seq:
            continue  # before an incremental start: verified at its checkpoint
        begin = walk.tallies.get(body["first_seq"] - 1)
        found = closing_totals.totals_problem(
            body, begin or end, end, body["first_seq"], body["last_seq"],
            grand_only=begin is None or body["first_seq"] - 1 < walk.start.seq)
        if found is not None:
            return closing.entry_seq, found.reason, f"{where}: {found.message}"
    return None


def ledger_verdict(result: Verification, witness: Mapping[str, Any],
                   since_closing: UUID | None = None) -> dict[str, Any]:
    """The answer of GET /ledger/verify and `devstack verify`: the chain's result,
    the witness's beside it, and one top-level verdict. `ok` holds when both do;
    `reason` and `detail` name the chain's problem or, the chain being sound, the
    witness's (so a failed witness never reads as `reason: null`), and
    `first_broken_seq` the entry the witness saw, where it names one."""
    body: dict[str, Any] = {**result.as_dict(), "ok": result.ok and bool(witness["ok"]),
                            "since_closing": str(since_closing) if since_closing else None,
                            "witness": dict(witness)}
    if result.ok and not witness["ok"]:
        body.update(reason=witness.get("reason"), detail=witness.get("detail"),
                    first_broken_seq=witness.get("seq"))
    return body
