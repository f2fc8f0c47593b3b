"""Builders shared by the tests: invoice drafts and their parts, injected
crashes, ledger entries and closings. Plain functions returning plain data;
no test module imports another, they all import from here."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from chalicelib.domain.document_types import DocumentType
from chalicelib.domain.invoice import FRANCHISE_MENTION
from chalicelib.domain.kinds import CREDIT_NOTE_ISSUED, FISCAL_KINDS, SERVICE_KINDS
from chalicelib.domain.ledger import canonical_payload, normalise_data
from chalicelib.ports import ClosingSigner, IssuedInvoice, UnitOfWork, UnitOfWorkFactory
from chalicelib.usecases.append_ledger import AppendRequest, append_ledger
from chalicelib.usecases.invoicing import canonical_json
from chalicelib.usecases.seal_period import ClosingPorts
from tests.fakes import FrozenClock

if TYPE_CHECKING:
    from chalicelib.adapters.postgres import Database

# ---------------------------------------------------------------- invoice drafts

SELLER_SIREN = "732829320"
SELLER_SIRET = "73282932000017"
SELLER_VAT = "FR44732829320"
IBAN = "FR7630006000011234567890189"
BUYER_SIREN = "552100554"
BUYER_VAT = "FR96552100554"
OTHER_SIREN = "443061841"  # valid, but not the seller's
OTHER_SIRET = "44306184100013"
OTHER_VAT = "FR64443061841"
GERMAN_VAT = "DE136695976"
CONSUMER_EMAIL = "marie.martin@example.fr"
FRANCHISE_E = {"category": "E", "reason": FRANCHISE_MENTION}

Raw = dict[str, Any]


def address(postcode: str = "75002", city: str = "Paris", country: str = "FR") -> Raw:
    return {"line1": "1 rue de la Paix", "postcode": postcode, "city": city,
            "country_code": country}


def line(quantity: Any = "2", unit_price: Any = "50.00", category: str = "S",
         rate: Any = "20", description: str = "Conseil") -> Raw:
    return {"description": description, "quantity": quantity, "unit_price": unit_price,
            "vat_category": category, "vat_rate": rate}


def invoice(*lines: Raw, **fields: Any) -> Raw:
    """A valid B2B invoice from a French company to a French company."""
    raw: Raw = {
        "issue_date": "2026-03-02",
        "due_date": "2026-04-01",
        "seller": {"name": "Atelier Durand SAS", "address": address(),
                   "electronic_address": {"scheme": "0225", "value": SELLER_SIREN},
                   "siren": SELLER_SIREN, "siret": SELLER_SIRET, "vat_number": SELLER_VAT,
                   "iban": IBAN, "legal_form": "SAS", "share_capital": "10000"},
        "buyer": {"name": "Client SA", "kind": "business", "address": address("69001", "Lyon"),
                  "electronic_address": {"scheme": "0225", "value": BUYER_SIREN},
                  "siren": BUYER_SIREN, "vat_number": BUYER_VAT},
        "operation_category": "services",
        "lines": list(lines) or [line()],
        "payment_terms": "Virement à 30 jours",
        "late_payment_penalty_rate": "12.15",
        "recovery_indemnity": "40",
        "discount_conditions": "néant",
    }
    raw.update(fields)
    return raw


def consumer(**fields: Any) -> Raw:
    """A valid B2C invoice."""
    raw = invoice(**fields)
    raw["buyer"] = {"name": "Marie Martin", "kind": "consumer",
                    "address": address("33000", "Bordeaux"),
                    "electronic_address": {"scheme": "EM", "value": CONSUMER_EMAIL}}
    del raw["late_payment_penalty_rate"], raw["recovery_indemnity"]
    return raw


def franchise(**fields: Any) -> Raw:
    """A valid invoice from a micro-entrepreneur under the VAT franchise."""
    raw = invoice(line("1", "300", "E", "0"), vat_exemptions=[FRANCHISE_E], **fields)
    raw["seller"]["vat_franchise"] = True
    return raw


def intra_community() -> Raw:
    raw = invoice(line("10", "25.00", "K", "0"), operation_category="goods",
                  delivery_date="2026-02-27", delivery_address=address("10115", "Berlin", "DE"),
                  vat_exemptions=[{"category": "K", "reason": "Exonération de TVA, article "
                                   "262 ter, I du CGI", "code": "VATEX-EU-IC"}])
    raw["buyer"] = {"name": "Kunde GmbH", "kind": "business",
                    "address": address("10115", "Berlin", "DE"),
                    "electronic_address": {"scheme": "9930", "value": GERMAN_VAT},
                    "vat_number": GERMAN_VAT}
    return raw


def not_subject() -> Raw:
    raw = invoice(line("1", "80", "O", "0"),
                  vat_exemptions=[{"category": "O", "code": "VATEX-EU-O"}])
    del raw["seller"]["vat_number"], raw["buyer"]["vat_number"]
    return raw


def recent(**fields: Any) -> Raw:
    """A valid B2B invoice dated before the frozen clock's day."""
    return invoice(**{"issue_date": "2026-11-20", "due_date": "2026-12-20", **fields})


def quote_draft(**fields: Any) -> Raw:
    """A valid invoice draft without its dates: what a quote carries."""
    return {k: v for k, v in recent(**fields).items() if k not in ("issue_date", "due_date")}


def quote_request(valid_until: str = "2026-12-31", **fields: Any) -> Raw:
    """The body of POST /quotes."""
    return {"valid_until": valid_until, "invoice": quote_draft(**fields)}


# ---------------------------------------------------------------- injected crashes

class Crash(BaseException):
    """The injected failure: the process dies (not an error the code handles)."""


def crash_at(step: str) -> Callable[[str], None]:
    def checkpoint(name: str) -> None:
        if name == step:
            raise Crash(step)
    return checkpoint


# ---------------------------------------------------------------- ledger entries, closings

def at(day: int, hour: int = 10, month: int = 11) -> datetime:
    """A moment in 2026 (UTC), for entries recorded on a given day."""
    return datetime(2026, month, day, hour, tzinfo=UTC)


def sale(number: str, net: str, rate: str = "20.00") -> dict[str, Any]:
    """The business data of an `invoice.issued` entry: what closings sum."""
    vat = str((Decimal(net) * Decimal(rate) / 100).quantize(Decimal("0.01")))
    gross = str(Decimal(net) + Decimal(vat))
    return {"invoice_number": number, "totals": {
        "tax_exclusive_amount": net, "tax_total": vat, "tax_inclusive_amount": gross,
        "vat_breakdown": [{"category": "S", "rate": rate, "taxable_amount": net,
                           "tax_amount": vat}]}}


def backed_entry(uow: UnitOfWork, kind: str, data: dict[str, Any], when: datetime, *,
                 series: str | None = None, issue_date: date | None = None,
                 key: str | None = None) -> IssuedInvoice:
    """A fiscal entry written the way issuing writes it, in the caller's
    transaction: the series' next number, the entry carrying `data` plus the
    invoice's own fields, and the invoice row recording it (the engine refuses
    a fiscal entry no invoice backs, 0021). A credit note credits the tenant's
    latest invoice. Returns the invoice (its ledger_seq is the entry's)."""
    credit = kind == CREDIT_NOTE_ISSUED
    credited = None
    if credit:
        credited = next((i for i in uow.invoices.latest(1000)
                         if i.type_code == DocumentType.INVOICE), None)
        assert credited is not None, "a credit note credits an invoice: record one first"
    series = series or ("A" if credit else "F")
    issued_on = issue_date or when.date()
    number = uow.invoices.next_number(series)
    invoice_id = uuid.uuid4()
    label = str(data.get("invoice_number", f"{series}-{number:06d}"))
    digest = hashlib.sha256(f"{invoice_id}".encode()).hexdigest()
    doc_type = DocumentType.CREDIT_NOTE if credit else DocumentType.INVOICE
    full = {**data, "invoice_id": str(invoice_id), "invoice_number": label, "series": series,
            "number": number, "type_code": doc_type.value,
            "issue_date": issued_on.isoformat(), "totals": data.get("totals", {}),
            "pdf_sha256": digest, "xml_sha256": digest}
    if credited is not None:
        full["credited_invoice_number"] = credited.invoice_number
    normalised = normalise_data(full)
    appended = uow.ledger.append(kind, canonical_payload(normalised, when), None)
    assert appended is not None
    invoice = IssuedInvoice(
        invoice_id, series, number, label, doc_type,
        credited.invoice_id if credited else None, issued_on, key or f"test:{invoice_id}",
        bytes.fromhex(digest), "{}", canonical_json(normalised["totals"]),
        bytes.fromhex(digest), bytes.fromhex(digest), appended[0].seq)
    uow.invoices.add(invoice)
    return invoice


def append_entry(unit_of_work: UnitOfWorkFactory, tenant: uuid.UUID, when: datetime,
                 kind: str, data: dict[str, Any]) -> None:
    """One entry appended to the tenant's chain, recorded at `when`, by the path
    that may write its kind: the service's kinds as their use cases write them
    (a fiscal one with its invoice), any other through the generic append."""
    if kind not in SERVICE_KINDS:
        append_ledger(AppendRequest(tenant_id=tenant, kind=kind, payload=data),
                      unit_of_work, FrozenClock(when))
        return
    with unit_of_work(tenant) as uow:
        if kind in FISCAL_KINDS:
            backed_entry(uow, kind, data, when)
        else:
            assert uow.ledger.append(kind, canonical_payload(normalise_data(data), when),
                                     None) is not None


def record(database: Database, tenant: uuid.UUID, when: datetime, kind: str,
           data: dict[str, Any]) -> None:
    """One entry appended to the tenant's chain, recorded at `when` (append_entry)."""
    append_entry(database.unit_of_work, tenant, when, kind, data)


def closing_ports(database: Database, signer: ClosingSigner, now: datetime) -> ClosingPorts:
    """Sealing's ports on the real database, its clock frozen at `now`."""
    return ClosingPorts(database.unit_of_work, signer, FrozenClock(now))


def pinned(*signers: ClosingSigner) -> dict[str, bytes]:
    """The public keys of these signers, as configuration pins them."""
    return {signer.key_id: signer.public_key for signer in signers}


def attack(conn: Any, sql: str, **params: Any) -> str | None:
    """The SQLSTATE the engine refuses the statement (and its commit) with, or None."""
    from pg8000.exceptions import DatabaseError

    from chalicelib.adapters.postgres import sqlstate

    try:
        conn.run(sql, **params)
        conn.run("COMMIT")
    except DatabaseError as exc:
        return sqlstate(exc)
    return None
