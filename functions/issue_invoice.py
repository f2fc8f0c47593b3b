"""Issue a queued invoice as a plain function (Scaleway Serverless Functions).

Scaleway's queue trigger delivers one message as an HTTP POST whose body is
the message POST /invoice-batches wrote ({tenant_id, idempotency_key,
invoice}); an AWS-shaped SQS batch ({"Records": [...]}) is accepted too. The
idempotency key inside the message makes a redelivery return the same invoice.
Answers of 300 or more (a refused message: 4xx; a fault: 500) make Scaleway's
trigger deliver the message again (up to 3 times); 200 (201) means done.
"""

from __future__ import annotations

from typing import Any

from chalicelib.domain.errors import DomainError
from chalicelib.entrypoints.http import error_response, json_response, request_body
from chalicelib.entrypoints.invocation import body_correlation_id, invocation, scaleway_call_id
from chalicelib.entrypoints.invoice_queue import handle_invoice_batch, parse_invoice_message
from chalicelib.entrypoints.ledger_queue import sanitised
from chalicelib.logs import logger
from chalicelib.runtime import issue_from_queue


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Metrics flushed and the correlation id cleared when it ends; a batch
    binds one per message, a single message the producer's (the body's
    correlation_id), else the call's X-Request-Id."""
    if "Records" in event:
        with invocation():
            return dict(handle_invoice_batch(event, issue_from_queue).response)
    try:
        body = request_body(event)
    except ValueError:  # base64 that is not UTF-8
        body = ""
    with invocation(body_correlation_id(body) or scaleway_call_id(event)):
        return _one_message(body)


def _one_message(body: str) -> dict[str, Any]:
    try:
        issued = issue_from_queue(*parse_invoice_message(body))
    except DomainError as exc:
        return error_response(exc)
    except Exception as exc:  # noqa: BLE001 - answered 500, logged below without server text
        failure = str(sanitised(exc))
    else:
        return json_response(201 if issued.created else 200, {
            "id": str(issued.invoice.invoice_id),
            "invoice_number": issued.invoice.invoice_number, "archived": issued.archived})
    logger.error("queued invoice failed", extra={"reason": failure})
    return json_response(500, {"error": "internal error; the message will be retried"})


handle = handler  # the name Scaleway's Python runtime calls by default
