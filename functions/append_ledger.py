"""Append ledger entry as a plain function (Scaleway Serverless Functions).

Scaleway's queue trigger delivers one message as an HTTP POST whose body is the
message; an AWS-shaped SQS batch ({"Records": [...]}) is accepted too. On the
single-message path the message must carry its own `idempotency_key`: without
a message id we can rely on, that key is what makes a redelivery harmless.
Answers of 300 or more (a refused message: 4xx; a fault: 500) make Scaleway's
trigger deliver the message again (up to 3 times); 200 (201) means done.
"""

from __future__ import annotations

from typing import Any

from chalicelib.domain.errors import DomainError, InvalidInput, Violation
from chalicelib.entrypoints.http import error_response, json_response, request_body
from chalicelib.entrypoints.invocation import invocation, scaleway_call_id
from chalicelib.entrypoints.ledger_queue import handle_ledger_batch, parse_message, sanitised
from chalicelib.logs import logger
from chalicelib.runtime import append_entry


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Metrics flushed and the correlation id cleared when it ends; a batch
    binds one per message, a single message the call's X-Request-Id."""
    if "Records" in event:
        with invocation():
            return dict(handle_ledger_batch(event, append_entry).response)
    with invocation(scaleway_call_id(event)):
        return _one_message(event)


def _one_message(event: dict[str, Any]) -> dict[str, Any]:
    try:
        request = parse_message(request_body(event))
        if request.idempotency_key is None:
            raise InvalidInput([Violation("idempotency_key", "is required on this path, so "
                                          "that a redelivered message appends once")])
        entry = append_entry(request)
    except DomainError as exc:
        return error_response(exc)
    except Exception as exc:  # noqa: BLE001 - answered 500, logged below without server text
        failure = str(sanitised(exc))
    else:
        return json_response(200, entry.as_dict())
    # Logged outside the except block: if logging itself failed, its report
    # would otherwise print the original exception, whose text may quote data.
    logger.error("ledger append failed", extra={"reason": failure})
    return json_response(500, {"error": "internal error; the message will be retried"})


handle = handler  # the name Scaleway's Python runtime calls by default
