"""Batches of invoices: checked at once, then issued one by one from a queue.

Each queued message is later issued by `issue_invoice` under its own
idempotency key, so a message delivered twice makes one invoice.
"""

from __future__ import annotations

from uuid import UUID

from chalicelib.domain.document_types import DocumentType
from chalicelib.domain.errors import InvalidInput, Violation
from chalicelib.domain.invoice import validate_invoice
from chalicelib.ports import Clock, InvoiceQueue
from chalicelib.usecases.idempotency import IDEMPOTENCY_KEY_RULE, key_problem
from chalicelib.usecases.invoicing import canonical_json, check_issue_date

MAX_BATCH = 100
MAX_MESSAGE_BYTES = 250_000  # SQS takes 256 KiB a message


def queue_invoices(tenant_id: UUID, raw: object, queue: InvoiceQueue,
                   clock: Clock, correlation_id: str | None = None) -> list[str]:
    """POST /invoice-batches: check every draft now (all violations of all
    items, nothing queued if any), then one message per invoice. The tenant
    is the caller's, written by us into each message, with the request's
    `correlation_id` (the consumer logs each message under it)."""
    items = raw.get("invoices") if isinstance(raw, dict) and set(raw) == {"invoices"} else None
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_BATCH:
        raise InvalidInput([Violation("invoices", f"must be the only field: a list of 1 to "
                                      f"{MAX_BATCH} items {{idempotency_key, invoice}}")])
    found: list[Violation] = []
    messages: list[str] = []
    seen: set[str] = set()
    for i, item in enumerate(items):
        where = f"invoices.{i}"
        if not isinstance(item, dict) or set(item) != {"idempotency_key", "invoice"}:
            found.append(Violation(where, "must hold exactly idempotency_key and invoice"))
            continue
        key = item["idempotency_key"]
        problem = key_problem(key) if isinstance(key, str) else f"must be {IDEMPOTENCY_KEY_RULE}"
        if problem is not None:
            found.append(Violation(f"{where}.idempotency_key", problem))
            continue
        if key in seen:
            found.append(Violation(f"{where}.idempotency_key", "appears twice in the batch"))
        seen.add(key)
        draft_raw = item["invoice"]
        if isinstance(draft_raw, dict) and \
                DocumentType.CREDIT_NOTE.named_by(draft_raw.get("type_code")):
            found.append(Violation(f"{where}.invoice.type_code", "credit notes are issued one "
                                   "by one with POST /invoices/{id}/credit-notes"))
            continue
        try:
            check_issue_date(validate_invoice(draft_raw), clock)
        except InvalidInput as refused:
            found += [Violation(f"{where}.invoice.{v.field}", v.rule) for v in refused.violations]
            continue
        fields = {"tenant_id": str(tenant_id), "idempotency_key": key, "invoice": draft_raw}
        if correlation_id is not None:
            fields["correlation_id"] = correlation_id
        message = canonical_json(fields)
        if len(message.encode()) > MAX_MESSAGE_BYTES:
            found.append(Violation(f"{where}.invoice", "too large for a batch: issue it with "
                                   "POST /invoices"))
        messages.append(message)
    if found:
        raise InvalidInput(found)
    queue.send(messages)
    return [str(item["idempotency_key"]) for item in items]
