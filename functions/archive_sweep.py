"""The archive_sweep schedule as a Scaleway function (CRON trigger, every 10 minutes).

Archives the invoices whose archiving a crash interrupted: the same call into
chalicelib/entrypoints/schedules.py as app.py's `archive_sweep`. Arguments,
answers and failures: chalicelib/entrypoints/cron.py.
"""

from __future__ import annotations

from typing import Any

from chalicelib.entrypoints.cron import run_schedule
from chalicelib.entrypoints.schedules import sweep_archive


def handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return run_schedule("archive_sweep", event, sweep_archive)
