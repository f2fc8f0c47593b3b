"""The documents of an invoice without any database: the CII XML passes the
Factur-X EN 16931 XSD and carries exactly our totals, the PDF is shaped as
PDF/A-3 and Factur-X ask, says what French law asks, and is reproducible."""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import cache
from typing import Any

import facturx
import pikepdf
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree
from pypdf import PdfReader

from chalicelib.adapters.documents import FacturXDocuments
from chalicelib.documents import facturx as documents
from chalicelib.documents.cii import (
    CONSUMER_INDEMNITY_MENTION,
    CONSUMER_PENALTIES_MENTION,
    NAMESPACES,
    french_amount,
    french_number,
    invoice_xml,
)
from chalicelib.documents.facturx import (
    PRODUCER,
    DocumentInvalid,
    FacturX,
    make_factur_x,
    xsd_problems,
)
from chalicelib.documents.visual import FONTS, invoice_pdf, srgb_profile
from chalicelib.domain.errors import Violation
from chalicelib.domain.invoice import (
    FRANCHISE_MENTION,
    InvoiceDraft,
    Totals,
    VatCategory,
    compute_totals,
    validate_invoice,
)
from tests.builders import (
    BUYER_SIREN,
    CONSUMER_EMAIL,
    IBAN,
    SELLER_SIREN,
    SELLER_SIRET,
    Raw,
    address,
    consumer,
    franchise,
    intra_community,
    invoice,
    line,
    not_subject,
)

CREATED = datetime(2026, 3, 2, 9, 30, 15, tzinfo=UTC)
NUMBER = "F-000123"
NBSP = "\u00a0"
BASE_14 = {"Courier", "Courier-Bold", "Courier-BoldOblique", "Courier-Oblique", "Helvetica",
           "Helvetica-Bold", "Helvetica-BoldOblique", "Helvetica-Oblique", "Symbol",
           "Times-Bold", "Times-BoldItalic", "Times-Italic", "Times-Roman", "ZapfDingbats"}


# ---------------------------------------------------------------- drafts

def reverse_charge() -> Raw:
    raw = invoice(line("1", "500", "AE", "0"),
                  vat_exemptions=[{"category": "AE", "reason": "Autoliquidation"}])
    raw["buyer"] = intra_community()["buyer"]
    return raw


def credit_note() -> Raw:
    return invoice(line("1", "60.00", description="Avoir sur conseil"), type_code=381,
                   preceding_invoice={"number": "F-000042", "issue_date": "2026-02-01"})


def allowances_and_charges() -> Raw:
    return invoice(
        line("3", "33.33", "S", "20"), line("2", "12.50", "S", "10"),
        line("1", "7.99", "S", "5.5"),
        allowances=[{"amount": "10", "reason": "Remise fidélité", "vat_category": "S",
                     "vat_rate": "20"},
                    {"amount": "0.99", "reason": "Geste commercial", "vat_category": "S",
                     "vat_rate": "5.5"}],
        charges=[{"amount": "5.00", "reason": "Livraison", "vat_category": "S",
                  "vat_rate": "10"}],
        vat_on_debits=True, notes=["Merci de votre confiance"],
        delivery_address=address("13001", "Marseille"), delivery_date="2026-02-27")


def foreign_consumer() -> Raw:
    """A consumer in Belgium, with a contractual late-payment penalty rate."""
    raw = consumer()
    raw["late_payment_penalty_rate"] = "8"
    raw["buyer"]["address"] = address("1000", "Bruxelles", "BE")
    return raw


def other_addresses() -> Raw:
    """The seller at its SIRET (0009), a German buyer at its GLN (0088)."""
    raw = intra_community()
    raw["seller"]["electronic_address"] = {"scheme": "0009", "value": SELLER_SIRET}
    raw["buyer"]["electronic_address"] = {"scheme": "0088", "value": "3014531200102"}
    return raw


def many_lines() -> Raw:
    rates = ("20", "10", "5.5", "2.1")
    return invoice(*(line(str(i % 7 + 1), f"{i}.25", "S", rates[i % 4], f"Article n° {i}")
                     for i in range(1, 201)))


DRAFTS: dict[str, Callable[[], Raw]] = {
    "rate_20": lambda: invoice(line("2", "50.00", "S", "20")),
    "rate_10": lambda: invoice(line("2", "50.00", "S", "10")),
    "rate_5.5": lambda: invoice(line("3", "7.77", "S", "5.5")),
    "rate_2.1": lambda: invoice(line("1", "19.99", "S", "2.1")),
    "mixed_rates": lambda: invoice(line("3", "33.33", "S", "20"), line("2.5", "12.5", "S", "10"),
                                   line("0.335", "3", "S", "5.5"), line("1", "7.99", "S", "2.1"),
                                   line("1", "1200", "E", "0", "Formation"),
                                   vat_exemptions=[{"category": "E", "reason": "Exonération de "
                                                    "TVA, article 261-4-4° a du CGI"}]),
    "franchise": franchise,
    "franchise_b2c": lambda: franchise(
        buyer={"name": "Paul Petit", "kind": "consumer", "address": address(),
               "electronic_address": {"scheme": "EM", "value": "paul.petit@example.fr"}},
        late_payment_penalty_rate=None, recovery_indemnity=None),
    "intra_community": intra_community,
    "reverse_charge": reverse_charge,
    "not_subject": not_subject,
    "b2c": consumer,
    "credit_note": credit_note,
    "allowances_and_charges": allowances_and_charges,
    "negative_quantity": lambda: invoice(line("3", "100", description="Fourniture"),
                                         line("-1", "40", description="Retour d'un article")),
    "without_iban": lambda: invoice(seller={**invoice()["seller"], "iban": None}),
    "200_lines": many_lines,
    "b2c_abroad_with_penalties": foreign_consumer,
    "siret_and_gln_addresses": other_addresses,
}


@dataclass(frozen=True)
class Built:
    draft: InvoiceDraft
    totals: Totals
    documents: FacturX


@cache
def built(name: str) -> Built:
    draft = validate_invoice(DRAFTS[name]())
    totals = compute_totals(draft)
    return Built(draft, totals, make_factur_x(draft, NUMBER, totals, CREATED))


# ---------------------------------------------------------------- reading back

def parse(xml: bytes) -> Any:
    return etree.fromstring(xml)


def texts(root: Any, path: str) -> list[str]:
    return [str(t) for t in root.xpath(f"{path}/text()", namespaces=NAMESPACES)]


def text(root: Any, path: str) -> str:
    found = texts(root, path)
    assert len(found) == 1, (path, found)
    return found[0]


SETTLEMENT = "/rsm:CrossIndustryInvoice/rsm:SupplyChainTradeTransaction/" \
             "ram:ApplicableHeaderTradeSettlement"
SUMMATION = f"{SETTLEMENT}/ram:SpecifiedTradeSettlementHeaderMonetarySummation"
AGREEMENT = "/rsm:CrossIndustryInvoice/rsm:SupplyChainTradeTransaction/" \
            "ram:ApplicableHeaderTradeAgreement"


def xml_totals(root: Any) -> dict[str, Any]:
    """BG-22, BG-23 and every BT-131 as the XML states them."""
    groups = []
    for tax in root.xpath(f"{SETTLEMENT}/ram:ApplicableTradeTax", namespaces=NAMESPACES):
        rate = texts(tax, "ram:RateApplicablePercent")
        groups.append((text(tax, "ram:CategoryCode"), rate[0] if rate else None,
                       text(tax, "ram:BasisAmount"), text(tax, "ram:CalculatedAmount")))
    return {
        "line_nets": texts(root, "//ram:SpecifiedTradeSettlementLineMonetarySummation/"
                                 "ram:LineTotalAmount"),
        "BT-106": text(root, f"{SUMMATION}/ram:LineTotalAmount"),
        "BT-107": text(root, f"{SUMMATION}/ram:AllowanceTotalAmount"),
        "BT-108": text(root, f"{SUMMATION}/ram:ChargeTotalAmount"),
        "BT-109": text(root, f"{SUMMATION}/ram:TaxBasisTotalAmount"),
        "BT-110": text(root, f"{SUMMATION}/ram:TaxTotalAmount"),
        "BT-112": text(root, f"{SUMMATION}/ram:GrandTotalAmount"),
        "BT-113": text(root, f"{SUMMATION}/ram:TotalPrepaidAmount"),
        "BT-115": text(root, f"{SUMMATION}/ram:DuePayableAmount"),
        "BG-23": groups,
    }


def expected_totals(totals: Totals) -> dict[str, Any]:
    return {
        "line_nets": [str(a) for a in totals.line_net_amounts],
        "BT-106": str(totals.line_total), "BT-107": str(totals.allowance_total),
        "BT-108": str(totals.charge_total), "BT-109": str(totals.tax_exclusive_amount),
        "BT-110": str(totals.tax_total), "BT-112": str(totals.tax_inclusive_amount),
        "BT-113": str(totals.paid_amount), "BT-115": str(totals.amount_due),
        "BG-23": [(g.category.value,
                   None if g.category is VatCategory.NOT_SUBJECT else str(g.rate),
                   str(g.taxable_amount), str(g.tax_amount)) for g in totals.vat_breakdown],
    }


def page_text(pdf: bytes) -> str:
    """The text of every page, no-break spaces read as spaces."""
    pages = PdfReader(io.BytesIO(pdf)).pages
    return "\n".join(page.extract_text() for page in pages).replace(NBSP, " ")


def fonts(pdf: pikepdf.Pdf) -> list[tuple[str, bool]]:
    """(BaseFont, embedded?) of every font on every page, Type0 descendants included."""
    found = []
    for page in pdf.pages:
        resources = page.obj.get("/Resources", pikepdf.Dictionary())
        stack = list((resources.get("/Font") or pikepdf.Dictionary()).values())
        while stack:
            font = stack.pop()
            if font.get("/Subtype") == "/Type0":
                stack.extend(font["/DescendantFonts"])
                continue
            descriptor = font.get("/FontDescriptor")
            embedded = descriptor is not None and any(
                key in descriptor for key in ("/FontFile", "/FontFile2", "/FontFile3"))
            found.append((str(font.get("/BaseFont")), embedded))
    return found


def info_date(value: Any) -> datetime:
    match = re.fullmatch(r"D:(\d{14})([+-]\d\d)'(\d\d)'", str(value))
    assert match, value
    offset = timedelta(hours=int(match[2]), minutes=int(match[3]))
    return datetime.strptime(match[1], "%Y%m%d%H%M%S").replace(tzinfo=UTC) - offset


# ---------------------------------------------------------------- XML

@pytest.mark.parametrize("name", DRAFTS)
def test_xml_passes_the_xsd_and_states_our_totals(name: str) -> None:
    case = built(name)
    xml = case.documents.xml
    root = parse(xml)

    assert xsd_problems(xml) == []
    assert facturx.xml_check_xsd(xml, flavor="factur-x", level="en16931") is True
    assert text(root, "/rsm:CrossIndustryInvoice/rsm:ExchangedDocument/ram:ID") == NUMBER
    assert text(root, "//rsm:ExchangedDocument/ram:TypeCode") == str(case.draft.type_code)
    assert text(root, "//ram:GuidelineSpecifiedDocumentContextParameter/ram:ID") == \
        "urn:cen.eu:en16931:2017"
    assert xml_totals(root) == expected_totals(case.totals)
    assert texts(root, "//ram:AssociatedDocumentLineDocument/ram:LineID") == [
        str(i) for i in range(1, len(case.draft.lines) + 1)]
    assert facturx.get_flavor(root) == "factur-x"
    assert facturx.get_level(root, "factur-x") == "en16931"


@pytest.mark.parametrize("name", DRAFTS)
def test_every_valid_draft_passes_en16931_and_the_french_ctc_rules(name: str) -> None:
    """The official EN 16931 CII rules and the French CTC "Flux 2" rules (BR-FR)
    a PA enforces (saxonche, one shared worker): no fatal failure on any case
    of the matrix (rates, exemptions, B2B/B2C, foreign buyers, credit note,
    allowances and charges, 200 lines, electronic address schemes, the
    largest amounts), and the documents port finds no problem either."""
    from chalicelib.documents.schematron import invoice_failures

    xml = built(name).documents.xml
    fatal = [f for f in invoice_failures(xml) if f.fatal]
    assert fatal == []
    assert FacturXDocuments().problems(xml) == []


def test_the_largest_amounts_the_model_allows_meet_br_fr_dec_01() -> None:
    """16 digits before the point, 2 after: 18 of the 19 characters BR-FR-DEC-01
    allows (the sign is the 19th); the model refuses anything larger."""
    from chalicelib.documents.schematron import invoice_failures

    exempt = [{"category": "E", "reason": "Exonéré"}]
    draft = validate_invoice(invoice(line("999999999.9999", "10000000", "E", "0"),
                                     vat_exemptions=exempt))
    totals = compute_totals(draft)
    xml = invoice_xml(draft, NUMBER, totals)

    assert totals.amount_due == Decimal("9999999999999000.00")
    assert xsd_problems(xml) == []
    assert [f.rule for f in invoice_failures(xml) if f.rule.startswith("BR-FR")] == []


def _with_treatment(xml: bytes, treatment: str) -> bytes:
    """The XML with a BAR note (BT-21) naming the PA's treatment, as a PA may
    apply it from its channel even when the invoice carries none."""
    root = parse(xml)
    notes = root.xpath("//rsm:ExchangedDocument/ram:IncludedNote", namespaces=NAMESPACES)
    note = etree.Element(f"{{{NAMESPACES['ram']}}}IncludedNote")
    etree.SubElement(note, f"{{{NAMESPACES['ram']}}}Content").text = treatment
    etree.SubElement(note, f"{{{NAMESPACES['ram']}}}SubjectCode").text = "BAR"
    notes[-1].addnext(note)
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))


@pytest.mark.parametrize("name", DRAFTS)
def test_the_rules_of_the_pa_treatment_pass_too(name: str) -> None:
    """Treated as B2B (a French business buyer), B2BINT or B2C, every draft
    still passes: BR-FR-11 (buyer SIREN) and BR-FR-21 (a 0225 address starting
    with it) hold for French business buyers."""
    from chalicelib.documents.schematron import invoice_failures

    buyer = built(name).draft.buyer
    treatment = ("B2C" if buyer.kind == "consumer" else
                 "B2B" if buyer.address.country_code == "FR" else "B2BINT")
    xml = _with_treatment(built(name).documents.xml, treatment)

    assert [f.rule for f in invoice_failures(xml) if f.fatal] == []


def test_a_b2b_buyer_outside_the_directory_fails_br_fr_21() -> None:
    """Why the model wants a 0225 address of a French business buyer."""
    from chalicelib.documents.schematron import invoice_failures

    xml = built("rate_20").documents.xml.replace(
        f'schemeID="0225">{BUYER_SIREN}<'.encode(), b'schemeID="0088">3014531200102<')

    assert [f.rule for f in invoice_failures(xml) if f.fatal] == []
    assert [f.rule for f in invoice_failures(_with_treatment(xml, "B2B"))
            if f.fatal] == ["BR-FR-21_BT-49"]


def _without(xml: bytes, path: str) -> bytes:
    root = parse(xml)
    [element] = root.xpath(path, namespaces=NAMESPACES)
    element.getparent().remove(element)
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))


@pytest.mark.parametrize(("path", "rule"), [
    (f"{AGREEMENT}/ram:BuyerTradeParty/ram:URIUniversalCommunication", "BR-FR-12_BT-49"),
    (f"{AGREEMENT}/ram:SellerTradeParty/ram:URIUniversalCommunication", "BR-FR-13_BT-34"),
    ("//ram:IncludedNote[ram:SubjectCode='PMT']", "BR-FR-05_BT-22_PMT"),
])
def test_an_xml_failing_the_french_ctc_rules_is_refused(path: str, rule: str) -> None:
    """What EN 16931 lets through and a PA rejects: problems() names the
    BR-FR rule (the XSD and EN 16931 still pass)."""
    from chalicelib.documents.schematron import en16931_failures

    xml = _without(built("rate_20").documents.xml, path)

    assert xsd_problems(xml) == []
    assert [f for f in en16931_failures(xml) if f.fatal] == []
    [problem] = FacturXDocuments().problems(xml)
    assert problem.field == "document" and problem.rule.startswith(f"{rule}: BR-FR-")


def test_problems_reports_en16931_and_french_ctc_failures_together() -> None:
    xml = _without(built("rate_20").documents.xml,
                   f"{AGREEMENT}/ram:BuyerTradeParty/ram:URIUniversalCommunication")
    xml = xml.replace(b"<ram:GrandTotalAmount>120.00<", b"<ram:GrandTotalAmount>121.00<")

    problems = FacturXDocuments().problems(xml)
    assert [p.rule.split(":")[0] for p in problems] == ["BR-CO-15", "BR-CO-16",
                                                        "BR-FR-12_BT-49"]
    assert all(isinstance(p, Violation) and p.field == "document" for p in problems)


def test_xml_maps_parties_payment_and_french_mentions() -> None:
    case = built("allowances_and_charges")
    root = parse(case.documents.xml)
    seller, buyer = f"{AGREEMENT}/ram:SellerTradeParty", f"{AGREEMENT}/ram:BuyerTradeParty"
    notes = {(text(n, "ram:SubjectCode") if texts(n, "ram:SubjectCode") else None,
              text(n, "ram:Content"))
             for n in root.xpath("//rsm:ExchangedDocument/ram:IncludedNote",
                                 namespaces=NAMESPACES)}

    assert root.xpath(f"{seller}/ram:SpecifiedLegalOrganization/ram:ID[@schemeID='0002']"
                      "/text()", namespaces=NAMESPACES) == ["732829320"]
    assert root.xpath(f"{seller}/ram:GlobalID[@schemeID='0009']/text()",
                      namespaces=NAMESPACES) == ["73282932000017"]
    assert root.xpath(f"{seller}/ram:SpecifiedTaxRegistration/ram:ID[@schemeID='VA']/text()",
                      namespaces=NAMESPACES) == ["FR44732829320"]
    assert text(root, f"{seller}/ram:Description") == f"SAS au capital de 10{NBSP}000,00{NBSP}€"
    assert text(root, f"{seller}/ram:PostalTradeAddress/ram:CityName") == "Paris"
    assert root.xpath(f"{buyer}/ram:SpecifiedLegalOrganization/ram:ID[@schemeID='0002']"
                      "/text()", namespaces=NAMESPACES) == ["552100554"]
    assert root.xpath(f"{buyer}/ram:SpecifiedTaxRegistration/ram:ID[@schemeID='VA']/text()",
                      namespaces=NAMESPACES) == ["FR96552100554"]
    # BT-34 and BT-49 with their schemes, between the postal address and the
    # tax registrations (the CII schema's order, checked by the XSD as well)
    for party, siren in ((seller, SELLER_SIREN), (buyer, BUYER_SIREN)):
        assert root.xpath(f"{party}/ram:URIUniversalCommunication/ram:URIID[@schemeID='0225']"
                          "/text()", namespaces=NAMESPACES) == [siren]
        children = [etree.QName(c).localname
                    for c in root.xpath(f"{party}/*", namespaces=NAMESPACES)]
        assert children[-3:] == ["PostalTradeAddress", "URIUniversalCommunication",
                                 "SpecifiedTaxRegistration"]
    assert text(root, "//ram:ShipToTradeParty/ram:PostalTradeAddress/ram:CityName") == \
        "Marseille"
    assert text(root, "//ram:ActualDeliverySupplyChainEvent/ram:OccurrenceDateTime/"
                      "udt:DateTimeString[@format='102']") == "20260227"
    assert text(root, "//rsm:ExchangedDocument/ram:IssueDateTime/udt:DateTimeString") == \
        "20260302"
    assert text(root, "//ram:SpecifiedTradePaymentTerms/ram:DueDateDateTime/"
                      "udt:DateTimeString") == "20260401"
    assert text(root, "//ram:SpecifiedTradePaymentTerms/ram:Description") == \
        "Virement à 30 jours"
    assert text(root, "//ram:SpecifiedTradeSettlementPaymentMeans/ram:TypeCode") == "58"
    assert text(root, "//ram:PayeePartyCreditorFinancialAccount/ram:IBANID") == IBAN
    assert text(root, "//ram:BusinessProcessSpecifiedDocumentContextParameter/ram:ID") == "S1"
    assert set(texts(root, f"{SETTLEMENT}/ram:ApplicableTradeTax/ram:DueDateTypeCode")) == {"5"}
    assert {subject for subject, _ in notes} == {None, "PMT", "PMD", "AAB", "TXD"}
    assert (None, "Merci de votre confiance") in notes
    assert any(s == "PMT" and "40,00" in t and "recouvrement" in t for s, t in notes)
    assert any(s == "PMD" and f"12,15{NBSP}%" in t for s, t in notes)
    assert ("AAB", "Escompte pour paiement anticipé : néant") in notes
    assert ("TXD", "Option pour le paiement de la taxe d'après les débits") in notes
    allowance = "//ram:SpecifiedTradeAllowanceCharge[ram:ChargeIndicator/udt:Indicator='false']"
    charge = "//ram:SpecifiedTradeAllowanceCharge[ram:ChargeIndicator/udt:Indicator='true']"
    assert texts(root, f"{allowance}/ram:ActualAmount") == ["10.00", "0.99"]
    assert texts(root, f"{allowance}/ram:CategoryTradeTax/ram:RateApplicablePercent") == [
        "20.00", "5.50"]
    assert texts(root, f"{charge}/ram:Reason") == ["Livraison"]
    assert root.xpath("//ram:BilledQuantity/@unitCode", namespaces=NAMESPACES) == ["C62"] * 3
    assert texts(root, "//ram:NetPriceProductTradePrice/ram:ChargeAmount") == [
        "33.33", "12.50", "7.99"]


def test_xml_of_exemptions_credit_notes_and_accounts() -> None:
    exempt = parse(built("franchise").documents.xml)
    outside = parse(built("not_subject").documents.xml)
    credit = parse(built("credit_note").documents.xml)
    b2c = parse(built("b2c").documents.xml)

    assert text(exempt, f"{SETTLEMENT}/ram:ApplicableTradeTax/ram:ExemptionReason") == \
        FRANCHISE_MENTION
    assert text(exempt, f"{SETTLEMENT}/ram:ApplicableTradeTax/ram:ExemptionReasonCode") == \
        "VATEX-FR-FRANCHISE"
    assert ("TXD", FRANCHISE_MENTION) in {
        (text(n, "ram:SubjectCode"), text(n, "ram:Content"))
        for n in exempt.xpath("//ram:IncludedNote[ram:SubjectCode]", namespaces=NAMESPACES)}
    assert texts(outside, "//ram:RateApplicablePercent") == []  # BR-O-05, BR-O-09
    assert texts(outside, "//ram:SpecifiedTaxRegistration/ram:ID") == []
    assert text(credit, "//ram:InvoiceReferencedDocument/ram:IssuerAssignedID") == "F-000042"
    assert text(credit, "//ram:InvoiceReferencedDocument/ram:FormattedIssueDateTime/"
                        "qdt:DateTimeString[@format='102']") == "20260201"
    # BR-FR-05: PMD and PMT on every invoice; for a consumer they say that the
    # B2B penalties and indemnity do not apply
    assert [(text(n, "ram:SubjectCode"), text(n, "ram:Content")) for n in b2c.xpath(
        "//ram:IncludedNote", namespaces=NAMESPACES)] == [
        ("PMD", CONSUMER_PENALTIES_MENTION), ("PMT", CONSUMER_INDEMNITY_MENTION),
        ("AAB", "Escompte pour paiement anticipé : néant")]
    assert root_addresses(b2c) == {"Seller": ("0225", SELLER_SIREN),
                                   "Buyer": ("EM", CONSUMER_EMAIL)}
    abroad = parse(built("b2c_abroad_with_penalties").documents.xml)
    assert texts(abroad, "//ram:IncludedNote[ram:SubjectCode='PMD']/ram:Content") == [
        f"Pénalités de retard : taux annuel de 8{NBSP}%, exigibles dès le lendemain de la "
        f"date d'échéance"]
    assert root_addresses(parse(built("siret_and_gln_addresses").documents.xml)) == {
        "Seller": ("0009", SELLER_SIRET), "Buyer": ("0088", "3014531200102")}
    assert texts(b2c, f"{AGREEMENT}/ram:BuyerTradeParty/ram:SpecifiedLegalOrganization") == []
    assert texts(parse(built("without_iban").documents.xml),
                 "//ram:SpecifiedTradeSettlementPaymentMeans") == []


def root_addresses(root: Any) -> dict[str, tuple[str, str]]:
    """(scheme, address) of the seller's and the buyer's URIID."""
    return {role: (str(uri.get("schemeID")), str(uri.text))
            for role in ("Seller", "Buyer")
            for uri in root.xpath(f"{AGREEMENT}/ram:{role}TradeParty/"
                                  "ram:URIUniversalCommunication/ram:URIID",
                                  namespaces=NAMESPACES)}


def test_same_inputs_give_the_same_bytes() -> None:
    case = built("allowances_and_charges")
    again = make_factur_x(case.draft, NUMBER, case.totals, CREATED)
    later = make_factur_x(case.draft, NUMBER, case.totals, CREATED + timedelta(seconds=1))
    other = make_factur_x(case.draft, "F-000124", case.totals, CREATED)

    assert again == case.documents
    assert invoice_xml(case.draft, NUMBER, case.totals) == case.documents.xml
    assert later.xml == case.documents.xml and later.pdf != case.documents.pdf
    assert other.pdf != case.documents.pdf


def file_id(pdf: bytes) -> bytes:
    with pikepdf.open(io.BytesIO(pdf)) as document:
        return bytes(document.trailer.ID[0])


def test_the_file_identifier_tells_documents_apart() -> None:
    """Same number, title and dates, other amounts: another /ID (not ReportLab's
    invariant one, which hashes only the title, author, subject and keywords)."""
    one, two = built("rate_20"), built("rate_10")

    assert one.documents.pdf != two.documents.pdf
    assert file_id(one.documents.pdf) != file_id(two.documents.pdf)


# ---------------------------------------------------------------- XSD check

def test_xsd_problems_are_listed_and_never_raise() -> None:
    xml = built("rate_20").documents.xml
    missing_number = xml.replace(b"<ram:ID>F-000123</ram:ID>", b"", 1)
    bad_amount = xml.replace(b"<ram:GrandTotalAmount>120.00<",
                             b"<ram:GrandTotalAmount>12x345<")

    assert xsd_problems(xml) == []
    for bad in (b"", b"not xml", b"<a>", b"\xff\xfe", b"<a/>", missing_number, bad_amount):
        assert xsd_problems(bad), bad[:40]
    problems = xsd_problems(bad_amount)
    assert len(problems) == 1 and "ram:GrandTotalAmount" in problems[0]
    assert "12x345" not in problems[0]  # no value of the document in a message


def test_an_xml_the_xsd_refuses_is_never_embedded(monkeypatch: pytest.MonkeyPatch) -> None:
    case = built("rate_20")
    broken = case.documents.xml.replace(b"<ram:TypeCode>380</ram:TypeCode>", b"", 1)
    monkeypatch.setattr(documents, "invoice_xml", lambda *_: broken)

    with pytest.raises(DocumentInvalid) as caught:
        make_factur_x(case.draft, NUMBER, case.totals, CREATED)
    assert caught.value.problems and "ram:TypeCode" in caught.value.problems[0]


def test_a_creation_time_without_time_zone_is_refused() -> None:
    case = built("rate_20")

    with pytest.raises(ValueError, match="time zone"):
        invoice_pdf(case.draft, NUMBER, case.totals, datetime(2026, 3, 2, 9, 30))


# ---------------------------------------------------------------- PDF/A-3 and Factur-X

@pytest.mark.parametrize("name", DRAFTS)
def test_the_pdf_carries_exactly_our_xml(name: str) -> None:
    case = built(name)

    assert facturx.get_xml_from_pdf(case.documents.pdf, check_xsd=True) == (
        "factur-x.xml", case.documents.xml)


@pytest.mark.parametrize("name", ["rate_20", "franchise", "credit_note", "200_lines"])
def test_pdf_a3_structure(name: str) -> None:
    data = built(name).documents.pdf
    assert re.match(rb"%PDF-1\.7\r?\n%[\x80-\xff]{4}", data)

    with pikepdf.open(io.BytesIO(data)) as pdf:
        root = pdf.Root
        assert not pdf.is_encrypted
        ids = pdf.trailer.ID
        assert len(ids) == 2 and bytes(ids[0]) == bytes(ids[1]) and len(bytes(ids[0])) == 16
        intents = root.OutputIntents
        assert len(intents) == 1 and intents[0].S == "/GTS_PDFA1"
        profile = intents[0].DestOutputProfile
        icc = profile.read_bytes()
        assert int(profile.N) == 3 and icc[36:40] == b"acsp" and icc[16:20] == b"RGB "
        assert icc[8] <= 4  # ICC major version accepted by PDF/A-3
        assert str(root.Lang) == "fr-FR"

        used = fonts(pdf)
        assert used and all(embedded for _, embedded in used), used
        assert not {name.split("+")[-1].lstrip("/") for name, _ in used} & BASE_14

        meta = pdf.open_metadata()
        fx = "{urn:factur-x:pdfa:CrossIndustryDocument:invoice:1p0#}"
        assert (meta.get("pdfaid:part"), meta.get("pdfaid:conformance")) == ("3", "B")
        assert meta.get(f"{fx}DocumentType") == "INVOICE"
        assert meta.get(f"{fx}ConformanceLevel") == "EN 16931"
        assert meta.get(f"{fx}DocumentFileName") == "factur-x.xml"
        assert meta.get(f"{fx}Version") == "1.0"
        assert b"pdfaExtension:schemas" in root.Metadata.read_bytes()
        assert "/Filter" not in root.Metadata

        names = root.Names.EmbeddedFiles.Names
        assert [str(n) for n in names[::2]] == ["factur-x.xml"]
        filespec = names[1]
        assert filespec.AFRelationship == "/Alternative"
        assert str(filespec.UF) == "factur-x.xml"
        assert [a.objgen for a in root.AF] == [filespec.objgen]
        embedded = filespec.EF.F
        assert embedded.Subtype == "/text/xml"
        assert info_date(embedded.Params.ModDate) == CREATED

        info = pdf.docinfo
        kind = "Avoir" if name == "credit_note" else "Facture"
        assert str(info.Title) == meta.get("dc:title") == f"{kind} {NUMBER}"
        assert [str(info.Author)] == meta.get("dc:creator")
        assert str(info.Subject) == meta.get("dc:description")
        assert str(info.Producer) == meta.get("pdf:Producer") == PRODUCER
        assert str(info.Creator) == meta.get("xmp:CreatorTool")
        assert str(info.Keywords) == meta.get("pdf:Keywords") != ""
        assert "/Trapped" not in info and meta.get("pdf:Trapped") is None
        assert info_date(info.CreationDate) == CREATED
        assert info_date(info.ModDate) == CREATED
        assert datetime.fromisoformat(str(meta.get("xmp:CreateDate"))) == CREATED
        assert datetime.fromisoformat(str(meta.get("xmp:ModifyDate"))) == CREATED


def test_the_visual_pdf_alone_is_ready_for_pdf_a() -> None:
    case = built("mixed_rates")
    data = invoice_pdf(case.draft, NUMBER, case.totals, CREATED)

    assert data == invoice_pdf(case.draft, NUMBER, case.totals, CREATED)
    with pikepdf.open(io.BytesIO(data)) as pdf:
        assert pdf.Root.OutputIntents[0].S == "/GTS_PDFA1"
        assert all(embedded for _, embedded in fonts(pdf))
        assert info_date(pdf.docinfo.CreationDate) == CREATED
    assert srgb_profile()[24:36] == bytes.fromhex("07d0 0001 0001 0000 0000 0000")  # no clock
    assert {p.name for p in FONTS.iterdir()} == {"DejaVuSans.ttf", "DejaVuSans-Bold.ttf",
                                                 "LICENSE"}
    assert "Bitstream Vera" in (FONTS / "LICENSE").read_text()


# ---------------------------------------------------------------- what the page says

def test_the_page_states_the_french_mentions() -> None:
    b2b = page_text(built("allowances_and_charges").documents.pdf)
    b2c = page_text(built("b2c").documents.pdf)
    exempt = page_text(built("franchise").documents.pdf)
    credit = page_text(built("credit_note").documents.pdf)
    reverse = page_text(built("reverse_charge").documents.pdf)

    for content in (b2b, b2c, exempt, credit, reverse):
        assert NUMBER in content
    assert "FACTURE" in b2b and "Client SA" in b2b
    assert "Indemnité forfaitaire pour frais de recouvrement : 40,00 €" in b2b
    assert "Pénalités de retard : taux annuel de 12,15 %" in b2b
    assert "Escompte pour paiement anticipé : néant" in b2b
    assert "SIREN : 732 829 320" in b2b and "SIRET : 732 829 320 00017" in b2b
    assert "FR44732829320" in b2b and "FR96552100554" in b2b
    assert "SAS au capital de 10 000,00 €" in b2b
    assert "Option pour le paiement de la taxe d'après les débits" in b2b
    assert "Catégorie de l'opération : Prestation de services" in b2b
    assert "Adresse de livraison" in b2b and "13001 Marseille" in b2b
    assert "FR76 3000 6000 0112 3456 7890 189" in b2b
    assert "Net à payer\n148,38 €" in b2b and "Remise fidélité" in b2b and "Livraison" in b2b
    assert "Marie Martin" in b2c and "40,00 €" not in b2c
    assert "non applicable, client non professionnel" in b2c.replace("\n", " ")
    assert "293 B" in exempt and FRANCHISE_MENTION in exempt
    assert "AVOIR" in credit and "facture n° F-000042 du 01/02/2026" in credit
    assert "Autoliquidation" in reverse and "DE136695976" in reverse


def test_two_hundred_lines_run_over_several_pages() -> None:
    reader = PdfReader(io.BytesIO(built("200_lines").documents.pdf))
    pages = [page.extract_text() for page in reader.pages]

    assert len(pages) > 2
    assert all(NUMBER in page for page in pages)  # the footer of every page
    assert all("Désignation" in page for page in pages[:-1])  # the header row repeats
    assert "Article n° 1\n" in pages[0] and "Article n° 200" in "\n".join(pages)
    assert "Net à payer" in "\n".join(pages)


def test_french_money_and_numbers() -> None:
    assert french_amount(Decimal("1234.5")) == f"1{NBSP}234,50{NBSP}€"
    assert french_amount(Decimal("-0.99")) == f"-0,99{NBSP}€"
    assert french_amount(Decimal("999999999999.99")) == \
        f"999{NBSP}999{NBSP}999{NBSP}999,99{NBSP}€"
    assert french_number(Decimal("2.0000")) == "2"
    assert french_number(Decimal("5.50")) == "5,5"
    assert french_number(Decimal("1E+3")) == f"1{NBSP}000"
    assert french_number(Decimal("0.3350")) == "0,335"


# ---------------------------------------------------------------- property

_RATES = ("20", "10", "5.5", "2.1")
_decimals = st.builds(lambda digits, places: str(Decimal(digits).scaleb(-places)),
                      st.integers(1, 10**6), st.integers(0, 4))
_lines = st.lists(st.tuples(_decimals, _decimals, st.sampled_from(_RATES)),
                  min_size=1, max_size=5)
_charges = st.lists(st.tuples(st.integers(1, 10**6), st.sampled_from(_RATES)), max_size=2)


@settings(max_examples=30, deadline=None)
@given(_lines, _charges)
def test_any_small_valid_draft_gives_a_valid_xml_with_its_totals(
        lines: list[tuple[str, str, str]], charges: list[tuple[int, str]]) -> None:
    draft = validate_invoice(invoice(
        *(line(quantity, price, "S", rate) for quantity, price, rate in lines),
        charges=[{"amount": str(Decimal(cents).scaleb(-2)), "reason": "Frais",
                  "vat_category": "S", "vat_rate": rate} for cents, rate in charges]))
    totals = compute_totals(draft)
    xml = invoice_xml(draft, NUMBER, totals)

    assert xsd_problems(xml) == []
    assert xml_totals(parse(xml)) == expected_totals(totals)
