"""What an auditor needs to check one invoice without trusting us: its ledger
entry, an RFC 6962 inclusion proof into the first closing that covers it, that
closing's signed text, signature and public key, and a consistency proof from
that closing to the latest one (the later closing extends the earlier)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from uuid import UUID

from chalicelib.domain import merkle
from chalicelib.domain.closing import signature_problem
from chalicelib.domain.errors import NotFound, Violation
from chalicelib.ports import StoredAnchor, StoredClosing, UnitOfWorkFactory
from chalicelib.usecases.anchor import anchor_view


def closing_view(closing: StoredClosing, pinned: Mapping[str, bytes]) -> dict[str, Any]:
    """The closing with its public key, only if that key is pinned (never a key
    the database holds); `verified` says whether it is signed by a pinned key
    and names why not (closing_key_unpinned, closing_signature)."""
    key = pinned.get(closing.key_id)
    problem = signature_problem(pinned, closing.key_id, closing.signature, closing.text)
    return {
        "id": str(closing.closing_id), "kind": closing.period_kind,
        "period_start": closing.period_start.isoformat(),
        "first_seq": closing.first_seq, "last_seq": closing.last_seq,
        "entry_seq": closing.entry_seq, "closing": closing.text,
        "signature": closing.signature.hex(), "key_id": closing.key_id,
        "public_key": {"algorithm": "Ed25519", "raw": key.hex() if key else None},
        "sealed_at": closing.sealed_at.isoformat() if closing.sealed_at else None,
        "verified": {"ok": problem is None,
                     "reason": None if problem is None else f"closing_{problem}"},
    }


def invoice_proof(tenant_id: UUID, invoice_id: UUID, snapshot: UnitOfWorkFactory,
                  pinned: Mapping[str, bytes],
                  anchors: Callable[[UUID, UUID], list[StoredAnchor]] | None = None
                  ) -> dict[str, Any]:
    """`pinned`: the keys a closing may be signed with (never the database's);
    `ok` is false, with the `reason` of the first closing that fails, unless
    every closing in the proof is signed by one. `anchors(tenant, closing)`
    lists the covering closing's anchors; it runs after the snapshot ends
    (anchors are outside the chain and keep changing)."""
    answer = _proof(tenant_id, invoice_id, snapshot, pinned)
    failed = [view["verified"]["reason"] for name in ("closing", "latest_closing")
              if (view := answer.get(name)) is not None and not view["verified"]["ok"]]
    answer["ok"], answer["reason"] = not failed, failed[0] if failed else None
    closing = answer.get("closing")
    if anchors is not None and closing is not None:
        answer["anchors"] = [anchor_view(a) for a in anchors(tenant_id, UUID(closing["id"]))]
    return answer


def _proof(tenant_id: UUID, invoice_id: UUID, snapshot: UnitOfWorkFactory,
           keys: Mapping[str, bytes]) -> dict[str, Any]:
    with snapshot(tenant_id) as uow:
        invoice = uow.invoices.get(invoice_id)
        if invoice is None:
            raise NotFound([Violation("invoice_id", "no such invoice")])
        seq = invoice.ledger_seq
        entry = uow.ledger.entry(seq)
        if entry is None:
            raise NotFound([Violation("invoice_id", "the invoice's ledger entry is missing")])
        store = uow.closings
        covering = store.covering(seq)
        answer: dict[str, Any] = {"invoice_id": str(invoice_id), "entry": entry.as_dict(),
                                  "sealed": covering is not None, "anchors": []}
        if covering is None:
            return answer
        size = covering.last_seq
        path = merkle.inclusion_proof(seq - 1, size,
                                      store.merkle_nodes(merkle.inclusion_coords(seq - 1, size)))
        answer["closing"] = closing_view(covering, keys)
        answer["inclusion"] = {"leaf_index": seq - 1, "tree_size": size,
                               "path": [h.hex() for h in path]}
        latest = store.at_or_before(2**62)  # the closing that covers the most entries
        if latest is not None and latest.last_seq > size:
            new = latest.last_seq
            proof = merkle.consistency_proof(
                size, new, store.merkle_nodes(merkle.consistency_coords(size, new)))
            answer["latest_closing"] = closing_view(latest, keys)
            answer["consistency"] = {"from_size": size, "to_size": new,
                                     "path": [h.hex() for h in proof]}
    return answer
