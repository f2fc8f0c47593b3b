"""The retention_purge schedule as a Scaleway function (CRON trigger, daily).

Deletes personal data whose retention period has ended: the same call into
chalicelib/entrypoints/schedules.py as app.py's `retention_purge`. Arguments,
answers and failures: chalicelib/entrypoints/cron.py.
"""

from __future__ import annotations

from typing import Any

from chalicelib.entrypoints.cron import run_schedule
from chalicelib.entrypoints.schedules import purge_retention


def handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return run_schedule("retention_purge", event, purge_retention)
