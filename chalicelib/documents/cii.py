"""The CII XML of an invoice, Factur-X profile EN 16931, built element by element.

Built with lxml rather than `facturx.generate_cii_xml`: the mapping is short,
every amount is written from the Decimal we computed (never re-rounded or
passed through a float), and the element order is the XSD's, checked by it.
The same draft, number and totals give the same bytes.

The French mentions (CGI ann. II art. 242 nonies A, C. com. L441-9) go into
notes (BT-22) with the subject codes (BT-21) French Factur-X practice uses:
PMT the recovery indemnity, PMD the late-payment penalties, AAB the discount
conditions, TXD the VAT mentions (franchise, option for VAT on debits). Their
sentences are the ones the PDF prints (`legal_notes`). The French CTC rules
want PMT, PMD and AAB on every invoice (BR-FR-05), each at most once, and TXD
at most once (BR-FR-06): for a consumer, to whom C. com. L441-10 does not
apply, PMT and PMD say so rather than state a penalty or an indemnity.

The parties' electronic addresses (BT-34, BT-49; French CTC BR-FR-13,
BR-FR-12) are `ram:URIUniversalCommunication/ram:URIID` with their scheme
as `@schemeID`, after the postal address, as the CII schema orders them.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from decimal import Decimal
from typing import Any, Final

from lxml import etree
from schwifty import IBAN

from chalicelib.domain.invoice import (
    FRANCHISE_MENTION,
    Address,
    Adjustment,
    BuyerKind,
    ElectronicAddress,
    InvoiceDraft,
    OperationCategory,
    Totals,
    VatCategory,
    VatGroup,
)

RSM: Final = "urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100"
RAM: Final = "urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100"
UDT: Final = "urn:un:unece:uncefact:data:standard:UnqualifiedDataType:100"
QDT: Final = "urn:un:unece:uncefact:data:standard:QualifiedDataType:100"
NAMESPACES: Final = {"rsm": RSM, "qdt": QDT, "ram": RAM, "udt": UDT}
EN16931: Final = "urn:cen.eu:en16931:2017"  # BT-24 of the Factur-X EN 16931 profile

SIREN_SCHEME: Final = "0002"  # ISO 6523 ICD: SIRENE
SIRET_SCHEME: Final = "0009"  # ISO 6523 ICD: SIRET
SEPA_CREDIT_TRANSFER: Final = "58"  # UNCL4461
CREDIT_TRANSFER: Final = "30"  # UNCL4461, outside the SEPA zone
VAT_ON_INVOICE_DATE: Final = "5"  # BT-8 (UNTDID 2005 subset): VAT due on the invoice date

# The e-invoicing reform's "cadre de facturation" (BT-23) for a plain invoice
# of goods (B1), services (S1) or both (M1).
BUSINESS_PROCESS: Final = {
    OperationCategory.GOODS: "B1",
    OperationCategory.SERVICES: "S1",
    OperationCategory.BOTH: "M1",
}
VAT_ON_DEBITS_MENTION: Final = "Option pour le paiement de la taxe d'après les débits"
# BR-FR-05 asks for PMD and PMT notes on every invoice; for a consumer they
# say that the mentions of C. com. L441-10 (and D441-5) do not apply.
CONSUMER_PENALTIES_MENTION: Final = ("Pénalités de retard de l'art. L441-10 du code de "
                                     "commerce : non applicables, client non professionnel")
CONSUMER_INDEMNITY_MENTION: Final = ("Indemnité forfaitaire pour frais de recouvrement "
                                     "(C. com. art. L441-10 et D441-5) : non applicable, "
                                     "client non professionnel")

_NBSP: Final = "\u00a0"


# ---------------------------------------------------------------- French text

def french_amount(value: Decimal) -> str:
    """1234.5 -> "1 234,50 €" (no-break spaces, exact: Decimal formatting, no float)."""
    text = f"{value.quantize(Decimal('0.01')):,.2f}"
    return text.replace(",", _NBSP).replace(".", ",") + f"{_NBSP}€"


def french_number(value: Decimal) -> str:
    """A quantity, price or rate as written in French, without trailing zeros:
    2.0000 -> "2", 5.50 -> "5,5", 1000 -> "1 000"."""
    text = f"{value.normalize():,f}"
    return text.replace(",", _NBSP).replace(".", ",")


def french_date(value: date) -> str:
    return f"{value:%d/%m/%Y}"


def legal_notes(draft: InvoiceDraft) -> list[tuple[str, str]]:
    """The French mentions as (subject code, sentence), in a fixed order:
    PMD, PMT and AAB exactly once each (BR-FR-05, BR-FR-06), TXD at most once
    (BR-FR-06: the model refuses the option for VAT on debits under the
    franchise, the only two TXD mentions)."""
    notes: list[tuple[str, str]] = []
    if draft.seller.vat_franchise:
        notes.append(("TXD", FRANCHISE_MENTION))
    if draft.vat_on_debits:
        notes.append(("TXD", VAT_ON_DEBITS_MENTION))
    consumer = draft.buyer.kind is BuyerKind.CONSUMER
    if draft.late_payment_penalty_rate is not None:  # always for a business buyer
        notes.append(("PMD", f"Pénalités de retard : taux annuel de "
                             f"{french_number(draft.late_payment_penalty_rate)}{_NBSP}%, "
                             f"exigibles dès le lendemain de la date d'échéance"))
    elif consumer:
        notes.append(("PMD", CONSUMER_PENALTIES_MENTION))
    if draft.recovery_indemnity is not None:  # always for a business buyer, never else
        notes.append(("PMT", f"Indemnité forfaitaire pour frais de recouvrement : "
                             f"{french_amount(draft.recovery_indemnity)} "
                             f"(C. com. art. L441-10 et D441-5)"))
    elif consumer:
        notes.append(("PMT", CONSUMER_INDEMNITY_MENTION))
    notes.append(("AAB", f"Escompte pour paiement anticipé : {draft.discount_conditions}"))
    return notes


def seller_legal_information(draft: InvoiceDraft) -> str | None:
    """BT-33: legal form and share capital, "SAS au capital de 10 000,00 €"."""
    form, capital = draft.seller.legal_form, draft.seller.share_capital
    if form and capital is not None:
        return f"{form} au capital de {french_amount(capital)}"
    if capital is not None:
        return f"Capital social : {french_amount(capital)}"
    return form


# ---------------------------------------------------------------- XML helpers

def _tag(name: str) -> str:
    prefix, local = name.split(":")
    return f"{{{NAMESPACES[prefix]}}}{local}"


def _add(parent: Any, name: str, text: str | None = None, **attributes: str) -> Any:
    """Append the element `name` ("ram:ID") with its text and attributes."""
    element = etree.SubElement(parent, _tag(name), attributes)
    if text is not None:
        element.text = text
    return element


def _decimal(value: Decimal) -> str:
    """A Decimal exactly as it is, never in exponent notation."""
    return f"{value:f}"


def _amount(value: Decimal) -> str:
    if value.as_tuple().exponent != -2:
        raise ValueError("an amount in the XML has exactly 2 decimals")
    return f"{value:f}"


def _date(parent: Any, name: str, value: date, qualified: bool = False) -> None:
    """A date in format 102 (YYYYMMDD) under `name`."""
    holder = _add(parent, name)
    _add(holder, "qdt:DateTimeString" if qualified else "udt:DateTimeString",
         f"{value:%Y%m%d}", format="102")


def _has_rate(category: VatCategory) -> bool:
    return category is not VatCategory.NOT_SUBJECT  # BR-O-05..09: no rate for O


def _address(parent: Any, address: Address) -> None:
    holder = _add(parent, "ram:PostalTradeAddress")
    _add(holder, "ram:PostcodeCode", address.postcode)
    _add(holder, "ram:LineOne", address.line1)
    if address.line2:
        _add(holder, "ram:LineTwo", address.line2)
    if address.line3:
        _add(holder, "ram:LineThree", address.line3)
    _add(holder, "ram:CityName", address.city)
    _add(holder, "ram:CountryID", address.country_code)


def _electronic_address(party: Any, address: ElectronicAddress) -> None:
    holder = _add(party, "ram:URIUniversalCommunication")
    _add(holder, "ram:URIID", address.value, schemeID=address.scheme)


def _tax_registrations(party: Any, vat_number: str | None, tax_id: str | None) -> None:
    if vat_number:
        _add(_add(party, "ram:SpecifiedTaxRegistration"), "ram:ID", vat_number, schemeID="VA")
    if tax_id:
        _add(_add(party, "ram:SpecifiedTaxRegistration"), "ram:ID", tax_id, schemeID="FC")


# ---------------------------------------------------------------- the document

def _context(root: Any, draft: InvoiceDraft) -> None:
    context = _add(root, "rsm:ExchangedDocumentContext")
    process = _add(context, "ram:BusinessProcessSpecifiedDocumentContextParameter")
    _add(process, "ram:ID", BUSINESS_PROCESS[draft.operation_category])  # BT-23
    _add(_add(context, "ram:GuidelineSpecifiedDocumentContextParameter"), "ram:ID", EN16931)


def _header(root: Any, draft: InvoiceDraft, number: str) -> None:
    document = _add(root, "rsm:ExchangedDocument")
    _add(document, "ram:ID", number)  # BT-1
    _add(document, "ram:TypeCode", draft.document_type.value)  # BT-3
    _date(document, "ram:IssueDateTime", draft.issue_date)  # BT-2
    notes: list[tuple[str | None, str]] = [(None, text) for text in draft.notes]
    for subject, text in [*notes, *legal_notes(draft)]:  # BG-1
        note = _add(document, "ram:IncludedNote")
        _add(note, "ram:Content", text)  # BT-22
        if subject:
            _add(note, "ram:SubjectCode", subject)  # BT-21


def _lines(transaction: Any, draft: InvoiceDraft, totals: Totals) -> None:
    for index, (line, net) in enumerate(zip(draft.lines, totals.line_net_amounts,
                                            strict=True), start=1):
        item = _add(transaction, "ram:IncludedSupplyChainTradeLineItem")  # BG-25
        _add(_add(item, "ram:AssociatedDocumentLineDocument"), "ram:LineID", str(index))
        _add(_add(item, "ram:SpecifiedTradeProduct"), "ram:Name", line.description)  # BT-153
        agreement = _add(item, "ram:SpecifiedLineTradeAgreement")
        price = _add(agreement, "ram:NetPriceProductTradePrice")
        _add(price, "ram:ChargeAmount", _decimal(line.unit_price))  # BT-146
        delivery = _add(item, "ram:SpecifiedLineTradeDelivery")
        _add(delivery, "ram:BilledQuantity", _decimal(line.quantity),
             unitCode=line.unit_code)  # BT-129, BT-130
        settlement = _add(item, "ram:SpecifiedLineTradeSettlement")
        tax = _add(settlement, "ram:ApplicableTradeTax")
        _add(tax, "ram:TypeCode", "VAT")
        _add(tax, "ram:CategoryCode", line.vat_category.value)  # BT-151
        if _has_rate(line.vat_category):
            _add(tax, "ram:RateApplicablePercent", _decimal(line.vat_rate))  # BT-152
        summation = _add(settlement, "ram:SpecifiedTradeSettlementLineMonetarySummation")
        _add(summation, "ram:LineTotalAmount", _amount(net))  # BT-131


def _agreement(transaction: Any, draft: InvoiceDraft) -> None:
    agreement = _add(transaction, "ram:ApplicableHeaderTradeAgreement")
    seller = draft.seller
    party = _add(agreement, "ram:SellerTradeParty")  # BG-4
    _add(party, "ram:GlobalID", seller.siret, schemeID=SIRET_SCHEME)  # BT-29
    _add(party, "ram:Name", seller.name)  # BT-27
    legal_information = seller_legal_information(draft)
    if legal_information:
        _add(party, "ram:Description", legal_information)  # BT-33
    organization = _add(party, "ram:SpecifiedLegalOrganization")
    _add(organization, "ram:ID", seller.siren, schemeID=SIREN_SCHEME)  # BT-30
    _address(party, seller.address)  # BG-5
    _electronic_address(party, seller.electronic_address)  # BT-34, BT-34-1
    _tax_registrations(party, seller.vat_number, seller.tax_registration_id)  # BT-31, BT-32

    buyer = draft.buyer
    party = _add(agreement, "ram:BuyerTradeParty")  # BG-7
    _add(party, "ram:Name", buyer.name)  # BT-44
    if buyer.siren:
        organization = _add(party, "ram:SpecifiedLegalOrganization")
        _add(organization, "ram:ID", buyer.siren, schemeID=SIREN_SCHEME)  # BT-47
    _address(party, buyer.address)  # BG-8
    _electronic_address(party, buyer.electronic_address)  # BT-49, BT-49-1
    _tax_registrations(party, buyer.vat_number, None)  # BT-48


def _delivery(transaction: Any, draft: InvoiceDraft) -> None:
    delivery = _add(transaction, "ram:ApplicableHeaderTradeDelivery")
    if draft.delivery_address is not None:
        _address(_add(delivery, "ram:ShipToTradeParty"), draft.delivery_address)  # BG-15
    if draft.delivery_date is not None:
        event = _add(delivery, "ram:ActualDeliverySupplyChainEvent")
        _date(event, "ram:OccurrenceDateTime", draft.delivery_date)  # BT-72


def _vat_group(settlement: Any, group: VatGroup, vat_on_debits: bool) -> None:
    tax = _add(settlement, "ram:ApplicableTradeTax")  # BG-23
    _add(tax, "ram:CalculatedAmount", _amount(group.tax_amount))  # BT-117
    _add(tax, "ram:TypeCode", "VAT")
    if group.exemption_reason:
        _add(tax, "ram:ExemptionReason", group.exemption_reason)  # BT-120
    _add(tax, "ram:BasisAmount", _amount(group.taxable_amount))  # BT-116
    _add(tax, "ram:CategoryCode", group.category.value)  # BT-118
    if group.exemption_reason_code:
        _add(tax, "ram:ExemptionReasonCode", group.exemption_reason_code)  # BT-121
    if vat_on_debits:
        _add(tax, "ram:DueDateTypeCode", VAT_ON_INVOICE_DATE)  # BT-8
    if _has_rate(group.category):
        _add(tax, "ram:RateApplicablePercent", _decimal(group.rate))  # BT-119


def _adjustments(settlement: Any, adjustments: Iterable[Adjustment], charge: bool) -> None:
    for adjustment in adjustments:  # BG-20 (allowances), BG-21 (charges)
        element = _add(settlement, "ram:SpecifiedTradeAllowanceCharge")
        _add(_add(element, "ram:ChargeIndicator"), "udt:Indicator", str(charge).lower())
        _add(element, "ram:ActualAmount", _amount(adjustment.amount))  # BT-92, BT-99
        _add(element, "ram:Reason", adjustment.reason)  # BT-97, BT-104
        tax = _add(element, "ram:CategoryTradeTax")
        _add(tax, "ram:TypeCode", "VAT")
        _add(tax, "ram:CategoryCode", adjustment.vat_category.value)  # BT-95, BT-102
        if _has_rate(adjustment.vat_category):
            _add(tax, "ram:RateApplicablePercent", _decimal(adjustment.vat_rate))  # BT-96/103


def payment_means_code(iban: str) -> str:
    """58 (SEPA credit transfer) for an account in the SEPA zone, else 30."""
    return SEPA_CREDIT_TRANSFER if IBAN(iban).in_sepa_zone else CREDIT_TRANSFER


def _settlement(transaction: Any, draft: InvoiceDraft, totals: Totals) -> None:
    settlement = _add(transaction, "ram:ApplicableHeaderTradeSettlement")
    _add(settlement, "ram:InvoiceCurrencyCode", draft.currency)  # BT-5
    if draft.seller.iban:  # BG-16; without an account, no payment instruction at all
        means = _add(settlement, "ram:SpecifiedTradeSettlementPaymentMeans")
        _add(means, "ram:TypeCode", payment_means_code(draft.seller.iban))  # BT-81
        account = _add(means, "ram:PayeePartyCreditorFinancialAccount")
        _add(account, "ram:IBANID", draft.seller.iban)  # BT-84
    for group in totals.vat_breakdown:
        _vat_group(settlement, group, draft.vat_on_debits)
    _adjustments(settlement, draft.allowances, charge=False)
    _adjustments(settlement, draft.charges, charge=True)
    terms = _add(settlement, "ram:SpecifiedTradePaymentTerms")
    if draft.payment_terms:
        _add(terms, "ram:Description", draft.payment_terms)  # BT-20
    _date(terms, "ram:DueDateDateTime", draft.due_date)  # BT-9

    summation = _add(settlement, "ram:SpecifiedTradeSettlementHeaderMonetarySummation")  # BG-22
    _add(summation, "ram:LineTotalAmount", _amount(totals.line_total))  # BT-106
    _add(summation, "ram:ChargeTotalAmount", _amount(totals.charge_total))  # BT-108
    _add(summation, "ram:AllowanceTotalAmount", _amount(totals.allowance_total))  # BT-107
    _add(summation, "ram:TaxBasisTotalAmount", _amount(totals.tax_exclusive_amount))  # BT-109
    _add(summation, "ram:TaxTotalAmount", _amount(totals.tax_total),
         currencyID=draft.currency)  # BT-110
    _add(summation, "ram:RoundingAmount", _amount(totals.rounding_amount))  # BT-114
    _add(summation, "ram:GrandTotalAmount", _amount(totals.tax_inclusive_amount))  # BT-112
    _add(summation, "ram:TotalPrepaidAmount", _amount(totals.paid_amount))  # BT-113
    _add(summation, "ram:DuePayableAmount", _amount(totals.amount_due))  # BT-115

    preceding = draft.preceding_invoice
    if preceding is not None:  # BG-3
        reference = _add(settlement, "ram:InvoiceReferencedDocument")
        _add(reference, "ram:IssuerAssignedID", preceding.number)  # BT-25
        if preceding.issue_date is not None:
            _date(reference, "ram:FormattedIssueDateTime", preceding.issue_date,
                  qualified=True)  # BT-26


def invoice_xml(draft: InvoiceDraft, number: str, totals: Totals) -> bytes:
    """The CII XML (UTF-8) of a valid draft under its number, with the totals
    `compute_totals(draft)` gave."""
    if len(totals.line_net_amounts) != len(draft.lines):
        raise ValueError("the totals are not those of this draft")
    root = etree.Element(_tag("rsm:CrossIndustryInvoice"), nsmap=NAMESPACES)
    _context(root, draft)
    _header(root, draft, number)
    transaction = _add(root, "rsm:SupplyChainTradeTransaction")
    _lines(transaction, draft, totals)
    _agreement(transaction, draft)
    _delivery(transaction, draft)
    _settlement(transaction, draft, totals)
    xml: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8",
                                pretty_print=True)
    return xml
