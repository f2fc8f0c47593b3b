"""Lifecycle: poll the PA for status flows, record each status once, and
answer an invoice's lifecycle (issue 16, item 3; docs/pa.md#the-poller).

The PA is polled, never trusted to call us (the standard defines no webhook):
per tenant, a search from the stored cursor (`updatedAfter`), asked from just
before it so flows updated in the cursor's own instant across a page boundary
are not lost, those already taken at that instant dropped (by flow id). Each
status flow's CDAR (docType Original) is read by the hardened parser
(documents/cdar.py); each referenced invoice of the tenant gets a
`status.changed` ledger entry, exactly once per (invoice, message): the entry's
idempotency key, and the flow's row in pa_status_messages, in one transaction
with the cursor's advance. The current status is derived from the entries by
the state machine (domain/lifecycle.py), never stored.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from chalicelib.documents.cdar import CdarRefused, StatusReport, parse_cdar
from chalicelib.domain.errors import NotFound, Violation
from chalicelib.domain.kinds import STATUS_CHANGED
from chalicelib.domain.ledger import canonical_payload, normalise_data
from chalicelib.domain.lifecycle import LABELS, Lifecycle, StatusEvent, derive, judge
from chalicelib.domain.pa_flows import FlowSummary, SearchQuery
from chalicelib.logs import logger
from chalicelib.ports import (
    Clock,
    PaClient,
    PaLifecycleStore,
    PaLifecycleUnitFactory,
    PaNotFound,
    PaRefused,
    ReceivedStatus,
)

# A search asks from this much before the cursor: flows updated in the
# cursor's own instant are asked again, and those taken dropped.
OVERLAP = timedelta(microseconds=1)
PAGE = 100
# What a 213 means for the invoice (the answer of GET /invoices/{id}/lifecycle).
CORRECTION = ("Rejected by the platform (213): this invoice's number is consumed. Correct it "
              "with a credit note (POST /invoices/{id}/credit-notes) then a new invoice with a "
              "new number; never deposit this number again (the platform answers 213 DOUBLON).")


def _key(invoice_id: UUID, message_id: str) -> str:
    """The entry's idempotency key: one entry per (invoice, status message)."""
    return f"{STATUS_CHANGED}:{invoice_id}:{message_id}"


def _event(data: dict[str, Any]) -> StatusEvent:
    return StatusEvent(
        code=int(data["code"]), occurred_at=datetime.fromisoformat(data["occurred_at"]),
        message_id=str(data["message_id"]), reason_codes=tuple(data["reason_codes"]),
        amounts=tuple((Decimal(a["vat_rate"]), Decimal(a["amount"])) for a in data["amounts"]))


def _lifecycle(store: PaLifecycleStore, invoice_id: UUID) -> tuple[Lifecycle, list[StatusEvent]]:
    events = [_event(data) for data in store.statuses(invoice_id)]
    return derive(events), events


def _match(store: PaLifecycleStore, flow: FlowSummary, report: StatusReport,
           by_number: bool) -> tuple[UUID, str] | None:
    """Our invoice: the flow's trackingId when it is one of this tenant's
    invoice ids (row security: only this tenant's invoices can match). A flow
    with a trackingId that is not ours is not ours, whatever number its CDAR
    names. Only a flow without one is matched by the number the CDAR
    references, and only when `by_number`: on a PA account shared by tenants
    (the platform-level PA of today) two tenants may hold the same number."""
    if flow.tracking_id:
        try:
            return store.invoice_by_id(UUID(flow.tracking_id))
        except ValueError:
            return None
    return store.invoice_by_number(report.invoice_number) if by_number else None


def _take_flow(unit: Any, pa: PaClient, flow: FlowSummary, clock: Clock,
               by_number: bool) -> dict[str, int]:
    """One status flow, in the caller's transaction: fetched, parsed,
    matched, judged, recorded. Raises PaUnavailable (the poll stops there,
    the cursor not moved past this flow)."""
    store: PaLifecycleStore = unit.pa_lifecycle
    counts = {"applied": 0, "late": 0, "duplicate": 0, "anomaly": 0, "refused": 0,
              "unmatched": 0}
    if store.flow_seen(flow.flow_id):
        return counts

    def refuse(rule: str, digest: bytes | None) -> dict[str, int]:
        store.record(ReceivedStatus(flow.flow_id, 0, flow.updated_at, digest, None, None, None,
                                    "refused", rule))
        logger.warning("pa poll: a status flow refused", extra={"flow_id": flow.flow_id[:64],
                                                                "rule": rule})
        counts["refused"] += 1
        return counts

    try:
        content = pa.fetch(flow.flow_id, "Original")
    except (PaRefused, PaNotFound) as exc:
        return refuse(f"fetch refused: {exc.reason}"[:200], None)
    digest = hashlib.sha256(content).digest()
    try:
        message = parse_cdar(content)
    except CdarRefused as exc:
        return refuse(f"CDAR refused: {exc.reason}"[:200], digest)
    for position, (report, event) in enumerate(zip(message.reports, message.events(),
                                                   strict=True)):
        found = _match(store, flow, report, by_number)
        if found is None:
            counts["unmatched"] += 1
            continue  # another tenant's, or none of ours: nothing of it kept here
        invoice_id, number = found
        lifecycle, events = _lifecycle(store, invoice_id)
        history = [o.event.code for o in lifecycle.outcomes if o.verdict in ("applied", "late")]
        if any(e.message_id == event.message_id for e in events):
            verdict, rule = "duplicate", "this status message is already recorded"
        elif report.invoice_number != number:
            verdict, rule = "anomaly", "the message names another invoice number"
        else:
            outcome = judge(lifecycle.current, history, event)
            verdict, rule = outcome.verdict, outcome.rule
        seq = None
        if verdict != "duplicate":
            seq = _append_status(unit, invoice_id, number, event, flow, digest, clock)
            if seq is None:
                verdict, rule = "duplicate", "this status message is already recorded"
        store.record(ReceivedStatus(flow.flow_id, position + 1, flow.updated_at, digest,
                                    event.message_id, invoice_id, event.code, verdict, rule, seq))
        counts[verdict] += 1
    return counts


def _append_status(unit: Any, invoice_id: UUID, number: str, event: StatusEvent,
                   flow: FlowSummary, digest: bytes, clock: Clock) -> int | None:
    """The `status.changed` entry; None when this (invoice, message) has one."""
    data = normalise_data({
        "invoice_id": str(invoice_id), "invoice_number": number, "code": event.code,
        "label": event.label, "reason_codes": list(event.reason_codes),
        "amounts": [{"vat_rate": rate, "amount": amount} for rate, amount in event.amounts],
        "occurred_at": event.occurred_at, "message_id": event.message_id,
        "message_sha256": digest.hex(), "flow_id": flow.flow_id,
        "flow_updated_at": flow.updated_at})
    appended = unit.ledger.append(STATUS_CHANGED, canonical_payload(data, clock.now()),
                                  _key(invoice_id, event.message_id))
    if appended is None:
        raise NotFound([Violation("tenant_id", "no such tenant")])
    entry, created = appended
    return int(entry.seq) if created else None


def poll_tenant(tenant_id: UUID, pa: PaClient, unit_of_work: PaLifecycleUnitFactory,
                clock: Clock, *, budget_seconds: float = 60.0, by_number: bool = False,
                monotonic: Callable[[], float] = time.monotonic) -> dict[str, int]:
    """Search the PA from this tenant's cursor and take every new status flow,
    page after page, until done or out of time. Each flow is taken in its own
    transaction with the cursor's advance past it: a crash retakes at most
    that flow, and its records make the second take a no-op. PaUnavailable
    propagates (the next run resumes from the cursor). `by_number`: see _match."""
    deadline = monotonic() + budget_seconds
    totals = {"flows": 0, "applied": 0, "late": 0, "duplicate": 0, "anomaly": 0,
              "refused": 0, "unmatched": 0}
    while monotonic() < deadline:
        with unit_of_work(tenant_id) as unit:
            cursor, seen = unit.pa_lifecycle.cursor()
        page = pa.search(SearchQuery(updated_after=cursor - OVERLAP if cursor else None,
                                     limit=PAGE, direction="In"))
        fresh = [f for f in page.flows
                 if not (cursor is not None and (f.updated_at < cursor or (
                     f.updated_at == cursor and f.flow_id in seen)))]
        for flow in fresh:
            if monotonic() >= deadline:
                break
            with unit_of_work(tenant_id) as unit:
                store = unit.pa_lifecycle
                cursor, seen = store.cursor(for_update=True)
                if flow.flow_syntax == "CDAR":
                    for name, n in _take_flow(unit, pa, flow, clock, by_number).items():
                        totals[name] += n
                if cursor is None or flow.updated_at > cursor:
                    cursor, seen = flow.updated_at, (flow.flow_id,)
                elif flow.updated_at == cursor and flow.flow_id not in seen:
                    seen = (*seen, flow.flow_id)
                store.save_cursor(cursor, seen)
            totals["flows"] += 1
        if not page.more or not fresh:
            break
    return totals


def invoice_lifecycle(tenant_id: UUID, invoice_id: UUID,
                      unit_of_work: PaLifecycleUnitFactory) -> dict[str, Any]:
    """GET /invoices/{id}/lifecycle: the current status derived from the
    entries, the history, the anomalies, and for a 213 the correction path."""
    with unit_of_work(tenant_id) as unit:
        store = unit.pa_lifecycle
        found = store.invoice_by_id(invoice_id)
        if found is None:
            raise NotFound([Violation("invoice_id", "no such invoice")])
        lifecycle, _ = _lifecycle(store, invoice_id)
        messages = store.messages(invoice_id)
    by_message = {m.message_id: m for m in messages if m.ledger_seq is not None}
    history, anomalies = [], []
    for outcome in lifecycle.outcomes:
        e = outcome.event
        item = {"code": e.code, "label": e.label, "reason_codes": list(e.reason_codes),
                "amounts": [{"vat_rate": str(r), "amount": str(a)} for r, a in e.amounts],
                "at": e.occurred_at.isoformat().replace("+00:00", "Z"),
                "message_id": e.message_id}
        recorded = by_message.get(e.message_id)
        if recorded is not None:
            item["ledger_seq"] = recorded.ledger_seq
        if outcome.verdict == "anomaly":
            anomalies.append(item | {"rule": outcome.rule})
        elif outcome.verdict in ("applied", "late"):
            history.append(item | {"late": outcome.verdict == "late"})
    current = lifecycle.current
    answer: dict[str, Any] = {
        "invoice_id": str(invoice_id), "invoice_number": found[1],
        "status": None if current is None else {"code": current, "label": LABELS[current]},
        "history": history, "anomalies": anomalies, "rejected": lifecycle.rejected}
    if lifecycle.rejected:
        answer["number_consumed"] = True
        answer["correction"] = CORRECTION.replace("{id}", str(invoice_id))
    return answer
