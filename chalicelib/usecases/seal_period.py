"""Seal a period: a signed closing of a tenant's ledger, appended to the chain.

A closing of a period covers the chain from the previous closing of the same
kind to the last entry recorded before the period ends (Europe/Paris). Periods
are sealed in order: a day after the earlier days that have activity, a month
after its days, a year after its months; a period with a later one of its
kind already sealed can no longer be sealed (409). Sealing again returns the
closing already made. Activity means any entry but `closing.sealed`: the
closing entry of a day lands on the next day, and on its own it calls for no
closing (else an idle tenant would be sealed every day forever).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID, uuid4

from chalicelib.domain.closing import (
    CLOSING_TYPE,
    FORMAT_VERSION,
    PERIOD_KINDS,
    Period,
    add_grand,
    closing_sha256,
    closing_text,
    money_totals,
    paris_midnight,
    period_of,
)
from chalicelib.domain.errors import Conflict, NotFound, Violation
from chalicelib.domain.kinds import CLOSING_SEALED
from chalicelib.domain.ledger import GENESIS_HASH, canonical_payload, utc_timestamp

if TYPE_CHECKING:
    from chalicelib.usecases.witness import WitnessPorts

from chalicelib.ports import (
    Clock,
    ClosingSigner,
    ClosingStore,
    StoredClosing,
    UnitOfWork,
    UnitOfWorkFactory,
)


@dataclass(frozen=True)
class ClosingPorts:
    unit_of_work: UnitOfWorkFactory
    signer: ClosingSigner
    clock: Clock


@dataclass(frozen=True)
class Sealed:
    closing: StoredClosing
    created: bool


def seal_period(tenant_id: UUID, period: Period, ports: ClosingPorts) -> Sealed:
    now = ports.clock.now()
    if period.ends_at > now:
        raise Conflict([Violation("period", f"the {period.kind} {period.label} is not over "
                                  f"yet (it ends at {utc_timestamp(period.ends_at)})")])
    with ports.unit_of_work(tenant_id) as uow:
        store = uow.closings
        store.lock()
        found = store.get(period.kind, period.start)
        if found is not None:
            return Sealed(found, created=False)
        closing = _seal(uow, store, tenant_id, period, ports, now)
    return Sealed(closing, created=True)


def _seal(uow: UnitOfWork, store: ClosingStore, tenant_id: UUID, period: Period,
          ports: ClosingPorts, now: datetime) -> StoredClosing:
    before = store.latest(period.kind)
    if before is not None and before.period_start > period.start:
        later = Period(period.kind, before.period_start)
        raise Conflict([Violation("period", f"the {period.kind} {later.label} is already "
                                  f"sealed: {period.label}, before it, can no longer be")])
    after = before.last_seq if before is not None else 0
    _check_well_formed(store, after)
    _check_in_order(store, period, after)
    last = store.last_seq_before(after, period.ends_at)
    first = after + 1
    period_money = money_totals(*store.money(first, last))
    base = store.at_or_before(last)
    base_grand = _grand(base) if base is not None else None
    if base is None or base.last_seq < last:
        start = base.last_seq + 1 if base is not None else 1
        grand = add_grand(base_grand, money_totals(*store.money(start, last)))
    else:
        grand = add_grand(base_grand, money_totals([], []))
    previous = store.latest()
    body: dict[str, Any] = {
        "type": CLOSING_TYPE, "v": FORMAT_VERSION, "tenant_id": str(tenant_id),
        "period": period.as_dict(), "first_seq": first, "last_seq": last,
        "count": last - first + 1,
        "totals": {"entries": store.kind_counts(first, last), **period_money},
        "grand_totals": grand,
        "last_entry_hash": _entry_hash(uow, last).hex(),
        "merkle": {"size": last, "root": store.merkle_root(last).hex()},
        "previous_closing_sha256": closing_sha256(previous.text).hex() if previous else None,
        "sealed_at": utc_timestamp(now), "key_id": ports.signer.key_id,
    }
    text = closing_text(body)
    signature = ports.signer.sign(text.encode("utf-8"))
    appended = uow.ledger.append(CLOSING_SEALED, canonical_payload(
        {"closing": text, "signature": signature.hex(), "key_id": ports.signer.key_id}, now),
        None)
    if appended is None:
        raise NotFound([Violation("tenant_id", "no such tenant")])
    entry, _ = appended
    closing = StoredClosing(uuid4(), period.kind, period.start, first, last, text, signature,
                            ports.signer.key_id, entry.seq)
    store.add(closing)
    stored = store.by_id(closing.closing_id)
    assert stored is not None
    return stored


def _check_well_formed(store: ClosingStore, after: int) -> None:
    """A closing sums and dates entries by their envelope: an entry without one
    (planted past the engine's check by a superuser) stops sealing with a 409
    naming it, never a 500. Entries are never changed: it takes an operator."""
    bad = store.first_malformed(after)
    if bad is not None:
        raise Conflict([Violation("ledger", f"entry {bad} is not a {{at, data, v}} envelope "
                                  "(malformed, refused by the engine since migration 0020): "
                                  "no period holding it can be sealed")])


def _check_in_order(store: ClosingStore, period: Period, after: int) -> None:
    """Earlier periods of the kind with activity, and the smaller periods inside
    this one, must be sealed first (a clear 409 names which). An entry recorded
    late into a period already sealed (a slow transaction, a skewed clock) goes
    with the next closing."""
    pending = store.first_activity(after)
    if pending is not None and pending < paris_midnight(period.start):
        earlier = period_of(period.kind, pending)
        if store.get(earlier.kind, earlier.start) is None:
            raise Conflict([Violation("period", f"the {period.kind} {earlier.label} has "
                                      "entries not yet sealed: seal it first")])
    if period.smaller is None:
        return
    inner = store.latest(period.smaller)
    pending = store.first_activity(inner.last_seq if inner is not None else 0)
    if pending is not None and pending < period.ends_at:
        unsealed = period_of(period.smaller, pending)
        raise Conflict([Violation("period", f"the {period.smaller} {unsealed.label} must be "
                                  f"sealed before the {period.kind} {period.label}")])


def _grand(closing: StoredClosing) -> dict[str, Any]:
    grand: dict[str, Any] = json.loads(closing.text)["grand_totals"]
    return grand


def _entry_hash(uow: UnitOfWork, seq: int) -> bytes:
    if seq == 0:
        return GENESIS_HASH
    entry = uow.ledger.entry(seq)
    if entry is None:
        raise NotFound([Violation("seq", f"entry {seq} is missing")])
    return entry.hash


def seal_due(tenant_id: UUID, ports: ClosingPorts) -> list[Sealed]:
    """Seal, in order, every period that is over and has activity not yet sealed
    (days, then months, then years): what the schedule runs for each tenant."""
    now = ports.clock.now()
    done: list[Sealed] = []
    for kind in PERIOD_KINDS:
        while True:
            with ports.unit_of_work(tenant_id) as uow:
                before = uow.closings.latest(kind)
                pending = uow.closings.first_activity(before.last_seq if before else 0)
            if pending is None:
                break
            period = period_of(kind, pending)
            if before is not None and period.start <= before.period_start:
                # Recorded late into a sealed period: it goes with the next one.
                period = Period(kind, Period(kind, before.period_start).next_start)
            if period.ends_at > now:
                break
            try:
                sealed = seal_period(tenant_id, period, ports)
            except Conflict:
                break  # a smaller period is not sealed yet: a later run will
            done.append(sealed)
            if not sealed.created:
                break
    return done


def seal_all_due(tenants: Iterable[UUID], ports: ClosingPorts,
                 witness: WitnessPorts | None = None) -> dict[str, int]:
    """The schedule: each tenant in its own transactions, so one failure (logged
    by type, retried next run) does not keep the others from being sealed. Then
    the tenant's closings and head not yet witnessed are written to the bucket."""
    from chalicelib.logs import logger
    from chalicelib.usecases.witness import witness_owed

    seen = sealed = failed = 0
    for tenant in tenants:
        seen += 1
        try:
            sealed += sum(1 for s in seal_due(tenant, ports) if s.created)
            if witness is not None:
                witness_owed(tenant, witness)
        except Exception as exc:  # noqa: BLE001 - one tenant's fault must not stop the rest
            failed += 1
            logger.error("sealing failed for a tenant; next run retries", extra={
                "tenant_id": str(tenant), "reason": type(exc).__name__})
    return {"tenants": seen, "sealed": sealed, "failed": failed}
