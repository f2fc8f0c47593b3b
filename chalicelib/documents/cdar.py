"""CDAR lifecycle messages (UN/CEFACT CrossDomainAcknowledgementAndResponse,
D22B, French guideline urn.cpro.gouv.fr:1p0:CDV:invoice): read hardened,
written with lxml.

Reading: a CDAR comes from outside (a PA, another company's platform), so it
is bounded in size before the parser sees it, parsed with no DTD loaded, no
entity resolved, no network and no huge-tree mode, and refused outright if it
declares a DTD or holds an entity reference (XXE, billion laughs): every such
input becomes CdarRefused with a reason of ours, never a crash, never a fetch.

What is read, per referenced document: the invoice number (IssuerAssignedID),
ProcessConditionCode (the 2xx status), StatusCode, the reason codes and the
characteristics (TypeCode MEN, MPA, RAP...: amount, currency, VAT rate as
Decimal) of its SpecifiedDocumentStatus; of the message: its id, its issue
date and time, its guideline and the acknowledgement's TypeCode (305: a
platform's status, 23: a party's). Free-text reasons are not kept.

The element names and their order follow public implementations of the
French profile, not the D22B XSD, which is not here: docs/pa.md#cdar says what
is verified and what is assumed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation

from lxml import etree

from chalicelib.domain.lifecycle import LABELS, NEEDS_AMOUNTS, NEEDS_REASON, StatusEvent
from chalicelib.domain.pa_flows import is_code

RSM = "urn:un:unece:uncefact:data:standard:CrossDomainAcknowledgementAndResponse:100"
RAM = "urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100"
QDT = "urn:un:unece:uncefact:data:standard:QualifiedDataType:100"
UDT = "urn:un:unece:uncefact:data:standard:UnqualifiedDataType:100"
NS = {"rsm": RSM, "ram": RAM, "qdt": QDT, "udt": UDT}
GUIDELINE = "urn.cpro.gouv.fr:1p0:CDV:invoice"
PLATFORM_STATUS = "305"  # a platform's status (200-203, 213)
PARTY_STATUS = "23"      # a party's status (the buyer's 204-210, the seller's 211-212)
INVOICE_TYPE = "380"
SIREN_SCHEME = "0002"
MAX_CDAR_BYTES = 256 * 1024
MAX_REFERENCES = 100
MAX_CHARACTERISTICS = 100


class CdarRefused(ValueError):
    """A CDAR we will not read; `reason` is ours (which rule), never its text."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Characteristic:
    """A SpecifiedDocumentCharacteristic: MEN (amount received), MPA, RAP..."""

    type_code: str
    amount: Decimal | None = None
    currency: str | None = None
    percent: Decimal | None = None  # the VAT rate, for MEN


@dataclass(frozen=True)
class StatusReport:
    """One referenced invoice's status in a CDAR."""

    invoice_number: str
    process_condition: int
    status_code: str | None = None
    invoice_date: date | None = None
    reason_codes: tuple[str, ...] = ()
    characteristics: tuple[Characteristic, ...] = ()

    @property
    def men(self) -> tuple[tuple[Decimal, Decimal], ...]:
        """The amounts received, as (VAT rate %, amount) pairs."""
        return tuple((c.percent, c.amount) for c in self.characteristics
                     if c.type_code == "MEN" and c.percent is not None
                     and c.amount is not None)


@dataclass(frozen=True)
class CdarMessage:
    message_id: str
    issued_at: datetime
    type_code: str
    guideline: str | None
    reports: tuple[StatusReport, ...]

    def events(self) -> tuple[StatusEvent, ...]:
        """Each report as the state machine's input."""
        return tuple(StatusEvent(code=r.process_condition, occurred_at=self.issued_at,
                                 message_id=self.message_id, reason_codes=r.reason_codes,
                                 amounts=r.men) for r in self.reports)


# -- reading --------------------------------------------------------------------------------

# A DOCTYPE in UTF-8 (or any ASCII superset) and in UTF-16, refused before the
# parser runs; the parsed tree is checked again (another encoding, a trick).
_DOCTYPE_MARKERS = tuple("<!DOCTYPE".encode(codec) for codec in ("ascii", "utf-16-le",
                                                                  "utf-16-be"))


def _parser() -> etree.XMLParser:
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                           dtd_validation=False, huge_tree=False, remove_comments=True,
                           remove_pis=True)


def parse_cdar(data: bytes) -> CdarMessage:
    """The message in `data`, or CdarRefused naming the rule it broke."""
    if not isinstance(data, bytes):
        raise CdarRefused("a CDAR is bytes")
    if len(data) > MAX_CDAR_BYTES:
        raise CdarRefused(f"larger than {MAX_CDAR_BYTES} bytes")
    if any(marker in data for marker in _DOCTYPE_MARKERS):
        raise CdarRefused("a DTD is not allowed")
    try:
        tree = etree.ElementTree(etree.fromstring(data, parser=_parser()))
    except (etree.LxmlError, ValueError) as exc:
        raise CdarRefused(f"not well-formed XML: {type(exc).__name__}") from None
    info = tree.docinfo
    if info.doctype or info.internalDTD is not None or info.externalDTD is not None:
        raise CdarRefused("a DTD is not allowed")
    root = tree.getroot()
    if any(isinstance(node, etree._Entity) for node in root.iter()):
        raise CdarRefused("an entity reference is not allowed")
    if root.tag != f"{{{RSM}}}CrossDomainAcknowledgementAndResponse":
        raise CdarRefused("root is not CrossDomainAcknowledgementAndResponse")
    message_id = _code(root, "rsm:ExchangedDocument/ram:ID", "ExchangedDocument.ID")
    issued_at = _moment(root, "rsm:ExchangedDocument/ram:IssueDateTime/udt:DateTimeString",
                        "ExchangedDocument.IssueDateTime")
    guideline = _text(root, "rsm:ExchangedDocumentContext/"
                      "ram:GuidelineSpecifiedDocumentContextParameter/ram:ID")
    ack = root.find("rsm:AcknowledgementDocument", NS)
    if ack is None:
        raise CdarRefused("AcknowledgementDocument is missing")
    type_code = _code(ack, "ram:TypeCode", "AcknowledgementDocument.TypeCode")
    if type_code not in (PLATFORM_STATUS, PARTY_STATUS):
        raise CdarRefused("AcknowledgementDocument.TypeCode must be 305 or 23")
    references = ack.findall("ram:ReferenceReferencedDocument", NS)
    if not references:
        raise CdarRefused("ReferenceReferencedDocument is missing")
    if len(references) > MAX_REFERENCES:
        raise CdarRefused(f"more than {MAX_REFERENCES} referenced documents")
    reports = tuple(_report(ref) for ref in references)
    return CdarMessage(message_id, issued_at, type_code, guideline, reports)


def _report(ref: etree._Element) -> StatusReport:
    number = _code(ref, "ram:IssuerAssignedID", "ReferenceReferencedDocument.IssuerAssignedID")
    condition = _text(ref, "ram:ProcessConditionCode")
    if condition is None:
        raise CdarRefused("ReferenceReferencedDocument.ProcessConditionCode is missing")
    if not condition.isdigit() or int(condition) not in LABELS:
        raise CdarRefused("ProcessConditionCode is not a known lifecycle status")
    status = _text(ref, "ram:StatusCode")
    if status is not None and not is_code(status):
        raise CdarRefused("StatusCode must be a short code")
    invoice_date = None
    raw_date = ref.find("ram:FormattedIssueDateTime/qdt:DateTimeString", NS)
    if raw_date is not None:
        invoice_date = _moment_of(raw_date, "FormattedIssueDateTime").date()
    reasons: list[str] = []
    characteristics: list[Characteristic] = []
    for block in ref.findall("ram:SpecifiedDocumentStatus", NS):
        for node in block.findall("ram:ReasonCode", NS):
            code = (node.text or "").strip()
            if not is_code(code):
                raise CdarRefused("ReasonCode must be a short code")
            if code not in reasons:
                reasons.append(code)
        for node in block.findall("ram:SpecifiedDocumentCharacteristic", NS):
            characteristics.append(_characteristic(node))
            if len(characteristics) > MAX_CHARACTERISTICS:
                raise CdarRefused(f"more than {MAX_CHARACTERISTICS} characteristics")
    return StatusReport(number, int(condition), status, invoice_date, tuple(reasons),
                        tuple(characteristics))


def _characteristic(node: etree._Element) -> Characteristic:
    type_code = _code(node, "ram:TypeCode", "SpecifiedDocumentCharacteristic.TypeCode")
    amount_node = node.find("ram:ValueAmount", NS)
    amount = currency = None
    if amount_node is not None:
        amount = _decimal(amount_node.text, "ValueAmount")
        currency = amount_node.get("currencyID")
        if currency is not None and not (len(currency) == 3 and currency.isalpha()
                                         and currency.isupper()):
            raise CdarRefused("ValueAmount.currencyID must be an ISO 4217 code")
    percent_text = _text(node, "ram:ValuePercent")
    percent = _decimal(percent_text, "ValuePercent") if percent_text is not None else None
    if type_code == "MEN" and (amount is None or percent is None):
        raise CdarRefused("a MEN characteristic needs ValueAmount and ValuePercent")
    return Characteristic(type_code, amount, currency, percent)


def _text(node: etree._Element, path: str) -> str | None:
    found = node.find(path, NS)
    if found is None or found.text is None or not found.text.strip():
        return None
    return str(found.text).strip()


def _code(node: etree._Element, path: str, name: str) -> str:
    value = _text(node, path)
    if value is None:
        raise CdarRefused(f"{name} is missing")
    if not is_code(value):
        raise CdarRefused(f"{name} must be a short identifier")
    return value


def _decimal(text: str | None, name: str) -> Decimal:
    try:
        value = Decimal((text or "").strip())
    except InvalidOperation:
        raise CdarRefused(f"{name} must be a decimal number") from None
    if not value.is_finite() or value.as_tuple().exponent < -6 or abs(value) >= 10**15:  # type: ignore[operator]
        raise CdarRefused(f"{name} must be a decimal number")
    return value


def _moment(node: etree._Element, path: str, name: str) -> datetime:
    found = node.find(path, NS)
    if found is None:
        raise CdarRefused(f"{name} is missing")
    return _moment_of(found, name)


def _moment_of(found: etree._Element, name: str) -> datetime:
    """UNTDID 2379 format 204 (CCYYMMDDHHMMSS) or 102 (CCYYMMDD), read as UTC."""
    text = (found.text or "").strip()
    layout = {"204": "%Y%m%d%H%M%S", "102": "%Y%m%d"}.get(found.get("format", ""))
    if layout is None or not text.isdigit():
        raise CdarRefused(f"{name} must be a date in format 204 or 102")
    try:
        return datetime.strptime(text, layout).replace(tzinfo=UTC)
    except ValueError:
        raise CdarRefused(f"{name} must be a date in format 204 or 102") from None


# -- writing --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Party:
    """A trade party of the message: its SIREN and its role (SE seller, BY
    buyer, WK the platform...)."""

    siren: str
    role: str
    name: str | None = None


class CdarNotBuilt(ValueError):
    """The status cannot be emitted as asked (a rule of the table)."""


def build_status(*, message_id: str, issued_at: datetime, invoice_number: str,
                 invoice_date: date, code: int, issuer: Party, recipients: Sequence[Party],
                 reason_codes: Sequence[str] = (),
                 amounts: Sequence[tuple[Decimal, Decimal]] = (),
                 currency: str = "EUR", type_code: str = PARTY_STATUS) -> bytes:
    """A CDAR for one status of one invoice: 212 with MEN per VAT rate, or a
    buyer's 204-210 with its reason codes. Refuses what the table refuses."""
    if code not in LABELS:
        raise CdarNotBuilt("unknown status code")
    if code in NEEDS_REASON and not reason_codes:
        raise CdarNotBuilt(f"status {code} needs a reason code")
    if code in NEEDS_AMOUNTS and not amounts:
        raise CdarNotBuilt(f"status {code} needs the amounts received per VAT rate")
    if not all(is_code(c) for c in (message_id, invoice_number, *reason_codes)):
        raise CdarNotBuilt("identifiers and reason codes must be short codes")
    if issued_at.tzinfo is None:
        raise CdarNotBuilt("issued_at must carry its time zone")
    moment = issued_at.astimezone(UTC).strftime("%Y%m%d%H%M%S")
    root = etree.Element(f"{{{RSM}}}CrossDomainAcknowledgementAndResponse",
                         nsmap={"rsm": RSM, "ram": RAM, "qdt": QDT, "udt": UDT})
    context = _sub(root, RSM, "ExchangedDocumentContext")
    _sub(_sub(context, RAM, "BusinessProcessSpecifiedDocumentContextParameter"),
         RAM, "ID", "REGULATED")
    _sub(_sub(context, RAM, "GuidelineSpecifiedDocumentContextParameter"), RAM, "ID", GUIDELINE)
    document = _sub(root, RSM, "ExchangedDocument")
    _sub(document, RAM, "ID", message_id)
    _sub(document, RAM, "Name", LABELS[code])
    _sub(_sub(document, RAM, "IssueDateTime"), UDT, "DateTimeString", moment, format="204")
    _party(_sub(document, RAM, "IssuerTradeParty"), issuer)
    for recipient in recipients:
        _party(_sub(document, RAM, "RecipientTradeParty"), recipient)
    ack = _sub(root, RSM, "AcknowledgementDocument")
    _sub(_sub(ack, RAM, "MultipleReferencesIndicator"), UDT, "Indicator", "false")
    _sub(ack, RAM, "TypeCode", type_code)
    _sub(_sub(ack, RAM, "IssueDateTime"), UDT, "DateTimeString", moment, format="204")
    ref = _sub(ack, RAM, "ReferenceReferencedDocument")
    _sub(ref, RAM, "IssuerAssignedID", invoice_number)
    _sub(ref, RAM, "TypeCode", INVOICE_TYPE)
    _sub(_sub(ref, RAM, "FormattedIssueDateTime"), QDT, "DateTimeString",
         invoice_date.strftime("%Y%m%d"), format="102")
    _sub(ref, RAM, "ProcessConditionCode", str(code))
    _sub(ref, RAM, "ProcessCondition", LABELS[code])
    if reason_codes or amounts:
        status = _sub(ref, RAM, "SpecifiedDocumentStatus")
        for reason in reason_codes:
            _sub(status, RAM, "ReasonCode", reason)
        for rate, amount in amounts:
            characteristic = _sub(status, RAM, "SpecifiedDocumentCharacteristic")
            _sub(characteristic, RAM, "TypeCode", "MEN")
            _sub(characteristic, RAM, "ValueAmount", _money(amount), currencyID=currency)
            _sub(characteristic, RAM, "ValuePercent", _money(rate))
    data: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    return data


def _money(value: Decimal) -> str:
    if not isinstance(value, Decimal) or not value.is_finite():
        raise CdarNotBuilt("amounts and rates are finite Decimals")
    return f"{value.quantize(Decimal('0.01')):f}"


def _party(node: etree._Element, party: Party) -> None:
    if not (len(party.siren) == 9 and party.siren.isdigit()) or not is_code(party.role):
        raise CdarNotBuilt("a party is a SIREN (9 digits) and a role code")
    _sub(node, RAM, "GlobalID", party.siren, schemeID=SIREN_SCHEME)
    if party.name:
        _sub(node, RAM, "Name", party.name)
    _sub(node, RAM, "RoleCode", party.role)


def _sub(parent: etree._Element, namespace: str, tag: str, text: str | None = None,
         **attributes: str) -> etree._Element:
    node = etree.SubElement(parent, f"{{{namespace}}}{tag}", attrib=attributes)
    if text is not None:
        node.text = text
    return node
