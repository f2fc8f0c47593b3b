"""Anchoring closings outside the system, best-effort.

After a closing, its SHA-256 (the digest of its signed text) goes to every
configured OpenTimestamps calendar and, when configured, to an RFC 3161
time-stamping authority. Each (closing, method, endpoint) is one anchor row,
created once; each try is recorded (attempts, a short last_error of our own
words) and a failure leaves the anchor pending for the schedule to retry. An
anchor never blocks, alters or fails the chain: the closing is committed
before anything here runs, and nothing here writes to the ledger or the
closings.

States: `pending` (no proof yet) -> `submitted` (OpenTimestamps only: the
calendar's promise, a pending attestation awaiting a Bitcoin block) ->
`complete` (the timestamp holds a Bitcoin block header attestation; an RFC 3161
token is complete as soon as it verified). The engine (0017_anchors.sql)
refuses any other change.

Network calls never run inside a database transaction; a result is recorded
only if the anchor is still as it was read (status and attempts), so two runs
racing on one anchor record one result and the other is dropped.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from uuid import UUID, uuid4

from chalicelib import metrics
from chalicelib.domain.errors import NotFound, Violation
from chalicelib.ports import (
    AnchorStoreFactory,
    AnchorUnavailable,
    CalendarClient,
    Clock,
    ClosingDigest,
    StoredAnchor,
    TimestampAuthority,
)

OPENTIMESTAMPS = "opentimestamps"
RFC3161 = "rfc3161"
PENDING, SUBMITTED, COMPLETE = "pending", "submitted", "complete"


@dataclass(frozen=True)
class AnchorPorts:
    store: AnchorStoreFactory
    clock: Clock
    calendars: Sequence[CalendarClient] = ()
    tsa: TimestampAuthority | None = None
    # A token whose time is further than this from our clock is refused.
    max_clock_skew: timedelta = timedelta(minutes=10)
    # How many endpoints are asked at once (each call has its own short timeout).
    parallel: int = 8

    @property
    def targets(self) -> list[tuple[str, str]]:
        """(method, endpoint) of every configured endpoint."""
        found = [(OPENTIMESTAMPS, c.url) for c in self.calendars]
        return found + ([(RFC3161, self.tsa.url)] if self.tsa is not None else [])

    @property
    def endpoints(self) -> list[str]:
        return [endpoint for _, endpoint in self.targets]

    def calendar(self, anchor: StoredAnchor) -> CalendarClient | None:
        if anchor.method == OPENTIMESTAMPS:
            for calendar in self.calendars:
                if calendar.url == anchor.endpoint:
                    return calendar
        return None

    def authority(self, anchor: StoredAnchor) -> TimestampAuthority | None:
        if anchor.method == RFC3161 and self.tsa is not None and self.tsa.url == anchor.endpoint:
            return self.tsa
        return None

    def configured(self, anchor: StoredAnchor) -> bool:
        return self.calendar(anchor) is not None or self.authority(anchor) is not None


@dataclass(frozen=True)
class _Work:
    tenant_id: UUID
    anchor: StoredAnchor
    closing: ClosingDigest


@dataclass(frozen=True)
class _Outcome:
    status: str
    proof: bytes | None
    error: str | None


def anchor_closing(tenant_id: UUID, closing_id: UUID, ports: AnchorPorts) -> list[StoredAnchor]:
    """Create the closing's anchors (once: idempotent) and try each one not yet
    complete. A network failure is recorded on its anchor, never raised."""
    with ports.store(tenant_id) as store:
        closing = store.closing(closing_id)
        if closing is None:
            raise NotFound([Violation("closing_id", "no such closing")])
        for method, endpoint in ports.targets:
            store.ensure(uuid4(), closing_id, method, endpoint, closing.sha256)
        anchors = store.for_closing(closing_id)
    work = [_Work(tenant_id, a, closing) for a in anchors
            if a.status != COMPLETE and ports.configured(a)]
    _run(work, ports)
    with ports.store(tenant_id) as store:
        return store.for_closing(closing_id)


def anchor_new_closings(closings: Iterable[tuple[UUID, UUID]], ports: AnchorPorts,
                        budget_seconds: float | None = None) -> dict[str, int]:
    """The schedule: anchor the closings nobody anchored yet (those the hourly
    schedule sealed), each on its own; none is started once the budget is spent
    (the next run takes them)."""
    from chalicelib.logs import logger

    deadline = _deadline(budget_seconds)
    counts = {"closings": 0, "closing_failures": 0, "closings_deferred": 0}
    for tenant_id, closing_id in closings:
        counts["closings"] += 1
        if _late(deadline):
            counts["closings_deferred"] += 1
            continue
        try:
            anchor_closing(tenant_id, closing_id, ports)
        except Exception as exc:  # noqa: BLE001 - one closing's fault must not stop the rest
            counts["closing_failures"] += 1
            metrics.count(metrics.ANCHORING_FAILURES)
            logger.error("anchoring a closing failed; next run retries", extra={
                "tenant_id": str(tenant_id), "closing_id": str(closing_id),
                "reason": type(exc).__name__})
    return counts


def retry_anchors(pending: Iterable[tuple[UUID, UUID]], ports: AnchorPorts,
                  budget_seconds: float | None = None) -> dict[str, int]:
    """The schedule: for each (tenant, anchor) not complete, submit a pending one
    again, try to upgrade a submitted OpenTimestamps proof. Each anchor is read
    and recorded in its own transactions, so one failure (a tenant, an endpoint)
    does not stop the others; none is started once the budget is spent."""
    from chalicelib.logs import logger

    counts = {"anchors": 0, "submitted": 0, "completed": 0, "unchanged": 0, "errors": 0,
              "failed": 0, "skipped": 0, "deferred": 0}
    work: list[_Work] = []
    for tenant_id, anchor_id in pending:
        counts["anchors"] += 1
        try:
            with ports.store(tenant_id) as store:
                anchor = store.get(anchor_id)
                closing = store.closing(anchor.closing_id) if anchor is not None else None
        except Exception as exc:  # noqa: BLE001 - one tenant's fault must not stop the rest
            counts["failed"] += 1
            metrics.count(metrics.ANCHORING_FAILURES)
            logger.error("reading an anchor failed; next run retries", extra={
                "tenant_id": str(tenant_id), "anchor_id": str(anchor_id),
                "reason": type(exc).__name__})
            continue
        if anchor is None or closing is None or anchor.status == COMPLETE \
                or not ports.configured(anchor):
            counts["skipped"] += 1
            continue
        work.append(_Work(tenant_id, anchor, closing))
    for item, (outcome, fate) in zip(work, _run(work, ports, _deadline(budget_seconds)),
                                     strict=True):
        if fate != "recorded":
            counts[{"deferred": "deferred", "raced": "skipped"}.get(fate, "failed")] += 1
        elif outcome is None or outcome.error is not None:
            counts["errors"] += 1
        elif outcome.status == COMPLETE:
            counts["completed"] += 1
        elif outcome.status != item.anchor.status:
            counts["submitted"] += 1
        else:
            counts["unchanged"] += 1  # e.g. not in a Bitcoin block yet
    return counts


def _deadline(budget_seconds: float | None) -> float | None:
    return None if budget_seconds is None else time.monotonic() + budget_seconds


def _late(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() >= deadline


def _run(work: list[_Work], ports: AnchorPorts, deadline: float | None = None
         ) -> list[tuple[_Outcome | None, str]]:
    """Ask the endpoints (`ports.parallel` at a time, outside any transaction),
    then record each outcome in its own transaction. Each item's fate:
    "recorded"; "raced" (another run recorded this anchor first); "db_failed";
    "deferred" (the budget was spent before its turn)."""
    from chalicelib.logs import logger

    if not work:
        return []
    results: list[tuple[_Outcome | None, str]] = []
    size = max(1, ports.parallel)
    with ThreadPoolExecutor(max_workers=max(1, min(size, len(work)))) as pool:
        for start in range(0, len(work), size):
            chunk = work[start:start + size]
            if _late(deadline):
                results.extend((None, "deferred") for _ in chunk)
                continue
            outcomes = list(pool.map(lambda item: _attempt(item, ports), chunk))
            for item, outcome in zip(chunk, outcomes, strict=True):
                results.append((outcome, _record(item, outcome, ports)))
                if outcome.error is not None:
                    metrics.count(metrics.ANCHORING_FAILURES)
                    logger.warning("anchoring attempt failed; the anchor stays as it was",
                                   extra={"tenant_id": str(item.tenant_id),
                                          "anchor_id": str(item.anchor.anchor_id),
                                          "method": item.anchor.method,
                                          "reason": outcome.error})
    return results


def _record(item: _Work, outcome: _Outcome, ports: AnchorPorts) -> str:
    from chalicelib.logs import logger

    try:
        with ports.store(item.tenant_id) as store:
            return "recorded" if store.record(item.anchor, outcome.status, outcome.proof,
                                              outcome.error) else "raced"
    except Exception as exc:  # noqa: BLE001 - one anchor's fault must not stop the rest
        metrics.count(metrics.ANCHORING_FAILURES)
        logger.error("recording an anchoring attempt failed", extra={
            "tenant_id": str(item.tenant_id), "anchor_id": str(item.anchor.anchor_id),
            "reason": type(exc).__name__})
        return "db_failed"


def _attempt(item: _Work, ports: AnchorPorts) -> _Outcome:
    """One try at one endpoint. Never raises: a failure is an outcome."""
    anchor = item.anchor
    try:
        if hashlib.sha256(item.closing.text.encode("utf-8")).digest() != anchor.digest:
            raise AnchorUnavailable("closing text does not match the digest")
        calendar = ports.calendar(anchor)
        if calendar is not None:
            if anchor.status == PENDING:
                return _Outcome(SUBMITTED, calendar.submit(anchor.digest), None)
            assert anchor.proof is not None
            upgraded = calendar.upgrade(anchor.proof)
            return _Outcome(COMPLETE if upgraded.complete else SUBMITTED, upgraded.proof, None)
        authority = ports.authority(anchor)
        if authority is None:
            raise AnchorUnavailable("endpoint not configured")
        token = authority.timestamp(item.closing.text.encode("utf-8"))
        if abs(token.gen_time - ports.clock.now()) > ports.max_clock_skew:
            raise AnchorUnavailable("token time is too far from our clock")
        return _Outcome(COMPLETE, token.token, None)
    except AnchorUnavailable as exc:
        reason = exc.reason
    except Exception as exc:  # noqa: BLE001 - best-effort: any fault is recorded, not raised
        reason = f"unexpected {type(exc).__name__}"
    return _Outcome(anchor.status, anchor.proof, reason[:120])


def anchor_view(anchor: StoredAnchor) -> dict[str, Any]:
    """An anchor as the API shows it: the proof in base64 (an .ots file for
    OpenTimestamps, a DER TimeStampToken for RFC 3161), over `digest`, the
    SHA-256 of the closing's text."""
    return {
        "method": anchor.method, "endpoint": anchor.endpoint, "status": anchor.status,
        "digest": anchor.digest.hex(),
        "proof_format": {OPENTIMESTAMPS: "ots", RFC3161: "rfc3161-token-der"}[anchor.method],
        "proof": base64.b64encode(anchor.proof).decode("ascii") if anchor.proof else None,
        "attempts": anchor.attempts, "last_error": anchor.last_error,
        "submitted_at": anchor.submitted_at.isoformat() if anchor.submitted_at else None,
        "completed_at": anchor.completed_at.isoformat() if anchor.completed_at else None,
    }
