"""A schedule as a plain function (Scaleway Serverless Functions, CRON trigger).

Scaleway's CRON trigger calls the function with an HTTP-shaped event whose
body is the trigger's arguments (a JSON object). No schedule takes one: any
argument is ignored and logged by name, never silently. The answer is 200
with the schedule's counts, or 500 when it failed, so the platform shows a
failed run; the failure is logged by type (and SQLSTATE), never by its text,
which may quote data.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from chalicelib import runtime
from chalicelib.entrypoints.http import json_response, request_body
from chalicelib.entrypoints.invocation import invocation, scaleway_call_id
from chalicelib.logs import logger


def run_schedule(name: str, event: dict[str, Any],
                 work: Callable[[], dict[str, int]]) -> dict[str, Any]:
    """Run the schedule `name` (one call into schedules.py) for this trigger
    event, every line under the run's correlation id (the call's X-Request-Id,
    else a new one), metrics flushed when it ends."""
    with invocation(scaleway_call_id(event)):
        return _run(name, event, work)


def _run(name: str, event: dict[str, Any],
         work: Callable[[], dict[str, int]]) -> dict[str, Any]:
    _log_ignored_arguments(name, event)
    try:
        result = work()
    except Exception as exc:  # noqa: BLE001 - answered 500, logged below without its text
        failure = type(exc).__name__
        state = runtime.fault_code(exc)
        if state:
            failure += f", SQLSTATE {state}"
    else:
        return json_response(200, result)
    # Logged outside the except block: a failing log call would otherwise
    # print the original exception, whose text may quote data.
    logger.error("schedule failed", extra={"schedule": name, "reason": failure})
    return json_response(500, {"error": "internal error; the next run goes on"})


def _log_ignored_arguments(name: str, event: dict[str, Any]) -> None:
    """Every argument the trigger sent is ignored: say so, by name only."""
    try:
        text = request_body(event).strip()
        arguments = json.loads(text) if text else {}
    except ValueError:  # not JSON, or base64 that is not UTF-8
        logger.warning("schedule arguments ignored: the body is not JSON",
                       extra={"schedule": name})
        return
    if not isinstance(arguments, dict):
        logger.warning("schedule arguments ignored: the body is not a JSON object",
                       extra={"schedule": name})
    elif arguments:
        logger.warning("schedule arguments ignored", extra={
            "schedule": name, "arguments": sorted(str(key)[:50] for key in arguments)[:20]})
