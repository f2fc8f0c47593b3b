"""Rate limits: one place that turns counters into a clear 429."""

from __future__ import annotations

from datetime import timedelta

from chalicelib import metrics
from chalicelib.domain.errors import TooManyRequests, Violation
from chalicelib.ports import RateLimiter

MINUTE = timedelta(minutes=1)
DAY = timedelta(days=1)


def enforce(limiter: RateLimiter, checks: list[tuple[str, str, int]],
            window: timedelta = MINUTE) -> None:
    """Count every (what, key, limit per window) hit; refuse if any is over.

    All are counted even when one refuses, so switching accounts or addresses
    does not reset anything.
    """
    refused = [(what, wait) for what, key, limit in checks
               for allowed, wait in [limiter.hit(f"{what}|{key}", window, limit)] if not allowed]
    if refused:
        metrics.count(metrics.RATE_LIMIT_REFUSALS)
        raise TooManyRequests([Violation(what, "too many attempts; retry later")
                               for what, _ in refused], max(wait for _, wait in refused))
