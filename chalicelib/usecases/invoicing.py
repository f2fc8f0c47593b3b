"""What issuing, archiving and batches of invoices share: their ports, the
outcome of an issue, the crash checkpoints, the issue-date window and the
JSON forms the ledger and the invoice row keep."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from uuid import UUID
from zoneinfo import ZoneInfo

import rfc8785

from chalicelib.domain.errors import InvalidInput, Violation
from chalicelib.ports import (
    Clock,
    InvoiceArchive,
    InvoiceDocuments,
    IssuedInvoice,
    UnitOfWorkFactory,
)

if TYPE_CHECKING:
    from chalicelib.domain.invoice import InvoiceDraft, Totals

PARIS = ZoneInfo("Europe/Paris")
BACKDATING_DAYS = 31

# Each step calls `checkpoint(name)` so tests can inject a crash after it.
Checkpoint = Callable[[str], None]


def no_checkpoint(_step: str) -> None:
    return None


@dataclass(frozen=True)
class InvoicePorts:
    """What issuing needs from the outside world."""

    unit_of_work: UnitOfWorkFactory
    documents: InvoiceDocuments
    archive: InvoiceArchive
    clock: Clock


@dataclass(frozen=True)
class Issued:
    invoice: IssuedInvoice
    created: bool  # False: the answer to a retry of an earlier request
    archived: bool


def known_invoice(unit_of_work: UnitOfWorkFactory, tenant_id: UUID,
                  key: str) -> IssuedInvoice | None:
    """The invoice an earlier request with this key made, if any."""
    with unit_of_work(tenant_id) as uow:
        return uow.invoices.by_idempotency_key(key)


def check_issue_date(draft: InvoiceDraft, clock: Clock) -> None:
    """An invoice is issued when it is made: not in the future, and not more
    than a month back (its 11-year lock, counted from the issue date, must
    lie well ahead; older invoices belong to an import, not to issuing)."""
    today = clock.now().astimezone(PARIS).date()
    if draft.issue_date > today:
        raise InvalidInput([Violation("issue_date", "must not be in the future (today in "
                                      "Paris is " + today.isoformat() + ")")])
    if draft.issue_date < today - timedelta(days=BACKDATING_DAYS):
        raise InvalidInput([Violation("issue_date", f"must be within the last "
                                      f"{BACKDATING_DAYS} days (today in Paris is "
                                      f"{today.isoformat()})")])


def totals_data(totals: Totals) -> dict[str, Any]:
    """The totals as the ledger and the API show them (decimal strings, BT numbers)."""
    return {
        "line_total": str(totals.line_total),
        "allowance_total": str(totals.allowance_total),
        "charge_total": str(totals.charge_total),
        "tax_exclusive_amount": str(totals.tax_exclusive_amount),
        "tax_total": str(totals.tax_total),
        "tax_inclusive_amount": str(totals.tax_inclusive_amount),
        "amount_due": str(totals.amount_due),
        "vat_breakdown": [{"category": g.category.value, "rate": str(g.rate),
                           "taxable_amount": str(g.taxable_amount),
                           "tax_amount": str(g.tax_amount)}
                          for g in totals.vat_breakdown],
    }


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def canonical_json(value: Any) -> str:
    """RFC 8785 text of JSON values (Decimals as their decimal strings)."""
    return rfc8785.dumps(_jsonable(value)).decode()
