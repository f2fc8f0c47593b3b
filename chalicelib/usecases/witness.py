"""Write the chain's witnesses to the Object Lock bucket, and check a chain
against the newest one (see chalicelib/domain/witness.py for the format).

Verification reads the bucket's whole version history, never only the current
version of the first key, and trusts only pinned keys.

A closing is witnessed together with the head at its own `closing.sealed`
entry; a plain head is witnessed when the schedule finds the chain has grown
since the last witness. Writing is best-effort after the fact: a failure is
logged and the schedule writes what is owed; nothing here changes the chain.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any
from uuid import UUID

from chalicelib import metrics
from chalicelib.domain.errors import NotFound, Violation
from chalicelib.domain.kinds import WITNESS_OF_CLOSING, WITNESS_OF_HEAD
from chalicelib.domain.ledger import LedgerEntry
from chalicelib.domain.retention import retain_until_for
from chalicelib.domain.witness import (
    WitnessAlarm,
    head_text,
    newest_witnessed,
    witness_key,
    witness_object,
    witness_prefix,
)
from chalicelib.ports import (
    ClosingSigner,
    StoredClosing,
    UnitOfWork,
    UnitOfWorkFactory,
    WitnessArchive,
)


class WitnessContradicted(RuntimeError):
    """The chain no longer matches its newest witness: an alarm, never papered over."""


@dataclass(frozen=True)
class WitnessPorts:
    unit_of_work: UnitOfWorkFactory
    signer: ClosingSigner
    archive: WitnessArchive
    pinned: Mapping[str, bytes] = field(default_factory=dict)  # retired keys; never the DB's

    @property
    def trusted(self) -> dict[str, bytes]:
        """The pinned keys and the signer's own, which is always pinned."""
        return {**self.pinned, self.signer.key_id: self.signer.public_key}


def _entry(uow: UnitOfWork, seq: int) -> LedgerEntry:
    found = uow.ledger.entry(seq)
    if found is None:
        raise NotFound([Violation("seq", f"entry {seq} is missing")])
    return found


def witness(tenant_id: UUID, ports: WitnessPorts,
            closing: StoredClosing | None = None) -> int | None:
    """Witness the closing (with the head at its entry), or else the current
    head if the chain grew since the last witness. The seq witnessed, or None."""
    kind = WITNESS_OF_CLOSING if closing is not None else WITNESS_OF_HEAD
    with ports.unit_of_work(tenant_id) as uow:
        if closing is not None:
            seq = closing.entry_seq
        else:
            head = uow.ledger.head()
            if head is None or head.seq == 0:
                return None
            seq = head.seq
            witnessed = (uow.closings.last_witnessed(WITNESS_OF_HEAD),
                         uow.closings.last_witnessed(WITNESS_OF_CLOSING))
            last = max((s for s in witnessed if s is not None), default=0)
            if seq <= last:
                return None
        if uow.closings.witnessed(kind, seq):
            return None
        entry = _entry(uow, seq)
    # Never witness a chain that contradicts the newest witness already in the
    # bucket (cut short then grown again, or rewritten): a new witness would hide
    # the old one from every later check. The bucket is read, not our own table,
    # which someone with database rights could edit.
    found = check_witness(tenant_id, ports.unit_of_work, ports.archive, ports.trusted)
    if not found["ok"]:
        raise WitnessContradicted(f"the chain contradicts its witness in the archive "
                                  f"({found['reason']}): not witnessing it")
    at = str(json.loads(entry.payload)["at"])
    text = head_text(tenant_id, seq, entry.hash, at)
    content = witness_object(
        text, ports.signer.sign(text.encode("utf-8")), ports.signer.key_id,
        {"closing": closing.text, "signature": closing.signature.hex(),
         "key_id": closing.key_id} if closing is not None else None)
    key = witness_key(tenant_id, seq, kind)
    stored = ports.archive.put(key, content, retain_until_for(date.fromisoformat(at[:10])),
                               "application/json")
    with ports.unit_of_work(tenant_id) as uow:
        uow.closings.record_witness(kind, seq, key, stored.version_id, stored.sha256)
    return seq


def witness_after_sealing(tenant_id: UUID, closing: StoredClosing, ports: WitnessPorts) -> None:
    """Best-effort: a failure is logged; the schedule writes what is owed."""
    try:
        witness(tenant_id, ports, closing)
    except Exception as exc:  # noqa: BLE001 - the closing stands; the schedule retries
        from chalicelib.logs import logger

        logger.error("closing witness deferred to the schedule", extra={
            "tenant_id": str(tenant_id), "reason": type(exc).__name__})


def witness_owed(tenant_id: UUID, ports: WitnessPorts) -> list[int]:
    """What the schedule runs per tenant: closings not yet witnessed, then the head."""
    with ports.unit_of_work(tenant_id) as uow:
        owed = [c for c in uow.closings.recent(1000)
                if not uow.closings.witnessed(WITNESS_OF_CLOSING, c.entry_seq)]
    done = [s for c in sorted(owed, key=lambda c: c.entry_seq)
            if (s := witness(tenant_id, ports, c)) is not None]
    head = witness(tenant_id, ports)
    return done + ([head] if head is not None else [])


def check_witness(tenant_id: UUID, snapshot: UnitOfWorkFactory, archive: WitnessArchive,
                  pinned: Mapping[str, bytes]) -> dict[str, Any]:
    """Compare the chain with the highest witness of the bucket's whole history
    (every version, the hidden ones included), checked with the pinned keys.
    ok False names the problem: the history tampered with (a delete marker, a
    replaced or misnamed witness, an unpinned key), a chain shorter than its
    witnessed head, or another hash; each such finding counts one
    WitnessAlarms (an alarm, whoever asked)."""
    found = _compare_with_witness(tenant_id, snapshot, archive, pinned)
    if not found["ok"]:
        metrics.count(metrics.WITNESS_ALARMS)
    return found


def _compare_with_witness(tenant_id: UUID, snapshot: UnitOfWorkFactory, archive: WitnessArchive,
                          pinned: Mapping[str, bytes]) -> dict[str, Any]:
    history = archive.history(witness_prefix(tenant_id))
    try:
        newest = newest_witnessed(tenant_id, ((v.key, v.version_id, v.content)
                                              for v in history), pinned)
    except WitnessAlarm as alarm:
        return {"ok": False, "witnessed": True, "object_key": alarm.key,
                "reason": alarm.reason, "detail": alarm.detail}
    if newest is None:
        return {"ok": True, "witnessed": False}
    key, seen = newest
    with snapshot(tenant_id) as uow:
        head = uow.ledger.head()
        entry = uow.ledger.entry(seen.seq)
    answer = {"witnessed": True, "object_key": key, "seq": seen.seq, "hash": seen.hash.hex(),
              "at": seen.at, "versions": len(history)}
    if entry is None:
        ends = head.seq if head is not None else 0
        return {**answer, "ok": False, "reason": "truncated_below_witness",
                "detail": f"the chain ends at entry {ends} but entry {seen.seq} was witnessed "
                          f"in the archive (recorded at {seen.at}): entries were removed"}
    if entry.hash != seen.hash:
        return {**answer, "ok": False, "reason": "witness_mismatch",
                "detail": f"entry {seen.seq} differs from the one witnessed in the archive"}
    return {**answer, "ok": True}
