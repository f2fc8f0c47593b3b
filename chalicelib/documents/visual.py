"""The readable invoice: a French PDF drawn with ReportLab, ready to become PDF/A-3.

What PDF/A asks of the visual part is settled here, so that embedding the XML
(`facturx.py`) only adds metadata: every font embedded (DejaVu Sans, shipped in
`fonts/` with its licence, never looked up on the system; `initialFontName` so
no base-14 Helvetica is ever referenced, not even in the resources), an sRGB
OutputIntent, the document language. Output is deterministic: ReportLab's
invariant mode, the creation date given by the caller, an ICC profile whose
header date is pinned.

The page shows every mention French law asks of an invoice (CGI ann. II
art. 242 nonies A, C. com. L441-9, the 2026-2027 reform), with the same
sentences as the XML's notes (`cii.legal_notes`).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any, Final
from xml.sax.saxutils import escape

from PIL import ImageCms
from reportlab.lib import colors
from reportlab.lib.enums import TA_RIGHT
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfdoc, pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.platypus import (
    BaseDocTemplate,
    Frame,
    KeepTogether,
    PageTemplate,
    Paragraph,
    Spacer,
    Table,
    TableStyle,
)

from chalicelib.documents.cii import (
    VAT_ON_DEBITS_MENTION,
    french_amount,
    french_date,
    french_number,
    legal_notes,
    seller_legal_information,
)
from chalicelib.domain.invoice import (
    FRANCHISE_MENTION,
    Address,
    Adjustment,
    DocumentType,
    InvoiceDraft,
    OperationCategory,
    Totals,
    VatCategory,
    VatGroup,
)

FONTS: Final = Path(__file__).parent / "fonts"
FONT: Final = "DejaVuSans"
BOLD: Final = "DejaVuSans-Bold"
LANG: Final = "fr-FR"
SRGB: Final = "sRGB IEC61966-2.1"
_WIDTH, _HEIGHT = A4
_MARGIN: Final = 15 * mm

pdfmetrics.registerFont(TTFont(FONT, str(FONTS / "DejaVuSans.ttf")))
pdfmetrics.registerFont(TTFont(BOLD, str(FONTS / "DejaVuSans-Bold.ttf")))
pdfmetrics.registerFontFamily(FONT, normal=FONT, bold=BOLD, italic=FONT, boldItalic=BOLD)

_NBSP: Final = "\u00a0"
_GREY: Final = colors.Color(0.92, 0.92, 0.92)
_LINE: Final = colors.Color(0.6, 0.6, 0.6)
_TEXT = ParagraphStyle("text", fontName=FONT, fontSize=8.5, leading=10.5)
_SMALL = ParagraphStyle("small", parent=_TEXT, fontSize=7.5, leading=9.5)
_RIGHT = ParagraphStyle("right", parent=_TEXT, alignment=TA_RIGHT)
_TITLE = ParagraphStyle("title", fontName=BOLD, fontSize=20, leading=24)
_HEADING = ParagraphStyle("heading", fontName=BOLD, fontSize=10, leading=13, spaceBefore=6,
                          spaceAfter=2)

_OPERATION: Final = {
    OperationCategory.GOODS: "Livraison de biens",
    OperationCategory.SERVICES: "Prestation de services",
    OperationCategory.BOTH: "Livraison de biens et prestation de services",
}
_CATEGORY: Final = {
    VatCategory.STANDARD: "TVA",
    VatCategory.ZERO_RATED: "Taux zéro",
    VatCategory.EXEMPT: "Exonération",
    VatCategory.REVERSE_CHARGE: "Autoliquidation",
    VatCategory.INTRA_COMMUNITY: "Livraison intracommunautaire",
    VatCategory.EXPORT: "Exportation hors UE",
    VatCategory.NOT_SUBJECT: "Hors champ de la TVA",
}
# The mention printed for a VATEX code that comes without a reason text.
_VATEX: Final = {
    "VATEX-EU-AE": "Autoliquidation",
    "VATEX-EU-IC": "Exonération de TVA, article 262 ter, I du CGI",
    "VATEX-EU-G": "Exonération de TVA, article 262 I du CGI",
    "VATEX-EU-O": "Opération non soumise à la TVA",
    "VATEX-FR-FRANCHISE": FRANCHISE_MENTION,
}
_UNITS: Final = {"C62": "", "H87": "pièce", "HUR": "h", "MIN": "min", "DAY": "jour",
                 "WEE": "semaine", "MON": "mois", "ANN": "an", "KGM": "kg", "GRM": "g",
                 "TNE": "t", "MTR": "m", "KMT": "km", "MTK": "m²", "MTQ": "m³", "LTR": "l",
                 "SET": "lot", "KWH": "kWh"}


# ---------------------------------------------------------------- PDF/A plumbing

MAX_LINE_BREAKS = 10  # per text field: a table row must fit on one page


def _covered() -> frozenset[int]:
    faces = [pdfmetrics.getFont(name).face for name in (FONT, BOLD)]
    return frozenset.intersection(*(frozenset(face.charToGlyph) for face in faces))


_COVERED: Final = _covered()


def unprintable(draft: InvoiceDraft) -> list[tuple[str, str]]:
    """(field path, rule) for every text the PDF could not show faithfully:
    a character the embedded fonts lack (it would print as a blank .notdef
    glyph, which PDF/A forbids) or too many line breaks for one page."""
    found: list[tuple[str, str]] = []

    def walk(value: Any, path: str) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(item, f"{path}.{key}" if path else str(key))
        elif isinstance(value, list | tuple):
            for i, item in enumerate(value):
                walk(item, f"{path}.{i}")
        elif isinstance(value, str):
            if any(ord(c) not in _COVERED and c not in "\n\r\t" for c in value):
                found.append((path, "holds a character the invoice's font cannot print "
                                    "(Latin, Greek and Cyrillic scripts are covered)"))
            if value.count("\n") > MAX_LINE_BREAKS:
                found.append((path, f"at most {MAX_LINE_BREAKS} line breaks"))

    walk(draft.model_dump(mode="json"), "")
    return found


@cache
def srgb_profile() -> bytes:
    """An sRGB ICC profile (LittleCMS through Pillow) with its header date
    pinned to 2000-01-01: LittleCMS stamps the current time, which would make
    every PDF differ."""
    profile = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    profile[24:36] = bytes.fromhex("07d0 0001 0001 0000 0000 0000")  # dateTimeNumber
    return bytes(profile)


def _add_output_intent(canvas: Any) -> None:
    """The PDF/A OutputIntent: colours are sRGB. ReportLab has no API for it, so
    it goes into its catalog object, with the one more key the catalog writes."""
    document = canvas._doc
    profile = pdfdoc.PDFStream(pdfdoc.PDFDictionary({"N": 3}), srgb_profile(),
                               filters=[pdfdoc.PDFZCompress])
    intent = pdfdoc.PDFDictionary({
        "Type": pdfdoc.PDFName("OutputIntent"),
        "S": pdfdoc.PDFName("GTS_PDFA1"),
        "OutputConditionIdentifier": pdfdoc.PDFString(SRGB),
        "Info": pdfdoc.PDFString(SRGB),
        "DestOutputProfile": document.Reference(profile),
    })
    catalog = document.Catalog
    catalog.__NoDefault__ = [*type(catalog).__NoDefault__, "OutputIntents"]
    catalog.OutputIntents = pdfdoc.PDFArray([intent])


def pdf_date(moment: datetime) -> str:
    """D:YYYYMMDDHHmmSS+00'00' in UTC; a naive datetime is refused."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("the creation time must carry its time zone")
    return moment.astimezone(UTC).strftime("D:%Y%m%d%H%M%S+00'00'")


def document_kind(draft: InvoiceDraft) -> str:
    return "Avoir" if draft.document_type is DocumentType.CREDIT_NOTE else "Facture"


def pdf_metadata(draft: InvoiceDraft, number: str) -> dict[str, str]:
    """The document information (Info and XMP): title, author, subject, keywords."""
    kind = document_kind(draft)
    return {
        "title": f"{kind} {number}",
        "author": draft.seller.name,
        "subject": f"{kind} {number} du {french_date(draft.issue_date)} émis par "
                   f"{draft.seller.name} pour {draft.buyer.name}",
        "keywords": f"{kind}, Factur-X, EN 16931",
    }


# ---------------------------------------------------------------- text pieces

def _p(text: str, style: ParagraphStyle = _TEXT) -> Any:
    """A paragraph of plain text: markup characters in user data are escaped."""
    return Paragraph(escape(text).replace("\n", "<br/>"), style)


def _lines_p(lines: Sequence[str], style: ParagraphStyle = _TEXT, bold_first: bool = True) -> Any:
    parts = [escape(line) for line in lines if line]
    if bold_first and parts:
        parts[0] = f"<b>{parts[0]}</b>"
    return Paragraph("<br/>".join(parts), style)


def _grouped(value: str, sizes: Sequence[int]) -> str:
    parts, start = [], 0
    for size in sizes:
        parts.append(value[start:start + size])
        start += size
    parts.append(value[start:])
    return " ".join(part for part in parts if part)


def _iban(iban: str) -> str:
    return " ".join(iban[i:i + 4] for i in range(0, len(iban), 4))


def _address(address: Address) -> list[str]:
    return [address.line1, address.line2 or "", address.line3 or "",
            f"{address.postcode} {address.city}", address.country_code]


def _rate(category: VatCategory, rate: Decimal) -> str:
    if category is VatCategory.NOT_SUBJECT:
        return "—"
    text = f"{french_number(rate)}{_NBSP}%"
    return text if category is VatCategory.STANDARD else f"{text} ({category.value})"


def _exemption_text(group: VatGroup) -> str | None:
    if group.exemption_reason:
        return group.exemption_reason
    if group.exemption_reason_code:
        return _VATEX.get(group.exemption_reason_code, group.exemption_reason_code)
    return None


# ---------------------------------------------------------------- blocks

def _header(draft: InvoiceDraft, number: str) -> list[Any]:
    kind = document_kind(draft)
    facts = [f"N° {number}", f"Date d'émission : {french_date(draft.issue_date)}",
             f"Date d'échéance : {french_date(draft.due_date)}"]
    if draft.delivery_date is not None:
        facts.append(f"Date de livraison ou d'exécution : {french_date(draft.delivery_date)}")
    table = _layout([[_p(kind.upper(), _TITLE), _lines_p(facts, _RIGHT)]], (80, 100))
    return [table, Spacer(1, 5 * mm)]


def _parties(draft: InvoiceDraft) -> list[Any]:
    seller, buyer = draft.seller, draft.buyer
    seller_lines = [seller.name, *_address(seller.address),
                    f"SIREN : {_grouped(seller.siren, (3, 3, 3))}",
                    f"SIRET : {_grouped(seller.siret, (3, 3, 3))}"]
    if seller.vat_number:
        seller_lines.append(f"N° de TVA : {seller.vat_number}")
    if seller.tax_registration_id:
        seller_lines.append(f"Identifiant fiscal : {seller.tax_registration_id}")
    legal = seller_legal_information(draft)
    if legal:
        seller_lines.append(legal)
    buyer_lines = [buyer.name, *_address(buyer.address)]
    if buyer.siren:
        buyer_lines.append(f"SIREN : {_grouped(buyer.siren, (3, 3, 3))}")
    if buyer.vat_number:
        buyer_lines.append(f"N° de TVA : {buyer.vat_number}")
    cells = [[_p("Vendeur", _HEADING), _p("Client", _HEADING)],
             [_lines_p(seller_lines), _lines_p(buyer_lines)]]
    if draft.delivery_address is not None:
        cells += [[_p("Adresse de livraison", _HEADING), ""],
                  [_lines_p(_address(draft.delivery_address), bold_first=False), ""]]
    return [_layout(cells, (90, 90)), Spacer(1, 3 * mm)]


def _context(draft: InvoiceDraft) -> list[Any]:
    facts = [f"Catégorie de l'opération : {_OPERATION[draft.operation_category]}"]
    if draft.vat_on_debits:
        facts.append(VAT_ON_DEBITS_MENTION)
    preceding = draft.preceding_invoice
    if preceding is not None:
        dated = f" du {french_date(preceding.issue_date)}" if preceding.issue_date else ""
        facts.append(f"Avoir relatif à la facture n° {preceding.number}{dated}")
    return [_lines_p(facts, bold_first=False), Spacer(1, 3 * mm)]


def _layout(rows: list[list[Any]], widths: Sequence[float]) -> Any:
    """A borderless table that places blocks side by side."""
    table = Table(rows, colWidths=[w * mm for w in widths])
    table.setStyle(TableStyle([
        ("FONT", (0, 0), (-1, -1), FONT, 8.5),  # even an empty cell sets a font
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("LEFTPADDING", (0, 0), (-1, -1), 0),
        ("RIGHTPADDING", (0, 0), (-1, -1), 0),
    ]))
    return table


def _grid(rows: list[list[Any]], widths: Sequence[float], numeric_from: int,
          repeat: bool = False) -> Any:
    table = Table(rows, colWidths=[w * mm for w in widths], repeatRows=1 if repeat else 0)
    table.setStyle(TableStyle([
        ("FONT", (0, 0), (-1, -1), FONT, 8.5),  # never ReportLab's default Helvetica
        ("FONT", (0, 0), (-1, 0), BOLD, 8.5),
        ("BACKGROUND", (0, 0), (-1, 0), _GREY),
        ("ALIGN", (numeric_from, 0), (-1, -1), "RIGHT"),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("LINEBELOW", (0, 0), (-1, -1), 0.25, _LINE),
    ]))
    return table


def _lines(draft: InvoiceDraft, totals: Totals) -> list[Any]:
    rows: list[list[Any]] = [["Désignation", "Qté", "Unité", "PU HT", "TVA", "Total HT"]]
    for line, net in zip(draft.lines, totals.line_net_amounts, strict=True):
        price = line.unit_price
        price_text = (french_amount(price) if price == price.quantize(Decimal("0.01"))
                      else f"{french_number(price)}{_NBSP}€")
        rows.append([_p(line.description), french_number(line.quantity),
                     _UNITS.get(line.unit_code, line.unit_code), price_text,
                     _rate(line.vat_category, line.vat_rate), french_amount(net)])
    return [_grid(rows, (78, 16, 14, 26, 18, 28), numeric_from=1, repeat=True),
            Spacer(1, 4 * mm)]


def _adjustments(draft: InvoiceDraft) -> list[Any]:
    if not draft.allowances and not draft.charges:
        return []
    rows: list[list[Any]] = [["Remises et frais", "Nature", "TVA", "Montant HT"]]
    items: list[tuple[str, Adjustment, Decimal]] = [
        *(("Remise", a, -a.amount) for a in draft.allowances),
        *(("Frais", c, c.amount) for c in draft.charges)]
    for nature, adjustment, signed in items:
        rows.append([_p(adjustment.reason), nature,
                     _rate(adjustment.vat_category, adjustment.vat_rate), french_amount(signed)])
    return [KeepTogether(_grid(rows, (98, 26, 30, 26), numeric_from=2)), Spacer(1, 4 * mm)]


def _vat_and_totals(draft: InvoiceDraft, totals: Totals) -> list[Any]:
    rows: list[list[Any]] = [["Détail de la TVA", "Taux", "Base HT", "Montant TVA"]]
    for group in totals.vat_breakdown:
        rows.append([_CATEGORY[group.category], _rate(group.category, group.rate),
                     french_amount(group.taxable_amount), french_amount(group.tax_amount)])
    breakdown = _grid(rows, (34, 18, 29, 29), numeric_from=1)

    credit_note = draft.document_type is DocumentType.CREDIT_NOTE
    due_label = "Total de l'avoir" if credit_note else "Net à payer"
    amounts: list[tuple[str, Decimal]] = [("Total HT des lignes", totals.line_total)]
    if totals.allowance_total:
        amounts.append(("Remises", -totals.allowance_total))
    if totals.charge_total:
        amounts.append(("Frais", totals.charge_total))
    amounts += [("Total HT", totals.tax_exclusive_amount), ("Total TVA", totals.tax_total),
                ("Total TTC", totals.tax_inclusive_amount)]
    if totals.paid_amount:
        amounts.append(("Déjà payé", -totals.paid_amount))
    if totals.rounding_amount:
        amounts.append(("Arrondi", totals.rounding_amount))
    amounts.append((due_label, totals.amount_due))
    summary = Table([[label, french_amount(value)] for label, value in amounts],
                    colWidths=[36 * mm, 34 * mm])
    summary.setStyle(TableStyle([
        ("FONT", (0, 0), (-1, -1), FONT, 8.5),
        ("FONT", (0, -1), (-1, -1), BOLD, 9.5),
        ("ALIGN", (1, 0), (1, -1), "RIGHT"),
        ("LINEABOVE", (0, -1), (-1, -1), 0.75, colors.black),
        ("BACKGROUND", (0, -1), (-1, -1), _GREY),
    ]))
    side_by_side = _layout([[breakdown, summary]], (110, 70))
    mentions = [text for group in totals.vat_breakdown
                if (text := _exemption_text(group)) is not None]
    if draft.seller.vat_franchise and FRANCHISE_MENTION not in mentions:
        mentions.append(FRANCHISE_MENTION)
    block: list[Any] = [side_by_side]
    if mentions:
        block += [Spacer(1, 2 * mm), _lines_p(list(dict.fromkeys(mentions)), bold_first=False)]
    return [KeepTogether(block), Spacer(1, 4 * mm)]


def _payment(draft: InvoiceDraft) -> list[Any]:
    facts = [f"Date d'échéance : {french_date(draft.due_date)}"]
    if draft.payment_terms:
        facts.append(f"Conditions de paiement : {draft.payment_terms}")
    if draft.seller.iban:
        facts.append(f"Paiement par virement, IBAN : {_iban(draft.seller.iban)}")
    facts += [text for subject, text in legal_notes(draft)
              if subject != "TXD"]  # the VAT mentions are printed above
    block: list[Any] = [_p("Paiement", _HEADING), _lines_p(facts, bold_first=False)]
    if draft.notes:
        block += [_p("Notes", _HEADING), *(_p(note) for note in draft.notes)]
    return [KeepTogether(block)]


# ---------------------------------------------------------------- the document

def invoice_pdf(draft: InvoiceDraft, number: str, totals: Totals, created: datetime) -> bytes:
    """The readable PDF of a valid draft under its number; `created` (with its
    time zone) becomes its creation and modification dates."""
    if len(totals.line_net_amounts) != len(draft.lines):
        raise ValueError("the totals are not those of this draft")
    created_text = pdf_date(created)
    footer = (f"{draft.seller.name} — SIREN {_grouped(draft.seller.siren, (3, 3, 3))} — "
              f"{document_kind(draft)} {number}")

    def first_page(canvas: Any, doc: Any) -> None:
        _add_output_intent(canvas)
        canvas.setDateFormatter(lambda *_: created_text)
        every_page(canvas, doc)

    def every_page(canvas: Any, doc: Any) -> None:
        canvas.saveState()
        canvas.setFont(FONT, 7.5)
        canvas.setFillColor(colors.Color(0.35, 0.35, 0.35))
        canvas.drawString(_MARGIN, 10 * mm, footer)
        canvas.drawRightString(_WIDTH - _MARGIN, 10 * mm, f"Page {doc.page}")
        canvas.restoreState()

    # Frames without padding: the tables, 180 mm wide, fill the text width exactly.
    frame = Frame(_MARGIN, 18 * mm, _WIDTH - 2 * _MARGIN, _HEIGHT - 18 * mm - _MARGIN,
                  leftPadding=0, rightPadding=0, topPadding=0, bottomPadding=0)
    metadata = pdf_metadata(draft, number)
    buffer = io.BytesIO()
    document = BaseDocTemplate(
        buffer, pagesize=A4, title=metadata["title"], author=metadata["author"],
        subject=metadata["subject"], keywords=metadata["keywords"], creator="einvoice",
        invariant=1, pageCompression=1, lang=LANG, initialFontName=FONT, initialFontSize=8.5,
        pageTemplates=[
            PageTemplate("first", [frame], onPage=first_page, autoNextPageTemplate="next"),
            PageTemplate("next", [frame], onPage=every_page)])
    story = [*_header(draft, number), *_parties(draft), *_context(draft),
             *_lines(draft, totals), *_adjustments(draft), *_vat_and_totals(draft, totals),
             *_payment(draft)]
    document.build(story)
    return buffer.getvalue()
