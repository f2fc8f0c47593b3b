"""The anchor_retries schedule as a Scaleway function (CRON trigger, every 15 minutes).

Retries pending anchors and anchors the closings of the last 7 days: the same
call into chalicelib/entrypoints/schedules.py as app.py's `anchor_retries`.
Scaleway tells a function no remaining time, so the time left is counted down
from the timeout configured for this function (EINVOICE_FUNCTION_TIMEOUT_SECONDS;
unset: the schedule assumes 30 seconds). Arguments, answers and failures:
chalicelib/entrypoints/cron.py.
"""

from __future__ import annotations

import time
from typing import Any

from chalicelib.config import settings
from chalicelib.entrypoints.cron import run_schedule
from chalicelib.entrypoints.schedules import retry_anchoring


class Deadline:
    """The remaining-time source retry_anchoring reads (as a Lambda context
    gives it): milliseconds until the function's timeout."""

    def __init__(self, timeout_seconds: float, started: float) -> None:
        self._ends = started + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._ends - time.monotonic()) * 1000))


def handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
    started = time.monotonic()  # the invocation's start, as near as the function sees it
    timeout = settings().function_timeout_seconds
    deadline = Deadline(timeout, started) if timeout else None
    return run_schedule("anchor_retries", event, lambda: retry_anchoring(deadline))
