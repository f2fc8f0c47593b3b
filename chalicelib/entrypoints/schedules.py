"""The scheduled work: each schedule in app.py is one call here.

Each logs one line with what it did and returns it (the counts), so a run
that did nothing is as visible as one that did.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from chalicelib import runtime
from chalicelib.logs import logger

# What a schedule is told when the platform gives no remaining time.
_DEFAULT_REMAINING_MS = 30000
# Room left for one round of calls already started (5 s timeouts).
_ROUND_SECONDS = 12


def purge_retention() -> dict[str, int]:
    """Delete personal data whose retention period has ended (access logs: a year)."""
    from chalicelib.usecases.retention import purge_expired

    removed = purge_expired(runtime.retention())
    logger.info("retention purge", extra={"removed": removed})
    return removed


def seal_due_closings() -> dict[str, int]:
    """Seal every period that is over for every tenant with activity, and witness."""
    from chalicelib.usecases.seal_period import seal_all_due

    result = seal_all_due(runtime.tenants_to_seal(), runtime.closing_ports(),
                          runtime.witness_ports())
    logger.info("scheduled closings", extra=result)
    return result


def time_budget(remaining_ms: Callable[[], int], share: float) -> float:
    """Seconds of work to start now: `share` of what is left once one round
    of calls already started has room to finish."""
    return max(0.0, (remaining_ms() / 1000 - _ROUND_SECONDS) * share)


def retry_anchoring(context: object) -> dict[str, int]:
    """Retry pending anchors and upgrade pending OpenTimestamps proofs (two
    thirds of the time left), then anchor the closings of the last 7 days
    nobody anchored yet (the rest of it). `context`: the platform's, whose
    `get_remaining_time_in_millis` says the time left (else 30 s is assumed)."""
    from chalicelib.usecases.anchor import anchor_new_closings, retry_anchors

    remaining_ms: Callable[[], int] = getattr(context, "get_remaining_time_in_millis",
                                              lambda: _DEFAULT_REMAINING_MS)
    ports = runtime.anchor_ports()
    if not ports.targets:
        return {"anchors": 0, "closings": 0}
    result = retry_anchors(runtime.anchors_to_retry(ports.endpoints, limit=200), ports,
                           budget_seconds=time_budget(remaining_ms, 2 / 3))
    since = runtime.clock().now() - timedelta(days=7)
    result |= anchor_new_closings(runtime.closings_to_anchor(ports.endpoints, since, limit=50),
                                  ports, budget_seconds=time_budget(remaining_ms, 1))
    logger.info("anchor retries", extra=result)
    return result


def sweep_archive() -> dict[str, int]:
    """Archive the invoices whose archiving a crash interrupted (older than 5 minutes)."""
    from chalicelib.usecases.archive_invoice import archive_pending

    pending = runtime.invoices_awaiting_archive(timedelta(minutes=5))
    result = archive_pending(pending, runtime.archive_ports()) if pending else {"archived": 0,
                                                                                "failed": 0}
    logger.info("archive sweep", extra=result)
    return result


def poll_pa(context: object) -> dict[str, int]:
    """Take every tenant's new status flows from the PA, within the time
    left (`context` as for retry_anchoring); nothing when no PA is
    configured. A PA that is down ends the run: each tenant's cursor has kept
    its place, the next run resumes there."""
    import time

    from chalicelib.ports import PaUnavailable
    from chalicelib.usecases.pa_lifecycle import poll_tenant

    remaining_ms: Callable[[], int] = getattr(context, "get_remaining_time_in_millis",
                                              lambda: _DEFAULT_REMAINING_MS)
    deadline = time.monotonic() + time_budget(remaining_ms, 1)
    result = {"tenants": 0, "flows": 0, "applied": 0, "anomaly": 0, "refused": 0}
    try:
        pa = runtime.pa_client()
    except runtime.PaNotConfigured:
        logger.info("pa poll: no PA is configured", extra=result)
        return result
    units, clock = runtime.pa_lifecycle_units(), runtime.clock()
    for tenant in runtime.pa_tenants():
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            counts = poll_tenant(tenant, pa, units, clock, budget_seconds=left)
        except PaUnavailable as exc:
            logger.warning("pa poll: the PA is unavailable", extra={"reason": exc.reason})
            break
        result["tenants"] += 1
        for name in ("flows", "applied", "anomaly", "refused"):
            result[name] += counts[name]
    logger.info("pa poll", extra=result)
    return result
