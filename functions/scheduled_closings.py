"""The scheduled_closings schedule as a Scaleway function (CRON trigger, hourly).

Seals every period that is over for every tenant with activity, and witnesses
it: the same call into chalicelib/entrypoints/schedules.py as app.py's
`scheduled_closings`. Arguments, answers and failures: chalicelib/entrypoints/cron.py.
"""

from __future__ import annotations

from typing import Any

from chalicelib.entrypoints.cron import run_schedule
from chalicelib.entrypoints.schedules import seal_due_closings


def handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return run_schedule("scheduled_closings", event, seal_due_closings)
