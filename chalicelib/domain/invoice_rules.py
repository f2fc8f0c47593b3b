"""The rules across fields: of one part (seller, buyer, a line...) and of the
whole document (dates, franchise, B2B mentions, VAT by category, totals).

Each returns violations, never raises: `validate_invoice` reports them all at once.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from decimal import Decimal

from chalicelib.domain.document_types import DocumentType
from chalicelib.domain.errors import Violation
from chalicelib.domain.invoice_draft import (
    Address,
    Adjustment,
    Buyer,
    ElectronicAddress,
    InvoiceDraft,
    Line,
    Seller,
    VatExemption,
)
from chalicelib.domain.invoice_fields import (
    CATEGORY_NAME,
    CATEGORY_VATEX,
    DIRECTORY_SCHEME,
    EMAIL_SCHEME,
    EXEMPT_CATEGORIES,
    FRANCHISE_MENTION,
    FRANCHISE_VATEX,
    RECOVERY_INDEMNITY,
    RULE_PREFIX,
    SIREN_SCHEMES,
    XML_AMOUNT_LIMIT,
    BuyerKind,
    OperationCategory,
    VatCategory,
)
from chalicelib.domain.invoice_totals import Totals, compute_totals


def _address_rules(address: Address, path: str) -> list[Violation]:
    if address.country_code == "FR" and not re.fullmatch(r"\d{5}", address.postcode):
        return [Violation(f"{path}.postcode", "a French postcode is 5 digits")]
    return []


def _vat_matches_siren(vat_number: str | None, siren: str | None, party: str) -> list[Violation]:
    # FR + 2-character key + SIREN; Monaco's FR numbers (SIREN part 000…) carry no SIREN.
    if (vat_number and siren and vat_number.startswith("FR") and vat_number[4:7] != "000"
            and vat_number[4:] != siren):
        return [Violation(f"{party}.vat_number", f"a French VAT number ends with the SIREN: "
                          f"this one is not the {party}'s SIREN")]
    return []


def _electronic_address_owner(address: ElectronicAddress, siren: str | None,
                              party: str) -> list[Violation]:
    """A SIREN-based address (0225, 0002, 0009) is the party's own: it starts
    with its SIREN. French CTC BR-FR-21 (buyer) and BR-FR-22 (seller, on
    self-billed invoices) ask it of a 0225 address on B2B invoices; a SIREN
    (0002) or SIRET (0009) names its company by definition."""
    if address.scheme not in SIREN_SCHEMES:
        return []
    why = (f"French CTC {'BR-FR-21' if party == 'buyer' else 'BR-FR-22'}"
           if address.scheme == DIRECTORY_SCHEME else "a SIREN or SIRET names its company")
    if siren is None:
        return [Violation(f"{party}.siren", f"required when the {party}'s electronic address "
                          f"has scheme {address.scheme}, which starts with the SIREN ({why})")]
    if not address.value.startswith(siren):
        return [Violation(f"{party}.electronic_address.value", f"an address of scheme "
                          f"{address.scheme} starts with the {party}'s SIREN: this one is "
                          f"another company's ({why})")]
    return []


def _seller_rules(seller: Seller) -> list[Violation]:
    found = _address_rules(seller.address, "seller.address")
    found += _electronic_address_owner(seller.electronic_address, seller.siren, "seller")
    if not seller.siret.startswith(seller.siren):
        found.append(Violation("seller.siret", "must start with the seller's SIREN (SIRET = "
                               "SIREN + 5-digit establishment number)"))
    found += _vat_matches_siren(seller.vat_number, seller.siren, "seller")
    if seller.vat_franchise and seller.vat_number is None and seller.tax_registration_id is None:
        found.append(Violation("seller.tax_registration_id", "required when a seller under the "
                               "VAT franchise has no VAT number: an exempt invoice carries one "
                               "or the other (EN 16931 BR-E-02)"))
    return found


def _buyer_rules(buyer: Buyer) -> list[Violation]:
    found = _address_rules(buyer.address, "buyer.address")
    if buyer.kind is BuyerKind.BUSINESS:
        if buyer.address.country_code == "FR" and buyer.siren is None:
            found.append(Violation("buyer.siren", "required for a French business buyer "
                                   "(e-invoicing reform, BT-47)"))
        else:
            found += _electronic_address_owner(buyer.electronic_address, buyer.siren, "buyer")
        if buyer.address.country_code == "FR" and \
                buyer.electronic_address.scheme != DIRECTORY_SCHEME:
            # A PA treats a French business buyer's invoice as B2B (from a BAR
            # note or from its channel), and BR-FR-21 then wants a 0225 address.
            found.append(Violation("buyer.electronic_address.scheme", "a French business "
                                   "buyer is reached at its address in the French e-invoicing "
                                   "directory: scheme 0225, starting with its SIREN (French "
                                   "CTC BR-FR-21, B2B invoices)"))
    else:
        if buyer.siren is not None:
            found.append(Violation("buyer.siren", "a consumer has no SIREN: a company buyer is "
                                   "of kind business"))
        if buyer.vat_number is not None:
            found.append(Violation("buyer.vat_number", "a consumer has no VAT number: a company "
                                   "buyer is of kind business"))
        if buyer.electronic_address.scheme != EMAIL_SCHEME:
            # The other EAS schemes are ISO 6523 organisation identifiers,
            # national company or VAT numbers, or EDI endpoints.
            found.append(Violation("buyer.electronic_address.scheme", "a consumer's electronic "
                                   "address (BT-49, required by French CTC BR-FR-12) is an "
                                   "email address, scheme EM: the other schemes identify "
                                   "organisations"))
    found += _vat_matches_siren(buyer.vat_number, buyer.siren, "buyer")
    return found


def _tax_rules(category: VatCategory, rate: Decimal, path: str, rule: str) -> list[Violation]:
    """Category against rate, for a line (rule 05), allowance (06) or charge (07)."""
    name = f"category {category.value} ({CATEGORY_NAME[category]})"
    prefix = RULE_PREFIX[category]
    if category is VatCategory.STANDARD and rate == 0:
        return [Violation(f"{path}.vat_rate", f"{name} needs a rate above 0; at 0 the category "
                          f"is Z or an exemption (BR-S-{rule})")]
    if category is not VatCategory.STANDARD and rate != 0:
        return [Violation(f"{path}.vat_rate", f"{name} takes rate 0 (BR-{prefix}-{rule})")]
    return []


def _exemption_rules(exemption: VatExemption, path: str) -> list[Violation]:
    category = exemption.category
    if category not in EXEMPT_CATEGORIES:
        return [Violation(f"{path}.category", f"category {category.value} takes no exemption "
                          f"reason (BR-{RULE_PREFIX[category]}-10)")]
    if exemption.reason is None and exemption.code is None:
        return [Violation(path, f"needs a reason text and/or a VATEX code "
                          f"(BR-{RULE_PREFIX[category]}-10)")]
    expected = CATEGORY_VATEX.get(category)
    if exemption.code and expected and exemption.code != expected:
        return [Violation(f"{path}.code", f"category {category.value} takes the code {expected}")]
    if exemption.code in CATEGORY_VATEX.values() and category is VatCategory.EXEMPT:
        return [Violation(f"{path}.code", "this code belongs to another category than E")]
    return []


def part_rules(seller: Seller | None, buyer: Buyer | None,
                delivery_address: Address | None,
                lines: Iterable[tuple[int, Line]], allowances: Iterable[tuple[int, Adjustment]],
                charges: Iterable[tuple[int, Adjustment]],
                exemptions: Iterable[tuple[int, VatExemption]]) -> list[Violation]:
    """The rules within one part of the draft, for each part given."""
    found: list[Violation] = []
    if seller is not None:
        found += _seller_rules(seller)
    if buyer is not None:
        found += _buyer_rules(buyer)
    if delivery_address is not None:
        found += _address_rules(delivery_address, "delivery_address")
    for i, line in lines:
        found += _tax_rules(line.vat_category, line.vat_rate, f"lines.{i}", "05")
    for i, allowance in allowances:
        found += _tax_rules(allowance.vat_category, allowance.vat_rate, f"allowances.{i}", "06")
    for i, charge in charges:
        found += _tax_rules(charge.vat_category, charge.vat_rate, f"charges.{i}", "07")
    for i, exemption in exemptions:
        found += _exemption_rules(exemption, f"vat_exemptions.{i}")
    return found


def _taxed_items(draft: InvoiceDraft) -> list[tuple[VatCategory, str]]:
    return [*((line.vat_category, f"lines.{i}") for i, line in enumerate(draft.lines)),
            *((a.vat_category, f"allowances.{i}") for i, a in enumerate(draft.allowances)),
            *((c.vat_category, f"charges.{i}") for i, c in enumerate(draft.charges))]


def document_rules(draft: InvoiceDraft) -> list[Violation]:
    """The rules across parts: they need the whole draft well formed."""
    found: list[Violation] = []
    seller, buyer = draft.seller, draft.buyer
    business = buyer.kind is BuyerKind.BUSINESS

    if draft.due_date < draft.issue_date:
        found.append(Violation("due_date", "must not be before the issue date"))
    preceding = draft.preceding_invoice
    credit_note = draft.document_type is DocumentType.CREDIT_NOTE
    if credit_note and preceding is None:
        found.append(Violation("preceding_invoice", "a credit note (381) must reference the "
                               "invoice it credits (BT-25)"))
    if credit_note and preceding and preceding.issue_date is None:
        found.append(Violation("preceding_invoice.issue_date", "required for a credit note: "
                               "the date of the invoice it credits (BT-26; French CTC "
                               "BR-FR-CO-05)"))
    if preceding and preceding.issue_date and preceding.issue_date > draft.issue_date:
        found.append(Violation("preceding_invoice.issue_date", "must not be after the issue date"))

    if business:
        if draft.late_payment_penalty_rate is None:
            found.append(Violation("late_payment_penalty_rate", "required for a business buyer "
                                   "(C. com. L441-9, L441-10)"))
        if draft.recovery_indemnity is None:
            found.append(Violation("recovery_indemnity", "required for a business buyer: the "
                                   "40.00 EUR fixed recovery indemnity (C. com. L441-10, D441-5)"))
        elif draft.recovery_indemnity != RECOVERY_INDEMNITY:
            found.append(Violation("recovery_indemnity", "must be 40.00: the fixed recovery "
                                   "indemnity (C. com. D441-5)"))
    elif draft.recovery_indemnity is not None:
        found.append(Violation("recovery_indemnity", "applies to business buyers only "
                               "(C. com. L441-10)"))

    items = _taxed_items(draft)
    used = {category for category, _ in items}
    exemptions: dict[VatCategory, VatExemption] = {}
    for i, exemption in enumerate(draft.vat_exemptions):
        if exemption.category in exemptions:
            found.append(Violation(f"vat_exemptions.{i}.category", "appears twice: one exemption "
                                   "per category, as there is one VAT breakdown per category"))
        elif exemption.category in EXEMPT_CATEGORIES and exemption.category not in used:
            found.append(Violation(f"vat_exemptions.{i}.category", "no line, allowance or charge "
                                   "has this category"))
        exemptions.setdefault(exemption.category, exemption)

    if seller.vat_franchise:
        for category, path in items:
            if category is not VatCategory.EXEMPT:
                found.append(Violation(f"{path}.vat_category", "a seller under the VAT franchise "
                                       "(CGI art. 293 B) invoices everything as E (exempt) at "
                                       "rate 0"))
        franchise = exemptions.get(VatCategory.EXEMPT)
        if franchise is None or franchise.reason != FRANCHISE_MENTION:
            where = (f"vat_exemptions.{draft.vat_exemptions.index(franchise)}.reason"
                     if franchise else "vat_exemptions")
            found.append(Violation(where, f"under the VAT franchise the exemption reason of "
                                   f"category E is exactly \"{FRANCHISE_MENTION}\" "
                                   f"(CGI art. 293 B, 293 E)"))
        if franchise and franchise.code not in (None, FRANCHISE_VATEX):
            found.append(Violation(f"vat_exemptions.{draft.vat_exemptions.index(franchise)}.code",
                                   f"under the VAT franchise the code is {FRANCHISE_VATEX}"))
        if draft.vat_on_debits:
            found.append(Violation("vat_on_debits", "a seller under the VAT franchise charges "
                                   "no VAT"))

    for category in sorted(used & EXEMPT_CATEGORIES, key=list(VatCategory).index):
        if category not in exemptions and not (
                category is VatCategory.EXEMPT and seller.vat_franchise):
            found.append(Violation("vat_exemptions", f"category {category.value} "
                                   f"({CATEGORY_NAME[category]}) needs an exemption reason "
                                   f"text and/or VATEX code (BR-{RULE_PREFIX[category]}-10)"))

    if VatCategory.NOT_SUBJECT in used:
        for category, path in items:
            if category is not VatCategory.NOT_SUBJECT:
                found.append(Violation(f"{path}.vat_category", "category O (not subject to VAT) "
                                       "cannot be mixed with other categories (BR-O-11..14)"))
        if seller.vat_number is not None:
            found.append(Violation("seller.vat_number", "must be absent on an invoice not "
                                   "subject to VAT (BR-O-02)"))
        if buyer.vat_number is not None:
            found.append(Violation("buyer.vat_number", "must be absent on an invoice not "
                                   "subject to VAT (BR-O-02)"))
    elif seller.vat_number is None and not seller.vat_franchise:
        found.append(Violation("seller.vat_number", "required unless the seller is under the "
                               "VAT franchise (CGI ann. II art. 242 nonies A; BR-S-02)"))

    if VatCategory.INTRA_COMMUNITY in used:
        if buyer.vat_number is None:
            found.append(Violation("buyer.vat_number", "required for an intra-community supply "
                                   "(category K; CGI ann. II art. 242 nonies A; BR-IC-02)"))
        elif buyer.vat_number.startswith("FR"):
            found.append(Violation("buyer.vat_number", "an intra-community supply (category K) "
                                   "is made to a buyer identified in another member state"))
        if draft.delivery_date is None:
            found.append(Violation("delivery_date", "required for an intra-community supply "
                                   "(category K; BR-IC-11)"))
        if draft.delivery_address is None:
            found.append(Violation("delivery_address", "required for an intra-community supply: "
                                   "the country of delivery (category K; BR-IC-12)"))
    if VatCategory.REVERSE_CHARGE in used and buyer.vat_number is None:
        found.append(Violation("buyer.vat_number", "required for a reverse-charge invoice "
                               "(category AE; CGI ann. II art. 242 nonies A; BR-AE-02)"))

    if draft.vat_on_debits and draft.operation_category is OperationCategory.GOODS:
        found.append(Violation("vat_on_debits", "the option for VAT on debits applies to "
                               "services, not to goods only"))

    totals = compute_totals(draft)
    if totals.tax_exclusive_amount < 0:
        found.append(Violation("lines", "the total without VAT must not be negative: credit an "
                               "amount with a credit note (381)"))
    found += _amount_size_rules(totals)
    return found


def _amount_size_rules(totals: Totals) -> list[Violation]:
    """Every amount the XML states fits in 19 characters (BR-FR-DEC-01)."""
    limit = f"{XML_AMOUNT_LIMIT:,.0f}".replace(",", " ")
    found = [Violation(f"lines.{i}", f"the line's net amount (quantity × unit price) must be "
                       f"less than {limit} in absolute value: an amount has at most 19 digits "
                       f"(French CTC BR-FR-DEC-01)")
             for i, net in enumerate(totals.line_net_amounts) if abs(net) >= XML_AMOUNT_LIMIT]
    totals_amounts = [totals.line_total, totals.allowance_total, totals.charge_total,
                      totals.tax_exclusive_amount, totals.tax_total,
                      totals.tax_inclusive_amount, totals.amount_due,
                      *(a for g in totals.vat_breakdown for a in (g.taxable_amount,
                                                                  g.tax_amount))]
    if not found and any(abs(a) >= XML_AMOUNT_LIMIT for a in totals_amounts):
        found.append(Violation("lines", f"the invoice's totals must be less than {limit} in "
                               f"absolute value: an amount has at most 19 digits (French CTC "
                               f"BR-FR-DEC-01)"))
    return found
