"""SQS batch -> issue invoice, one message at a time, partial failures reported.

Bulk issuing: POST /invoice-batches validates every draft, then queues one
message per invoice with the caller's tenant and idempotency key, and the
request's id as `correlation_id`: every line the consumer logs for that
message carries it, so one search follows a batch from the route to each
invoice. Each message is issued by the same use case as POST /invoices, so a
redelivery (or a crash between any two steps) gives the same invoice, never a
second one. A message that keeps failing is parked in the dead-letter queue,
never lost; reasons are logged with the message id only (a draft holds
personal data).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import UUID

from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from chalicelib.domain.errors import InvalidInput, Violation
from chalicelib.domain.inputs import read_json
from chalicelib.entrypoints.invocation import CORRELATION_ID, body_correlation_id
from chalicelib.entrypoints.ledger_queue import BatchReport, Processor, sanitised
from chalicelib.logs import logger

Issue = Callable[[UUID, str, object], Any]


def parse_invoice_message(body: str) -> tuple[UUID, str, object]:
    """(tenant, idempotency key, draft) from a message our own route wrote."""
    raw = read_json(body)
    if not isinstance(raw, dict) or set(raw) - {CORRELATION_ID} != {"tenant_id",
                                                                  "idempotency_key", "invoice"}:
        raise InvalidInput([Violation("body", "must hold exactly tenant_id, idempotency_key "
                                      "and invoice (and maybe correlation_id)")])
    try:
        tenant = UUID(str(raw["tenant_id"]))
    except ValueError:
        raise InvalidInput([Violation("tenant_id", "must be a UUID")]) from None
    return tenant, str(raw["idempotency_key"]), raw["invoice"]


def handle_invoice_batch(event: dict[str, Any], issue: Issue) -> BatchReport:
    processor = Processor("invoice message")

    def record_handler(record: SQSRecord) -> None:
        tenant, key, draft = parse_invoice_message(record.body)
        try:
            issued = issue(tenant, key, draft)
        except Exception as exc:  # noqa: BLE001 - re-raised without server text
            raise sanitised(exc) from None
        logger.info("invoice issued from the queue", extra={
            "message_id": record.message_id, "invoice_id": str(issued.invoice.invoice_id)})

    with processor(records=event.get("Records", []), handler=processor.each_message(
            record_handler, lambda record: body_correlation_id(record.body))):
        processor.process()
    return BatchReport(processor.response(), dict(processor.reasons))
